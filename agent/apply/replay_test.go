package apply

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/agent/change"
)

// story is a stream exercising every op, including the sequences that make
// replay hard: a file renamed away and its old name written again, a file
// written in two parts and then renamed, links replaced, directories
// renamed with a hard link inside, files patched with deltas. It ends by setting the time of every
// surviving file and link, so that trees built at different moments
// compare equal.
func story() []change.Change {
	w := func(p string, off int64, data string) change.Change {
		return change.Change{Op: change.OpWrite, Path: p, Offset: off, Data: []byte(data)}
	}
	times := func(p string, ns int64) change.Change {
		return change.Change{Op: change.OpSetTimes, Path: p, MTime: ns}
	}
	return numbered(
		change.Change{Op: change.OpMkdir, Path: "docs", Mode: 0o755},
		change.Change{Op: change.OpMkdir, Path: "docs/sub", Mode: 0o750},
		change.Change{Op: change.OpCreate, Path: "docs/a.txt", Mode: 0o644},
		w("docs/a.txt", 0, "hello world"),
		w("docs/a.txt", 6, "WORLD!"),
		change.Change{Op: change.OpSetXattr, Path: "docs/a.txt", XattrName: "user.tag", XattrValue: []byte("v1")},
		change.Change{Op: change.OpLink, Path: "docs/a.txt", NewPath: "docs/sub/a-link"},
		w("docs/b.bin", 4096, "tail"),
		change.Change{Op: change.OpTruncate, Path: "docs/b.bin", Size: 10000},
		change.Change{Op: change.OpChown, Path: "docs/b.bin", UID: 1234, GID: 5678},
		change.Change{Op: change.OpChmod, Path: "docs/b.bin", Mode: 0o4750},
		change.Change{Op: change.OpSymlink, Path: "docs/cur", Target: "a.txt"},
		change.Change{Op: change.OpSymlink, Path: "abs", Target: "/etc/passwd"},
		change.Change{Op: change.OpRename, Path: "docs/a.txt", NewPath: "docs/sub/renamed.txt"},
		w("docs/a.txt", 0, "new a"),
		change.Change{Op: change.OpReplaceFile, Path: "cfg.ini", Data: []byte("k=v\n"), Mode: 0o640, MTime: t1},
		change.Change{Op: change.OpReplaceFile, Path: "cfg.ini", Data: []byte("k=w\n"), Mode: 0o600, MTime: t2},
		change.Change{Op: change.OpSetXattr, Path: "cfg.ini", XattrName: "user.x", XattrValue: []byte("1")},
		change.Change{Op: change.OpReplaceFile, Path: "cfg.ini", Data: []byte("k=z\n"), Mode: 0o644},
		change.Change{Op: change.OpMkdir, Path: "tmp", Mode: 0o1777},
		change.Change{Op: change.OpCreate, Path: "tmp/scratch", Mode: 0o600},
		w("tmp/scratch", 0, "junk"),
		change.Change{Op: change.OpRemove, Path: "tmp/scratch"},
		change.Change{Op: change.OpRemove, Path: "tmp"},
		change.Change{Op: change.OpRename, Path: "docs/sub", NewPath: "moved"},
		change.Change{Op: change.OpRemoveXattr, Path: "docs/a.txt", XattrName: "user.none"},
		w("big.dat", 0, "AAAA"),
		w("big.dat", 4, "BBBB"),
		change.Change{Op: change.OpRename, Path: "big.dat", NewPath: "final.dat"},
		w("big.dat", 0, "CC"),
		change.Change{Op: change.OpSymlink, Path: "docs/cur", Target: "b.bin"},
		change.Change{Op: change.OpRemove, Path: "abs"},
		change.Change{Op: change.OpSymlink, Path: "abs", Target: "/tmp/x"},
		change.Change{Op: change.OpReplaceFile, Path: "moved/renamed.txt", Data: []byte("linked new"), Mode: 0o600},
		change.Change{Op: change.OpWrite, Path: "x", Data: []byte("file then dir")},
		change.Change{Op: change.OpRemove, Path: "x"},
		change.Change{Op: change.OpMkdir, Path: "x", Mode: 0o700},
		change.Change{Op: change.OpChmod, Path: "docs", Mode: 0o700},
		// Diverged shapes: a write meeting a symlink, a mkdir meeting a
		// file. Each replaces a name, so a batch commits around it.
		change.Change{Op: change.OpSymlink, Path: "y", Target: "t"},
		w("y", 0, "was a link"),
		w("w", 0, "a file"),
		change.Change{Op: change.OpMkdir, Path: "w", Mode: 0o755},
		w("w/in", 0, "inside"),
		// Block-level updates: a delta that grows a file, one that keeps
		// the size of a file with two names (rewritten in place; a replay
		// finds the result by its checksum), one through the other name.
		w("p.bin", 0, patchOld),
		change.Change{Op: change.OpPatch, Path: "p.bin", Data: mustDelta(patchOld, patchNew), Mode: 0o640, MTime: t1 + 10},
		change.Change{Op: change.OpLink, Path: "p.bin", NewPath: "docs/p.link"},
		change.Change{Op: change.OpPatch, Path: "p.bin", Data: mustDelta(patchNew, strings.ToUpper(patchNew)), Mode: 0o600, MTime: t1 + 11},
		change.Change{Op: change.OpPatch, Path: "docs/p.link", Data: mustDelta(strings.ToUpper(patchNew), patchOld), Mode: 0o644, MTime: t1 + 12},
		times("docs/a.txt", t1),
		times("docs/b.bin", t1+1),
		times("docs/cur", t1+2),
		times("abs", t1+3),
		times("cfg.ini", t1+4),
		times("moved/renamed.txt", t1+5),
		times("final.dat", t1+6),
		times("big.dat", t1+7),
		times("y", t1+8),
		times("w/in", t1+9),
	)
}

var errCrash = errors.New("simulated crash before recording")

// crashAt makes the commit recording seq fail, as if the process died just
// before it: everything up to it is applied, LastApplied is older.
func crashAt(a *Applier, seq uint64) {
	a.beforeRecord = func(s uint64) error {
		if s == seq {
			return errCrash
		}
		return nil
	}
}

func reference(t *testing.T) map[string]entry {
	tr := newTree(t)
	a := openT(t, tr.target)
	applyAll(t, a, story())
	return snapshot(t, tr.target, true)
}

// TestCrashReplay crashes after each change of the story, reopens and lets
// the stream be delivered again from the start: the tree must end as if
// nothing had happened. With Apply, the crash leaves one change applied
// above LastApplied; with ApplyBatch, all changes since the last commit.
func TestCrashReplay(t *testing.T) {
	want := reference(t)
	cs := story()
	fast := fastDir(t)
	for _, batch := range []bool{false, true} {
		for k := 1; k <= len(cs); k++ {
			t.Run(fmt.Sprintf("batch=%v/crash-after-%d-%s", batch, k, cs[k-1].Op), func(t *testing.T) {
				tr := newTreeIn(t, filepath.Join(fast, fmt.Sprintf("%v-%d", batch, k)))
				a, err := Open(tr.target, Options{})
				if err != nil {
					t.Fatal(err)
				}
				crashAt(a, cs[k-1].Seq)
				if batch {
					err = a.ApplyBatch(cs[:k])
				} else {
					for _, c := range cs[:k] {
						if err = a.Apply(c); err != nil {
							break
						}
					}
				}
				if !errors.Is(err, errCrash) {
					t.Fatalf("want the simulated crash, got %v", err)
				}
				last := a.LastApplied()
				if err := a.Close(); err != nil {
					t.Fatal(err)
				}
				if !batch && last != uint64(k-1) {
					t.Fatalf("LastApplied = %d after the crash, want %d", last, k-1)
				}

				b := openT(t, tr.target)
				if got := b.LastApplied(); got != last {
					t.Fatalf("LastApplied after reopening = %d, want %d", got, last)
				}
				if batch {
					applyAll(t, b, cs)
				} else if err := b.ApplyBatch(cs); err != nil {
					t.Fatal(err)
				}
				if got := snapshot(t, tr.target, true); !reflect.DeepEqual(got, want) {
					t.Fatalf("tree after replay differs:\n%s", diff(got, want))
				}
				if b.LastApplied() != uint64(len(cs)) {
					t.Fatalf("LastApplied = %d, want %d", b.LastApplied(), len(cs))
				}
			})
		}
	}
}

// TestBatchEqualsApply: group commit must build the same tree as applying
// one change at a time.
func TestBatchEqualsApply(t *testing.T) {
	want := reference(t)
	tr := newTree(t)
	a := openT(t, tr.target)
	if err := a.ApplyBatch(story()); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, tr.target, true); !reflect.DeepEqual(got, want) {
		t.Fatalf("batch tree differs:\n%s", diff(got, want))
	}
	if left := tempFiles(t, tr.target); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestReplayReusesItsLeftover: a crash between writing a temporary file and
// renaming it leaves the file behind; the replay of that change finds its
// own name and cleans up.
func TestReplayReusesItsLeftover(t *testing.T) {
	tr := newTree(t)
	a := openT(t, tr.target)
	applyAll(t, a, numbered(mkdirDocs))
	c := change.Change{Seq: 2, Op: change.OpReplaceFile, Path: "docs/cfg", Data: []byte("whole"), Mode: 0o644}
	leftover := change.Change{Seq: 99, Op: change.OpWrite, Path: "docs/" + tempName(2), Data: []byte("half of an earlier attempt")}
	a.mu.Lock()
	err := a.do(&leftover, true)
	a.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(c); err != nil {
		t.Fatal(err)
	}
	fileIs("docs/cfg", "whole", 0o644)(t, tr.target)
	if left := tempFiles(t, tr.target); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
