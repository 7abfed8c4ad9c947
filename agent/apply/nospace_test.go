package apply

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast/agent/change"
)

// TestNoSpace fills a small tmpfs. A change that does not fit fails with
// ErrNoSpace, leaves no temporary file and no half-made file, and is not
// recorded; once there is room, the same change delivered again applies.
func TestNoSpace(t *testing.T) {
	dir, ok, why := tmpfs(t, 256<<10)
	if !ok {
		t.Skipf("no small filesystem to fill: %v", why)
	}
	tr := newTreeIn(t, filepath.Join(dir, "tree"))
	a := openT(t, tr.target)
	small := change.Change{Op: change.OpWrite, Path: "docs/small", Data: []byte("small")}
	applyAll(t, a, numbered(mkdirDocs, small))
	big := bytes.Repeat([]byte("x"), 512<<10)

	for _, tc := range []struct {
		name  string
		c     change.Change
		wants []want
	}{
		{"replace file, new", change.Change{Op: change.OpReplaceFile, Path: "docs/cfg", Data: big, Mode: 0o644},
			[]want{absent("docs/cfg")}},
		{"replace file, existing", change.Change{Op: change.OpReplaceFile, Path: "docs/small", Data: big, Mode: 0o644},
			[]want{fileIs("docs/small", "small", 0o600)}},
		{"write creating a file", change.Change{Op: change.OpWrite, Path: "docs/new", Data: big},
			[]want{absent("docs/new")}},
		{"patch", change.Change{Op: change.OpPatch, Path: "docs/small", Data: mustDelta("small", string(big)), Mode: 0o644},
			[]want{fileIs("docs/small", "small", 0o600)}},
		// In place, as the master wrote: what fitted may stay until the
		// change is delivered again (see the package doc).
		{"write in place", change.Change{Op: change.OpWrite, Path: "docs/small", Offset: 5, Data: big}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			c.Seq = 3
			err := a.Apply(c)
			if !errors.Is(err, ErrNoSpace) {
				t.Fatalf("got %v, want ErrNoSpace", err)
			}
			var e *Error
			if !errors.As(err, &e) || e.Seq != 3 || e.Path != c.Path {
				t.Errorf("error %v does not name the change", err)
			}
			t.Logf("%v", err)
			if got := a.LastApplied(); got != 2 {
				t.Errorf("LastApplied = %d, want 2", got)
			}
			if left := tempFiles(t, tr.target); len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
			for _, w := range tc.wants {
				w(t, tr.target)
			}
		})
	}

	// A change that needs no room applies, and cuts back what the failed
	// in-place write left.
	if err := a.Apply(change.Change{Seq: 3, Op: change.OpTruncate, Path: "docs/small", Size: 5}); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	// Another tenant of the filesystem takes the room (it may itself run
	// out; what matters is that little is left).
	if err := os.WriteFile(filler, big[:200<<10], 0o600); err != nil {
		t.Logf("filler: %v", err)
	}
	c := change.Change{Seq: 4, Op: change.OpReplaceFile, Path: "docs/cfg", Data: big[:100<<10], Mode: 0o644}
	if err := a.Apply(c); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("with the disk filled by another file: %v, want ErrNoSpace", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(c); err != nil {
		t.Fatalf("after freeing space: %v", err)
	}
	fileIs("docs/cfg", string(big[:100<<10]), 0o644)(t, tr.target)
	fileIs("docs/small", "small", 0o600)(t, tr.target)
	if got := a.LastApplied(); got != 4 {
		t.Errorf("LastApplied = %d, want 4", got)
	}
	if left := tempFiles(t, tr.target); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	tr.checkOutside(t)
}
