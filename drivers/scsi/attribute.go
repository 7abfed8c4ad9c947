package scsi

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"
)

// Medium auxiliary memory attributes (SPC-4 7.4) the media manager reads.
const (
	AttrRemainingCapacity = 0x0000 // MiB left in the partition
	AttrMaximumCapacity   = 0x0001 // MiB in the partition
	AttrLoadCount         = 0x0003
	AttrMediumSerial      = 0x0401
	AttrMediumManufacture = 0x0400
	AttrMediumLength      = 0x0402
	AttrApplicationVendor = 0x0800
	AttrApplicationName   = 0x0801
	AttrUserMediumLabel   = 0x0803
	AttrBarcode           = 0x0806
	AttrMediaPool         = 0x0808
)

// Attribute formats.
const (
	AttrBinary = 0
	AttrASCII  = 1
	AttrText   = 2
)

// ReadAttribute builds READ ATTRIBUTE (service action ATTRIBUTE VALUES)
// from attribute first on, for one partition.
func ReadAttribute(partition byte, first uint16, alloc uint32) *Command {
	cdb := make([]byte, 16)
	cdb[0] = OpReadAttribute
	cdb[1] = 0x00 // ATTRIBUTE VALUES
	cdb[7] = partition
	binary.BigEndian.PutUint16(cdb[8:10], first)
	binary.BigEndian.PutUint32(cdb[10:14], alloc)
	// Cartridge memory is read over a radio link: slower than a status read.
	return &Command{CDB: cdb, Dir: FromDevice, Data: make([]byte, alloc), Timeout: time.Minute}
}

// Attribute is one medium auxiliary memory attribute.
type Attribute struct {
	ID       uint16
	ReadOnly bool
	Format   byte
	Value    []byte
}

// String is the value as text for ASCII and text attributes (trimmed)
// and as a big-endian number for binary ones of up to 8 bytes.
func (a Attribute) String() string {
	switch a.Format {
	case AttrASCII, AttrText:
		return asciiField(a.Value)
	}
	if n, ok := a.Uint(); ok {
		return fmt.Sprint(n)
	}
	return fmt.Sprintf("% x", a.Value)
}

// Uint is a binary attribute's value.
func (a Attribute) Uint() (uint64, bool) {
	if a.Format != AttrBinary || len(a.Value) > 8 || len(a.Value) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range a.Value {
		n = n<<8 | uint64(c)
	}
	return n, true
}

// ParseAttributes decodes READ ATTRIBUTE (ATTRIBUTE VALUES) data: a
// 4-byte available length and attributes of 5-byte header plus value.
// An attribute cut by the allocation length ends the list; one that
// runs past what the device declared is an error.
func ParseAttributes(b []byte) ([]Attribute, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("attribute data: %d bytes, need 4", len(b))
	}
	avail := uint64(binary.BigEndian.Uint32(b[0:4]))
	end := len(b)
	truncated := true
	if 4+avail <= uint64(len(b)) {
		end, truncated = 4+int(avail), false
	}
	var out []Attribute
	for off := 4; off < end; {
		if off+5 > end {
			if truncated {
				break
			}
			return out, fmt.Errorf("attribute data: header at offset %d cut short", off)
		}
		n := int(binary.BigEndian.Uint16(b[off+3 : off+5]))
		if off+5+n > end {
			if truncated {
				break
			}
			return out, fmt.Errorf("attribute 0x%04x: declares %d bytes past the list end", binary.BigEndian.Uint16(b[off:off+2]), n)
		}
		out = append(out, Attribute{
			ID:       binary.BigEndian.Uint16(b[off : off+2]),
			ReadOnly: b[off+2]&0x80 != 0,
			Format:   b[off+2] & 0x03,
			Value:    b[off+5 : off+5+n],
		})
		off += 5 + n
	}
	return out, nil
}

// ReadAttributes reads the medium auxiliary memory attributes of a
// partition from first on.
func ReadAttributes(ctx context.Context, dev Device, partition byte, first uint16) ([]Attribute, error) {
	cmd := ReadAttribute(partition, first, 0xFFFF)
	res, err := Exec(ctx, dev, cmd)
	if err != nil {
		return nil, err
	}
	return ParseAttributes(cmd.Data[:received(cmd, res)])
}
