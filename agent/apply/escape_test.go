package apply

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/holdfast/holdfast/agent/change"
)

// TestEscapes tries to make the applier touch something outside its tree.
// Each case builds a replica (with changes, or behind the applier's back),
// then applies one hostile change. Refused changes must fail with
// ErrEscape and change nothing, inside or out; changes that name a symlink
// itself must act on the link. In every case the files outside stay as
// they were.
func TestEscapes(t *testing.T) {
	type hostile struct {
		name   string
		setup  func(tr *tree) []change.Change // changes to apply first
		behind func(t *testing.T, tr *tree)   // then done behind the applier's back
		c      change.Change
		escape bool // want ErrEscape, and the tree unchanged
		wants  []want
	}
	evilDir := func(tr *tree) []change.Change { // evil -> /abs/outside
		return []change.Change{{Op: change.OpSymlink, Path: "evil", Target: tr.outside}}
	}
	evilFile := func(tr *tree) []change.Change { // evilf -> /abs/outside/sentinel
		return []change.Change{{Op: change.OpSymlink, Path: "evilf", Target: filepath.Join(tr.outside, "sentinel")}}
	}
	plus := func(f func(*tree) []change.Change, more ...change.Change) func(*tree) []change.Change {
		return func(tr *tree) []change.Change { return append(f(tr), more...) }
	}
	none := func(*tree) []change.Change { return nil }
	fileF := change.Change{Op: change.OpWrite, Path: "f", Data: []byte("mine")}

	cases := []hostile{
		// Through a symlink to a directory outside.
		{name: "write through absolute symlink", setup: evilDir, c: change.Change{Op: change.OpWrite, Path: "evil/x", Data: []byte("pwn")}, escape: true},
		{name: "overwrite outside file through symlink", setup: evilDir, c: change.Change{Op: change.OpWrite, Path: "evil/sentinel", Data: []byte("pwn")}, escape: true},
		{name: "truncate through symlink", setup: evilDir, c: change.Change{Op: change.OpTruncate, Path: "evil/sentinel"}, escape: true},
		{name: "create through symlink", setup: evilDir, c: change.Change{Op: change.OpCreate, Path: "evil/new", Mode: 0o644}, escape: true},
		{name: "mkdir through symlink", setup: evilDir, c: change.Change{Op: change.OpMkdir, Path: "evil/d", Mode: 0o755}, escape: true},
		{name: "symlink through symlink", setup: evilDir, c: change.Change{Op: change.OpSymlink, Path: "evil/l", Target: "x"}, escape: true},
		{name: "replace file through symlink", setup: evilDir, c: change.Change{Op: change.OpReplaceFile, Path: "evil/sentinel", Data: []byte("pwn")}, escape: true},
		{name: "remove through symlink", setup: evilDir, c: change.Change{Op: change.OpRemove, Path: "evil/sentinel"}, escape: true},
		{name: "chmod through symlink", setup: evilDir, c: change.Change{Op: change.OpChmod, Path: "evil/sentinel", Mode: 0o777}, escape: true},
		{name: "chown through symlink", setup: evilDir, c: change.Change{Op: change.OpChown, Path: "evil/sentinel", UID: 1, GID: 1}, escape: true},
		{name: "set times through symlink", setup: evilDir, c: change.Change{Op: change.OpSetTimes, Path: "evil/sentinel", MTime: 1}, escape: true},
		{name: "set xattr through symlink", setup: evilDir, c: change.Change{Op: change.OpSetXattr, Path: "evil/sentinel", XattrName: "user.pwn", XattrValue: []byte("1")}, escape: true},
		{name: "remove xattr through symlink", setup: evilDir, c: change.Change{Op: change.OpRemoveXattr, Path: "evil/sentinel", XattrName: "user.x"}, escape: true},
		{name: "rename into symlinked dir", setup: plus(evilDir, fileF), c: change.Change{Op: change.OpRename, Path: "f", NewPath: "evil/y"}, escape: true},
		{name: "rename out of symlinked dir", setup: evilDir, c: change.Change{Op: change.OpRename, Path: "evil/sentinel", NewPath: "stolen"}, escape: true},
		{name: "link to a file through symlink", setup: evilDir, c: change.Change{Op: change.OpLink, Path: "evil/sentinel", NewPath: "hl"}, escape: true},
		{name: "link into symlinked dir", setup: plus(evilDir, fileF), c: change.Change{Op: change.OpLink, Path: "f", NewPath: "evil/hl"}, escape: true},
		{name: "deeper symlink", setup: func(tr *tree) []change.Change {
			return []change.Change{{Op: change.OpMkdir, Path: "a", Mode: 0o755}, {Op: change.OpSymlink, Path: "a/b", Target: tr.outside}}
		}, c: change.Change{Op: change.OpWrite, Path: "a/b/dir/inner", Data: []byte("pwn")}, escape: true},
		{name: "relative symlink climbing out", setup: func(*tree) []change.Change {
			return []change.Change{{Op: change.OpSymlink, Path: "rel", Target: "../outside"}}
		}, c: change.Change{Op: change.OpWrite, Path: "rel/x", Data: []byte("pwn")}, escape: true},
		{name: "symlink within the tree is not followed either", setup: func(*tree) []change.Change {
			return []change.Change{{Op: change.OpMkdir, Path: "real", Mode: 0o755}, {Op: change.OpSymlink, Path: "inner", Target: "real"}}
		}, c: change.Change{Op: change.OpWrite, Path: "inner/x", Data: []byte("x")}, escape: true},
		{name: "absolute symlink created as data, written through later", setup: func(tr *tree) []change.Change {
			return []change.Change{{Op: change.OpSymlink, Path: "abs", Target: filepath.Join(tr.outside, "dir")}}
		}, c: change.Change{Op: change.OpWrite, Path: "abs/inner", Data: []byte("pwn")}, escape: true},
		{name: "directory replaced by a symlink by changes", setup: func(tr *tree) []change.Change {
			return []change.Change{
				{Op: change.OpMkdir, Path: "d", Mode: 0o755},
				{Op: change.OpWrite, Path: "d/f", Data: []byte("1")},
				{Op: change.OpRemove, Path: "d/f"},
				{Op: change.OpRemove, Path: "d"},
				{Op: change.OpSymlink, Path: "d", Target: tr.outside},
			}
		}, c: change.Change{Op: change.OpWrite, Path: "d/sentinel", Data: []byte("pwn")}, escape: true},
		{name: "directory replaced by a symlink behind our back", setup: func(*tree) []change.Change {
			return []change.Change{{Op: change.OpMkdir, Path: "d", Mode: 0o755}, {Op: change.OpWrite, Path: "d/f", Data: []byte("1")}}
		}, behind: func(t *testing.T, tr *tree) {
			if err := os.RemoveAll(filepath.Join(tr.target, "d")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(tr.outside, filepath.Join(tr.target, "d")); err != nil {
				t.Fatal(err)
			}
		}, c: change.Change{Op: change.OpWrite, Path: "d/sentinel", Data: []byte("pwn")}, escape: true},

		// Paths that leave the root, built directly rather than decoded.
		{name: "dot-dot path", setup: none, c: change.Change{Op: change.OpWrite, Path: "../outside/sentinel", Data: []byte("pwn")}, escape: true},
		{name: "unclean dot-dot path", setup: none, c: change.Change{Op: change.OpWrite, Path: "a/../../outside/sentinel", Data: []byte("pwn")}, escape: true},
		{name: "absolute path", setup: none, c: change.Change{Op: change.OpWrite, Path: "/tmp/x", Data: []byte("pwn")}, escape: true},
		{name: "rename to dot-dot", setup: plus(none, fileF), c: change.Change{Op: change.OpRename, Path: "f", NewPath: "../outside/f"}, escape: true},
		{name: "link to dot-dot", setup: plus(none, fileF), c: change.Change{Op: change.OpLink, Path: "f", NewPath: "../../f"}, escape: true},
		{name: "link from outside", setup: none, c: change.Change{Op: change.OpLink, Path: "../outside/sentinel", NewPath: "hl"}, escape: true},

		// The applier's own state.
		{name: "write the state file", setup: none, c: change.Change{Op: change.OpWrite, Path: StateDir + "/" + stateName, Data: []byte("x")}, escape: true},
		{name: "remove the state directory", setup: none, c: change.Change{Op: change.OpRemove, Path: StateDir}, escape: true},
		{name: "rename into the state directory", setup: plus(none, fileF), c: change.Change{Op: change.OpRename, Path: "f", NewPath: StateDir + "/f"}, escape: true},
		{name: "symlink over the state directory", setup: none, c: change.Change{Op: change.OpSymlink, Path: StateDir, Target: "/tmp"}, escape: true},

		// Changes naming a symlink itself act on the link.
		{name: "write to a symlink replaces it", setup: evilFile, c: change.Change{Op: change.OpWrite, Path: "evilf", Data: []byte("own")},
			wants: []want{fileIs("evilf", "own", 0o600)}},
		{name: "truncate a symlink replaces it", setup: evilFile, c: change.Change{Op: change.OpTruncate, Path: "evilf", Size: 1},
			wants: []want{fileIs("evilf", "\x00", 0o600)}},
		{name: "create over a symlink replaces it", setup: evilFile, c: change.Change{Op: change.OpCreate, Path: "evilf", Mode: 0o644},
			wants: []want{fileIs("evilf", "", 0o644)}},
		{name: "replace file over a symlink replaces it", setup: evilFile, c: change.Change{Op: change.OpReplaceFile, Path: "evilf", Data: []byte("own"), Mode: 0o644},
			wants: []want{fileIs("evilf", "own", 0o644)}},
		{name: "mkdir over a symlink replaces it", setup: evilDir, c: change.Change{Op: change.OpMkdir, Path: "evil", Mode: 0o755},
			wants: []want{dirIs("evil", 0o755)}},
		{name: "chmod of a symlink", setup: evilFile, c: change.Change{Op: change.OpChmod, Path: "evilf", Mode: 0o777}},
		{name: "chown of a symlink", setup: evilFile, c: change.Change{Op: change.OpChown, Path: "evilf", UID: 4242, GID: 4242},
			wants: []want{rootOnly(ownerIs("evilf", 4242, 4242))}},
		{name: "set times of a symlink", setup: evilFile, c: change.Change{Op: change.OpSetTimes, Path: "evilf", MTime: t1},
			wants: []want{mtimeIs("evilf", t1)}},
		{name: "remove a symlink", setup: evilFile, c: change.Change{Op: change.OpRemove, Path: "evilf"},
			wants: []want{absent("evilf")}},
		{name: "rename a symlink", setup: evilDir, c: change.Change{Op: change.OpRename, Path: "evil", NewPath: "moved"},
			wants: []want{absent("evil")}},
		{name: "hard link a symlink", setup: evilFile, c: change.Change{Op: change.OpLink, Path: "evilf", NewPath: "hl"},
			wants: []want{sameFile("evilf", "hl", 2)}},
		{name: "symlink over a symlink", setup: evilDir, c: change.Change{Op: change.OpSymlink, Path: "evil", Target: "elsewhere"},
			wants: []want{symlinkIs("evil", "elsewhere")}},
	}
	if isRoot() {
		cases = append(cases, hostile{name: "trusted xattr on a symlink", setup: evilFile,
			c:     change.Change{Op: change.OpSetXattr, Path: "evilf", XattrName: "trusted.t", XattrValue: []byte("on the link")},
			wants: []want{xattrIs("evilf", "trusted.t", "on the link")}})
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t)
			a := openT(t, tr.target)
			setup := numbered(tc.setup(tr)...)
			applyAll(t, a, setup)
			if tc.behind != nil {
				tc.behind(t, tr)
			}
			before := snapshot(t, tr.target, true)
			c := tc.c
			c.Seq = uint64(len(setup) + 1)
			err := a.Apply(c)
			switch {
			case tc.escape && !errors.Is(err, ErrEscape):
				t.Errorf("got %v, want ErrEscape", err)
			case tc.escape:
				var e *Error
				if !errors.As(err, &e) || e.Seq != c.Seq || e.Path != c.Path {
					t.Errorf("escape error %v does not name the change", err)
				}
				t.Logf("refused: %v", err)
				if got := snapshot(t, tr.target, true); !reflect.DeepEqual(got, before) {
					t.Errorf("a refused change changed the tree:\n%s", diff(got, before))
				}
				if a.LastApplied() != uint64(len(setup)) {
					t.Errorf("LastApplied = %d, want %d", a.LastApplied(), len(setup))
				}
			case err != nil:
				t.Errorf("got %v, want the change applied to the link", err)
			}
			for _, w := range tc.wants {
				w(t, tr.target)
			}
			tr.checkOutside(t)
		})
	}
}

// TestDecodedHostileRecords: the decoder refuses climbing paths, and so
// does Apply for the very same change built by hand.
func TestDecodedHostileRecords(t *testing.T) {
	tr := newTree(t)
	a := openT(t, tr.target)
	for _, c := range []change.Change{
		{Seq: 1, Op: change.OpWrite, Path: "../outside/sentinel", Data: []byte("x")},
		{Seq: 1, Op: change.OpRename, Path: "a", NewPath: "../../b"},
		{Seq: 1, Op: change.OpWrite, Path: "/etc/passwd"},
	} {
		if _, err := change.Decode(c.Marshal()); !errors.Is(err, change.ErrInvalid) {
			t.Errorf("Decode of %+v: %v, want ErrInvalid", c, err)
		}
		if err := a.Apply(c); !errors.Is(err, ErrEscape) || !errors.Is(err, change.ErrInvalid) {
			t.Errorf("Apply of %+v: %v, want ErrEscape and ErrInvalid", c, err)
		}
	}
	tr.checkOutside(t)
}
