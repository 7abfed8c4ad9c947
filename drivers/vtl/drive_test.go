package vtl

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/drivers/scsi"
)

// TestDriveCommands runs the commands the tape driver's tests do not
// reach through its API: the short READ POSITION form, MODE SENSE(10),
// REQUEST SENSE, the serial VPD page, and the unit attention a new
// cartridge raises.
func TestDriveCommands(t *testing.T) {
	l := newLib(t, t.TempDir(), Config{Slots: 2, Drives: 1}, "D00001")
	d := l.Drive(0)
	tur := []byte{opTestUnitReady, 0, 0, 0, 0, 0}
	steps := []struct {
		name string
		cdb  []byte
		data int
		want string
		// check inspects the data returned, when set.
		check func(t *testing.T, b []byte)
	}{
		{"empty drive", tur, 0, "2/3a/00", nil},
		{"request sense, empty", []byte{opRequestSense, 0, 0, 0, 18, 0}, 18, "", func(t *testing.T, b []byte) {
			if b[0] != 0x70 || b[2] != keyNotReady || b[12] != 0x3A {
				t.Errorf("sense % x", b)
			}
		}},
		{"serial VPD", []byte{opInquiry, 1, 0x80, 0, 64, 0}, 64, "", func(t *testing.T, b []byte) {
			if b[0] != peripheralTape || b[1] != 0x80 || string(b[4:4+b[3]]) != "HFVTLD000" {
				t.Errorf("VPD % x", b)
			}
		}},
		{"unknown VPD page", []byte{opInquiry, 1, 0x83, 0, 64, 0}, 64, "5/24/00", nil},
		{"unknown opcode", []byte{0xC1, 0, 0, 0, 0, 0}, 0, "5/20/00", nil},
		{"load by the changer", nil, 0, "", nil},
		{"unit attention once", tur, 0, "6/28/00", nil},
		{"then ready", tur, 0, "", nil},
		{"write", []byte{opWrite6, 0, 0, 0, 4, 0}, 4, "", nil},
		{"filemark", []byte{opWriteFilemarks6, 0, 0, 0, 1, 0}, 0, "", nil},
		{"short position", []byte{opReadPosition, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 20, "", func(t *testing.T, b []byte) {
			if b[0]&0x80 != 0 || binary.BigEndian.Uint32(b[4:]) != 2 || binary.BigEndian.Uint32(b[8:]) != 2 {
				t.Errorf("short position % x", b)
			}
		}},
		{"mode sense 10", []byte{opModeSense10, 0, 0x3F, 0, 0, 0, 0, 0, 64, 0}, 64, "", func(t *testing.T, b []byte) {
			if binary.BigEndian.Uint16(b) != 14 || binary.BigEndian.Uint16(b[6:]) != 8 || b[3]&0x80 != 0 {
				t.Errorf("mode sense(10) % x", b[:16])
			}
		}},
		{"fixed read in variable mode", []byte{opRead6, 1, 0, 0, 1, 0}, 0, "5/24/00", nil},
		{"rewind", []byte{opRewind, 0, 0, 0, 0, 0}, 0, "", nil},
		{"read attribute from barcode", []byte{opReadAttribute, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x06, 0, 0, 1, 0, 0, 0}, 256, "", func(t *testing.T, b []byte) {
			if binary.BigEndian.Uint32(b) != 37 || binary.BigEndian.Uint16(b[4:]) != attrBarcode || strings.TrimSpace(string(b[9:41])) != "D00001" {
				t.Errorf("attributes % x", b[:41])
			}
		}},
		{"unsupported log page", []byte{opLogSense, 0, 0x40 | 0x31, 0, 0, 0, 0, 1, 0, 0}, 256, "5/24/00", nil},
		{"space to end of data", []byte{opSpace6, 3, 0, 0, 0, 0}, 0, "", nil},
		{"read at end of data", []byte{opRead6, 0, 0, 0, 10, 0}, 10, "8/00/05", nil},
	}
	for _, s := range steps {
		if s.cdb == nil {
			if got := move(t, l, FirstSlot, FirstDrive); got != "" {
				t.Fatalf("%s: %s", s.name, got)
			}
			continue
		}
		buf := make([]byte, s.data)
		res := run(t, d, s.cdb, scsi.FromDevice, buf)
		if got := senseOf(res); got != s.want {
			t.Fatalf("%s: %q, want %q", s.name, got, s.want)
		}
		if s.check != nil {
			s.check(t, buf[:len(buf)-res.Residual])
		}
	}
}
