package treesync

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/internal/xattr"
)

// EntryType is the kind of object an Entry describes.
type EntryType uint8

const (
	File    EntryType = iota + 1 // regular file
	Dir                          // directory
	Symlink                      // symbolic link, never followed
	Other                        // device, FIFO or socket: compared, never replicated
)

var typeNames = [...]string{"", "file", "directory", "symlink", "special file"}

func (t EntryType) String() string {
	if int(t) < len(typeNames) && t > 0 {
		return typeNames[t]
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// Entry describes one object of a tree, as Scan saw it.
type Entry struct {
	Path   string    // relative to the tree's root, slash-separated, valid for change.ValidPath
	Type   EntryType //
	Size   int64     // files: bytes; symlinks: length of the target; 0 for directories, whose size means nothing portable
	Mode   uint32    // permission bits with setuid, setgid and sticky; 0 for symlinks, which have no mode on Linux
	UID    uint32
	GID    uint32
	MTime  int64  // Unix nanoseconds
	Target string // symlinks: the target, verbatim
	Dev    uint64 // with Ino, identifies the object: hard links share both
	Ino    uint64
	Nlink  uint32
	// Birth is the creation time in Unix nanoseconds, 0 where the
	// filesystem does not record it. Never compared: replicas are born
	// later. It tells change capture a file from a successor that reuses
	// its freed inode number.
	Birth int64
	// Xattrs holds the user.* extended attributes, the namespace the
	// replica's applier can set for any owner; trusted.* and security.*
	// are the hosts' own business. At most MaxXattrs of them are read.
	Xattrs map[string][]byte
	// XattrsUnread says the extended attributes could not all be read, and
	// Unlisted that a directory could not be (wholly) listed; Scan's
	// problems say why. Compare then leaves the unread part alone (the
	// attributes, or everything below the directory), and the planner does
	// not touch it, so that what could not be read is never mistaken for
	// what is absent.
	XattrsUnread bool
	Unlisted     bool
}

// FileID identifies an object within one host: names with the same FileID
// are hard links of one file.
type FileID struct{ Dev, Ino uint64 }

// ID returns the entry's FileID.
func (e *Entry) ID() FileID { return FileID{e.Dev, e.Ino} }

// MaxXattrs bounds the user.* attributes read per entry, so that one
// object cannot make a scan hold unbounded memory; the kernel already
// bounds each value to 64 KiB (change.MaxXattrVal).
const MaxXattrs = 256

// StateDir is the replica applier's state directory (apply.StateDir) at the
// top of a replica. Scan leaves it out of every tree: it is not replicated
// data, and the applier refuses changes naming it.
const StateDir = ".holdfast"

// resolve confines every lookup below a directory descriptor, through no
// symlink: the trees are live, and a directory swapped for a symlink
// between two calls must not lead the planner out of the tree.
const resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// openBeneath opens rel below dirfd with the confinement above.
func openBeneath(dirfd int, rel string, flags int) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags) | unix.O_CLOEXEC, Resolve: resolve}
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(dirfd, rel, &how)
		// EAGAIN: the kernel saw a concurrent rename during the walk.
		if (err == unix.EINTR || err == unix.EAGAIN) && tries < 16 {
			continue
		}
		if err != nil {
			return -1, os.NewSyscallError("openat2", err)
		}
		return fd, nil
	}
}

// readEntry describes name in the directory dirfd, without following it,
// as the entry rel. xerr reports extended attributes that could not be
// read (the entry is then XattrsUnread but otherwise valid); err means there
// is no entry.
func readEntry(dirfd int, name, rel string, withXattrs bool) (e Entry, xerr, err error) {
	var st unix.Statx_t
	if err := unix.Statx(dirfd, name, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &st); err != nil {
		return e, nil, os.NewSyscallError("statx", err)
	}
	e = Entry{
		Path:  rel,
		Mode:  uint32(st.Mode) & 0o7777,
		UID:   st.Uid,
		GID:   st.Gid,
		MTime: st.Mtime.Sec*1e9 + int64(st.Mtime.Nsec),
		Dev:   unix.Mkdev(st.Dev_major, st.Dev_minor),
		Ino:   st.Ino,
		Nlink: st.Nlink,
	}
	if st.Mask&unix.STATX_BTIME != 0 {
		e.Birth = st.Btime.Sec*1e9 + int64(st.Btime.Nsec)
	}
	switch uint32(st.Mode) & unix.S_IFMT {
	case unix.S_IFREG:
		e.Type, e.Size = File, int64(st.Size)
	case unix.S_IFDIR:
		e.Type = Dir
	case unix.S_IFLNK:
		e.Type, e.Mode = Symlink, 0
		buf := make([]byte, change.MaxPath+1)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return e, nil, os.NewSyscallError("readlinkat", err)
		}
		if n > change.MaxPath {
			return e, nil, fmt.Errorf("symlink target longer than %d bytes", change.MaxPath)
		}
		e.Target, e.Size = string(buf[:n]), int64(n)
	default:
		e.Type = Other
	}
	if withXattrs {
		if e.Xattrs, xerr = readXattrs(procPath(dirfd, name)); xerr != nil {
			e.XattrsUnread = true
		}
	}
	return e, xerr, nil
}

// procPath names name in the directory dirfd through /proc, for the xattr
// calls, which have no *at form. The kernel resolves /proc/self/fd/N to
// the very directory held, and the l* calls do not follow name itself, so
// this opens nothing: a device's attributes are read without opening the
// device.
func procPath(dirfd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
}

// readXattrs reads the user.* attributes of the object at p (not followed).
// A filesystem without extended attributes has none: that is no error.
func readXattrs(p string) (map[string][]byte, error) {
	list, err := xattr.Read(func(b []byte) (int, error) { return unix.Llistxattr(p, b) })
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list extended attributes: %w", os.NewSyscallError("llistxattr", err))
	}
	var out map[string][]byte
	for name := range strings.SplitSeq(string(list), "\x00") {
		if !strings.HasPrefix(name, "user.") {
			continue
		}
		if len(out) == MaxXattrs {
			return out, fmt.Errorf("more than %d user.* extended attributes", MaxXattrs)
		}
		v, err := xattr.Read(func(b []byte) (int, error) { return unix.Lgetxattr(p, name, b) })
		if errors.Is(err, unix.ENODATA) {
			continue // removed since listed
		}
		if err != nil {
			return out, fmt.Errorf("read extended attribute %s: %w", name, os.NewSyscallError("lgetxattr", err))
		}
		if len(v) > change.MaxXattrVal {
			return out, fmt.Errorf("extended attribute %s of %d bytes; at most %d replicate", name, len(v), change.MaxXattrVal)
		}
		if out == nil {
			out = map[string][]byte{}
		}
		if v == nil {
			v = []byte{}
		}
		out[name] = v
	}
	return out, nil
}
