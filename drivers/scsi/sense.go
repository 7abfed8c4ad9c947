package scsi

import (
	"encoding/binary"
	"fmt"
)

// Sense keys (SPC-4 table 28).
const (
	KeyNoSense        = 0x0
	KeyRecoveredError = 0x1
	KeyNotReady       = 0x2
	KeyMediumError    = 0x3
	KeyHardwareError  = 0x4
	KeyIllegalRequest = 0x5
	KeyUnitAttention  = 0x6
	KeyDataProtect    = 0x7
	KeyBlankCheck     = 0x8
	KeyVendorSpecific = 0x9
	KeyCopyAborted    = 0xA
	KeyAbortedCommand = 0xB
	KeyVolumeOverflow = 0xD
	KeyMiscompare     = 0xE
	KeyCompleted      = 0xF
)

var keyNames = [16]string{
	"NO SENSE", "RECOVERED ERROR", "NOT READY", "MEDIUM ERROR",
	"HARDWARE ERROR", "ILLEGAL REQUEST", "UNIT ATTENTION", "DATA PROTECT",
	"BLANK CHECK", "VENDOR SPECIFIC", "COPY ABORTED", "ABORTED COMMAND",
	"OBSOLETE (0xC)", "VOLUME OVERFLOW", "MISCOMPARE", "COMPLETED",
}

// KeyName is the sense key's name as the standard spells it.
func KeyName(key byte) string { return keyNames[key&0x0F] }

// Sense is decoded sense data. Fixed (0x70/0x71) and descriptor
// (0x72/0x73) formats decode to the same fields, so drivers test
// Key/ASC/ASCQ and the stream bits without caring which format the
// device chose.
type Sense struct {
	// ResponseCode is 0x70-0x73; Deferred reports an error of an earlier
	// command (0x71, 0x73), which a tape driver must not blame on the
	// command that carried it.
	ResponseCode byte
	Deferred     bool
	Descriptor   bool // descriptor format
	Key          byte
	ASC, ASCQ    byte
	// Valid is set when Information holds a value (fixed format VALID bit,
	// or an information descriptor with its VALID bit).
	Valid       bool
	Information uint64
	// Stream command bits (SSC): a filemark was met, the end (or beginning)
	// of medium or partition was reached, the block length did not match.
	Filemark, EOM, ILI bool
	// SenseKeySpecific holds the three sense-key specific bytes when their
	// SKSV bit is set (field pointer for ILLEGAL REQUEST, progress for NOT
	// READY).
	SKSValid         bool
	SenseKeySpecific [3]byte
	// CommandInfo is the fixed format's command-specific information.
	CommandInfo uint32
}

// ParseSense decodes sense data. Short, unknown-format or inconsistent
// sense is an error naming what is wrong; it never panics.
func ParseSense(b []byte) (Sense, error) {
	if len(b) == 0 {
		return Sense{}, fmt.Errorf("sense data: empty")
	}
	rc := b[0] & 0x7F
	switch rc {
	case 0x70, 0x71:
		return parseFixedSense(b)
	case 0x72, 0x73:
		return parseDescriptorSense(b)
	case 0x7F:
		return Sense{}, fmt.Errorf("sense data: vendor-specific format 0x7f (% x)", head(b))
	default:
		return Sense{}, fmt.Errorf("sense data: unknown response code 0x%02x (% x)", rc, head(b))
	}
}

// head is the start of a buffer, for error messages.
func head(b []byte) []byte {
	if len(b) > 18 {
		return b[:18]
	}
	return b
}

// fixedSenseMin is the length up to and including ASCQ: shorter fixed
// sense carries a key but no reason, which is not enough to act on.
const fixedSenseMin = 14

func parseFixedSense(b []byte) (Sense, error) {
	if len(b) < fixedSenseMin {
		return Sense{}, fmt.Errorf("sense data: fixed format cut short at %d bytes (need %d for ASC/ASCQ): % x", len(b), fixedSenseMin, b)
	}
	// The additional length may declare more than the sense buffer held
	// (the transport truncates); it may not declare less than the ASCQ.
	if int(b[7])+8 < fixedSenseMin {
		return Sense{}, fmt.Errorf("sense data: fixed format declares %d additional bytes, too few for ASC/ASCQ", b[7])
	}
	s := Sense{
		ResponseCode: b[0] & 0x7F,
		Deferred:     b[0]&0x7F == 0x71,
		Valid:        b[0]&0x80 != 0,
		Filemark:     b[2]&0x80 != 0,
		EOM:          b[2]&0x40 != 0,
		ILI:          b[2]&0x20 != 0,
		Key:          b[2] & 0x0F,
		Information:  uint64(binary.BigEndian.Uint32(b[3:7])),
		CommandInfo:  binary.BigEndian.Uint32(b[8:12]),
		ASC:          b[12],
		ASCQ:         b[13],
	}
	if len(b) >= 18 && int(b[7])+8 >= 18 && b[15]&0x80 != 0 {
		s.SKSValid = true
		copy(s.SenseKeySpecific[:], b[15:18])
	}
	return s, nil
}

func parseDescriptorSense(b []byte) (Sense, error) {
	if len(b) < 8 {
		return Sense{}, fmt.Errorf("sense data: descriptor format cut short at %d bytes (need 8): % x", len(b), b)
	}
	s := Sense{
		ResponseCode: b[0] & 0x7F,
		Deferred:     b[0]&0x7F == 0x73,
		Descriptor:   true,
		Key:          b[1] & 0x0F,
		ASC:          b[2],
		ASCQ:         b[3],
	}
	end := 8 + int(b[7])
	if end > len(b) {
		end = len(b) // truncated by the sense buffer: decode what arrived
	}
	for off := 8; off < end; {
		if off+2 > end {
			return s, fmt.Errorf("sense data: descriptor at offset %d cut short", off)
		}
		typ, n := b[off], int(b[off+1])
		d := b[off+2 : min(off+2+n, end)]
		if len(d) < n {
			// A truncated last descriptor is the transport's doing; the
			// ones before it are whole.
			break
		}
		switch typ {
		case 0x00: // information
			if n < 0x0A {
				return s, fmt.Errorf("sense data: information descriptor of %d bytes (need 10)", n)
			}
			s.Valid = d[0]&0x80 != 0
			s.Information = binary.BigEndian.Uint64(d[2:10])
		case 0x01: // command-specific information
			if n >= 0x0A {
				s.CommandInfo = uint32(binary.BigEndian.Uint64(d[2:10]))
			}
		case 0x02: // sense key specific
			if n < 6 {
				return s, fmt.Errorf("sense data: sense-key specific descriptor of %d bytes (need 6)", n)
			}
			if d[2]&0x80 != 0 {
				s.SKSValid = true
				copy(s.SenseKeySpecific[:], d[2:5])
			}
		case 0x04: // stream commands
			if n < 2 {
				return s, fmt.Errorf("sense data: stream commands descriptor of %d bytes (need 2)", n)
			}
			s.Filemark = d[1]&0x80 != 0
			s.EOM = d[1]&0x40 != 0
			s.ILI = d[1]&0x20 != 0
		}
		off += 2 + n
	}
	return s, nil
}

// Residue is the information field read as SSC does for READ, WRITE and
// SPACE: the signed difference between what was asked and what was done
// (negative when a block was longer than asked for).
func (s Sense) Residue() int64 {
	if s.Descriptor {
		return int64(s.Information)
	}
	return int64(int32(uint32(s.Information)))
}

// FieldPointer decodes the sense-key specific bytes of an ILLEGAL
// REQUEST: which byte (and bit, when bitValid) of the CDB (inCDB) or of
// the parameter data was refused. ok is false when the device gave none.
func (s Sense) FieldPointer() (inCDB bool, field uint16, bit byte, bitValid, ok bool) {
	if !s.SKSValid || s.Key != KeyIllegalRequest {
		return false, 0, 0, false, false
	}
	k := s.SenseKeySpecific
	return k[0]&0x40 != 0, binary.BigEndian.Uint16(k[1:3]), k[0] & 0x07, k[0]&0x08 != 0, true
}

// Progress is the sense-key specific progress indication (NOT READY
// while becoming ready, formatting, ...), as a fraction of 1.
func (s Sense) Progress() (float64, bool) {
	if !s.SKSValid || (s.Key != KeyNotReady && s.Key != KeyNoSense) {
		return 0, false
	}
	return float64(binary.BigEndian.Uint16(s.SenseKeySpecific[1:3])) / 65536, true
}

// Is reports whether the sense carries this additional sense code and
// qualifier.
func (s Sense) Is(asc, ascq byte) bool { return s.ASC == asc && s.ASCQ == ascq }

// Text is the readable meaning of the ASC/ASCQ pair.
func (s Sense) Text() string { return ASCText(s.ASC, s.ASCQ) }

// String is a one-line summary for logs and errors, e.g.
// "NOT READY: medium not present (ASC 3Ah/ASCQ 00h)".
func (s Sense) String() string {
	str := fmt.Sprintf("%s: %s (ASC %02Xh/ASCQ %02Xh)", KeyName(s.Key), s.Text(), s.ASC, s.ASCQ)
	if s.Deferred {
		str = "deferred " + str
	}
	if s.Filemark {
		str += " [filemark]"
	}
	if s.EOM {
		str += " [EOM]"
	}
	if s.ILI {
		str += " [ILI]"
	}
	if s.Valid {
		str += fmt.Sprintf(" info=%d", s.Residue())
	}
	if inCDB, field, bit, bitValid, ok := s.FieldPointer(); ok {
		where := "parameter data"
		if inCDB {
			where = "CDB"
		}
		str += fmt.Sprintf(" at %s byte %d", where, field)
		if bitValid {
			str += fmt.Sprintf(" bit %d", bit)
		}
	}
	return str
}
