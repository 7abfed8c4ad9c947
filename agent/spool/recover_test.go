package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/agent/change"
)

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// snapshotDir reads the spool's data files (not lock or clean marker).
func snapshotDir(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range ents {
		if e.Name() == lockName || e.Name() == cleanName {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

func writeDir(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTornTailEveryOffset cuts the last segment at every byte inside its
// last record, as a crash part-way through the write would.
func TestTornTailEveryOffset(t *testing.T) {
	src := t.TempDir()
	o := Options{SegmentSize: 8192}
	s := openT(t, src, o)
	appendRange(t, s, 1, 20, 7)
	last := change.Change{Seq: 21, Op: change.OpWrite, Path: "big", Offset: 4096, Data: []byte(strings.Repeat("torn!", 40)), Captured: 42}
	if err := s.AppendSync(last); err != nil {
		t.Fatal(err)
	}
	closeT(t, s)
	segs := segFiles(t, src)
	lastSeg := filepath.Base(segs[len(segs)-1])
	end := fileSize(t, segs[len(segs)-1])
	frame, err := appendChangeFrame(nil, &last)
	if err != nil {
		t.Fatal(err)
	}
	start := end - int64(len(frame))
	files := snapshotDir(t, src)

	root := t.TempDir()
	for cut := start; cut < end; cut++ {
		dir := filepath.Join(root, fmt.Sprint(cut))
		writeDir(t, dir, files)
		if err := os.Truncate(filepath.Join(dir, lastSeg), cut); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, o)
		if err != nil {
			t.Fatalf("cut at %d: Open: %v", cut, err)
		}
		var want []Truncation
		if cut > start {
			want = []Truncation{{Path: filepath.Join(dir, lastSeg), Offset: start, Bytes: cut - start}}
		}
		if r := s.Recovery(); !reflect.DeepEqual(r.Truncated, want) || !r.Unclean {
			t.Fatalf("cut at %d: Recovery = %+v; want Truncated %+v, Unclean", cut, r, want)
		}
		expectNext(t, s, 1, 20)
		expectEmpty(t, s)
		if got := fileSize(t, filepath.Join(dir, lastSeg)); got != start {
			t.Fatalf("cut at %d: segment is %d bytes after recovery; want %d", cut, got, start)
		}
		if cut%50 == 0 {
			// The repaired segment takes appends again and they survive.
			if err := s.AppendSync(last); err != nil {
				t.Fatal(err)
			}
			closeT(t, s)
			s = openT(t, dir, o)
			expectNext(t, s, 1, 20)
			if c, err := s.Next(); err != nil || !reflect.DeepEqual(c, last) {
				t.Fatalf("cut at %d: re-appended record = %+v, %v", cut, c, err)
			}
		}
		closeT(t, s)
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTornTailShapes covers other ways a last write can be left: a
// segment created but its magic not written, a tail of zeros (a power cut
// after the size was updated but not the data), garbage, and a torn entry
// in the dirty-path file.
func TestTornTailShapes(t *testing.T) {
	src := t.TempDir()
	o := Options{SegmentSize: 1 << 20, MaxBytes: 1 << 20}
	s := openT(t, src, o)
	appendRange(t, s, 1, 10, 0)
	closeT(t, s)
	base := snapshotDir(t, src)
	seg1 := segName(1)
	dirtyWith := func(paths ...string) []byte {
		b := []byte(dirtyMagic)
		for _, p := range paths {
			b = appendFrame(b, 0, 0, []byte(p))
		}
		return b
	}
	frame11, _ := appendChangeFrame(nil, ptr(mkChange(11)))

	tests := []struct {
		name      string
		edit      func(files map[string][]byte)
		wantFile  string
		wantBytes int64
		wantDirty []string
	}{
		{"new segment without magic", func(f map[string][]byte) { f[segName(2)] = nil }, "", 0, nil},
		{"new segment with half its magic", func(f map[string][]byte) { f[segName(2)] = []byte(segMagic[:5]) }, segName(2), 5, nil},
		{"zero-filled last frame", func(f map[string][]byte) { f[seg1] = append(f[seg1], make([]byte, len(frame11))...) }, seg1, int64(len(frame11)), nil},
		{"garbage after last frame", func(f map[string][]byte) {
			g := append([]byte(nil), frame11...)
			for i := 30; i < len(g); i++ {
				g[i] ^= 0x5a
			}
			f[seg1] = append(f[seg1], g...)
		}, seg1, int64(len(frame11)), nil},
		{"torn dirty entry", func(f map[string][]byte) {
			full := dirtyWith("a", "b/c")
			f[dirtyName] = append(full, dirtyWith("d/e")[magicLen:][:10]...)
		}, dirtyName, 10, []string{"a", "b/c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string][]byte{}
			for k, v := range base {
				files[k] = append([]byte(nil), v...)
			}
			tt.edit(files)
			writeDir(t, dir, files)
			s := openT(t, dir, o)
			defer closeT(t, s)
			var want []Truncation
			if tt.wantFile != "" {
				off := int64(len(files[tt.wantFile])) - tt.wantBytes
				want = []Truncation{{Path: filepath.Join(dir, tt.wantFile), Offset: off, Bytes: tt.wantBytes}}
			}
			if got := s.Recovery().Truncated; !reflect.DeepEqual(got, want) {
				t.Fatalf("Truncated = %+v; want %+v", got, want)
			}
			expectNext(t, s, 1, 10)
			expectEmpty(t, s)
			if paths, _ := s.DirtyPaths(); !reflect.DeepEqual(paths, tt.wantDirty) && len(paths)+len(tt.wantDirty) > 0 {
				t.Fatalf("DirtyPaths = %q; want %q", paths, tt.wantDirty)
			}
			// The repaired spool takes appends.
			appendRange(t, s, 11, 12, 0)
			expectNext(t, s, 11, 2)
		})
	}
}

func ptr[T any](v T) *T { return &v }

// frames encodes changes as frames and returns the segment file bytes and
// each frame's offset.
func segmentOf(frames ...[]byte) ([]byte, []int64) {
	b := []byte(segMagic)
	var offs []int64
	for _, f := range frames {
		offs = append(offs, int64(len(b)))
		b = append(b, f...)
	}
	return b, offs
}

func changeFrames(t testing.TB, from, to uint64) [][]byte {
	t.Helper()
	var fs [][]byte
	for seq := from; seq <= to; seq++ {
		f, err := appendChangeFrame(nil, ptr(mkChange(seq)))
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	return fs
}

// TestCorruption checks that damage which is not a torn tail is reported
// with the file and the offset, at Open or at Next, and never skipped.
func TestCorruption(t *testing.T) {
	type layout struct {
		files   map[string][]byte
		badFile string
		badOff  int64
		atNext  bool   // Open succeeds; Next fails after delivering the good records
		goodTo  uint64 // last good Seq Next delivers first
	}
	flip := func(b []byte, i int64) { b[i] ^= 0x10 }
	tests := []struct {
		name  string
		build func(t *testing.T) layout
		is    error // also matched by the error, beyond ErrCorrupt
	}{
		{"payload flip in sealed segment", func(t *testing.T) layout {
			s1, offs := segmentOf(changeFrames(t, 1, 5)...)
			s2, _ := segmentOf(changeFrames(t, 6, 8)...)
			flip(s1, offs[2]+frameHeaderLen+3)
			return layout{files: map[string][]byte{segName(1): s1, segName(2): s2}, badFile: segName(1), badOff: offs[2]}
		}, nil},
		{"sealed segment cut short", func(t *testing.T) layout {
			s1, offs := segmentOf(changeFrames(t, 1, 5)...)
			s2, _ := segmentOf(changeFrames(t, 6, 8)...)
			return layout{files: map[string][]byte{segName(1): s1[:len(s1)-3], segName(2): s2}, badFile: segName(1), badOff: offs[4]}
		}, nil},
		{"length flip mid last segment", func(t *testing.T) layout {
			s1, offs := segmentOf(changeFrames(t, 1, 6)...)
			flip(s1, offs[1]+1)
			return layout{files: map[string][]byte{segName(1): s1}, badFile: segName(1), badOff: offs[1]}
		}, nil},
		{"payload flip mid last segment", func(t *testing.T) layout {
			s1, offs := segmentOf(changeFrames(t, 1, 6)...)
			flip(s1, offs[3]+frameHeaderLen+1)
			return layout{files: map[string][]byte{segName(1): s1}, badFile: segName(1), badOff: offs[3]}
		}, nil},
		{"bad magic with frames after", func(t *testing.T) layout {
			s1, _ := segmentOf(changeFrames(t, 1, 3)...)
			flip(s1, 2)
			return layout{files: map[string][]byte{segName(1): s1}, badFile: segName(1), badOff: 0}
		}, nil},
		{"seq not increasing", func(t *testing.T) layout {
			fs := changeFrames(t, 1, 5)
			fs[3], fs[4] = fs[4], fs[3]
			s1, offs := segmentOf(fs...)
			return layout{files: map[string][]byte{segName(1): s1}, badFile: segName(1), badOff: offs[4]}
		}, nil},
		{"missing segment", func(t *testing.T) layout {
			s1, _ := segmentOf(changeFrames(t, 1, 3)...)
			s3, _ := segmentOf(changeFrames(t, 7, 9)...)
			return layout{files: map[string][]byte{segName(1): s1, segName(3): s3}, badFile: segName(2)}
		}, nil},
		{"bad ack file", func(t *testing.T) layout {
			s1, _ := segmentOf(changeFrames(t, 1, 3)...)
			ack := encodeAck(2)
			flip(ack, 9)
			return layout{files: map[string][]byte{segName(1): s1, ackName: ack}, badFile: ackName}
		}, nil},
		{"dirty file damaged before an intact entry", func(t *testing.T) layout {
			d := appendFrame([]byte(dirtyMagic), 0, 0, []byte("a"))
			off := int64(len(d))
			d = appendFrame(d, 0, 0, []byte("b"))
			d = appendFrame(d, 0, 0, []byte("c"))
			flip(d, off+frameHeaderLen)
			return layout{files: map[string][]byte{dirtyName: d}, badFile: dirtyName, badOff: off}
		}, nil},
		{"record fails to decode", func(t *testing.T) layout {
			fs := changeFrames(t, 1, 4)
			bad := change.Change{Seq: 3, Op: change.OpWrite, Path: "/absolute"}
			fs[2] = appendFrame(nil, 3, 0, bad.Marshal())
			s1, offs := segmentOf(fs...)
			return layout{files: map[string][]byte{segName(1): s1}, badFile: segName(1), badOff: offs[2], atNext: true, goodTo: 2}
		}, change.ErrInvalid},
		{"header disagrees with record", func(t *testing.T) layout {
			fs := changeFrames(t, 1, 4)
			fs[1] = appendFrame(nil, 2, mkChange(2).Captured, mkChange(3).Marshal())
			fs = append(fs[:2], fs[3:]...)
			s1, offs := segmentOf(fs...)
			return layout{files: map[string][]byte{segName(1): s1}, badFile: segName(1), badOff: offs[1], atNext: true, goodTo: 1}
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := tt.build(t)
			dir := t.TempDir()
			writeDir(t, dir, l.files)
			s, err := Open(dir, Options{})
			if l.atNext {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				defer closeT(t, s)
				expectNext(t, s, 1, int(l.goodTo))
				for range 2 { // the damage is reported again, not skipped
					_, err = s.Next()
					checkCorrupt(t, err, filepath.Join(dir, l.badFile), l.badOff, tt.is)
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			checkCorrupt(t, err, filepath.Join(dir, l.badFile), l.badOff, tt.is)
		})
	}
}

func checkCorrupt(t *testing.T, err error, path string, off int64, is error) {
	t.Helper()
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %v is not a *CorruptError", err)
	}
	if ce.Path != path || ce.Offset != off {
		t.Fatalf("CorruptError names %s at %d; want %s at %d (%v)", ce.Path, ce.Offset, path, off, err)
	}
	if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, fmt.Sprintf("offset %d", off)) {
		t.Fatalf("message %q does not name %s and offset %d", msg, path, off)
	}
	if is != nil && !errors.Is(err, is) {
		t.Fatalf("error %v does not wrap %v", err, is)
	}
}
