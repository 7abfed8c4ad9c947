//go:build linux

package capture

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// beneath resolves relative paths below a directory one component at a
// time with openat(O_NOFOLLOW), so that no symlink is followed anywhere on
// the way, not even one pointing inside the root. An event's path names the
// entries it went through when the change happened; if one of them has
// since become a symlink, the path does not name that object any more, and
// following the link would read (and replicate) something else. A path
// through a symlink fails with ELOOP or ENOTDIR, which gone reports as
// vanished. (os.Root, by contrast, follows symlinks that stay inside.)
//
// The root itself is opened by its path for every call rather than held
// open: an open descriptor would keep the filesystem busy for umount, and
// the kernel reports a directory's deletion only once nothing holds it.
type beneath struct {
	root string // absolute
}

func openBeneath(root string) (*beneath, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	b := &beneath{root: abs}
	f, err := b.open("", unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	f.Close()
	return b, nil
}

// Close releases nothing today; it keeps callers honest should beneath
// hold resources again.
func (b *beneath) Close() error { return nil }

// open opens rel ("" for the root itself) with flags; the last component is
// not followed either (O_NOFOLLOW).
func (b *beneath) open(rel string, flags int) (*os.File, error) {
	dirfd, err := openat(unix.AT_FDCWD, b.root, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: b.root, Err: err}
	}
	last := "."
	if rel != "" {
		parts := strings.Split(rel, "/")
		last = parts[len(parts)-1]
		for _, p := range parts[:len(parts)-1] {
			fd, err := openat(dirfd, p, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW)
			unix.Close(dirfd)
			if err != nil {
				return nil, &os.PathError{Op: "openat", Path: rel, Err: err}
			}
			dirfd = fd
		}
	}
	fd, err := openat(dirfd, last, flags|unix.O_NOFOLLOW)
	unix.Close(dirfd)
	if err != nil {
		return nil, &os.PathError{Op: "openat", Path: rel, Err: err}
	}
	return os.NewFile(uintptr(fd), rel), nil
}

func openat(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags|unix.O_CLOEXEC, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// statx returns the state of rel itself (a symlink is not followed).
func (b *beneath) statx(rel string) (*unix.Statx_t, error) {
	f, err := b.open(rel, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return statxFile(f)
}

// readlink returns the target of the symlink at rel.
func (b *beneath) readlink(rel string) (string, error) {
	f, err := b.open(rel, unix.O_PATH)
	if err != nil {
		return "", err
	}
	defer f.Close()
	// readlinkat with an empty name reads the link an O_PATH descriptor
	// refers to.
	for size := 256; size <= 1<<16; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(int(f.Fd()), "", buf)
		if err != nil {
			return "", &os.PathError{Op: "readlinkat", Path: rel, Err: err}
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
	return "", &os.PathError{Op: "readlinkat", Path: rel, Err: unix.ENAMETOOLONG}
}

// readDirNames lists the directory at rel.
func (b *beneath) readDirNames(rel string) ([]string, error) {
	f, err := b.open(rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// ident is a file's identity over time: device and inode number, and the
// birth time, because a freed inode number is handed to the next new file
// at once.
type ident struct {
	dev, ino uint64
	birth    int64 // nanoseconds; 0 when the filesystem does not record it
}

func identOf(stx *unix.Statx_t) ident {
	id := ident{dev: unix.Mkdev(stx.Dev_major, stx.Dev_minor), ino: stx.Ino}
	if stx.Mask&unix.STATX_BTIME != 0 {
		id.birth = nanos(stx.Btime)
	}
	return id
}

func statxFile(f *os.File) (*unix.Statx_t, error) {
	var stx unix.Statx_t
	err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW,
		unix.STATX_BASIC_STATS|unix.STATX_BTIME, &stx)
	if err != nil {
		return nil, fmt.Errorf("statx %s: %w", f.Name(), err)
	}
	return &stx, nil
}

func nanos(ts unix.StatxTimestamp) int64 { return ts.Sec*1e9 + int64(ts.Nsec) }

// fileMode converts a statx mode to an fs.FileMode, as os.Lstat would.
func fileMode(m uint16) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	}
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

func statxTime(ts unix.StatxTimestamp) time.Time { return time.Unix(ts.Sec, int64(ts.Nsec)) }
