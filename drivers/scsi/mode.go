package scsi

import (
	"context"
	"encoding/binary"
	"fmt"
)

// Page control values for MODE SENSE and LOG SENSE.
const (
	PageCurrent    = 0
	PageChangeable = 1
	PageDefault    = 2
	PageSaved      = 3
)

// ModeSense6 asks for one mode page (0x3F: all); dbd leaves out block
// descriptors.
func ModeSense6(page, subpage byte, pc byte, dbd bool, alloc uint8) *Command {
	cdb := []byte{OpModeSense6, 0, pc<<6 | page&0x3F, subpage, alloc, 0}
	if dbd {
		cdb[1] = 0x08
	}
	return &Command{CDB: cdb, Dir: FromDevice, Data: make([]byte, alloc), Timeout: shortTimeout}
}

// ModeSense10 is ModeSense6 with room for more than 255 bytes.
func ModeSense10(page, subpage byte, pc byte, dbd bool, alloc uint16) *Command {
	cdb := []byte{OpModeSense10, 0, pc<<6 | page&0x3F, subpage, 0, 0, 0, 0, 0, 0}
	if dbd {
		cdb[1] = 0x08
	}
	binary.BigEndian.PutUint16(cdb[7:9], alloc)
	return &Command{CDB: cdb, Dir: FromDevice, Data: make([]byte, alloc), Timeout: shortTimeout}
}

// BlockDescriptor is a short mode parameter block descriptor: for tape,
// the density and the fixed block length (0 = variable).
type BlockDescriptor struct {
	Density     byte
	Blocks      uint32 // 24 bits
	BlockLength uint32 // 24 bits
}

// ModePage is one mode page as the device returned it.
type ModePage struct {
	Code    byte
	Subpage byte
	// SubpageFormat is set for pages in the SPF format (4-byte header).
	SubpageFormat bool
	Saveable      bool
	Data          []byte // the page's parameters, header excluded
}

// ModeParameters is a MODE SENSE reply or a MODE SELECT parameter list.
type ModeParameters struct {
	MediumType byte
	// DeviceSpecific is, on tape, WP (bit 7), buffered mode (6-4) and
	// speed (3-0).
	DeviceSpecific   byte
	BlockDescriptors []BlockDescriptor
	Pages            []ModePage
}

// WriteProtected reads the tape device-specific WP bit.
func (m ModeParameters) WriteProtected() bool { return m.DeviceSpecific&0x80 != 0 }

// Page returns the first page with this code.
func (m ModeParameters) Page(code byte) (ModePage, bool) {
	for _, p := range m.Pages {
		if p.Code == code {
			return p, true
		}
	}
	return ModePage{}, false
}

// ParseModeSense6 decodes a MODE SENSE(6) reply.
func ParseModeSense6(b []byte) (ModeParameters, error) {
	if len(b) < 4 {
		return ModeParameters{}, fmt.Errorf("mode sense(6) data: %d bytes, need 4", len(b))
	}
	end := min(int(b[0])+1, len(b))
	return parseModeBody(b[:end], 4, int(b[3]), b[1], b[2])
}

// ParseModeSense10 decodes a MODE SENSE(10) reply.
func ParseModeSense10(b []byte) (ModeParameters, error) {
	if len(b) < 8 {
		return ModeParameters{}, fmt.Errorf("mode sense(10) data: %d bytes, need 8", len(b))
	}
	if b[4]&0x01 != 0 {
		return ModeParameters{}, fmt.Errorf("mode sense(10) data: long LBA block descriptors are not used on tape")
	}
	end := min(int(binary.BigEndian.Uint16(b[0:2]))+2, len(b))
	return parseModeBody(b[:end], 8, int(binary.BigEndian.Uint16(b[6:8])), b[2], b[3])
}

func parseModeBody(b []byte, hdr, bdLen int, medium, specific byte) (ModeParameters, error) {
	m := ModeParameters{MediumType: medium, DeviceSpecific: specific}
	if hdr+bdLen > len(b) {
		return m, fmt.Errorf("mode data: block descriptors of %d bytes run past the %d bytes returned", bdLen, len(b))
	}
	if bdLen%8 != 0 {
		return m, fmt.Errorf("mode data: block descriptor length %d is not a multiple of 8", bdLen)
	}
	for off := hdr; off < hdr+bdLen; off += 8 {
		d := b[off : off+8]
		m.BlockDescriptors = append(m.BlockDescriptors, BlockDescriptor{
			Density:     d[0],
			Blocks:      uint32(d[1])<<16 | uint32(d[2])<<8 | uint32(d[3]),
			BlockLength: uint32(d[5])<<16 | uint32(d[6])<<8 | uint32(d[7]),
		})
	}
	for off := hdr + bdLen; off < len(b); {
		if off+2 > len(b) {
			return m, fmt.Errorf("mode data: page header at offset %d cut short", off)
		}
		p := ModePage{Code: b[off] & 0x3F, Saveable: b[off]&0x80 != 0, SubpageFormat: b[off]&0x40 != 0}
		start, n := off+2, int(b[off+1])
		if p.SubpageFormat {
			if off+4 > len(b) {
				return m, fmt.Errorf("mode data: subpage header at offset %d cut short", off)
			}
			p.Subpage = b[off+1]
			start, n = off+4, int(binary.BigEndian.Uint16(b[off+2:off+4]))
		}
		if start+n > len(b) {
			// The allocation length cut the last page; keep only whole pages.
			if len(m.Pages) == 0 {
				return m, fmt.Errorf("mode data: page 0x%02x declares %d bytes, %d arrived", p.Code, n, len(b)-start)
			}
			break
		}
		p.Data = b[start : start+n]
		m.Pages = append(m.Pages, p)
		off = start + n
	}
	return m, nil
}

// marshalBody writes block descriptors and pages; the PS bit is cleared
// as MODE SELECT requires.
func (m ModeParameters) marshalBody() []byte {
	var out []byte
	for _, d := range m.BlockDescriptors {
		out = append(out, d.Density, byte(d.Blocks>>16), byte(d.Blocks>>8), byte(d.Blocks), 0,
			byte(d.BlockLength>>16), byte(d.BlockLength>>8), byte(d.BlockLength))
	}
	for _, p := range m.Pages {
		if p.SubpageFormat {
			out = append(out, 0x40|p.Code&0x3F, p.Subpage, byte(len(p.Data)>>8), byte(len(p.Data)))
		} else {
			out = append(out, p.Code&0x3F, byte(len(p.Data)))
		}
		out = append(out, p.Data...)
	}
	return out
}

// ModeSelect6 builds MODE SELECT(6) with the page format bit set. The
// mode data length is reserved in MODE SELECT and sent as zero; on tape
// the device-specific byte carries the buffered mode.
func ModeSelect6(m ModeParameters, save bool) (*Command, error) {
	body := m.marshalBody()
	bd := 8 * len(m.BlockDescriptors)
	data := append([]byte{0, m.MediumType, m.DeviceSpecific &^ 0x80, byte(bd)}, body...)
	if len(data) > 255 || bd > 255 {
		return nil, fmt.Errorf("mode select(6): %d bytes of parameters do not fit, use MODE SELECT(10)", len(data))
	}
	cdb := []byte{OpModeSelect6, 0x10, 0, 0, byte(len(data)), 0}
	if save {
		cdb[1] |= 0x01
	}
	return &Command{CDB: cdb, Dir: ToDevice, Data: data, Timeout: shortTimeout}, nil
}

// ModeSelect10 builds MODE SELECT(10).
func ModeSelect10(m ModeParameters, save bool) (*Command, error) {
	body := m.marshalBody()
	bd := 8 * len(m.BlockDescriptors)
	data := append([]byte{0, 0, m.MediumType, m.DeviceSpecific &^ 0x80, 0, 0, byte(bd >> 8), byte(bd)}, body...)
	if len(data) > 0xFFFF {
		return nil, fmt.Errorf("mode select(10): %d bytes of parameters do not fit", len(data))
	}
	cdb := []byte{OpModeSelect10, 0x10, 0, 0, 0, 0, 0, byte(len(data) >> 8), byte(len(data)), 0}
	if save {
		cdb[1] |= 0x01
	}
	return &Command{CDB: cdb, Dir: ToDevice, Data: data, Timeout: shortTimeout}, nil
}

// ReadModePage runs MODE SENSE(10) for one page (current values, no
// block descriptors unless withBD) and decodes it.
func ReadModePage(ctx context.Context, dev Device, page byte, withBD bool) (ModeParameters, error) {
	cmd := ModeSense10(page, 0, PageCurrent, !withBD, 0xFFF0)
	res, err := Exec(ctx, dev, cmd)
	if err != nil {
		return ModeParameters{}, err
	}
	return ParseModeSense10(cmd.Data[:received(cmd, res)])
}
