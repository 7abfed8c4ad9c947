package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/apply"

	"github.com/holdfast/holdfast/internal/testfs"
)

// digest describes every object below root by relative path: type,
// permission bits with setuid/setgid/sticky, owner, modification time in
// nanoseconds (directories too), size, content checksum, link target,
// extended attributes, and which earlier path it shares its inode with.
// The top apply.StateDir is left out when skipState is set.
func digest(t testing.TB, root string, skipState bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[[2]uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if skipState && rel == apply.StateDir {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		var b strings.Builder
		typ := st.Mode & unix.S_IFMT
		fmt.Fprintf(&b, "type=%o owner=%d:%d mtime=%d", typ, st.Uid, st.Gid, st.Mtim.Nano())
		if typ != unix.S_IFLNK {
			fmt.Fprintf(&b, " mode=%o", st.Mode&0o7777)
		}
		switch typ {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			fmt.Fprintf(&b, " size=%d sum=%s", st.Size, hex.EncodeToString(sum[:8]))
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " target=%q", target)
		}
		if typ != unix.S_IFDIR {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := inodes[key]; ok {
				fmt.Fprintf(&b, " linked=%s", first)
			} else {
				inodes[key] = rel
			}
		}
		fmt.Fprintf(&b, " xattrs=%s", xattrsOf(t, p))
		out[rel] = b.String()
		return nil
	})
	if err != nil {
		t.Fatalf("digest %s: %v", root, err)
	}
	return out
}

func xattrsOf(t testing.TB, p string) string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("llistxattr %s: %v", p, err)
	}
	var names []string
	for _, a := range bytes.Split(buf[:n], []byte{0}) {
		if len(a) > 0 {
			names = append(names, string(a))
		}
	}
	slices.Sort(names)
	var b strings.Builder
	for _, a := range names {
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, a, v)
		if err != nil {
			t.Fatalf("lgetxattr %s %s: %v", p, a, err)
		}
		fmt.Fprintf(&b, "%s=%x;", a, v[:m])
	}
	return b.String()
}

func sameDigest(t testing.TB, what string, got, want map[string]string) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	var diffs []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("missing %s: %s", k, w))
		} else if g != w {
			diffs = append(diffs, fmt.Sprintf("%s:\n   got %s\n  want %s", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("extra %s: %s", k, g))
		}
	}
	slices.Sort(diffs)
	t.Fatalf("%s differs:\n%s", what, strings.Join(diffs, "\n"))
}

func isRoot() bool { return os.Geteuid() == 0 }

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// buildSource fills root (existing) with what a replica holds: files of
// several sizes and modes (setuid, setgid, sticky, read-only directory), a
// sparse file, hard links (of a file and of a symlink), symlinks of every
// kind (relative, absolute, dangling, leading out), a fifo, extended
// attributes, other owners (as root), times to the nanosecond, and the
// applier's state directory, which a snapshot leaves out.
func buildSource(t testing.TB, root string) {
	t.Helper()
	w := func(rel string, data []byte, mode os.FileMode) {
		p := filepath.Join(root, rel)
		must(t, os.WriteFile(p, data, 0o600))
		must(t, os.Chmod(p, mode))
	}
	for _, d := range []string{"a", "a/b", "a/.holdfast", "sticky", "ro", apply.StateDir} {
		must(t, os.Mkdir(filepath.Join(root, d), 0o755))
	}
	w("a/file", randBytes(1, 300<<10), 0o644)
	w("a/suid", []byte("#!/bin/sh\n"), 0o4755)
	w("a/sgid", []byte("x"), 0o2755)
	w("a/b/big", randBytes(2, 3<<20+17), 0o640)
	w("a/.holdfast/kept", []byte("not the top state directory"), 0o600)
	w("empty", nil, 0o600)
	w("sticky/f", []byte("in a sticky directory"), 0o666)
	w("ro/f", []byte("in a read-only directory"), 0o400)
	w(apply.StateDir+"/state", []byte("applier state"), 0o600)

	// sparse: 1 MiB hole, 4 KiB of data, hole up to 4 MiB
	sp, err := os.OpenFile(filepath.Join(root, "sparse"), os.O_WRONLY|os.O_CREATE, 0o644)
	must(t, err)
	_, err = sp.WriteAt(randBytes(3, 4096), 1<<20)
	must(t, err)
	must(t, sp.Truncate(4<<20))
	must(t, sp.Close())

	must(t, os.Link(filepath.Join(root, "a/file"), filepath.Join(root, "a/b/hl1")))
	must(t, os.Link(filepath.Join(root, "a/file"), filepath.Join(root, "hl2")))
	links := map[string]string{"rel-link": "a/file", "abs-link": "/etc/passwd", "dangling": "nowhere/x", "up": "../../outside", "dirlink": "a", "a/b/back": "../../sticky/f"}
	for name, target := range links {
		must(t, os.Symlink(target, filepath.Join(root, name)))
	}
	must(t, os.Link(filepath.Join(root, "rel-link"), filepath.Join(root, "a/rel-link-hard")))
	must(t, unix.Mkfifo(filepath.Join(root, "fifo"), 0o640))

	must(t, unix.Setxattr(filepath.Join(root, "a/file"), "user.note", []byte("hello"), 0))
	must(t, unix.Setxattr(filepath.Join(root, "a"), "user.dir", []byte{0, 1, 2}, 0))
	if isRoot() {
		must(t, unix.Lsetxattr(filepath.Join(root, "rel-link"), "trusted.t", []byte("on a link"), 0))
		must(t, os.Lchown(filepath.Join(root, "a/b/big"), 1234, 5678))
		must(t, os.Lchown(filepath.Join(root, "abs-link"), 4321, 8765))
		must(t, os.Lchown(filepath.Join(root, "a/b"), 1234, 0))
		// chown cleared setuid/setgid; the master's chmod follows it
		must(t, os.Lchown(filepath.Join(root, "a/suid"), 1000, 1000))
		must(t, os.Chmod(filepath.Join(root, "a/suid"), 0o4755))
	}
	must(t, os.Chmod(filepath.Join(root, "sticky"), 0o1777))
	must(t, os.Chmod(filepath.Join(root, "a/b"), 0o2750))

	// Times last, deepest first, so no later change moves them.
	base := time.Date(2024, 3, 1, 12, 0, 0, 123456789, time.UTC)
	var paths []string
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}))
	slices.Reverse(paths)
	for i, p := range paths {
		ts := unix.NsecToTimespec(base.Add(time.Duration(i)*time.Hour + time.Duration(i)).UnixNano())
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
	}
	must(t, os.Chmod(filepath.Join(root, "ro"), 0o500))
}

// xfsDir mounts a new XFS filesystem with reflink on a loop device and
// returns its mount point; it is unmounted when the test ends.
func xfsDir(t testing.TB) string {
	t.Helper()
	if !isRoot() {
		t.Skip("the XFS reflink test needs root to loop-mount a filesystem")
	}
	mkfs, err := exec.LookPath("mkfs.xfs")
	if err != nil {
		t.Skip("mkfs.xfs missing: install xfsprogs: tools/install-deps.sh test")
	}
	img := filepath.Join(t.TempDir(), "xfs.img")
	f, err := os.Create(img)
	must(t, err)
	must(t, f.Truncate(512<<20)) // sparse; XFS wants at least 300 MiB
	must(t, f.Close())
	if out, err := exec.Command(mkfs, "-q", "-m", "reflink=1", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v\n%s", err, out)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("loop mount of an XFS image failed (no loop devices here?): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// tmpfsDir mounts a tmpfs of size bytes and returns its mount point.
func tmpfsDir(t testing.TB, size string) string {
	t.Helper()
	return testfs.Tmpfs(t, t.TempDir(), size)
}

// filesystems are where the create tests run: the ordinary temporary
// directory (ext4 here: copy) and an XFS loop filesystem (reflink).
var filesystems = []struct {
	name   string
	dir    func(testing.TB) string
	method Method
}{
	{name: "copy", dir: func(t testing.TB) string { return t.TempDir() }, method: Copy},
	{name: "reflink", dir: xfsDir, method: Reflink},
}

// newReplica makes a replica tree in base with the store in its state
// directory, as the appliance places it.
func newReplica(t testing.TB, base string) (src string, s *Store) {
	t.Helper()
	src = filepath.Join(base, "replica")
	must(t, os.Mkdir(src, 0o700))
	buildSource(t, src)
	s, err := OpenStore(filepath.Join(src, apply.StateDir, "snapshots"))
	must(t, err)
	return src, s
}

func blocks(t testing.TB, p string) int64 {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	return st.Blocks
}
