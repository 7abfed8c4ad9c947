package change

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func samples() map[string]Change {
	return map[string]Change{
		"write":    {Seq: 7, Op: OpWrite, Path: "docs/a.txt", Offset: 4096, Data: []byte("hello"), Captured: 1764000000000000000},
		"rename":   {Seq: 8, Op: OpRename, Path: "docs/a.txt", NewPath: "archive/a.txt"},
		"symlink":  {Seq: 9, Op: OpSymlink, Path: "current", Target: "archive/a.txt"},
		"chown":    {Seq: 10, Op: OpChown, Path: "docs", UID: 1000, GID: 100},
		"xattr":    {Seq: 11, Op: OpSetXattr, Path: "docs", XattrName: "user.tag", XattrValue: []byte{0, 1, 2}},
		"truncate": {Seq: 12, Op: OpTruncate, Path: "big.db", Size: 1 << 30},
		"replace":  {Seq: 13, Op: OpReplaceFile, Path: "small.cfg", Data: []byte("k=v\n"), Mode: 0o644, MTime: 1764000000123456789},
		// The delta is opaque to this package: any non-empty bytes do.
		"patch": {Seq: 14, Op: OpPatch, Path: "data/big.db", Data: []byte{0xB7, 1, 1, 0x80, 0x20, 0x0A, 0xDE, 0xAD, 0xBE, 0xEF}, Mode: 0o600, MTime: 1764000000987654321},
	}
}

func TestRoundTripAndGolden(t *testing.T) {
	for name, c := range samples() {
		t.Run(name, func(t *testing.T) {
			enc := c.Marshal()
			got, err := Decode(enc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, c)
			}
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, enc, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./agent/change -update)", err)
			}
			if !bytes.Equal(enc, want) {
				t.Errorf("encoding changed; if deliberate, bump formatVersion and run -update")
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	good := samples()["write"].Marshal()
	flip := func(i int) []byte {
		b := append([]byte(nil), good...)
		b[i] ^= 0x40
		return b
	}
	reseal := func(c Change) []byte { return c.Marshal() }
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short", good[:3]},
		{"truncated", good[:len(good)-1]},
		{"bit flip in body", flip(5)},
		{"bit flip in checksum", flip(len(good) - 1)},
		{"absolute path", reseal(Change{Op: OpWrite, Path: "/etc/passwd"})},
		{"climbing path", reseal(Change{Op: OpWrite, Path: "../x"})},
		{"unclean path", reseal(Change{Op: OpWrite, Path: "a/../../x"})},
		{"rename out", reseal(Change{Op: OpRename, Path: "a", NewPath: "../../b"})},
		{"unknown op", reseal(Change{Op: 200, Path: "a"})},
		{"no op", reseal(Change{Path: "a"})},
		{"negative offset", reseal(Change{Op: OpWrite, Path: "a", Offset: -1})},
		{"symlink without target", reseal(Change{Op: OpSymlink, Path: "a"})},
		{"patch without delta", reseal(Change{Op: OpPatch, Path: "a", Mode: 0o644})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Decode(tt.in); !errors.Is(err, ErrInvalid) {
				t.Errorf("Decode = %v, want ErrInvalid", err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, c := range samples() {
		f.Add(c.Marshal())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Decode accepted an invalid change: %v", err)
		}
		again, err := Decode(c.Marshal())
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("re-encoding does not round trip: %v", err)
		}
	})
}

// TestOpNumbers pins every op's wire number: records already spooled or in
// flight carry them, so an op is only ever added at the end of the list.
func TestOpNumbers(t *testing.T) {
	want := []Op{OpWrite, OpTruncate, OpCreate, OpMkdir, OpSymlink, OpLink, OpRename, OpRemove,
		OpChmod, OpChown, OpSetTimes, OpSetXattr, OpRemoveXattr, OpReplaceFile, OpPatch}
	for i, op := range want {
		if int(op) != i+1 {
			t.Errorf("%v is %d, want %d", op, op, i+1)
		}
	}
	if opLimit != OpPatch+1 {
		t.Errorf("opLimit %d: a new op was added without extending this test", opLimit)
	}
	if OpPatch.String() != "patch" {
		t.Errorf("OpPatch.String() = %q", OpPatch.String())
	}
}
