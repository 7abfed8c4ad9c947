package apply

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/internal/beneath"
)

// openat2 opens name below dirfd, never through a symlink nor out of it
// (package beneath): symlink targets in a replica are the master's data;
// following one, even to a place inside the tree, would write where the
// master did not. mode is used only with O_CREAT.
func openat2(dirfd int, name string, flags int, mode uint32) (int, error) {
	return beneath.Open(dirfd, name, flags, mode)
}

// resolveErr marks the errors by which openat2 refuses a path as escapes:
// ELOOP for a symlink on the way, EXDEV for a path leaving the root.
func resolveErr(name string, err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
		return fmt.Errorf("%w: %q goes through a symlink or leaves the root: %w", ErrEscape, name, err)
	}
	return fmt.Errorf("resolve %q: %w", name, err)
}

// dirRef is an open directory in the tree: the root, or one the op opened
// and must close.
type dirRef struct {
	fd    int
	owned bool
}

func (d dirRef) close() {
	if d.owned {
		_ = unix.Close(d.fd)
	}
}

// parent opens the directory holding p and returns it with p's last
// component. p is a checked replication path (see check).
func (a *Applier) parent(p string) (dirRef, string, error) {
	dir, base := path.Split(p)
	if dir == "" {
		return dirRef{fd: a.root}, base, nil
	}
	dir = dir[:len(dir)-1]
	fd, err := openat2(a.root, dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return dirRef{}, "", resolveErr(dir, err)
	}
	return dirRef{fd: fd, owned: true}, base, nil
}

// lstat describes base in dir without following it. ok is false if it
// does not exist.
func lstat(dir int, base string) (st unix.Stat_t, ok bool, err error) {
	err = unix.Fstatat(dir, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return st, false, nil
	}
	if err != nil {
		return st, false, os.NewSyscallError("fstatat", err)
	}
	return st, true, nil
}

func isType(st *unix.Stat_t, t uint32) bool { return st.Mode&unix.S_IFMT == t }

// openNode opens the regular file or directory base in dir, read-only and
// without following a symlink, and checks it is the object lstat saw.
func openNode(dir int, base string, st *unix.Stat_t) (int, error) {
	// No O_NOFOLLOW: with O_DIRECTORY it turns a symlink into ENOTDIR,
	// while RESOLVE_NO_SYMLINKS already refuses one with ELOOP.
	flags := unix.O_RDONLY | unix.O_NONBLOCK
	if isType(st, unix.S_IFDIR) {
		flags |= unix.O_DIRECTORY
	}
	return openChecked(dir, base, st, flags)
}

// openWritable opens the regular file st describes for writing in place,
// never through a symlink, and checks it is still that file.
func openWritable(dir int, base string, st *unix.Stat_t) (int, error) {
	return openChecked(dir, base, st, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK)
}

func openChecked(dir int, base string, st *unix.Stat_t, flags int) (int, error) {
	fd, err := openat2(dir, base, flags, 0)
	if err != nil {
		return -1, resolveErr(base, err)
	}
	if err := sameNode(fd, st); err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// sameNode checks that fd is the object st describes. Nothing but this
// applier writes the tree, so a mismatch means the tree is being changed
// behind its back; stop rather than act on the wrong object.
func sameNode(fd int, st *unix.Stat_t) error {
	var got unix.Stat_t
	if err := unix.Fstat(fd, &got); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	if got.Dev != st.Dev || got.Ino != st.Ino {
		return fmt.Errorf("object changed while being opened (is something else writing the replica?)")
	}
	return nil
}

// tempName is the temporary name of the object change seq builds. It is
// derived from seq so that the replay of a change finds its own leftover.
func tempName(seq uint64) string { return tempPrefix + strconv.FormatUint(seq, 10) }

// removeStale removes a leftover temporary name from an earlier, crashed
// attempt at the same change.
func removeStale(dir int, name string) error {
	if err := unix.Unlinkat(dir, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return os.NewSyscallError("unlinkat", err)
	}
	return nil
}

// procPath names base in the directory dir through /proc, for the few
// calls with no *at form that does not follow symlinks (lsetxattr,
// lremovexattr). It is not a path in the tree: the kernel resolves the
// /proc/self/fd entry to the very directory we hold, and base is a single
// checked component that the l* call does not follow.
func procPath(dir int, base string) string {
	return "/proc/self/fd/" + strconv.Itoa(dir) + "/" + base
}
