package sgio

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// testdata/sys is a trimmed copy of a guest's sysfs as tgt's library
// shows up through virtio-scsi: the changer is sg0 at LUN 3, as seen in
// the lab, so anything that trusted the sg index would pick wrongly.
func TestDiscover(t *testing.T) {
	got, err := Discover("testdata/sys")
	if err != nil {
		t.Fatal(err)
	}
	want := []Info{
		{Name: "sg3", Path: "/dev/sg3", Address: HCTL{2, 0, 0, 0}, Type: 0, Vendor: "QEMU", Model: "QEMU HARDDISK", Rev: "2.5+"},
		{Name: "sg1", Path: "/dev/sg1", Address: HCTL{2, 0, 0, 1}, Type: TypeTape, Vendor: "IBM", Model: "ULT3580-TD6", Rev: "G350", Serial: "DRV00001", TapeNode: "/dev/nst0"},
		{Name: "sg2", Path: "/dev/sg2", Address: HCTL{2, 0, 0, 2}, Type: TypeTape, Vendor: "IBM", Model: "ULT3580-TD6", Rev: "G350", TapeNode: "/dev/nst1"},
		{Name: "sg0", Path: "/dev/sg0", Address: HCTL{2, 0, 0, 3}, Type: TypeChanger, Vendor: "STK", Model: "L700", Rev: "0104"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Discover:\n got %+v\nwant %+v", got, want)
	}
}

func TestDiscoverNoSG(t *testing.T) {
	got, err := Discover(t.TempDir())
	if err != nil || got != nil {
		t.Fatalf("Discover of a sysfs without sg = %v, %v; want nothing, no error", got, err)
	}
}

func TestDiscoverBrokenDevice(t *testing.T) {
	root := t.TempDir()
	dev := filepath.Join(root, "devices", "host0", "0:0:0:0")
	if err := os.MkdirAll(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	sg := filepath.Join(root, "class", "scsi_generic", "sg0")
	if err := os.MkdirAll(sg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dev, filepath.Join(sg, "device")); err != nil {
		t.Fatal(err)
	}
	// No type attribute: the device cannot be classified, which must be
	// an error rather than a silently skipped drive.
	if _, err := Discover(root); err == nil {
		t.Fatal("Discover of a device without a type: no error")
	}
	if err := os.WriteFile(filepath.Join(dev, "type"), []byte("tape\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Discover(root); err == nil {
		t.Fatal("Discover of a device with a non-numeric type: no error")
	}
}

func TestParseHCTL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want HCTL
		ok   bool
	}{
		{"2:0:0:3", HCTL{2, 0, 0, 3}, true},
		{"10:1:7:18446744073709551615", HCTL{10, 1, 7, 1<<64 - 1}, true},
		{"2:0:0", HCTL{}, false},
		{"target2:0:0", HCTL{}, false},
		{"2:0:0:x", HCTL{}, false},
		{"-1:0:0:0", HCTL{}, false},
		{"", HCTL{}, false},
	} {
		got, err := ParseHCTL(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseHCTL(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && got.String() != tc.in {
			t.Errorf("HCTL(%q).String() = %q", tc.in, got.String())
		}
	}
}

func TestParseUnitSerial(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want string
		ok   bool
	}{
		{"padded", []byte("\x01\x80\x00\x0aDRV00001  "), "DRV00001", true},
		{"leading spaces", []byte("\x01\x80\x00\x06  LIB1"), "LIB1", true},
		{"empty serial", []byte("\x01\x80\x00\x00"), "", true},
		{"trailing bytes beyond length", []byte("\x01\x80\x00\x02ABCD"), "AB", true},
		{"short header", []byte("\x01\x80\x00"), "", false},
		{"wrong page", []byte("\x01\x83\x00\x02AB"), "", false},
		{"length past end", []byte("\x01\x80\x00\x10AB"), "", false},
	} {
		got, err := ParseUnitSerial(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%s: ParseUnitSerial = %q, %v; want %q, ok=%v", tc.name, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParseUnitSerial(f *testing.F) {
	f.Add([]byte("\x01\x80\x00\x0aDRV00001  "))
	f.Add([]byte("\x01\x80\x00\x00"))
	f.Add([]byte("\x01\x80\xff\xff"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseUnitSerial(b)
		if err != nil {
			return
		}
		if len(s) > len(b)-4 {
			t.Fatalf("serial %q longer than the page's %d payload bytes", s, len(b)-4)
		}
	})
}

func FuzzParseHCTL(f *testing.F) {
	f.Add("2:0:0:3")
	f.Add("::::")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseHCTL(s)
		if err != nil {
			return
		}
		b, err := ParseHCTL(a.String())
		if err != nil || a != b {
			t.Fatalf("%q parsed to %v, which reparses to %v, %v", s, a, b, err)
		}
	})
}
