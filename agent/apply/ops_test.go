package apply

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/change"
)

// A want checks one property of the replica tree after a change.
type want func(t *testing.T, root string)

func fileIs(p, content string, mode uint32) want {
	return func(t *testing.T, root string) {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() {
			t.Fatalf("%s is %v, want a regular file", p, fi.Mode())
		}
		got, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Errorf("%s holds %q, want %q", p, got, content)
		}
		permIs(p, mode)(t, root)
	}
}

func permIs(p string, mode uint32) want {
	return func(t *testing.T, root string) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
			t.Fatal(err)
		}
		if got := st.Mode & 0o7777; got != mode {
			t.Errorf("%s has mode %#o, want %#o", p, got, mode)
		}
	}
}

func dirIs(p string, mode uint32) want {
	return func(t *testing.T, root string) {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() {
			t.Fatalf("%s is %v, want a directory", p, fi.Mode())
		}
		permIs(p, mode)(t, root)
	}
}

func ownerIs(p string, uid, gid uint32) want {
	return func(t *testing.T, root string) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != uid || st.Gid != gid {
			t.Errorf("%s is owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
		}
	}
}

func mtimeIs(p string, ns int64) want {
	return func(t *testing.T, root string) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
			t.Fatal(err)
		}
		if got := st.Mtim.Nano(); got != ns {
			t.Errorf("%s has mtime %d, want %d", p, got, ns)
		}
	}
}

func xattrIs(p, name, value string) want {
	return func(t *testing.T, root string) {
		t.Helper()
		buf := make([]byte, 1024)
		n, err := unix.Lgetxattr(filepath.Join(root, p), name, buf)
		if value == "" {
			if !errors.Is(err, unix.ENODATA) {
				t.Errorf("%s has xattr %s (%q, %v), want none", p, name, buf[:max(n, 0)], err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%s xattr %s: %v", p, name, err)
		}
		if string(buf[:n]) != value {
			t.Errorf("%s xattr %s = %q, want %q", p, name, buf[:n], value)
		}
	}
}

func symlinkIs(p, target string) want {
	return func(t *testing.T, root string) {
		t.Helper()
		got, err := os.Readlink(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		if got != target {
			t.Errorf("%s -> %q, want %q", p, got, target)
		}
	}
}

func absent(p string) want {
	return func(t *testing.T, root string) {
		t.Helper()
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists (%v), want it absent", p, err)
		}
	}
}

func sameFile(p, q string, nlink uint64) want {
	return func(t *testing.T, root string) {
		t.Helper()
		var a, b unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, p), &a); err != nil {
			t.Fatal(err)
		}
		if err := unix.Lstat(filepath.Join(root, q), &b); err != nil {
			t.Fatal(err)
		}
		if a.Ino != b.Ino || a.Nlink != nlink {
			t.Errorf("%s (ino %d, %d links) and %s (ino %d): want one inode with %d links", p, a.Ino, a.Nlink, q, b.Ino, nlink)
		}
	}
}

func rootOnly(w want) want {
	return func(t *testing.T, root string) {
		if !isRoot() {
			t.Log("not root: owner check skipped")
			return
		}
		w(t, root)
	}
}

const (
	t1 = int64(1764000000123456789)
	t2 = int64(1234567890987654321)
)

var (
	mkdirDocs = change.Change{Op: change.OpMkdir, Path: "docs", Mode: 0o755}
	mkdirSub  = change.Change{Op: change.OpMkdir, Path: "docs/sub", Mode: 0o750}
	createA   = change.Change{Op: change.OpCreate, Path: "docs/a", Mode: 0o644}
	writeA    = change.Change{Op: change.OpWrite, Path: "docs/a", Data: []byte("hello world")}
)

type opCase struct {
	name  string
	setup []change.Change
	c     change.Change
	wants []want
}

func opCases() []opCase {
	return []opCase{
		{"write creates", []change.Change{mkdirDocs},
			change.Change{Op: change.OpWrite, Path: "docs/new", Offset: 3, Data: []byte("abc")},
			[]want{fileIs("docs/new", "\x00\x00\x00abc", 0o600)}},
		{"write in place at offset", []change.Change{mkdirDocs, createA, writeA},
			change.Change{Op: change.OpWrite, Path: "docs/a", Offset: 6, Data: []byte("WORLD!")},
			[]want{fileIs("docs/a", "hello WORLD!", 0o644)}},
		{"write beyond the end leaves a hole", []change.Change{mkdirDocs, createA, writeA},
			change.Change{Op: change.OpWrite, Path: "docs/a", Offset: 13, Data: []byte("x")},
			[]want{fileIs("docs/a", "hello world\x00\x00x", 0o644)}},
		{"truncate shrinks", []change.Change{mkdirDocs, createA, writeA},
			change.Change{Op: change.OpTruncate, Path: "docs/a", Size: 5},
			[]want{fileIs("docs/a", "hello", 0o644)}},
		{"truncate extends", []change.Change{mkdirDocs, createA, writeA},
			change.Change{Op: change.OpTruncate, Path: "docs/a", Size: 13},
			[]want{fileIs("docs/a", "hello world\x00\x00", 0o644)}},
		{"truncate creates", nil,
			change.Change{Op: change.OpTruncate, Path: "t", Size: 2},
			[]want{fileIs("t", "\x00\x00", 0o600)}},
		{"create with exact mode", []change.Change{mkdirDocs},
			change.Change{Op: change.OpCreate, Path: "docs/x", Mode: 0o4775},
			[]want{fileIs("docs/x", "", 0o4775)}},
		{"create empties an existing file", []change.Change{mkdirDocs, createA, writeA},
			change.Change{Op: change.OpCreate, Path: "docs/a", Mode: 0o600},
			[]want{fileIs("docs/a", "", 0o600)}},
		{"mkdir with exact mode", nil,
			change.Change{Op: change.OpMkdir, Path: "tmp", Mode: 0o1777},
			[]want{dirIs("tmp", 0o1777)}},
		{"mkdir of an existing directory sets its mode", []change.Change{mkdirDocs, createA},
			change.Change{Op: change.OpMkdir, Path: "docs", Mode: 0o2750},
			[]want{dirIs("docs", 0o2750), fileIs("docs/a", "", 0o644)}},
		{"symlink stores an absolute target verbatim", nil,
			change.Change{Op: change.OpSymlink, Path: "l", Target: "/etc/../etc/passwd"},
			[]want{symlinkIs("l", "/etc/../etc/passwd")}},
		{"symlink dangling relative", []change.Change{mkdirDocs},
			change.Change{Op: change.OpSymlink, Path: "docs/l", Target: "../nowhere/x"},
			[]want{symlinkIs("docs/l", "../nowhere/x")}},
		{"symlink replaces a symlink", []change.Change{{Op: change.OpSymlink, Path: "l", Target: "one"}},
			change.Change{Op: change.OpSymlink, Path: "l", Target: "two"},
			[]want{symlinkIs("l", "two")}},
		{"symlink replaces a file", []change.Change{mkdirDocs, createA},
			change.Change{Op: change.OpSymlink, Path: "docs/a", Target: "b"},
			[]want{symlinkIs("docs/a", "b")}},
		{"hard link", []change.Change{mkdirDocs, mkdirSub, createA, writeA},
			change.Change{Op: change.OpLink, Path: "docs/a", NewPath: "docs/sub/b"},
			[]want{sameFile("docs/a", "docs/sub/b", 2), fileIs("docs/sub/b", "hello world", 0o644)}},
		{"hard link to a symlink links the symlink", []change.Change{{Op: change.OpSymlink, Path: "l", Target: "/etc/passwd"}},
			change.Change{Op: change.OpLink, Path: "l", NewPath: "l2"},
			[]want{sameFile("l", "l2", 2), symlinkIs("l2", "/etc/passwd")}},
		{"hard link replaces another file", []change.Change{mkdirDocs, createA, writeA, {Op: change.OpCreate, Path: "docs/b", Mode: 0o600}},
			change.Change{Op: change.OpLink, Path: "docs/a", NewPath: "docs/b"},
			[]want{sameFile("docs/a", "docs/b", 2)}},
		{"rename a file across directories", []change.Change{mkdirDocs, mkdirSub, createA, writeA},
			change.Change{Op: change.OpRename, Path: "docs/a", NewPath: "docs/sub/a2"},
			[]want{absent("docs/a"), fileIs("docs/sub/a2", "hello world", 0o644)}},
		{"rename over an existing file", []change.Change{mkdirDocs, createA, writeA, {Op: change.OpCreate, Path: "docs/b", Mode: 0o600}},
			change.Change{Op: change.OpRename, Path: "docs/a", NewPath: "docs/b"},
			[]want{absent("docs/a"), fileIs("docs/b", "hello world", 0o644)}},
		{"rename a directory with its content", []change.Change{mkdirDocs, mkdirSub, {Op: change.OpWrite, Path: "docs/sub/f", Data: []byte("f")}},
			change.Change{Op: change.OpRename, Path: "docs", NewPath: "archive"},
			[]want{absent("docs"), dirIs("archive", 0o755), dirIs("archive/sub", 0o750), fileIs("archive/sub/f", "f", 0o600)}},
		{"rename a symlink moves the link", []change.Change{{Op: change.OpSymlink, Path: "l", Target: "/etc"}},
			change.Change{Op: change.OpRename, Path: "l", NewPath: "m"},
			[]want{absent("l"), symlinkIs("m", "/etc")}},
		{"remove a file", []change.Change{mkdirDocs, createA},
			change.Change{Op: change.OpRemove, Path: "docs/a"},
			[]want{absent("docs/a"), dirIs("docs", 0o755)}},
		{"remove an empty directory", []change.Change{mkdirDocs, mkdirSub},
			change.Change{Op: change.OpRemove, Path: "docs/sub"},
			[]want{absent("docs/sub")}},
		{"remove a symlink, not its target", []change.Change{mkdirDocs, createA, {Op: change.OpSymlink, Path: "l", Target: "docs/a"}},
			change.Change{Op: change.OpRemove, Path: "l"},
			[]want{absent("l"), fileIs("docs/a", "", 0o644)}},
		{"remove a missing file", nil,
			change.Change{Op: change.OpRemove, Path: "nothing"},
			[]want{absent("nothing")}},
		{"chmod setuid", []change.Change{mkdirDocs, createA},
			change.Change{Op: change.OpChmod, Path: "docs/a", Mode: 0o4755},
			[]want{permIs("docs/a", 0o4755)}},
		{"chmod directory setgid", []change.Change{mkdirDocs},
			change.Change{Op: change.OpChmod, Path: "docs", Mode: 0o2770},
			[]want{dirIs("docs", 0o2770)}},
		{"chmod of a symlink changes nothing", []change.Change{mkdirDocs, createA, {Op: change.OpSymlink, Path: "l", Target: "docs/a"}},
			change.Change{Op: change.OpChmod, Path: "l", Mode: 0o600},
			[]want{permIs("docs/a", 0o644), symlinkIs("l", "docs/a")}},
		{"chown", []change.Change{mkdirDocs, createA},
			change.Change{Op: change.OpChown, Path: "docs/a", UID: 1234, GID: 5678},
			[]want{rootOnly(ownerIs("docs/a", 1234, 5678))}},
		{"chown of a symlink", []change.Change{mkdirDocs, createA, {Op: change.OpSymlink, Path: "l", Target: "docs/a"}},
			change.Change{Op: change.OpChown, Path: "l", UID: 1234, GID: 5678},
			[]want{rootOnly(ownerIs("l", 1234, 5678)), rootOnly(ownerIs("docs/a", 0, 0))}},
		{"set times to the nanosecond", []change.Change{mkdirDocs, createA},
			change.Change{Op: change.OpSetTimes, Path: "docs/a", MTime: t1},
			[]want{mtimeIs("docs/a", t1)}},
		{"set times before 1970", []change.Change{mkdirDocs, createA},
			change.Change{Op: change.OpSetTimes, Path: "docs/a", MTime: -1_500_000_001},
			[]want{mtimeIs("docs/a", -1_500_000_001)}},
		{"set times of a symlink", []change.Change{mkdirDocs, createA, {Op: change.OpSetTimes, Path: "docs/a", MTime: t2}, {Op: change.OpSymlink, Path: "l", Target: "docs/a"}},
			change.Change{Op: change.OpSetTimes, Path: "l", MTime: t1},
			[]want{mtimeIs("l", t1), mtimeIs("docs/a", t2)}},
		{"set times of a directory", []change.Change{mkdirDocs},
			change.Change{Op: change.OpSetTimes, Path: "docs", MTime: t1},
			[]want{mtimeIs("docs", t1)}},
		{"set xattr on a file", []change.Change{mkdirDocs, createA},
			change.Change{Op: change.OpSetXattr, Path: "docs/a", XattrName: "user.tag", XattrValue: []byte("v\x00w")},
			[]want{xattrIs("docs/a", "user.tag", "v\x00w")}},
		{"set xattr on a directory", []change.Change{mkdirDocs},
			change.Change{Op: change.OpSetXattr, Path: "docs", XattrName: "user.tag", XattrValue: []byte("d")},
			[]want{xattrIs("docs", "user.tag", "d")}},
		{"remove xattr", []change.Change{mkdirDocs, createA, {Op: change.OpSetXattr, Path: "docs/a", XattrName: "user.tag", XattrValue: []byte("v")}},
			change.Change{Op: change.OpRemoveXattr, Path: "docs/a", XattrName: "user.tag"},
			[]want{xattrIs("docs/a", "user.tag", "")}},
		{"remove a missing xattr", []change.Change{mkdirDocs, createA},
			change.Change{Op: change.OpRemoveXattr, Path: "docs/a", XattrName: "user.none"},
			[]want{xattrIs("docs/a", "user.none", "")}},
		{"replace file creates", []change.Change{mkdirDocs},
			change.Change{Op: change.OpReplaceFile, Path: "docs/cfg", Data: []byte("k=v\n"), Mode: 0o640, MTime: t1},
			[]want{fileIs("docs/cfg", "k=v\n", 0o640), mtimeIs("docs/cfg", t1)}},
		{"replace file keeps owner and xattrs", []change.Change{mkdirDocs, createA, writeA,
			{Op: change.OpChown, Path: "docs/a", UID: 42, GID: 43},
			{Op: change.OpSetXattr, Path: "docs/a", XattrName: "user.tag", XattrValue: []byte("kept")}},
			change.Change{Op: change.OpReplaceFile, Path: "docs/a", Data: []byte("new"), Mode: 0o4711, MTime: t2},
			[]want{fileIs("docs/a", "new", 0o4711), mtimeIs("docs/a", t2), xattrIs("docs/a", "user.tag", "kept"), rootOnly(ownerIs("docs/a", 42, 43))}},
		{"replace file of a hard-linked file keeps the link", []change.Change{mkdirDocs, createA, writeA, {Op: change.OpLink, Path: "docs/a", NewPath: "b"}},
			change.Change{Op: change.OpReplaceFile, Path: "docs/a", Data: []byte("short"), Mode: 0o600, MTime: t1},
			[]want{sameFile("docs/a", "b", 2), fileIs("b", "short", 0o600), mtimeIs("b", t1)}},
		{"replace file replaces a symlink", []change.Change{mkdirDocs, createA, {Op: change.OpSymlink, Path: "l", Target: "docs/a"}},
			change.Change{Op: change.OpReplaceFile, Path: "l", Data: []byte("own"), Mode: 0o644},
			[]want{fileIs("l", "own", 0o644), fileIs("docs/a", "", 0o644)}},
	}
}

func TestOps(t *testing.T) {
	for _, tc := range opCases() {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t)
			a := openT(t, tr.target)
			cs := numbered(append(tc.setup, tc.c)...)
			applyAll(t, a, cs)
			for _, w := range tc.wants {
				w(t, tr.target)
			}
			if got := a.LastApplied(); got != uint64(len(cs)) {
				t.Errorf("LastApplied = %d, want %d", got, len(cs))
			}
			if left := tempFiles(t, tr.target); len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
			tr.checkOutside(t)
		})
	}
}

// reapply applies c again although its Seq was recorded, as after a crash
// between applying it and recording it.
func reapply(a *Applier, c change.Change) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.do(&c, true); err != nil {
		return wrap(&c, err)
	}
	return a.commit()
}

// TestApplyTwice applies the change of every op case twice: the second
// time must leave the tree as the first did.
func TestApplyTwice(t *testing.T) {
	for _, tc := range opCases() {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t)
			a := openT(t, tr.target)
			cs := numbered(append(tc.setup, tc.c)...)
			applyAll(t, a, cs)
			once := snapshot(t, tr.target, false)
			if err := reapply(a, cs[len(cs)-1]); err != nil {
				t.Fatalf("second time: %v", err)
			}
			if twice := snapshot(t, tr.target, false); !reflect.DeepEqual(twice, once) {
				t.Errorf("applying again changed the tree:\n%s", diff(twice, once))
			}
			for _, w := range tc.wants {
				w(t, tr.target)
			}
		})
	}
}

func TestSkipsApplied(t *testing.T) {
	tr := newTree(t)
	a := openT(t, tr.target)
	applyAll(t, a, numbered(mkdirDocs, createA, writeA))
	// Seq 2 again, now with other content: already applied, so skipped.
	if err := a.Apply(change.Change{Seq: 2, Op: change.OpWrite, Path: "docs/a", Data: []byte("XXXXX")}); err != nil {
		t.Fatal(err)
	}
	fileIs("docs/a", "hello world", 0o644)(t, tr.target)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := openT(t, tr.target)
	if got := b.LastApplied(); got != 3 {
		t.Fatalf("LastApplied after reopening = %d, want 3", got)
	}
	if err := b.Apply(change.Change{Seq: 3, Op: change.OpRemove, Path: "docs/a"}); err != nil {
		t.Fatal(err)
	}
	fileIs("docs/a", "hello world", 0o644)(t, tr.target)
}

func TestErrorsCarryContext(t *testing.T) {
	tr := newTree(t)
	a := openT(t, tr.target)
	err := a.Apply(change.Change{Seq: 9, Op: change.OpRename, Path: "missing", NewPath: "x"})
	var e *Error
	if !errors.As(err, &e) || e.Seq != 9 || e.Path != "missing" || e.NewPath != "x" || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error %v (%#v): want an *Error for seq 9 wrapping ENOENT", err, e)
	}
	if want := "apply rename missing -> x (seq 9): "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("message %q, want it to start with %q", err, want)
	}
	if a.LastApplied() != 0 {
		t.Errorf("LastApplied = %d after a failure, want 0", a.LastApplied())
	}
	for _, tc := range []struct {
		c  change.Change
		ok bool
	}{
		{change.Change{Seq: 1, Op: change.OpWrite, Path: "d"}, true},
		{change.Change{Seq: 2, Op: change.OpWrite, Path: "d/x"}, false}, // d is a file
		{change.Change{Seq: 3, Op: change.OpMkdir, Path: "e"}, true},
		{change.Change{Seq: 4, Op: change.OpWrite, Path: "e"}, false},               // e is a directory
		{change.Change{Seq: 5, Op: change.OpRemove, Path: "."}, false},              // invalid path
		{change.Change{Seq: 0, Op: change.OpWrite, Path: "z"}, false},               // seq 0
		{change.Change{Seq: 6, Op: change.OpChmod, Path: "nothing"}, false},         // missing
		{change.Change{Seq: 7, Op: change.OpLink, Path: "e", NewPath: "e2"}, false}, // a directory
		{change.Change{Seq: 8, Op: change.OpRemove, Path: "e"}, true},
	} {
		err := a.Apply(tc.c)
		if (err == nil) != tc.ok {
			t.Errorf("%v %s: unexpected result %v", tc.c.Op, tc.c.Path, err)
		}
		if !tc.ok && errors.Is(err, ErrEscape) {
			t.Errorf("%v %s: %v is not an escape", tc.c.Op, tc.c.Path, err)
		}
	}
	if a.LastApplied() != 8 {
		t.Errorf("LastApplied = %d, want 8", a.LastApplied())
	}
}

func TestOpenLocksAndRestricts(t *testing.T) {
	tr := newTree(t)
	if err := os.Chmod(tr.target, 0o777); err != nil {
		t.Fatal(err)
	}
	a := openT(t, tr.target)
	permIs(".", 0o700)(t, tr.target)
	if _, err := Open(tr.target, Options{}); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open: %v, want ErrInUse", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(change.Change{Seq: 1, Op: change.OpMkdir, Path: "x"}); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Apply after Close: %v", err)
	}
	b := openT(t, tr.target)
	_ = b
}

func TestStateSurvivesATornRecord(t *testing.T) {
	tr := newTree(t)
	a := openT(t, tr.target)
	applyAll(t, a, numbered(mkdirDocs, createA, writeA)) // records 1, 2, 3 alternating slots
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// Seq 3 went to slot 0 (1→0, 2→1, 3→0). Tear it: the reader must fall
	// back to seq 2 in slot 1, and replaying 3 is harmless.
	p := filepath.Join(tr.target, StateDir, stateName)
	st, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if seq, ok := parseRecord(st[:recordLen]); !ok || seq != 3 {
		t.Fatalf("slot 0 holds %d (%v), want 3", seq, ok)
	}
	st[10] ^= 0xff
	if err := os.WriteFile(p, st, 0o600); err != nil {
		t.Fatal(err)
	}
	b := openT(t, tr.target)
	if got := b.LastApplied(); got != 2 {
		t.Fatalf("LastApplied with a torn newest record = %d, want 2", got)
	}
	applyAll(t, b, numbered(mkdirDocs, createA, writeA))
	fileIs("docs/a", "hello world", 0o644)(t, tr.target)
	if got := b.LastApplied(); got != 3 {
		t.Fatalf("LastApplied = %d, want 3", got)
	}
	if !bytes.Equal(st[:4], []byte(stateMagic)) {
		t.Fatal("state file does not start with its magic")
	}
}

// TestOpenRefusesPlantedState: a state directory or file that is a symlink
// would make the applier write its state elsewhere.
func TestOpenRefusesPlantedState(t *testing.T) {
	tr := newTree(t)
	if err := os.Symlink(tr.outside, filepath.Join(tr.target, StateDir)); err != nil {
		t.Fatal(err)
	}
	if a, err := Open(tr.target, Options{}); !errors.Is(err, ErrEscape) {
		if a != nil {
			_ = a.Close()
		}
		t.Fatalf("Open with %s a symlink: %v, want ErrEscape", StateDir, err)
	}
	tr.checkOutside(t)

	tr = newTree(t)
	if err := os.Mkdir(filepath.Join(tr.target, StateDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(tr.outside, "sentinel"), filepath.Join(tr.target, StateDir, stateName)); err != nil {
		t.Fatal(err)
	}
	if a, err := Open(tr.target, Options{}); !errors.Is(err, ErrEscape) {
		if a != nil {
			_ = a.Close()
		}
		t.Fatalf("Open with the state file a symlink: %v, want ErrEscape", err)
	}
	tr.checkOutside(t)
}
