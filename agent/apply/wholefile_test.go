package apply

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/holdfast/holdfast/agent/change"
)

// wholeStream is what the initial synchronization and the capture stage
// send for files: OpReplaceFile with what finishes it, over new and
// existing files, with the shapes that must leave the run (a path seen
// twice, a file with two names, a directory in the way is an error and is
// tested apart).
func wholeStream() []change.Change {
	rf := func(p, data string, mode uint32, mtime int64) change.Change {
		return change.Change{Op: change.OpReplaceFile, Path: p, Data: []byte(data), Mode: mode, MTime: mtime}
	}
	return numbered(
		change.Change{Op: change.OpMkdir, Path: "a", Mode: 0o755},
		change.Change{Op: change.OpMkdir, Path: "b", Mode: 0o750},
		change.Change{Op: change.OpWrite, Path: "b/old", Data: []byte("old content, longer than the new")},
		change.Change{Op: change.OpSetXattr, Path: "b/old", XattrName: "user.kept", XattrValue: []byte("carried over")},
		change.Change{Op: change.OpSetXattr, Path: "b/old", XattrName: "user.gone", XattrValue: []byte("removed")},
		change.Change{Op: change.OpWrite, Path: "b/linked", Data: []byte("two names")},
		change.Change{Op: change.OpLink, Path: "b/linked", NewPath: "a/linked2"},
		change.Change{Op: change.OpSymlink, Path: "a/was-link", Target: "nowhere"},
		rf("a/one", "one", 0o644, t1),
		change.Change{Op: change.OpChown, Path: "a/one", UID: 1234, GID: 5678},
		rf("a/two", "", 0o600, 0),
		change.Change{Op: change.OpSetTimes, Path: "a/two", MTime: t1 + 1},
		rf("b/old", "new", 0o640, t1+2),
		change.Change{Op: change.OpChown, Path: "b/old", UID: 42, GID: 43},
		change.Change{Op: change.OpChmod, Path: "b/old", Mode: 0o4755},
		change.Change{Op: change.OpRemoveXattr, Path: "b/old", XattrName: "user.gone"},
		change.Change{Op: change.OpSetXattr, Path: "b/old", XattrName: "user.new", XattrValue: []byte("v")},
		rf("a/was-link", "a file now", 0o644, t1+3),
		rf("a/one", "one again", 0o600, t1+4), // the same path twice in a run
		rf("b/linked", "rewritten in place", 0o644, t1+5),
		change.Change{Op: change.OpChmod, Path: "b/linked", Mode: 0o640},
		rf("a/three", "three", 0o644, t1+6),
		change.Change{Op: change.OpChmod, Path: "a/one", Mode: 0o444}, // not the last file: leaves the run
		rf("top", "at the root", 0o644, t1+7),
		change.Change{Op: change.OpWrite, Path: "a/three", Offset: 5, Data: []byte("!")},
		change.Change{Op: change.OpSetTimes, Path: "a/three", MTime: t1 + 8},
	)
}

// TestWholeRunEqualsApply: whole files gathered in runs must build the same
// tree as applying one change at a time, in every split of the stream into
// two batches.
func TestWholeRunEqualsApply(t *testing.T) {
	if !isRoot() {
		t.Skip("needs root for owners and setuid")
	}
	cs := wholeStream()
	ref := newTree(t)
	applyAll(t, openT(t, ref.target), cs)
	want := snapshot(t, ref.target, true)
	if want["b/old"].Xattrs != "user.kept=carried over,user.new=v" || want["b/linked"].LinkGroup != want["a/linked2"].LinkGroup {
		t.Fatalf("reference tree is not what the stream says: %+v %+v", want["b/old"], want["b/linked"])
	}
	fast := fastDir(t)
	for split := 0; split <= len(cs); split++ {
		tr := newTreeIn(t, filepath.Join(fast, fmt.Sprint(split)))
		a := openT(t, tr.target)
		for _, part := range [][]change.Change{cs[:split], cs[split:]} {
			if err := a.ApplyBatch(part); err != nil {
				t.Fatalf("split at %d: %v", split, err)
			}
		}
		if got := snapshot(t, tr.target, true); !reflect.DeepEqual(got, want) {
			t.Fatalf("split at %d: tree differs:\n%s", split, diff(got, want))
		}
		if a.LastApplied() != uint64(len(cs)) {
			t.Fatalf("split at %d: LastApplied = %d", split, a.LastApplied())
		}
		if left := tempFiles(t, tr.target); len(left) > 0 {
			t.Fatalf("split at %d: temporary files left: %v", split, left)
		}
	}
}

// TestWholeRunFailure: a change of a run that fails is reported as its own
// error, the changes before it are applied and recorded, none after it is
// applied, and no temporary name is left.
func TestWholeRunFailure(t *testing.T) {
	rf := func(p, data string) change.Change {
		return change.Change{Op: change.OpReplaceFile, Path: p, Data: []byte(data), Mode: 0o644}
	}
	for _, tc := range []struct {
		name string
		bad  change.Change
		is   error
	}{
		{"escape by symlink", rf("link/x", "through a symlink"), ErrEscape},
		{"escape by dot-dot", rf("../x", "out"), ErrEscape},
		{"state directory", rf(StateDir+"/applied", "overwrite"), ErrEscape},
		{"directory in the way", rf("d", "not a dir"), nil},
		{"missing parent", rf("nodir/x", "orphan"), os.ErrNotExist},
		{"metadata of the run's file failing", change.Change{Op: change.OpSetXattr, Path: "f2", XattrName: "bogus.ns", XattrValue: []byte("v")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t)
			a := openT(t, tr.target)
			applyAll(t, a, numbered(
				change.Change{Op: change.OpMkdir, Path: "d", Mode: 0o755},
				change.Change{Op: change.OpSymlink, Path: "link", Target: tr.outside},
			))
			bad := tc.bad
			bad.Seq = 6
			batch := []change.Change{
				{Seq: 3, Op: change.OpReplaceFile, Path: "f1", Data: []byte("first"), Mode: 0o644},
				{Seq: 4, Op: change.OpChmod, Path: "f1", Mode: 0o600},
				{Seq: 5, Op: change.OpReplaceFile, Path: "f2", Data: []byte("second"), Mode: 0o644},
				bad,
				{Seq: 7, Op: change.OpReplaceFile, Path: "f3", Data: []byte("third"), Mode: 0o644},
			}
			err := a.ApplyBatch(batch)
			var e *Error
			if !errors.As(err, &e) || e.Seq != 6 {
				t.Fatalf("got %v, want the error of seq 6", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want %v", err, tc.is)
			}
			if got := a.LastApplied(); got != 5 {
				t.Fatalf("LastApplied = %d, want 5", got)
			}
			fileIs("f1", "first", 0o600)(t, tr.target)
			fileIs("f2", "second", 0o644)(t, tr.target)
			absent("f3")(t, tr.target)
			if left := tempFiles(t, tr.target); len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
			tr.checkOutside(t)
			// The rest of the stream goes on after the bad change.
			if err := a.ApplyBatch(batch[4:]); err != nil {
				t.Fatal(err)
			}
			fileIs("f3", "third", 0o644)(t, tr.target)
		})
	}
}

// TestWholeRunNoSpace fills a small filesystem in the middle of a run: the
// change that does not fit fails with ErrNoSpace and is not recorded, the
// files before it are applied, and nothing is left half made.
func TestWholeRunNoSpace(t *testing.T) {
	dir, ok, why := tmpfs(t, 256<<10)
	if !ok {
		t.Skipf("no small filesystem to fill: %v", why)
	}
	tr := newTreeIn(t, filepath.Join(dir, "tree"))
	a := openT(t, tr.target)
	small := bytes.Repeat([]byte("s"), 16<<10)
	big := bytes.Repeat([]byte("b"), 512<<10)
	err := a.ApplyBatch([]change.Change{
		{Seq: 1, Op: change.OpReplaceFile, Path: "one", Data: small, Mode: 0o644},
		{Seq: 2, Op: change.OpReplaceFile, Path: "two", Data: small, Mode: 0o644},
		{Seq: 3, Op: change.OpReplaceFile, Path: "big", Data: big, Mode: 0o644},
		{Seq: 4, Op: change.OpReplaceFile, Path: "three", Data: small, Mode: 0o644},
	})
	var e *Error
	if !errors.Is(err, ErrNoSpace) || !errors.As(err, &e) || e.Seq != 3 {
		t.Fatalf("got %v, want ErrNoSpace for seq 3", err)
	}
	if got := a.LastApplied(); got != 2 {
		t.Fatalf("LastApplied = %d, want 2", got)
	}
	fileIs("one", string(small), 0o644)(t, tr.target)
	fileIs("two", string(small), 0o644)(t, tr.target)
	absent("big")(t, tr.target)
	absent("three")(t, tr.target)
	if left := tempFiles(t, tr.target); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestWholeRunDirectoryTimes: capture carries a directory's time after
// each group of changes in it. Inside a run those are applied after the
// renames, which would otherwise move the time again, and they do not end
// the run.
func TestWholeRunDirectoryTimes(t *testing.T) {
	tr := newTree(t)
	a := openT(t, tr.target)
	rf := func(seq uint64, p string) change.Change {
		return change.Change{Seq: seq, Op: change.OpReplaceFile, Path: p, Data: []byte(p), Mode: 0o644}
	}
	times := func(seq uint64, p string, ns int64) change.Change {
		return change.Change{Seq: seq, Op: change.OpSetTimes, Path: p, MTime: ns}
	}
	if err := a.Apply(change.Change{Seq: 1, Op: change.OpMkdir, Path: "d", Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	if err := a.ApplyBatch([]change.Change{
		rf(2, "d/x"), times(3, "d", t1), rf(4, "d/y"), times(5, "d", t2), rf(6, "d/z"), times(7, "d", t1+1),
	}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"d/x", "d/y", "d/z"} {
		fileIs(p, p, 0o644)(t, tr.target)
	}
	mtimeIs("d", t1+1)(t, tr.target)
	if a.LastApplied() != 7 {
		t.Fatalf("LastApplied = %d, want 7", a.LastApplied())
	}
	// Delivered again after a crash that lost the record: the same tree.
	b := reopenWithLast(t, a, tr.target, 1)
	if err := b.ApplyBatch([]change.Change{
		rf(2, "d/x"), times(3, "d", t1), rf(4, "d/y"), times(5, "d", t2), rf(6, "d/z"), times(7, "d", t1+1),
	}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"d/x", "d/y", "d/z"} {
		fileIs(p, p, 0o644)(t, tr.target)
	}
	mtimeIs("d", t1+1)(t, tr.target)
	if left := tempFiles(t, tr.target); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// reopenWithLast closes a, sets the recorded LastApplied of target back to
// seq, as a crash before the record would have left it, and opens it
// again.
func reopenWithLast(t *testing.T, a *Applier, target string, seq uint64) *Applier {
	t.Helper()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := openT(t, target)
	b.mu.Lock()
	err := b.state.record(seq)
	if err == nil {
		err = b.state.record(seq) // both slots
	}
	b.applied = seq
	b.last.Store(seq)
	b.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
