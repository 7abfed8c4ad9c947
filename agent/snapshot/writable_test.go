package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestWritable(t *testing.T) {
	tests := []struct {
		name string
		dir  func(testing.TB) string
		opts []WritableOption
		want WritableMethod
	}{
		{name: "overlay", dir: func(t testing.TB) string { return t.TempDir() }, want: Overlay},
		{name: "clone copy", dir: func(t testing.TB) string { return t.TempDir() }, opts: []WritableOption{WithoutOverlay()}, want: Clone},
		{name: "clone reflink", dir: xfsDir, opts: []WritableOption{WithoutOverlay()}, want: Clone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want == Overlay && !isRoot() {
				t.Skip("mounting an overlay needs root")
			}
			base := tt.dir(t)
			src, s := newReplica(t, base)
			in, err := s.Create(context.Background(), src, Meta{}, nil)
			must(t, err)
			tree := filepath.Join(s.Dir(), in.ID, treeName)
			want := digest(t, tree, false)

			scratch := filepath.Join(base, "ar")
			w, err := s.Writable(context.Background(), in.ID, scratch, tt.opts...)
			must(t, err)
			t.Cleanup(func() { _ = w.Discard() }) // when the test fails half-way
			if w.Method() != tt.want {
				t.Fatalf("Method = %q, want %q", w.Method(), tt.want)
			}
			sameDigest(t, "writable tree before any write", digest(t, w.Dir(), false), want)

			// What an application started on it does.
			must(t, os.WriteFile(filepath.Join(w.Dir(), "a/new.log"), []byte("started"), 0o644))
			f, err := os.OpenFile(filepath.Join(w.Dir(), "a/file"), os.O_WRONLY, 0)
			must(t, err)
			_, err = f.WriteAt([]byte("recovered"), 0)
			must(t, err)
			must(t, f.Close())
			must(t, os.Remove(filepath.Join(w.Dir(), "a/b/big")))
			must(t, os.Chmod(filepath.Join(w.Dir(), "sticky"), 0o700))
			must(t, os.Rename(filepath.Join(w.Dir(), "ro"), filepath.Join(w.Dir(), "ro2")))
			if b, err := os.ReadFile(filepath.Join(w.Dir(), "hl2")); err != nil || string(b[:9]) != "recovered" {
				t.Errorf("write through a/file not seen through its hard link hl2: %q, %v", b[:9], err)
			}
			if _, err := os.Stat(filepath.Join(w.Dir(), "a/b/big")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("removed file still there: %v", err)
			}
			sameDigest(t, "snapshot while written through a Writable", digest(t, tree, false), want)

			if err := s.Release(in.ID); !errors.Is(err, ErrInUse) {
				t.Errorf("Release during Assured Recovery = %v, want ErrInUse", err)
			}

			if tt.want == Overlay {
				// A process still inside: no silent lazy unmount.
				busy, err := os.Open(filepath.Join(w.Dir(), "a/new.log"))
				must(t, err)
				if err := w.Discard(); !errors.Is(err, unix.EBUSY) {
					t.Errorf("Discard with a file open = %v, want EBUSY", err)
				}
				must(t, busy.Close())
			}
			must(t, w.Discard())
			must(t, w.Discard()) // again: nothing left to do
			sameDigest(t, "snapshot after Discard", digest(t, tree, false), want)
			ents, err := os.ReadDir(scratch)
			must(t, err)
			if len(ents) != 0 {
				t.Errorf("scratch holds %v after Discard", ents)
			}
			// The same scratch serves the next test.
			w, err = s.Writable(context.Background(), in.ID, scratch, tt.opts...)
			must(t, err)
			t.Cleanup(func() { _ = w.Discard() })
			sameDigest(t, "second writable tree", digest(t, w.Dir(), false), want)
			must(t, w.Discard())
			must(t, s.Release(in.ID))
		})
	}
}
