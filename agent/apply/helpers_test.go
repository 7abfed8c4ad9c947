package apply

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/change"

	"github.com/holdfast/holdfast/internal/testfs"
)

// tree is a test layout: base/target is the replica, base/outside holds a
// sentinel that no change may touch.
type tree struct {
	base, target, outside string
	outsideBefore         map[string]entry
}

func newTree(t testing.TB) *tree {
	return newTreeIn(t, t.TempDir())
}

func newTreeIn(t testing.TB, base string) *tree {
	tr := &tree{base: base, target: filepath.Join(base, "target"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{tr.base, tr.target, tr.outside, filepath.Join(tr.outside, "dir")} {
		if err := os.Mkdir(d, 0o755); err != nil && !(d == base && errors.Is(err, fs.ErrExist)) {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(tr.outside, "sentinel"), []byte("do not touch"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tr.outside, "dir", "inner"), []byte("nor this"), 0o600); err != nil {
		t.Fatal(err)
	}
	tr.outsideBefore = snapshot(t, tr.outside, true)
	return tr
}

// checkOutside fails the test if anything outside the target changed.
func (tr *tree) checkOutside(t testing.TB) {
	t.Helper()
	if got := snapshot(t, tr.outside, true); !reflect.DeepEqual(got, tr.outsideBefore) {
		t.Fatalf("outside the target changed:\n got %v\nwant %v", got, tr.outsideBefore)
	}
}

func openT(t testing.TB, target string) *Applier {
	t.Helper()
	a, err := Open(target, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// numbered gives changes Seq 1, 2, ... in order.
func numbered(cs ...change.Change) []change.Change {
	out := make([]change.Change, len(cs))
	for i, c := range cs {
		c.Seq = uint64(i + 1)
		out[i] = c
	}
	return out
}

func applyAll(t testing.TB, a *Applier, cs []change.Change) {
	t.Helper()
	for _, c := range cs {
		if err := a.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
}

// entry is what a snapshot records of one object.
type entry struct {
	Type      string
	Mode      uint32 // permission bits, setuid, setgid, sticky
	UID, GID  uint32
	Size      int64
	Sum       string // of a file's content
	Target    string // of a symlink
	MTime     int64  // non-directories, when asked for
	Nlink     uint64
	LinkGroup string // first path (in walk order) of the same inode
	Xattrs    string // user.* and trusted.*, sorted
}

// snapshot describes every object below root except the state directory.
// Directory times are left out: they change with every entry added,
// including temporary ones.
func snapshot(t testing.TB, root string, mtimes bool) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	inodes := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == StateDir {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		e := entry{Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			e.Type = "dir"
		case unix.S_IFREG:
			e.Type = "file"
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			e.Sum = hex.EncodeToString(sum[:8])
			e.Size = st.Size
			e.Nlink = st.Nlink
		case unix.S_IFLNK:
			e.Type = "symlink"
			e.Mode = 0
			e.Target, err = os.Readlink(p)
			if err != nil {
				return err
			}
		default:
			e.Type = fmt.Sprintf("mode %#o", st.Mode)
		}
		if mtimes && e.Type != "dir" {
			e.MTime = st.Mtim.Nano()
		}
		if e.Type != "dir" {
			if g, ok := inodes[st.Ino]; ok {
				e.LinkGroup = g
			} else {
				inodes[st.Ino] = rel
				e.LinkGroup = rel
			}
		}
		e.Xattrs = xattrs(t, p)
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func xattrs(t testing.TB, p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("llistxattr %s: %v", p, err)
	}
	var kv []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if !strings.HasPrefix(name, "user.") && !strings.HasPrefix(name, "trusted.") {
			continue
		}
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("lgetxattr %s %s: %v", p, name, err)
		}
		kv = append(kv, name+"="+string(v[:m]))
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// diff lists the differences between two snapshots, for failure messages.
func diff(got, want map[string]entry) string {
	var b bytes.Buffer
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !gok:
			fmt.Fprintf(&b, "  missing %s (want %+v)\n", k, w)
		case !wok:
			fmt.Fprintf(&b, "  extra   %s (%+v)\n", k, g)
		case g != w:
			fmt.Fprintf(&b, "  differs %s\n     got %+v\n    want %+v\n", k, g, w)
		}
	}
	return b.String()
}

// tempFiles lists temporary names left anywhere below root.
func tempFiles(t testing.TB, root string) []string {
	t.Helper()
	var left []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), tempPrefix) {
			left = append(left, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return left
}

func isRoot() bool { return os.Geteuid() == 0 }

// tmpfs mounts a tmpfs of size bytes on a new temporary directory. ok is
// false, with the reason, when this process may not mount.
func tmpfs(t testing.TB, size int) (dir string, ok bool, why error) {
	t.Helper()
	dir = t.TempDir()
	if err := testfs.TryTmpfs(t, dir, strconv.Itoa(size)); err != nil {
		return dir, false, err
	}
	return dir, true, nil
}

// fastDir is a directory for tests that apply thousands of changes: a
// tmpfs when one can be mounted, where fsync costs nothing, else an
// ordinary temporary directory. The code paths are the same.
func fastDir(t testing.TB) string {
	t.Helper()
	dir, ok, why := tmpfs(t, 256<<20)
	if !ok {
		t.Logf("using the disk (%v)", why)
	}
	return dir
}
