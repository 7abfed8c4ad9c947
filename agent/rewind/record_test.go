package rewind

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/holdfast/holdfast/agent/apply"
	"github.com/holdfast/holdfast/agent/change"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func sampleRecords() []*Record {
	return []*Record{
		{ID: 7, Time: time.Unix(1_700_000_000, 123), Seq: 42, Kind: KindChange, Op: change.OpReplaceFile, Path: "d/f", First: true,
			Steps: []Step{
				{Change: change.Change{Op: change.OpReplaceFile, Path: "d/f"}, Restore: true, Blob: "00000000000000000007-1", Linked: true, Ino: 99, Size: 1 << 20,
					Meta: apply.FileMeta{Mode: 0o644, UID: 1, GID: 2, MTime: 5, Xattrs: []apply.Xattr{{Name: "user.a", Value: []byte("v")}}}},
				{Change: change.Change{Op: change.OpSetTimes, Path: "d", MTime: 77}},
			}},
		{ID: 8, Time: time.Unix(1_700_000_001, 0), Kind: KindChange, Op: change.OpWrite, Path: "x", RewindOf: 3,
			Steps: []Step{{Change: change.Change{Op: change.OpWrite, Path: "x", Offset: 10, Data: []byte("old bytes")}}}},
		{ID: 9, Time: time.Unix(1_700_000_002, 0), Kind: KindBookmark, Label: "before upgrade"},
		{ID: 10, Time: time.Unix(1_700_000_003, 0), Kind: KindRewindBegin, Target: 6, Label: "d", Refs: []uint64{8, 7}},
		{ID: 11, Time: time.Unix(1_700_000_004, 0), Kind: KindVoid, Refs: []uint64{9}},
	}
}

// TestRecordGolden pins the encoding: a change to it must be a new format
// version, not a silent change of what old journals mean.
func TestRecordGolden(t *testing.T) {
	var b []byte
	for _, r := range sampleRecords() {
		b = frame(b, r.marshal())
	}
	golden := filepath.Join("testdata", "records.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(hex.Dump(b)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got := hex.Dump(b); got != string(want) {
		t.Errorf("encoding differs from %s:\n%s", golden, got)
	}
	seg := append(segmentHeader(), b...)
	recs, torn, err := scanSegment(bytes.NewReader(seg), int64(len(seg)), "golden", false)
	if err != nil || torn >= 0 || len(recs) != len(sampleRecords()) {
		t.Fatalf("scan: %d records, torn %d, %v", len(recs), torn, err)
	}
	for i, want := range sampleRecords() {
		if !reflect.DeepEqual(recs[i].rec, want) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, recs[i].rec, want)
		}
	}
}

func TestSegmentDamage(t *testing.T) {
	var b []byte
	for _, r := range sampleRecords() {
		b = frame(b, r.marshal())
	}
	seg := append(segmentHeader(), b...)
	for _, tc := range []struct {
		name string
		mod  func([]byte) []byte
		last bool
		torn bool
	}{
		{"cut tail of last", func(b []byte) []byte { return b[:len(b)-3] }, true, true},
		{"cut tail of older", func(b []byte) []byte { return b[:len(b)-3] }, false, false},
		{"flipped byte in the middle", func(b []byte) []byte { b[segHeader+frameHead+2] ^= 1; return b }, true, false},
		{"flipped byte in last record", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }, true, true},
		{"huge length", func(b []byte) []byte { b[segHeader+3] = 0xff; return b }, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.mod(bytes.Clone(seg))
			_, torn, err := scanSegment(bytes.NewReader(s), int64(len(s)), "seg", tc.last)
			if tc.torn {
				if err != nil || torn < 0 {
					t.Errorf("want a torn tail, got torn %d, %v", torn, err)
				}
				return
			}
			if !errors.Is(err, ErrDamaged) {
				t.Errorf("want ErrDamaged, got torn %d, %v", torn, err)
			}
		})
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		f.Add(r.marshal())
	}
	f.Add([]byte{recordVersion, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		again, err := decodeRecord(r.marshal())
		if err != nil {
			t.Fatalf("re-encoding of a decoded record fails: %v", err)
		}
		if !reflect.DeepEqual(r, again) {
			t.Fatalf("round trip differs:\n%+v\n%+v", r, again)
		}
	})
}

func FuzzSegment(f *testing.F) {
	var b []byte
	for _, r := range sampleRecords() {
		b = frame(b, r.marshal())
	}
	f.Add(append(segmentHeader(), b...), true)
	f.Add(append(segmentHeader(), b[:20]...), false)
	f.Add(segmentHeader(), true)
	f.Fuzz(func(t *testing.T, seg []byte, last bool) {
		recs, torn, err := scanSegment(bytes.NewReader(seg), int64(len(seg)), "fuzz", last)
		if err != nil && !errors.Is(err, ErrDamaged) {
			t.Fatalf("error not ErrDamaged: %v", err)
		}
		if torn >= 0 && (!last || torn > int64(len(seg))) {
			t.Fatalf("torn at %d (last %v, %d bytes)", torn, last, len(seg))
		}
		for _, r := range recs {
			if r.off+r.len > int64(len(seg)) {
				t.Fatalf("record beyond the end")
			}
		}
	})
}
