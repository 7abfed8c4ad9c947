package scsi

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestParseInquiry(t *testing.T) {
	for _, c := range loadCases(t, "testdata/inquiry.txt") {
		t.Run(c["name"], func(t *testing.T) {
			switch c["kind"] {
			case "std":
				d, err := ParseInquiry(caseBytes(t, c))
				checkOutcome(t, c, fmt.Sprintf("%+v", d), err)
			case "vpd80":
				s, err := ParseUnitSerial(caseBytes(t, c))
				checkOutcome(t, c, s, err)
			default:
				t.Fatalf("kind %q", c["kind"])
			}
		})
	}
}

func TestParseModeSense(t *testing.T) {
	for _, c := range loadCases(t, "testdata/mode.txt") {
		t.Run(c["name"], func(t *testing.T) {
			var m ModeParameters
			var err error
			switch c["kind"] {
			case "6":
				m, err = ParseModeSense6(caseBytes(t, c))
			case "10":
				m, err = ParseModeSense10(caseBytes(t, c))
			default:
				t.Fatalf("kind %q", c["kind"])
			}
			checkOutcome(t, c, fmt.Sprintf("%+v", m), err)
		})
	}
}

// A mode page read with MODE SENSE goes back with MODE SELECT: what the
// select carries must decode to what was read, with PS and WP cleared.
func TestModeSelectRoundTrip(t *testing.T) {
	m := ModeParameters{
		DeviceSpecific:   0x90,
		BlockDescriptors: []BlockDescriptor{{Density: 0x5a, BlockLength: 256 << 10}},
		Pages: []ModePage{
			{Code: 0x10, Saveable: true, Data: make([]byte, 14)},
			{Code: 0x10, Subpage: 1, SubpageFormat: true, Data: []byte{1, 2, 3}},
		},
	}
	for _, ten := range []bool{false, true} {
		var cmd *Command
		var err error
		var back ModeParameters
		if ten {
			cmd, err = ModeSelect10(m, false)
		} else {
			cmd, err = ModeSelect6(m, true)
		}
		if err != nil {
			t.Fatal(err)
		}
		if cmd.Dir != ToDevice || cmd.CDB[1]&0x10 == 0 {
			t.Fatalf("cdb % x: want PF and data out", cmd.CDB)
		}
		if ten {
			if int(cmd.CDB[7])<<8|int(cmd.CDB[8]) != len(cmd.Data) {
				t.Fatalf("cdb % x: length != %d", cmd.CDB, len(cmd.Data))
			}
			d := append([]byte(nil), cmd.Data...)
			d[1] = byte(len(d) - 2)
			back, err = ParseModeSense10(d)
		} else {
			if int(cmd.CDB[4]) != len(cmd.Data) || cmd.CDB[1]&0x01 == 0 {
				t.Fatalf("cdb % x: length != %d or SP clear", cmd.CDB, len(cmd.Data))
			}
			d := append([]byte(nil), cmd.Data...)
			d[0] = byte(len(d) - 1)
			back, err = ParseModeSense6(d)
		}
		if err != nil {
			t.Fatal(err)
		}
		if back.WriteProtected() || back.DeviceSpecific != 0x10 {
			t.Fatalf("device-specific %#x: WP must be cleared, buffered mode kept", back.DeviceSpecific)
		}
		if back.Pages[0].Saveable || len(back.Pages) != 2 || !bytes.Equal(back.Pages[1].Data, []byte{1, 2, 3}) || back.Pages[1].Subpage != 1 {
			t.Fatalf("pages %+v", back.Pages)
		}
		if back.BlockDescriptors[0] != m.BlockDescriptors[0] {
			t.Fatalf("block descriptor %+v", back.BlockDescriptors)
		}
	}
	big := ModeParameters{Pages: []ModePage{{Code: 1, Data: make([]byte, 250)}}}
	if _, err := ModeSelect6(big, false); err == nil {
		t.Fatal("MODE SELECT(6) took 256 bytes of parameters")
	}
}

func TestParseLogPages(t *testing.T) {
	for _, c := range loadCases(t, "testdata/logpage.txt") {
		t.Run(c["name"], func(t *testing.T) {
			switch c["kind"] {
			case "tapealert":
				a, err := ParseTapeAlerts(caseBytes(t, c))
				checkOutcome(t, c, a.String(), err)
			case "log":
				p, err := ParseLogPage(caseBytes(t, c))
				var sb strings.Builder
				fmt.Fprintf(&sb, "0x%02x/%d:", p.Code, p.Subpage)
				for _, prm := range p.Parameters {
					fmt.Fprintf(&sb, " %04x=%v", prm.Code, prm.Value)
				}
				checkOutcome(t, c, sb.String(), err)
			default:
				t.Fatalf("kind %q", c["kind"])
			}
		})
	}
}

func TestTapeAlertsFlags(t *testing.T) {
	a := TapeAlerts(1<<(AlertCleanNow-1) | 1<<(AlertHardwareA-1))
	if !a.CleaningRequired() || !a.Has(AlertHardwareA) || a.Has(AlertHardwareB) || a.Has(0) || a.Has(65) {
		t.Fatalf("flags %v", a.Flags())
	}
	if TapeAlerts(0).CleaningRequired() {
		t.Fatal("no flags, cleaning required")
	}
}

func TestParseAttributes(t *testing.T) {
	for _, c := range loadCases(t, "testdata/attributes.txt") {
		t.Run(c["name"], func(t *testing.T) {
			as, err := ParseAttributes(caseBytes(t, c))
			var parts []string
			for _, a := range as {
				p := fmt.Sprintf("%04x=%s", a.ID, a)
				if a.ReadOnly {
					p += " ro"
				}
				parts = append(parts, p)
			}
			checkOutcome(t, c, strings.Join(parts, ", "), err)
		})
	}
}

func TestCDBs(t *testing.T) {
	cases := []struct {
		name string
		cmd  *Command
		want string
	}{
		{"test unit ready", TestUnitReady(), "00 00 00 00 00 00"},
		{"request sense", RequestSense(96), "03 00 00 00 60 00"},
		{"inquiry standard", Inquiry(-1, 96), "12 00 00 00 60 00"},
		{"inquiry serial", Inquiry(0x80, 255), "12 01 80 00 ff 00"},
		{"mode sense 6", ModeSense6(0x10, 0, PageCurrent, false, 255), "1a 00 10 00 ff 00"},
		{"mode sense 10 dbd", ModeSense10(0x1d, 0, PageCurrent, true, 0xfff0), "5a 08 1d 00 00 00 00 ff f0 00"},
		{"mode sense 10 changeable", ModeSense10(0x3f, 0xff, PageChangeable, false, 512), "5a 00 7f ff 00 00 00 02 00 00"},
		{"log sense tapealert", LogSense(PageTapeAlert, 0, 324), "4d 00 6e 00 00 00 00 01 44 00"},
		{"read attribute", ReadAttribute(0, AttrBarcode, 0xffff), "8c 00 00 00 00 00 00 00 08 06 00 00 ff ff 00 00"},
	}
	for _, c := range cases {
		if got := fmt.Sprintf("% x", c.cmd.CDB); got != c.want {
			t.Errorf("%s: cdb %s, want %s", c.name, got, c.want)
		}
		if c.cmd.Dir == FromDevice && len(c.cmd.Data) == 0 {
			t.Errorf("%s: no buffer", c.name)
		}
		if c.cmd.Timeout == 0 {
			t.Errorf("%s: no timeout", c.name)
		}
	}
}

func seedCases(f *testing.F, file string) {
	for _, c := range loadCases(f, file) {
		b, err := hexBytes(c["hex"])
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzParseInquiry(f *testing.F) {
	seedCases(f, "testdata/inquiry.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := ParseInquiry(b); err == nil {
			for _, s := range []string{d.Vendor, d.Product, d.Revision} {
				if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
					t.Fatalf("unprintable field %q", s)
				}
			}
		}
		_, _ = ParseUnitSerial(b)
	})
}

func FuzzParseLogPage(f *testing.F) {
	seedCases(f, "testdata/logpage.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := ParseLogPage(b); err == nil {
			for _, prm := range p.Parameters {
				if len(prm.Value) > len(b) {
					t.Fatal("parameter larger than the page")
				}
			}
		}
		_, _ = ParseTapeAlerts(b)
	})
}

func FuzzParseModeSense(f *testing.F) {
	seedCases(f, "testdata/mode.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseModeSense6(b)
		_, _ = ParseModeSense10(b)
	})
}

func FuzzParseAttributes(f *testing.F) {
	seedCases(f, "testdata/attributes.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		as, err := ParseAttributes(b)
		if err != nil {
			return
		}
		total := 4
		for _, a := range as {
			total += 5 + len(a.Value)
			_ = a.String()
		}
		if total > len(b) {
			t.Fatalf("attributes cover %d bytes of %d", total, len(b))
		}
	})
}
