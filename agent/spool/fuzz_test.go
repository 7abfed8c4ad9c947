package spool

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast/agent/change"
)

// FuzzRecover feeds arbitrary bytes to Open as a segment file. Open either
// fails with a corruption error or recovers a spool from which Next returns
// only valid, increasing changes (or a corruption error), that accepts an
// append, and that opens again cleanly.
func FuzzRecover(f *testing.F) {
	fsync = func(*os.File) error { return nil }
	f.Cleanup(func() { fsync = (*os.File).Sync })

	var fs [][]byte
	for seq := uint64(1); seq <= 6; seq++ {
		fr, err := appendChangeFrame(nil, ptr(mkChange(seq)))
		if err != nil {
			f.Fatal(err)
		}
		fs = append(fs, fr)
	}
	good, offs := segmentOf(fs...)
	f.Add(good)
	f.Add(good[:len(good)-5])
	f.Add(good[:offs[3]+10])
	f.Add([]byte(segMagic))
	f.Add([]byte(segMagic[:3]))
	f.Add([]byte{})
	flipped := append([]byte(nil), good...)
	flipped[offs[2]+frameHeaderLen+2] ^= 1
	f.Add(flipped)
	bad, _ := segmentOf(fs[0], appendFrame(nil, 2, 0, (&change.Change{Seq: 2, Op: 99, Path: "x"}).Marshal()), fs[2])
	f.Add(bad)

	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(1)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, Options{})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open failed with a non-corruption error: %v", err)
			}
			return
		}
		var prev uint64
		for {
			c, err := s.Next()
			if errors.Is(err, ErrEmpty) {
				break
			}
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Next failed with a non-corruption error: %v", err)
				}
				break
			}
			if _, err := change.Decode(c.Marshal()); err != nil {
				t.Fatalf("Next returned a change that does not decode: %v", err)
			}
			if c.Seq <= prev {
				t.Fatalf("Next returned seq %d after %d", c.Seq, prev)
			}
			prev = c.Seq
		}
		st := s.Stats()
		if st.LastSeq < ^uint64(0) {
			if err := s.AppendSync(change.Change{Seq: st.LastSeq + 1, Op: change.OpMkdir, Path: "d"}); err != nil {
				t.Fatalf("AppendSync after recovery: %v", err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err = Open(dir, Options{})
		if err != nil {
			t.Fatalf("second Open after a successful recovery: %v", err)
		}
		if r := s.Recovery(); len(r.Truncated) > 0 {
			t.Fatalf("second Open truncated again: %+v", r.Truncated)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
