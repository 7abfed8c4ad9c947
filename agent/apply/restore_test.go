package apply

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/change"
)

// Steps are applied whatever LastApplied is, and never move it.
func TestApplyStepsLeaveLastApplied(t *testing.T) {
	tr := newTree(t)
	a := openT(t, tr.target)
	applyAll(t, a, numbered(change.Change{Op: change.OpWrite, Path: "f", Data: []byte("one")}))
	if err := a.ApplySteps([]change.Change{{Op: change.OpWrite, Path: "f", Data: []byte("two")}, {Op: change.OpCreate, Path: "g", Mode: 0o600}}); err != nil {
		t.Fatal(err)
	}
	if a.LastApplied() != 1 {
		t.Errorf("LastApplied = %d after steps, want 1", a.LastApplied())
	}
	if b, _ := os.ReadFile(filepath.Join(tr.target, "f")); string(b) != "two" {
		t.Errorf("f holds %q", b)
	}
	if err := a.ApplySteps([]change.Change{{Seq: 5, Op: change.OpRemove, Path: "g"}}); err == nil {
		t.Error("a step with a Seq was applied")
	}
	// The stream still skips what it applied before.
	if err := a.Apply(change.Change{Seq: 1, Op: change.OpWrite, Path: "f", Data: []byte("ONE")}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(tr.target, "f")); string(b) != "two" {
		t.Errorf("a change delivered again was applied: f holds %q", b)
	}
}

// RestoreFile leaves its source alone, and a name held outside the tree
// (HeldLinks) does not make OpReplaceFile rewrite the file in place.
func TestRestoreFileAndHeldLinks(t *testing.T) {
	tr := newTree(t)
	var heldIno uint64
	a, err := Open(tr.target, Options{HeldLinks: func(dev, ino uint64) uint64 {
		if ino == heldIno {
			return 1
		}
		return 0
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	applyAll(t, a, numbered(change.Change{Op: change.OpReplaceFile, Path: "f", Data: []byte("old"), Mode: 0o644}))
	keep := filepath.Join(tr.target, StateDir, "keep")
	if err := os.Link(filepath.Join(tr.target, "f"), keep); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(keep, &st); err != nil {
		t.Fatal(err)
	}
	heldIno = st.Ino
	if err := a.Apply(change.Change{Seq: 2, Op: change.OpReplaceFile, Path: "f", Data: []byte("new"), Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(keep); string(b) != "old" {
		t.Fatalf("the held copy was written through: %q", b)
	}
	src, err := os.Open(keep)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := a.RestoreFile("f", src, FileMeta{Mode: 0o640, MTime: 123456789, Xattrs: []Xattr{{Name: "user.k", Value: []byte("v")}}}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(tr.target, "f")
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("restored f holds %q", b)
	}
	if err := unix.Lstat(p, &st); err != nil || st.Mode&0o7777 != 0o640 || st.Mtim.Nano() != 123456789 || st.Ino == heldIno {
		t.Errorf("restored f: mode %o mtime %d ino %d (held %d) %v", st.Mode, st.Mtim.Nano(), st.Ino, heldIno, err)
	}
	if v := xattrs(t, p); v == "" {
		t.Errorf("restored f has no xattrs")
	}
	if err := a.RestoreFile("../x", src, FileMeta{}); err == nil {
		t.Error("restore outside the tree was accepted")
	}
}
