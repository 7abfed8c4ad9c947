package restore

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/testfs"
)

func TestDiskFull(t *testing.T) {
	dest := testfs.Tmpfs(t, t.TempDir(), "1m")
	w := open(t, dest, Options{})
	e, _ := file("small.txt", "")
	if _, err := w.Put(e, strings.NewReader("fits")); err != nil {
		t.Fatal(err)
	}
	e, _ = file("big.bin", "")
	_, err := w.Put(e, bytes.NewReader(make([]byte, 4<<20)))
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("a file larger than the disk: %v, want ErrNoSpace", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dest)
	if len(entries) != 1 || entries[0].Name() != "small.txt" {
		t.Fatalf("after disk full the destination holds %v; want small.txt only (no half file, no temporary)", entries)
	}
}

// FuzzPut feeds names, types and link targets from a hostile backup: the
// restore may refuse them, never write outside its destination.
func FuzzPut(f *testing.F) {
	for _, batch := range []bool{false, true} {
		f.Add("a/b.txt", uint8(File), "", "x/y", batch)
		f.Add("../escape", uint8(File), "", "", batch)
		f.Add("l", uint8(Symlink), "../../..", "l/x", batch)
		f.Add("d", uint8(Dir), "", "d/../../x", batch)
		f.Add("/abs", uint8(Dir), "/", "l/../x", batch)
		f.Add("a", uint8(File), "", "a/b", batch)
		f.Add(tempPrefix+"a", uint8(File), "", "a", batch)
	}
	f.Fuzz(func(t *testing.T, p1 string, typ uint8, target, p2 string, batch bool) {
		base := t.TempDir()
		dest, outside := filepath.Join(base, "dest"), filepath.Join(base, "outside")
		if err := os.Mkdir(outside, 0o755); err != nil {
			t.Fatal(err)
		}
		w, err := Open(dest, Options{Batch: batch})
		if err != nil {
			t.Fatal(err)
		}
		if target == "" {
			target = outside
		}
		_, _ = w.Put(Entry{Path: p1, Type: Type(typ % 4), Target: target, Mode: 0o755}, strings.NewReader("x"))
		_, _ = w.Put(Entry{Path: p2, Type: File, Mode: 0o644}, strings.NewReader("y"))
		_ = w.Close()
		filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), tempPrefix) && !strings.Contains(p1+"/"+p2, tempPrefix) {
				t.Errorf("restore of %q then %q left a temporary file: %s", p1, p2, p)
			}
			return nil
		})
		if entries, err := os.ReadDir(outside); err != nil || len(entries) != 0 {
			t.Fatalf("restore of %q then %q wrote outside: %v %v", p1, p2, entries, err)
		}
		if entries, err := os.ReadDir(base); err != nil || len(entries) != 2 {
			t.Fatalf("restore of %q then %q wrote beside its destination: %v %v", p1, p2, entries, err)
		}
	})
}
