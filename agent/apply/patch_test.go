package apply

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/blocksync"
	"github.com/holdfast/holdfast/agent/change"
)

// patchBlock is the block size of the test deltas: small, so that short
// strings span several blocks.
const patchBlock = blocksync.MinBlockSize

// mustDelta encodes the delta that turns old into new, as the master would
// send it in an OpPatch.
func mustDelta(old, new string) []byte {
	sig, err := blocksync.ComputeSignature(strings.NewReader(old), patchBlock)
	if err != nil {
		panic(err)
	}
	var b bytes.Buffer
	w := blocksync.NewOpWriter(&b)
	if _, err := blocksync.Diff(sig, strings.NewReader(new), w.Write); err != nil {
		panic(err)
	}
	if err := w.Flush(); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// encodeOps encodes hand-made ops, for deltas no Diff would produce.
func encodeOps(ops ...blocksync.Op) []byte {
	var b []byte
	for _, op := range ops {
		var err error
		if b, err = blocksync.AppendOp(b, op); err != nil {
			panic(err)
		}
	}
	return b
}

const (
	patchOld  = "The quick brown fox jumps over the lazy dog; the lazy dog sleeps on."
	patchNew  = "The quick brown fox leaps over the lazy dog; the lazy dog sleeps on, and on, and on."
	patchSame = "The quick BROWN fox jumps over the lazy cat; the lazy dog sleeps on." // same size as patchOld
)

func patchCases() []opCase {
	withOld := []change.Change{mkdirDocs, {Op: change.OpWrite, Path: "docs/p", Data: []byte(patchOld)}}
	return []opCase{
		{"patch grows a file", withOld,
			change.Change{Op: change.OpPatch, Path: "docs/p", Data: mustDelta(patchOld, patchNew), Mode: 0o640, MTime: t1},
			[]want{fileIs("docs/p", patchNew, 0o640), mtimeIs("docs/p", t1)}},
		{"patch keeps the size", withOld,
			change.Change{Op: change.OpPatch, Path: "docs/p", Data: mustDelta(patchOld, patchSame), Mode: 0o600, MTime: t2},
			[]want{fileIs("docs/p", patchSame, 0o600), mtimeIs("docs/p", t2)}},
		{"patch shrinks a file to nothing", withOld,
			change.Change{Op: change.OpPatch, Path: "docs/p", Data: mustDelta(patchOld, ""), Mode: 0o644},
			[]want{fileIs("docs/p", "", 0o644)}},
		{"patch keeps owner and xattrs", append(withOld,
			change.Change{Op: change.OpChown, Path: "docs/p", UID: 42, GID: 43},
			change.Change{Op: change.OpSetXattr, Path: "docs/p", XattrName: "user.tag", XattrValue: []byte("kept")}),
			change.Change{Op: change.OpPatch, Path: "docs/p", Data: mustDelta(patchOld, patchNew), Mode: 0o4750, MTime: t1},
			[]want{fileIs("docs/p", patchNew, 0o4750), xattrIs("docs/p", "user.tag", "kept"), rootOnly(ownerIs("docs/p", 42, 43))}},
		{"patch of a hard-linked file keeps the link", append(withOld,
			change.Change{Op: change.OpLink, Path: "docs/p", NewPath: "q"}),
			change.Change{Op: change.OpPatch, Path: "docs/p", Data: mustDelta(patchOld, patchNew), Mode: 0o600, MTime: t1},
			[]want{sameFile("docs/p", "q", 2), fileIs("q", patchNew, 0o600), mtimeIs("q", t1)}},
		{"patch of a hard-linked file, same size", append(withOld,
			change.Change{Op: change.OpLink, Path: "docs/p", NewPath: "q"}),
			change.Change{Op: change.OpPatch, Path: "docs/p", Data: mustDelta(patchOld, patchSame), Mode: 0o600, MTime: t1},
			[]want{sameFile("docs/p", "q", 2), fileIs("q", patchSame, 0o600)}},
	}
}

// TestPatch applies deltas, and applies each again as after a crash
// between applying and recording it: the second time finds the result in
// place and succeeds without changing anything.
func TestPatch(t *testing.T) {
	for _, tc := range patchCases() {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t)
			a := openT(t, tr.target)
			cs := numbered(append(tc.setup, tc.c)...)
			applyAll(t, a, cs)
			for _, w := range tc.wants {
				w(t, tr.target)
			}
			if left := tempFiles(t, tr.target); len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
			once := snapshot(t, tr.target, true)
			if err := reapply(a, cs[len(cs)-1]); err != nil {
				t.Fatalf("applying again: %v", err)
			}
			if twice := snapshot(t, tr.target, true); !reflect.DeepEqual(twice, once) {
				t.Errorf("applying again changed the tree:\n%s", diff(twice, once))
			}
			if left := tempFiles(t, tr.target); len(left) > 0 {
				t.Errorf("temporary files left after applying again: %v", left)
			}
			tr.checkOutside(t)
		})
	}
}

// TestPatchCrashBeforeRecord: the patch is applied, the process dies before
// recording it, and the transport delivers it again to a new Applier.
func TestPatchCrashBeforeRecord(t *testing.T) {
	tr := newTree(t)
	a, err := Open(tr.target, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cs := numbered(mkdirDocs, change.Change{Op: change.OpWrite, Path: "docs/p", Data: []byte(patchOld)},
		change.Change{Op: change.OpPatch, Path: "docs/p", Data: mustDelta(patchOld, patchNew), Mode: 0o644, MTime: t1})
	crashAt(a, 3)
	if err := a.ApplyBatch(cs); !errors.Is(err, errCrash) {
		t.Fatalf("want the simulated crash, got %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	fileIs("docs/p", patchNew, 0o644)(t, tr.target) // applied, not recorded
	b := openT(t, tr.target)
	if got := b.LastApplied(); got != 2 {
		t.Fatalf("LastApplied = %d, want 2", got)
	}
	if err := b.ApplyBatch(cs); err != nil {
		t.Fatalf("delivered again: %v", err)
	}
	fileIs("docs/p", patchNew, 0o644)(t, tr.target)
	mtimeIs("docs/p", t1)(t, tr.target)
	if got := b.LastApplied(); got != 3 {
		t.Fatalf("LastApplied = %d, want 3", got)
	}
}

// TestPatchRefused: deltas that are hostile, damaged or made for another
// version of the file fail, and leave the file exactly as it was, no
// temporary file, and LastApplied where it was.
func TestPatchRefused(t *testing.T) {
	good := mustDelta(patchOld, patchNew)
	oldSize := int64(len(patchOld))
	blocks := (oldSize + patchBlock - 1) / patchBlock
	header := blocksync.Op{Kind: blocksync.OpHeader, BlockSize: patchBlock, Size: oldSize}
	endOfNew, err := endOf(int(memFile(t, patchNew).Fd()), int64(len(patchNew)))
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x01

	for _, tc := range []struct {
		name  string
		delta []byte
		is    error // the error must wrap it
	}{
		{"garbage", []byte("this is not a delta at all"), blocksync.ErrInvalid},
		{"truncated", good[:len(good)/2], blocksync.ErrInvalid},
		{"without its end", good[:len(good)-13], blocksync.ErrInvalid},
		{"bit flip", flipped, blocksync.ErrInvalid},
		{"trailing bytes", append(bytes.Clone(good), good...), blocksync.ErrInvalid},
		{"no header", encodeOps(blocksync.Op{Kind: blocksync.OpLiteral, Data: []byte("x")}, endOfNew), blocksync.ErrInvalid},
		{"copy beyond the old file", encodeOps(header,
			blocksync.Op{Kind: blocksync.OpCopy, Block: blocks - 1, Count: 2}, endOfNew), blocksync.ErrInvalid},
		{"copy far beyond the old file", encodeOps(header,
			blocksync.Op{Kind: blocksync.OpCopy, Block: 1 << 20, Count: 1}, endOfNew), blocksync.ErrInvalid},
		{"wrong end checksum", encodeOps(header,
			blocksync.Op{Kind: blocksync.OpCopy, Block: 0, Count: blocks},
			blocksync.Op{Kind: blocksync.OpEnd, Size: oldSize, Sum: 12345}), ErrBaseMismatch},
		{"made for another size", mustDelta(patchNew, patchSame), ErrBaseMismatch},
		// Copies the blocks in which patchSame differs from patchOld.
		{"made for other content of the same size", mustDelta(patchSame, patchSame+"!!"), ErrBaseMismatch},
	} {
		// A file with two names takes the in-place path, with its own
		// temporary file: it must refuse the same way.
		for _, linked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/linked=%v", tc.name, linked), func(t *testing.T) {
				refusedPatch(t, tc.delta, tc.is, linked)
			})
		}
	}
}

func refusedPatch(t *testing.T, delta []byte, is error, linked bool) {
	tr := newTree(t)
	a := openT(t, tr.target)
	setup := numbered(mkdirDocs,
		change.Change{Op: change.OpWrite, Path: "docs/p", Data: []byte(patchOld)},
		change.Change{Op: change.OpSetXattr, Path: "docs/p", XattrName: "user.tag", XattrValue: []byte("v")},
		change.Change{Op: change.OpSetTimes, Path: "docs/p", MTime: t2},
		change.Change{Op: change.OpLink, Path: "docs/p", NewPath: "docs/q"})
	if !linked {
		setup = setup[:4]
	}
	applyAll(t, a, setup)
	seq := uint64(len(setup) + 1)
	before := snapshot(t, tr.target, true)
	err := a.Apply(change.Change{Seq: seq, Op: change.OpPatch, Path: "docs/p", Data: delta, Mode: 0o777, MTime: t1})
	if !errors.Is(err, is) {
		t.Fatalf("got %v, want an error wrapping %v", err, is)
	}
	t.Log(err)
	var e *Error
	if !errors.As(err, &e) || e.Seq != seq || e.Op != change.OpPatch {
		t.Errorf("error %v does not name the change", err)
	}
	if got := snapshot(t, tr.target, true); !reflect.DeepEqual(got, before) {
		t.Errorf("refused patch changed the tree:\n%s", diff(got, before))
	}
	if left := tempFiles(t, tr.target); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if got := a.LastApplied(); got != seq-1 {
		t.Errorf("LastApplied = %d, want %d", got, seq-1)
	}
	tr.checkOutside(t)
}

// TestPatchNotAFile: a delta applies to a regular file's content only. A
// symlink in its place is neither followed nor replaced, a symlink on the
// way is an escape, and a directory or a missing file is an error.
func TestPatchNotAFile(t *testing.T) {
	delta := mustDelta("content of f", "content of f, patched")
	for _, tc := range []struct {
		name   string
		setup  func(tr *tree) []change.Change
		path   string
		is     error
		escape bool
	}{
		{name: "symlink to a file outside", path: "evilf", is: ErrBaseMismatch, setup: func(tr *tree) []change.Change {
			return []change.Change{{Op: change.OpSymlink, Path: "evilf", Target: filepath.Join(tr.outside, "sentinel")}}
		}},
		{name: "symlink to a file inside", path: "l", is: ErrBaseMismatch, setup: func(*tree) []change.Change {
			return []change.Change{{Op: change.OpWrite, Path: "f", Data: []byte("content of f")}, {Op: change.OpSymlink, Path: "l", Target: "f"}}
		}},
		{name: "symlinked directory on the way", path: "evil/sentinel", is: ErrEscape, escape: true, setup: func(tr *tree) []change.Change {
			return []change.Change{{Op: change.OpSymlink, Path: "evil", Target: tr.outside}}
		}},
		{name: "directory", path: "d", is: unix.EISDIR, setup: func(*tree) []change.Change {
			return []change.Change{{Op: change.OpMkdir, Path: "d", Mode: 0o755}}
		}},
		{name: "missing", path: "nothing", is: ErrBaseMismatch, setup: func(*tree) []change.Change { return nil }},
		{name: "state directory", path: StateDir + "/applied", is: ErrEscape, escape: true, setup: func(*tree) []change.Change { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t)
			a := openT(t, tr.target)
			setup := numbered(tc.setup(tr)...)
			applyAll(t, a, setup)
			before := snapshot(t, tr.target, true)
			err := a.Apply(change.Change{Seq: uint64(len(setup) + 1), Op: change.OpPatch, Path: tc.path, Data: delta, Mode: 0o666})
			if !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want an error wrapping %v", err, tc.is)
			}
			if errors.Is(err, ErrEscape) != tc.escape {
				t.Errorf("escape = %v, want %v (%v)", errors.Is(err, ErrEscape), tc.escape, err)
			}
			if got := snapshot(t, tr.target, true); !reflect.DeepEqual(got, before) {
				t.Errorf("refused patch changed the tree:\n%s", diff(got, before))
			}
			if left := tempFiles(t, tr.target); len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
			tr.checkOutside(t)
		})
	}
}

// memFile is a file holding content, for computing an end op.
func memFile(t *testing.T, content string) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}
