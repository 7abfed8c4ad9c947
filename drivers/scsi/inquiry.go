package scsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"
)

// Peripheral device types (SPC-4) the drivers care about.
const (
	TypeDisk    = 0x00
	TypeTape    = 0x01
	TypeChanger = 0x08
)

// shortTimeout bounds commands that only read the device's state.
const shortTimeout = 30 * time.Second

// TestUnitReady asks whether the unit can take medium-access commands.
func TestUnitReady() *Command {
	return &Command{CDB: make([]byte, 6), Dir: None, Timeout: shortTimeout}
}

// RequestSense fetches sense data explicitly (after a command whose
// sense was lost, or to read progress while becoming ready).
func RequestSense(alloc uint8) *Command {
	return &Command{CDB: []byte{OpRequestSense, 0, 0, 0, alloc, 0}, Dir: FromDevice, Data: make([]byte, alloc), Timeout: shortTimeout}
}

// Inquiry builds an INQUIRY for the standard data (page < 0) or for one
// vital product data page.
func Inquiry(page int, alloc uint16) *Command {
	cdb := []byte{OpInquiry, 0, 0, 0, 0, 0}
	if page >= 0 {
		cdb[1] = 0x01 // EVPD
		cdb[2] = byte(page)
	}
	binary.BigEndian.PutUint16(cdb[3:5], alloc)
	return &Command{CDB: cdb, Dir: FromDevice, Data: make([]byte, alloc), Timeout: shortTimeout}
}

// InquiryData is the standard INQUIRY data drivers use.
type InquiryData struct {
	Qualifier  byte // 0: a device is connected to this logical unit
	DeviceType byte // TypeTape, TypeChanger, ...
	Removable  bool
	Version    byte
	Vendor     string
	Product    string
	Revision   string
}

// inquiryMin is the length that holds vendor, product and revision.
const inquiryMin = 36

// ParseInquiry decodes standard INQUIRY data.
func ParseInquiry(b []byte) (InquiryData, error) {
	if len(b) < inquiryMin {
		return InquiryData{}, fmt.Errorf("inquiry data: %d bytes, need %d", len(b), inquiryMin)
	}
	if int(b[4])+5 < inquiryMin {
		return InquiryData{}, fmt.Errorf("inquiry data: additional length %d leaves no room for vendor, product and revision", b[4])
	}
	return InquiryData{
		Qualifier:  b[0] >> 5,
		DeviceType: b[0] & 0x1F,
		Removable:  b[1]&0x80 != 0,
		Version:    b[2],
		Vendor:     asciiField(b[8:16]),
		Product:    asciiField(b[16:32]),
		Revision:   asciiField(b[32:36]),
	}, nil
}

// asciiField is a space-padded ASCII field with padding and NULs trimmed
// and anything unprintable replaced, so a device's garbage cannot reach
// a log or the catalog as control characters.
func asciiField(b []byte) string {
	b = bytes.TrimRight(b, " \x00")
	b = bytes.TrimLeft(b, " ")
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7E {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}

// ParseUnitSerial decodes VPD page 0x80 (unit serial number).
func ParseUnitSerial(b []byte) (string, error) {
	if len(b) < 4 {
		return "", fmt.Errorf("unit serial page: %d bytes, need 4", len(b))
	}
	if b[1] != 0x80 {
		return "", fmt.Errorf("unit serial page: got page 0x%02x", b[1])
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if 4+n > len(b) {
		return "", fmt.Errorf("unit serial page: declares %d bytes, %d arrived", n, len(b)-4)
	}
	return asciiField(b[4 : 4+n]), nil
}

// ReadInquiry runs INQUIRY and decodes the standard data.
func ReadInquiry(ctx context.Context, dev Device) (InquiryData, error) {
	cmd := Inquiry(-1, 96)
	res, err := Exec(ctx, dev, cmd)
	if err != nil {
		return InquiryData{}, err
	}
	return ParseInquiry(cmd.Data[:received(cmd, res)])
}

// ReadUnitSerial runs INQUIRY for VPD page 0x80.
func ReadUnitSerial(ctx context.Context, dev Device) (string, error) {
	cmd := Inquiry(0x80, 255)
	res, err := Exec(ctx, dev, cmd)
	if err != nil {
		return "", err
	}
	return ParseUnitSerial(cmd.Data[:received(cmd, res)])
}

// received is how much of the data buffer the device filled.
func received(cmd *Command, res Result) int {
	n := len(cmd.Data) - res.Residual
	if n < 0 {
		return 0
	}
	if n > len(cmd.Data) {
		return len(cmd.Data)
	}
	return n
}
