package treesync

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/apply"
)

func TestStateDirIsTheAppliers(t *testing.T) {
	if StateDir != apply.StateDir {
		t.Fatalf("StateDir %q, apply.StateDir %q", StateDir, apply.StateDir)
	}
}

type kindOf struct {
	Path string
	Kind DiffKind
	Link string
}

func kinds(diffs []Difference) []kindOf {
	out := make([]kindOf, 0, len(diffs))
	for _, d := range diffs {
		out = append(out, kindOf{d.Path, d.Kind, d.Link})
	}
	return out
}

// TestCompareTrees makes a replica equal to the master, changes both in
// known ways, and checks that Compare finds exactly those differences: the
// scenarios of TestSync only prove that Compare finds nothing after a
// sync, which a comparison that saw nothing would prove as well.
func TestCompareTrees(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("sets owners: run as root")
	}
	base := t.TempDir()
	m, r := filepath.Join(base, "master"), filepath.Join(base, "replica")
	mkdir(t, base, "master", 0o755)
	mkdir(t, base, "replica", 0o755)
	rp := openReplica(t, r)
	baseTree(t, m)
	write(t, m, "keep/a", []byte("a"), 0o644)
	pass(t, m, rp, nil)

	// Differences, one of each kind (setting the times of the directories
	// whose entries change, so that only the intended ones differ).
	write(t, m, "new/dir/file", []byte("x"), 0o644)          // missing directory, contents implied
	write(t, m, "keep/b", []byte("b"), 0o644)                // missing file
	write(t, r, "extra/deep/file", []byte("x"), 0o644)       // extra directory, all listed
	remove(t, m, "data/empty")                               //
	mkdir(t, m, "data/empty/inside", 0o755)                  // type: file to directory, contents implied
	write(t, m, "docs/readme.txt", []byte("HELLO\n"), 0o644) // content: same size, new mtime
	setMTime(t, m, "docs/readme.txt", ns1+1)                 //
	chmod(t, r, "docs/notes.md", 0o644)                      // metadata: mode
	chown(t, r, "docs/sub", 1, 1)                            // metadata: owner of a directory
	setXattr(t, r, "bin/tool", "user.stray", "x")            // metadata: xattr
	remove(t, m, "abs")                                      //
	symlink(t, m, "/etc/hosts", "abs")                       // metadata: symlink target
	chown(t, m, "abs", 4321, 8765)                           //
	setMTime(t, r, "current", ns1)                           // metadata: symlink mtime
	hardlink(t, m, "keep/a", "keep/a2")                      // missing, a link of keep/a
	remove(t, r, "data/small.link")                          //
	write(t, r, "data/small.link", random(1, 10<<10), 0o644) // link differs: own inode on the replica
	for _, d := range []string{"keep", "data"} {             // directory times
		mt := scanOne(t, m, d)
		setMTime(t, r, d, mt)
	}
	setMTime(t, r, "data/small.link", scanOne(t, m, "data/small.link"))
	setMTime(t, r, "data/small.bin", scanOne(t, m, "data/small.bin"))

	got := kinds(Compare(scan(t, m), scan(t, r)))
	want := []kindOf{
		{"abs", MetadataDiffers, ""},
		{"bin/tool", MetadataDiffers, ""},
		{"current", MetadataDiffers, ""},
		{"data/empty", TypeDiffers, ""},
		{"data/small.link", LinkDiffers, "data/small.bin"},
		{"docs/notes.md", MetadataDiffers, ""},
		{"docs/readme.txt", ContentDiffers, ""},
		{"docs/sub", MetadataDiffers, ""},
		{"extra", ExtraOnReplica, ""},
		{"extra/deep", ExtraOnReplica, ""},
		{"extra/deep/file", ExtraOnReplica, ""},
		{"keep/a2", MissingOnReplica, "keep/a"},
		{"keep/b", MissingOnReplica, ""},
		{"new", MissingOnReplica, ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("differences\n got %v\nwant %v", got, want)
	}
	// keep/a, now linked as keep/a2 on the master, is the first name of
	// its group: it differs in nothing by itself, keep/a2 carries the link.
	pass(t, m, rp, nil)
}

func scanOne(t *testing.T, root, rel string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, rel), &st); err != nil {
		t.Fatal(err)
	}
	return st.Mtim.Nano()
}

func TestCompareEntries(t *testing.T) {
	file := func(p string, size int64) Entry {
		return Entry{Path: p, Type: File, Size: size, Mode: 0o644, MTime: 5, Nlink: 1, Ino: uint64(len(p))}
	}
	dir := func(p string) Entry { return Entry{Path: p, Type: Dir, Mode: 0o755, MTime: 5} }
	unlisted := func(e Entry) Entry { e.Unlisted = true; return e }
	unread := func(e Entry) Entry { e.XattrsUnread = true; return e }
	linked := func(e Entry, ino uint64) Entry { e.Ino, e.Nlink = ino, 2; return e }
	tests := []struct {
		name            string
		master, replica []Entry
		opts            CompareOptions
		want            []kindOf
	}{
		{"equal", []Entry{dir("a"), file("a/f", 1)}, []Entry{file("a/f", 1), dir("a")}, CompareOptions{}, []kindOf{}},
		{"missing directory is one difference",
			[]Entry{dir("a"), dir("a/b"), file("a/b/f", 1), file("a-x", 1), file("a/g", 1)}, []Entry{file("a-x", 1)},
			CompareOptions{}, []kindOf{{"a", MissingOnReplica, ""}}},
		{"extra directory is listed whole",
			nil, []Entry{dir("a"), dir("a/b"), file("a/b/f", 1)},
			CompareOptions{}, []kindOf{{"a", ExtraOnReplica, ""}, {"a/b", ExtraOnReplica, ""}, {"a/b/f", ExtraOnReplica, ""}}},
		{"type change to a directory implies its contents",
			[]Entry{dir("a"), file("a/f", 1)}, []Entry{file("a", 1)},
			CompareOptions{}, []kindOf{{"a", TypeDiffers, ""}}},
		{"type change from a directory lists the replica's contents",
			[]Entry{file("a", 1)}, []Entry{dir("a"), file("a/f", 1)},
			CompareOptions{}, []kindOf{{"a", TypeDiffers, ""}, {"a/f", ExtraOnReplica, ""}}},
		{"nothing below an unlisted master directory",
			[]Entry{unlisted(dir("a")), file("b", 1)}, []Entry{dir("a"), file("a/f", 1), file("b", 2)},
			CompareOptions{}, []kindOf{{"b", ContentDiffers, ""}}},
		{"nothing below an unlisted replica directory",
			[]Entry{dir("a"), file("a/f", 1)}, []Entry{unlisted(dir("a"))},
			CompareOptions{}, []kindOf{}},
		{"unread xattrs are not compared",
			[]Entry{{Path: "f", Type: File, Xattrs: map[string][]byte{"user.a": nil}}}, []Entry{unread(Entry{Path: "f", Type: File})},
			CompareOptions{}, []kindOf{}},
		{"owner ignored on request",
			[]Entry{{Path: "f", Type: File, UID: 1}}, []Entry{{Path: "f", Type: File, UID: 2}},
			CompareOptions{IgnoreOwner: true}, []kindOf{}},
		{"owner compared",
			[]Entry{{Path: "f", Type: File, UID: 1}}, []Entry{{Path: "f", Type: File, UID: 2}},
			CompareOptions{}, []kindOf{{"f", MetadataDiffers, ""}}},
		{"symlink mode never compared",
			[]Entry{{Path: "l", Type: Symlink, Target: "x", Mode: 1}}, []Entry{{Path: "l", Type: Symlink, Target: "x"}},
			CompareOptions{}, []kindOf{}},
		{"hard links equal on both sides",
			[]Entry{linked(file("a", 1), 100), linked(file("b", 1), 100)}, []Entry{linked(file("a", 1), 7), linked(file("b", 1), 7)},
			CompareOptions{}, []kindOf{}},
		{"hard link missing on the replica",
			[]Entry{linked(file("a", 1), 100), linked(file("b", 1), 100)}, []Entry{file("a", 1)},
			CompareOptions{}, []kindOf{{"b", MissingOnReplica, "a"}}},
		{"link to an extra path says nothing",
			[]Entry{file("a", 1)}, []Entry{linked(file("a", 1), 7), linked(file("z", 1), 7)},
			CompareOptions{}, []kindOf{{"z", ExtraOnReplica, ""}}},
		{"linked on the replica only",
			[]Entry{file("a", 1), file("b", 1)}, []Entry{linked(file("a", 1), 7), linked(file("b", 1), 7)},
			CompareOptions{}, []kindOf{{"b", LinkDiffers, ""}}},
		{"a link of the master's outside the tree is no group",
			[]Entry{linked(file("a", 1), 100)}, []Entry{file("a", 1)},
			CompareOptions{}, []kindOf{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := kinds(CompareWith(tc.master, tc.replica, tc.opts))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestDifferenceString(t *testing.T) {
	f := &Entry{Path: "f", Type: File, Size: 3, Mode: 0o644, MTime: 0}
	g := &Entry{Path: "f", Type: File, Size: 4, Mode: 0o600, UID: 1, GID: 2, MTime: 1e9,
		Xattrs: map[string][]byte{"user.a": []byte("x")}}
	d := &Entry{Path: "d", Type: Dir}
	l := &Entry{Path: "l", Type: Symlink, Target: "x"}
	for _, tc := range []struct {
		d    Difference
		want string
	}{
		{Difference{Path: "d", Kind: MissingOnReplica, Master: d}, "missing on replica: d (directory, with everything below it)"},
		{Difference{Path: "f", Kind: MissingOnReplica, Master: f, Link: "e"}, "missing on replica: f (file, 3 bytes, a hard link of e)"},
		{Difference{Path: "l", Kind: ExtraOnReplica, Replica: l}, `extra on replica: l (symlink to "x")`},
		{Difference{Path: "f", Kind: TypeDiffers, Master: f, Replica: l}, `type differs: f (master: file, 3 bytes; replica: symlink to "x")`},
		{Difference{Path: "f", Kind: ContentDiffers, Master: f, Replica: g},
			"content differs: f (master: 3 bytes, modified 1970-01-01T00:00:00Z; replica: 4 bytes, modified 1970-01-01T00:00:01Z)"},
		{Difference{Path: "f", Kind: MetadataDiffers, Master: f, Replica: g},
			"metadata differs: f (mode 0644 on master, 0600 on replica; owner 0:0 on master, 1:2 on replica; extended attributes user.a)"},
		{Difference{Path: "l", Kind: MetadataDiffers, Master: l, Replica: &Entry{Path: "l", Type: Symlink, Target: "y", MTime: 1}},
			`metadata differs: l (target "x" on master, "y" on replica; modified 1970-01-01T00:00:00Z on master, 1970-01-01T00:00:00.000000001Z on replica)`},
		{Difference{Path: "f", Kind: LinkDiffers, Master: f, Replica: f, Link: "e"}, "hard links differ: f (master: a hard link of e; replica: not)"},
		{Difference{Path: "f", Kind: LinkDiffers, Master: f, Replica: f}, "hard links differ: f (master: a file of its own; replica: a hard link of other paths)"},
	} {
		if got := tc.d.String(); got != tc.want {
			t.Errorf("\n got %s\nwant %s", got, tc.want)
		}
	}
}

// TestScan: paths, order, what is left out, what is never followed, and
// problems that do not stop the walk.
func TestScan(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	write(t, outside, "secret", []byte("s"), 0o600)
	write(t, root, ".holdfast/applied", []byte("state"), 0o600) // the applier's: left out
	write(t, root, "sub/.holdfast", []byte("data"), 0o600)      // only at the top
	write(t, root, "a-b", []byte("1"), 0o644)
	write(t, root, "a/b", []byte("22"), 0o644)
	hardlink(t, root, "a/b", "a/c")
	symlink(t, root, outside, "out")                        // never followed
	write(t, root, "bad\xffname/inner", []byte("x"), 0o644) // not UTF-8: cannot be replicated
	setXattr(t, root, "a-b", "user.k", "v")
	if os.Geteuid() == 0 {
		setXattr(t, root, "a-b", "trusted.k", "host's own")
	}

	entries, problems, err := Scan(root, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range entries {
		paths = append(paths, e.Path)
	}
	if want := []string{"a", "a-b", "a/b", "a/c", "out", "sub", "sub/.holdfast"}; !reflect.DeepEqual(paths, want) {
		t.Errorf("paths %q, want %q", paths, want)
	}
	if len(problems) != 1 || !strings.HasPrefix(problems[0].Path, "bad") {
		t.Errorf("problems %v, want one for the name that is not UTF-8", problems)
	}
	byName := byPath(entries)
	if e := byName["out"]; e.Type != Symlink || e.Target != outside || e.Size != int64(len(outside)) {
		t.Errorf("out: %+v", e)
	}
	if e := byName["a-b"]; !reflect.DeepEqual(e.Xattrs, map[string][]byte{"user.k": []byte("v")}) {
		t.Errorf("a-b xattrs %q, want user.k only", e.Xattrs)
	}
	if b, c := byName["a/b"], byName["a/c"]; b.ID() != c.ID() || b.Nlink != 2 || b.Size != 2 {
		t.Errorf("a/b %+v and a/c %+v: want one inode with two links", b, c)
	}
	if d := byName["a"]; d.Size != 0 || d.Mode != 0o755 {
		t.Errorf("a: %+v", d)
	}

	entries, _, err = Scan(root, ScanOptions{NoXattrs: true})
	if err != nil {
		t.Fatal(err)
	}
	if e := byPath(entries)["a-b"]; e.Xattrs != nil {
		t.Errorf("NoXattrs: a-b has %q", e.Xattrs)
	}

	if _, _, err := Scan(filepath.Join(root, "missing"), ScanOptions{}); err == nil {
		t.Error("Scan of a missing root succeeded")
	}
}
