package changer

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/holdfast/holdfast/drivers/scsi"
)

// ElementType is an SMC element type code.
type ElementType byte

// Element types (SMC-3 table 14).
const (
	AllTypes     ElementType = 0
	Transport    ElementType = 1 // the picker
	Storage      ElementType = 2 // slots
	ImportExport ElementType = 3 // mail slots
	DataTransfer ElementType = 4 // drives
)

func (t ElementType) String() string {
	switch t {
	case AllTypes:
		return "all"
	case Transport:
		return "transport"
	case Storage:
		return "slot"
	case ImportExport:
		return "mail slot"
	case DataTransfer:
		return "drive"
	}
	return fmt.Sprintf("element type %d", byte(t))
}

// Element is one element's status.
type Element struct {
	Type    ElementType
	Address uint16
	Full    bool
	// Except: the element is in an abnormal state, ASC/ASCQ say which.
	Except bool
	// Access: the transport can reach the element (for a mail slot, the
	// door is closed on the changer's side).
	Access bool
	// Mail slots: ImportedByOperator (IMPEXP) tells a cartridge the
	// operator put in from one the changer put there for export;
	// InEnabled/ExEnabled say which ways the slot works.
	ImportedByOperator   bool
	InEnabled, ExEnabled bool
	ASC, ASCQ            byte
	// Source is the element the cartridge came from, when SourceValid.
	SourceValid bool
	Source      uint16
	Invert      bool
	// Barcode is the primary volume tag with its padding trimmed.
	Barcode string
	// AltBarcode is the alternate volume tag (rare: two-sided media).
	AltBarcode string
	// DeviceID is a drive's identification (DVCID), the way to match a
	// drive element to a /dev/sg node: its serial number is in it.
	DeviceID string
}

func (e Element) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d", e.Type, e.Address)
	if e.Full {
		b.WriteString(" full")
	} else {
		b.WriteString(" empty")
	}
	if e.Barcode != "" {
		fmt.Fprintf(&b, " %q", e.Barcode)
	}
	if e.SourceValid {
		fmt.Fprintf(&b, " from %d", e.Source)
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{e.Except, "except"}, {e.Access, "access"}, {e.ImportedByOperator, "impexp"}, {e.InEnabled, "in"}, {e.ExEnabled, "ex"}, {e.Invert, "invert"}} {
		if f.on {
			b.WriteString(" " + f.name)
		}
	}
	if e.ASC != 0 || e.ASCQ != 0 {
		fmt.Fprintf(&b, " (%s)", scsi.ASCText(e.ASC, e.ASCQ))
	}
	if e.AltBarcode != "" {
		fmt.Fprintf(&b, " alt %q", e.AltBarcode)
	}
	if e.DeviceID != "" {
		fmt.Fprintf(&b, " id %q", e.DeviceID)
	}
	return b.String()
}

// ReadElementStatus builds READ ELEMENT STATUS for count elements of one
// type from first on. Volume tags and device identifiers are asked for
// separately by callers, because some changers cannot return both.
func ReadElementStatus(typ ElementType, first, count uint16, volTag, dvcid bool, alloc uint32) *scsi.Command {
	cdb := make([]byte, 12)
	cdb[0] = scsi.OpReadElementStatus
	cdb[1] = byte(typ) & 0x0F
	if volTag {
		cdb[1] |= 0x10
	}
	binary.BigEndian.PutUint16(cdb[2:4], first)
	binary.BigEndian.PutUint16(cdb[4:6], count)
	if dvcid {
		cdb[6] = 0x01
	}
	cdb[7], cdb[8], cdb[9] = byte(alloc>>16), byte(alloc>>8), byte(alloc)
	// A library may scan barcodes to answer: allow it minutes.
	return &scsi.Command{CDB: cdb, Dir: scsi.FromDevice, Data: make([]byte, alloc), Timeout: 5 * time.Minute}
}

// ElementStatus is a decoded READ ELEMENT STATUS reply.
type ElementStatus struct {
	// FirstAddress and Available are the header's claims; Available is
	// checked against the descriptors, FirstAddress is not trusted (tgt
	// reports a wrong one) and only kept for messages.
	FirstAddress uint16
	Available    uint16
	Elements     []Element
	// Truncated: the reply was cut by the allocation length, so Elements
	// holds only the whole descriptors that arrived and the caller reads
	// on from after the last one.
	Truncated bool
	// ShortBy counts bytes the changer declared but did not send although
	// the allocation length allowed them. tgt always sends 8 bytes less
	// than it declares (its length forgets the page header): the last
	// descriptor is kept when its address, flags and volume tag arrived,
	// without the device identifier that was cut.
	ShortBy int
}

// descriptor layout (SMC-3 6.10.3 ff.).
const (
	descBase   = 12 // address, flags, ASC/ASCQ, bus info, source
	volTagSize = 36 // 32 bytes of tag, 2 reserved, 2 sequence
	volTagID   = 32 // the tag proper
)

// ParseElementStatus decodes a READ ELEMENT STATUS reply of len(b) bytes
// received for an allocation length of alloc, checking every length
// against what the header and page headers declared and what arrived: a
// page whose descriptor layout does not add up is an error naming the
// offset, never a misread barcode. dvcid says the request asked for
// device identifiers (they follow the volume tags).
func ParseElementStatus(b []byte, alloc int, dvcid bool) (ElementStatus, error) {
	if len(b) < 8 {
		return ElementStatus{}, fmt.Errorf("element status: %d bytes, need an 8-byte header", len(b))
	}
	st := ElementStatus{
		FirstAddress: binary.BigEndian.Uint16(b[0:2]),
		Available:    binary.BigEndian.Uint16(b[2:4]),
	}
	declared := 8 + int(uint32(b[5])<<16|uint32(b[6])<<8|uint32(b[7]))
	end := declared
	short := false
	if end > len(b) {
		end = len(b)
		if len(b) >= alloc {
			st.Truncated = true
		} else {
			short, st.ShortBy = true, declared-len(b)
		}
	}
	cut := st.Truncated || short
	for off := 8; off < end; {
		if off+8 > end {
			if cut {
				break
			}
			return st, fmt.Errorf("element status: page header at offset %d cut short (report ends at %d)", off, end)
		}
		typ := ElementType(b[off] & 0x0F)
		pvol, avol := b[off+1]&0x80 != 0, b[off+1]&0x40 != 0
		dlen := int(binary.BigEndian.Uint16(b[off+2 : off+4]))
		plen := int(uint32(b[off+5])<<16 | uint32(b[off+6])<<8 | uint32(b[off+7]))
		if typ < Transport || typ > DataTransfer || b[off]&0xF0 != 0 {
			return st, fmt.Errorf("element status: page at offset %d has element type code 0x%02x, not 1-4", off, b[off])
		}
		need := descBase
		if pvol {
			need += volTagSize
		}
		if avol {
			need += volTagSize
		}
		if dlen < need {
			return st, fmt.Errorf("element status: %s page at offset %d declares %d-byte descriptors, its volume tag flags need %d", typ, off, dlen, need)
		}
		if plen%dlen != 0 {
			return st, fmt.Errorf("element status: %s page at offset %d declares %d bytes, not a whole number of %d-byte descriptors", typ, off, plen, dlen)
		}
		body := off + 8
		if body+plen > end && !cut {
			return st, fmt.Errorf("element status: %s page at offset %d declares %d bytes of descriptors, the report ends %d bytes in", typ, off, plen, end-body)
		}
		for d := body; d < body+plen; d += dlen {
			if d+dlen <= end {
				e, err := parseDescriptor(typ, b[d:d+dlen], pvol, avol, dvcid, false)
				if err != nil {
					return st, fmt.Errorf("element status: %s descriptor at offset %d: %w", typ, d, err)
				}
				st.Elements = append(st.Elements, e)
				continue
			}
			if !short {
				break // cut by the allocation length: the caller reads on
			}
			e, err := parseDescriptor(typ, b[d:end], pvol, avol, dvcid, true)
			if err != nil {
				return st, fmt.Errorf("element status: the changer declared %d bytes and sent %d: %s descriptor at offset %d: %w", declared, len(b), typ, d, err)
			}
			st.Elements = append(st.Elements, e)
			break
		}
		off = body + plen
	}
	if !st.Truncated && len(st.Elements) != int(st.Available) {
		return st, fmt.Errorf("element status: header declares %d elements, the pages hold %d", st.Available, len(st.Elements))
	}
	return st, nil
}

// parseDescriptor decodes one element descriptor; cut is set for the
// last descriptor of a reply the changer sent short, where only the
// device identifier may be missing.
func parseDescriptor(typ ElementType, d []byte, pvol, avol, dvcid, cut bool) (Element, error) {
	if len(d) < descBase {
		return Element{}, fmt.Errorf("%d bytes, need %d", len(d), descBase)
	}
	f := d[2]
	e := Element{
		Type:        typ,
		Address:     binary.BigEndian.Uint16(d[0:2]),
		Full:        f&0x01 != 0,
		Except:      f&0x04 != 0,
		Access:      f&0x08 != 0,
		ASC:         d[4],
		ASCQ:        d[5],
		SourceValid: d[9]&0x80 != 0,
		Invert:      d[9]&0x40 != 0,
	}
	if typ == ImportExport {
		e.ImportedByOperator = f&0x02 != 0
		e.ExEnabled = f&0x10 != 0
		e.InEnabled = f&0x20 != 0
	}
	if e.SourceValid {
		e.Source = binary.BigEndian.Uint16(d[10:12])
	}
	off := descBase
	var err error
	for _, tag := range []struct {
		on   bool
		name string
		dst  *string
	}{{pvol, "primary", &e.Barcode}, {avol, "alternate", &e.AltBarcode}} {
		if !tag.on {
			continue
		}
		if off+volTagID > len(d) {
			return e, fmt.Errorf("element %d: %s volume tag cut at %d bytes", e.Address, tag.name, len(d)-off)
		}
		if *tag.dst, err = volumeTag(d[off : off+volTagID]); err != nil {
			return e, fmt.Errorf("element %d: %s volume tag: %w", e.Address, tag.name, err)
		}
		off += volTagSize
	}
	if dvcid && len(d)-off >= 4 && d[off+3] > 0 {
		n := int(d[off+3])
		if off+4+n > len(d) {
			if cut {
				return e, nil // the identifier is what the changer did not send
			}
			return e, fmt.Errorf("element %d: identifier of %d bytes overruns the %d-byte descriptor", e.Address, n, len(d))
		}
		id := d[off+4 : off+4+n]
		if codeSet := d[off] & 0x0F; codeSet == 2 || codeSet == 3 {
			e.DeviceID = strings.Join(strings.Fields(printable(id)), " ")
		} else {
			e.DeviceID = hex.EncodeToString(id)
		}
	}
	return e, nil
}

// volumeTag checks and trims a 32-byte volume identifier. SMC-3 allows
// only printable ASCII padded with spaces (some changers pad with NULs);
// anything else means the descriptor is not laid out as declared — tgt's
// all-types reply puts the next page's header inside the tag.
func volumeTag(b []byte) (string, error) {
	tag := strings.TrimRight(string(b), " \x00")
	for i := 0; i < len(tag); i++ {
		if c := tag[i]; c < 0x20 || c > 0x7E {
			return "", fmt.Errorf("byte %d is 0x%02x, not ASCII: the descriptor is not laid out as its page declares", i, c)
		}
	}
	return strings.TrimLeft(tag, " "), nil
}

func printable(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7E {
			c = ' '
		}
		out[i] = c
	}
	return string(out)
}
