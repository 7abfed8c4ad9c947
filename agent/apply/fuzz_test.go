package apply

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/holdfast/holdfast/agent/change"
)

// FuzzApply decodes arbitrary bytes as a change and applies it to a replica
// holding hostile symlinks. It must never panic and never change anything
// outside the replica; a change refused as an escape must change nothing
// inside either.
//
// The input is a record without its trailing checksum, which the target
// appends: a fuzzer cannot guess CRC-32C, and records that fail it never
// reach Apply. The Seq is set to 1 so that every decodable change is
// applied rather than refused for seq 0.
func FuzzApply(f *testing.F) {
	seed := func(c change.Change) {
		b := c.Marshal()
		f.Add(b[:len(b)-4])
	}
	for _, c := range []change.Change{
		{Op: change.OpWrite, Path: "evil/x", Data: []byte("pwn")},
		{Op: change.OpWrite, Path: "evilf", Offset: 3, Data: []byte("pwn")},
		{Op: change.OpWrite, Path: "d/up/outside/sentinel", Data: []byte("pwn")},
		{Op: change.OpTruncate, Path: "f", Size: 3},
		{Op: change.OpCreate, Path: "d/new", Mode: 0o4755},
		{Op: change.OpMkdir, Path: "d/sub/e", Mode: 0o1777},
		{Op: change.OpSymlink, Path: "d/l", Target: "/"},
		{Op: change.OpLink, Path: "f", NewPath: "evil/hl"},
		{Op: change.OpLink, Path: "evilf", NewPath: "d/hl"},
		{Op: change.OpRename, Path: "evil/sentinel", NewPath: "stolen"},
		{Op: change.OpRename, Path: "d", NewPath: "rel/d"},
		{Op: change.OpRemove, Path: "rel/sentinel"},
		{Op: change.OpChmod, Path: "evilf", Mode: 0o777},
		{Op: change.OpChown, Path: "evilf", UID: 1, GID: 1},
		{Op: change.OpSetTimes, Path: "evilf", MTime: 1},
		{Op: change.OpSetXattr, Path: "f", XattrName: "user.a", XattrValue: []byte("b")},
		{Op: change.OpRemoveXattr, Path: "evil/sentinel", XattrName: "user.a"},
		{Op: change.OpReplaceFile, Path: "evilf", Data: []byte("k=v"), Mode: 0o600, MTime: 5},
		{Op: change.OpReplaceFile, Path: ".holdfast/applied", Data: []byte("x")},
		{Op: change.OpPatch, Path: "f", Data: mustDelta("content of f", "content of f, patched"), Mode: 0o644, MTime: 5},
		{Op: change.OpPatch, Path: "d/g", Data: mustDelta("content of d/g", "CONTENT of d/g"), Mode: 0o600},
		{Op: change.OpPatch, Path: "f2", Data: mustDelta("content of f", "f"), Mode: 0o600},
		{Op: change.OpPatch, Path: "evilf", Data: mustDelta("do not touch", "pwned"), Mode: 0o777},
		{Op: change.OpPatch, Path: "evil/sentinel", Data: mustDelta("do not touch", "pwned"), Mode: 0o777},
	} {
		seed(c)
	}

	base := fastDir(f)
	n := 0
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := binary.LittleEndian.AppendUint32(append([]byte(nil), body...), crc32.Checksum(body, castagnoli))
		c, err := change.Decode(rec)
		if err != nil {
			return
		}
		c.Seq = 1
		n++
		tr := newTreeIn(t, filepath.Join(base, fmt.Sprint(n)))
		defer os.RemoveAll(tr.base)
		hostileTree(t, tr)
		a, err := Open(tr.target, Options{})
		if err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, tr.target, true)
		err = a.Apply(c)
		if cerr := a.Close(); cerr != nil {
			t.Fatal(cerr)
		}
		if errors.Is(err, ErrEscape) {
			if got := snapshot(t, tr.target, true); !reflect.DeepEqual(got, before) {
				t.Fatalf("%+v refused (%v) but the tree changed:\n%s", c, err, diff(got, before))
			}
		}
		tr.checkOutside(t)
		names, rerr := os.ReadDir(tr.base)
		if rerr != nil || len(names) != 2 {
			t.Fatalf("%+v: base holds %v (%v), want just outside and target", c, names, rerr)
		}
	})
}

// hostileTree fills a fresh replica with files, a hard link, and symlinks
// leading out of it in every way.
func hostileTree(t *testing.T, tr *tree) {
	t.Helper()
	p := func(rel string) string { return filepath.Join(tr.target, rel) }
	for _, d := range []string{"d", "d/sub"} {
		if err := os.Mkdir(p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"f", "d/g"} {
		if err := os.WriteFile(p(f), []byte("content of "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(p("f"), p("f2")); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"evil":   tr.outside,
		"evilf":  filepath.Join(tr.outside, "sentinel"),
		"rel":    "../outside",
		"d/up":   "..",
		"d/root": "/",
	} {
		if err := os.Symlink(target, p(name)); err != nil {
			t.Fatal(err)
		}
	}
}
