package tape

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Sense is decoded sense data, fixed or descriptor format.
type Sense struct {
	Key       byte
	ASC, ASCQ byte
	Filemark  bool // FM
	EOM       bool // end of medium / early warning / beginning of partition
	ILI       bool // incorrect length
	// Info is the INFORMATION field (signed residue for READ/WRITE/SPACE),
	// meaningful when InfoValid.
	Info      int64
	InfoValid bool
}

func (s Sense) String() string {
	var flags []string
	if s.Filemark {
		flags = append(flags, "FM")
	}
	if s.EOM {
		flags = append(flags, "EOM")
	}
	if s.ILI {
		flags = append(flags, "ILI")
	}
	out := fmt.Sprintf("sense key %#x asc/ascq %02x/%02x", s.Key, s.ASC, s.ASCQ)
	if len(flags) > 0 {
		out += " " + strings.Join(flags, ",")
	}
	if s.InfoValid {
		out += fmt.Sprintf(" info %d", s.Info)
	}
	return out
}

var errShortSense = errors.New("sense data too short")

// parseSense decodes fixed (0x70/0x71) or descriptor (0x72/0x73) sense
// data; fields past the data's end or its additional length are absent.
func parseSense(b []byte) (Sense, error) {
	var s Sense
	if len(b) < 1 {
		return s, errShortSense
	}
	switch b[0] & 0x7F {
	case 0x70, 0x71:
		if len(b) < 3 {
			return s, errShortSense
		}
		s.Key = b[2] & 0x0F
		s.Filemark = b[2]&0x80 != 0
		s.EOM = b[2]&0x40 != 0
		s.ILI = b[2]&0x20 != 0
		if len(b) >= 7 {
			s.Info = int64(int32(binary.BigEndian.Uint32(b[3:])))
			s.InfoValid = b[0]&0x80 != 0
		}
		end := len(b)
		if len(b) >= 8 {
			end = min(end, 8+int(b[7]))
		}
		if end >= 14 {
			s.ASC, s.ASCQ = b[12], b[13]
		}
		return s, nil
	case 0x72, 0x73:
		if len(b) < 4 {
			return s, errShortSense
		}
		s.Key, s.ASC, s.ASCQ = b[1]&0x0F, b[2], b[3]
		if len(b) < 8 {
			return s, nil
		}
		d := b[8:min(len(b), 8+int(b[7]))]
		for len(d) >= 2 {
			n := 2 + int(d[1])
			if n > len(d) {
				break
			}
			desc := d[:n]
			switch desc[0] {
			case 0x00: // information
				if n >= 12 {
					s.InfoValid = desc[2]&0x80 != 0
					s.Info = int64(binary.BigEndian.Uint64(desc[4:]))
				}
			case 0x04: // stream commands
				if n >= 4 {
					s.Filemark = desc[3]&0x80 != 0
					s.EOM = desc[3]&0x40 != 0
					s.ILI = desc[3]&0x20 != 0
				}
			}
			d = d[n:]
		}
		return s, nil
	}
	return s, fmt.Errorf("sense response code %#x unknown", b[0]&0x7F)
}

// Inquiry is what standard INQUIRY tells of a logical unit.
type Inquiry struct {
	PeripheralType byte
	Removable      bool
	Vendor         string
	Product        string
	Revision       string
}

func parseInquiry(b []byte) (Inquiry, error) {
	if len(b) < 36 {
		return Inquiry{}, fmt.Errorf("inquiry data: %d bytes, want 36", len(b))
	}
	trim := func(p []byte) string { return strings.TrimRight(strings.ToValidUTF8(string(p), "?"), " \x00") }
	return Inquiry{
		PeripheralType: b[0] & 0x1F,
		Removable:      b[1]&0x80 != 0,
		Vendor:         trim(b[8:16]),
		Product:        trim(b[16:32]),
		Revision:       trim(b[32:36]),
	}, nil
}

// parseSerialVPD reads the unit serial number page (0x80).
func parseSerialVPD(b []byte) (string, error) {
	if len(b) < 4 || b[1] != 0x80 {
		return "", errors.New("serial VPD page: malformed header")
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if 4+n > len(b) {
		return "", fmt.Errorf("serial VPD page: %d bytes declared, %d present", n, len(b)-4)
	}
	return strings.TrimSpace(strings.ToValidUTF8(string(b[4:4+n]), "?")), nil
}

// Position is where the tape is, from READ POSITION.
type Position struct {
	Block uint64 // logical object number: blocks and filemarks from BOP
	File  uint64 // filemarks before Block (long form only)
	BOP   bool   // at beginning of partition
	EOP   bool   // at end of partition
	BPEW  bool   // beyond programmable early warning
	Long  bool   // from the long form (File is set)
}

func parseReadPosition(b []byte, long bool) (Position, error) {
	if long {
		if len(b) < 32 {
			return Position{}, fmt.Errorf("read position (long): %d bytes, want 32", len(b))
		}
		if b[0]&0x04 != 0 {
			return Position{}, errors.New("read position: position unknown")
		}
		return Position{
			BOP: b[0]&0x80 != 0, EOP: b[0]&0x40 != 0, BPEW: b[0]&0x01 != 0,
			Block: binary.BigEndian.Uint64(b[8:]), File: binary.BigEndian.Uint64(b[16:]), Long: true,
		}, nil
	}
	if len(b) < 20 {
		return Position{}, fmt.Errorf("read position (short): %d bytes, want 20", len(b))
	}
	if b[0]&0x04 != 0 {
		return Position{}, errors.New("read position: position unknown")
	}
	return Position{
		BOP: b[0]&0x80 != 0, EOP: b[0]&0x40 != 0, BPEW: b[0]&0x01 != 0,
		Block: uint64(binary.BigEndian.Uint32(b[4:])),
	}, nil
}

// Alerts is the set of TapeAlert flags raised; bit f-1 is flag f.
type Alerts uint64

// TapeAlert flags this driver acts on (SSC-3 annex).
const (
	AlertHardError    = 0x03
	AlertWriteProtect = 0x09
	AlertCleanNow     = 0x14
	AlertCleanPeriod  = 0x15
)

// Has reports whether flag f (1..64) is raised.
func (a Alerts) Has(f int) bool { return f >= 1 && f <= 64 && a&(1<<(f-1)) != 0 }

// CleaningNeeded reports a clean-now or periodic-clean alert.
func (a Alerts) CleaningNeeded() bool { return a.Has(AlertCleanNow) || a.Has(AlertCleanPeriod) }

// parseTapeAlert reads LOG SENSE page 0x2E: parameters 1..64, each one
// byte whose bit 0 is the flag.
func parseTapeAlert(b []byte) (Alerts, error) {
	if len(b) < 4 || b[0]&0x3F != 0x2E {
		return 0, errors.New("tapealert page: malformed header")
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if 4+n > len(b) {
		return 0, fmt.Errorf("tapealert page: %d bytes declared, %d present", n, len(b)-4)
	}
	var a Alerts
	p := b[4 : 4+n]
	for len(p) > 0 {
		if len(p) < 4 || 4+int(p[3]) > len(p) {
			return 0, errors.New("tapealert page: parameter runs past the page")
		}
		code := int(binary.BigEndian.Uint16(p))
		l := int(p[3])
		if code >= 1 && code <= 64 && l >= 1 && p[4]&0x01 != 0 {
			a |= 1 << (code - 1)
		}
		p = p[4+l:]
	}
	return a, nil
}

// modeHeader is what MODE SENSE(6) says of the medium and block size.
type modeHeader struct {
	WriteProtected bool
	BlockSize      int // 0: variable
	HasBlockDesc   bool
}

func parseModeSense6(b []byte) (modeHeader, error) {
	if len(b) < 4 {
		return modeHeader{}, fmt.Errorf("mode sense: %d bytes", len(b))
	}
	h := modeHeader{WriteProtected: b[2]&0x80 != 0}
	if bd := int(b[3]); bd >= 8 {
		if len(b) < 12 {
			return modeHeader{}, errors.New("mode sense: block descriptor cut short")
		}
		h.HasBlockDesc = true
		h.BlockSize = int(b[9])<<16 | int(b[10])<<8 | int(b[11])
	}
	return h, nil
}

// parseAttribute finds attribute id in a READ ATTRIBUTE (values) reply.
func parseAttribute(b []byte, id uint16) ([]byte, bool, error) {
	if len(b) < 4 {
		return nil, false, errors.New("attributes: short header")
	}
	n := int(binary.BigEndian.Uint32(b))
	if n < 0 || n > len(b)-4 {
		n = len(b) - 4 // cut by the allocation length: read what came
	}
	p := b[4 : 4+n]
	for len(p) >= 5 {
		l := int(binary.BigEndian.Uint16(p[3:]))
		if 5+l > len(p) {
			return nil, false, errors.New("attributes: value runs past the data")
		}
		if binary.BigEndian.Uint16(p) == id {
			return p[5 : 5+l], true, nil
		}
		p = p[5+l:]
	}
	return nil, false, nil
}
