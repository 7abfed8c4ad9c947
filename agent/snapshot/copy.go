package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/internal/xattr"
)

// cloneChoice remembers whether FICLONE works between the trees of a
// store, decided on the first file with content.
type cloneChoice struct {
	mu      sync.Mutex
	decided bool
	reflink bool
}

func (cc *cloneChoice) tryReflink() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return !cc.decided || cc.reflink
}

func (cc *cloneChoice) decide(reflink bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if !cc.decided {
		cc.decided, cc.reflink = true, reflink
	}
}

type inode struct{ dev, ino uint64 }

// copier copies one tree, keeping everything the replica holds: content,
// modes with setuid/setgid/sticky, owners (as root), times to the
// nanosecond, extended attributes, symlinks verbatim, hard links as hard
// links, holes. The source is walked by file descriptor and never through a
// symlink.
type copier struct {
	ctx      context.Context
	clone    *cloneChoice
	dstRoot  string
	skipTop  string // name left out at the top of the source ("" for none)
	progress func(files, bytes int64)

	links  map[inode]string // first copied name (relative) of a multiply-linked inode
	files  int64
	bytes  int64
	cloned bool // some file's content was cloned
	copied bool // some file's content was copied rather than cloned
	owners bool
}

// copyTree copies directory src into dst, which must not exist yet.
func (c *copier) copyTree(src, dst string) error {
	c.owners = os.Geteuid() == 0
	s, err := os.OpenFile(src, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer s.Close()
	if err := os.Mkdir(dst, 0o700); err != nil {
		return noSpace(fmt.Errorf("create %s: %w", dst, err))
	}
	d, err := os.OpenFile(dst, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dst, err)
	}
	defer d.Close()
	if err := c.copyDir(s, d, "", true); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(s.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", src, err)
	}
	if err := c.setMeta(int(s.Fd()), int(d.Fd()), &st, "."); err != nil {
		return err
	}
	if c.progress != nil {
		c.progress(c.files, c.bytes)
	}
	return nil
}

func (c *copier) copyDir(src, dst *os.File, rel string, top bool) error {
	names, err := src.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read directory %q: %w", rel, err)
	}
	sfd, dfd := int(src.Fd()), int(dst.Fd())
	for _, name := range names {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		if top && name == c.skipTop {
			continue
		}
		r := filepath.Join(rel, name)
		var st unix.Stat_t
		if err := unix.Fstatat(sfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed since the directory was read: not in this point in time
			}
			return fmt.Errorf("stat %q: %w", r, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := c.subdir(sfd, dfd, name, r); err != nil {
				return err
			}
			continue
		}
		if st.Nlink > 1 {
			if first, ok := c.links[inode{st.Dev, st.Ino}]; ok {
				if err := unix.Linkat(unix.AT_FDCWD, filepath.Join(c.dstRoot, first), dfd, name, 0); err != nil {
					return noSpace(fmt.Errorf("link %q to %q: %w", r, first, err))
				}
				continue
			}
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			err = c.file(sfd, dfd, name, r)
		case unix.S_IFLNK:
			err = c.symlink(sfd, dfd, name, r, &st)
		default: // fifo, socket, device
			err = c.special(sfd, dfd, name, r, &st)
		}
		if err != nil {
			return err
		}
		if st.Nlink > 1 {
			c.links[inode{st.Dev, st.Ino}] = r
		}
	}
	return nil
}

func (c *copier) subdir(sfd, dfd int, name, rel string) error {
	fd, err := unix.Openat(sfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil // removed meanwhile
	}
	if err != nil {
		return fmt.Errorf("open %q: %w", rel, err)
	}
	s := os.NewFile(uintptr(fd), rel)
	defer s.Close()
	// Owner-writable until its content is in; its mode comes last.
	if err := unix.Mkdirat(dfd, name, 0o700); err != nil {
		return noSpace(fmt.Errorf("create directory %q: %w", rel, err))
	}
	dfd2, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open copy of %q: %w", rel, err)
	}
	d := os.NewFile(uintptr(dfd2), rel)
	defer d.Close()
	if err := c.copyDir(s, d, rel, false); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %q: %w", rel, err)
	}
	// Times after the content, which changed them.
	return c.setMeta(fd, dfd2, &st, rel)
}

func (c *copier) file(sfd, dfd int, name, rel string) error {
	fd, err := unix.Openat(sfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %q: %w", rel, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %q: %w", rel, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("copy %q: replaced by another kind of object while being copied", rel)
	}
	out, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return noSpace(fmt.Errorf("create copy of %q: %w", rel, err))
	}
	defer unix.Close(out)
	if st.Size > 0 {
		if err := c.content(fd, out, st.Size); err != nil {
			return noSpace(fmt.Errorf("copy %q: %w", rel, err))
		}
	}
	if err := c.setMeta(fd, out, &st, rel); err != nil {
		return err
	}
	c.files++
	c.bytes += st.Size
	if c.progress != nil {
		c.progress(c.files, c.bytes)
	}
	return nil
}

// content gives out the content of in: a clone where the filesystem can,
// else a copy of its data extents.
func (c *copier) content(in, out int, size int64) error {
	if c.clone.tryReflink() {
		err := unix.IoctlFileClone(out, in)
		if err == nil {
			c.clone.decide(true)
			c.cloned = true
			return nil
		}
		if !cloneUnsupported(err) {
			return fmt.Errorf("clone: %w", err)
		}
		c.clone.decide(false)
	}
	c.copied = true
	return copyData(in, out, size)
}

func cloneUnsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY)
}

// copyData copies the data extents of in to out and sets out's size, so a
// sparse file stays sparse.
func copyData(in, out int, size int64) error {
	var off int64
	for off < size {
		data, err := unix.Seek(in, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole up to the end
		}
		if errors.Is(err, unix.EINVAL) {
			data = off // the filesystem cannot tell holes: copy all
		} else if err != nil {
			return fmt.Errorf("seek data: %w", err)
		}
		end, err := unix.Seek(in, data, unix.SEEK_HOLE)
		if err != nil {
			end = size
		}
		end = min(end, size)
		if err := copyRange(in, out, data, end-data); err != nil {
			return err
		}
		off = end
	}
	if err := unix.Ftruncate(out, size); err != nil {
		return fmt.Errorf("set size: %w", err)
	}
	return nil
}

// copyRange copies n bytes at off with copy_file_range, or by read and
// write between filesystems that cannot (EXDEV and the like).
func copyRange(in, out int, off, n int64) error {
	roff, woff := off, off
	for n > 0 {
		k, err := unix.CopyFileRange(in, &roff, out, &woff, int(min(n, 1<<30)), 0)
		if err != nil {
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
				return readWrite(in, out, roff, n)
			}
			return fmt.Errorf("copy_file_range: %w", err)
		}
		if k == 0 {
			return nil // the source shrank while being copied
		}
		n -= int64(k)
	}
	return nil
}

func readWrite(in, out int, off, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		k, err := unix.Pread(in, buf[:min(n, int64(len(buf)))], off)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if k == 0 {
			return nil // the source shrank while being copied
		}
		for w := 0; w < k; {
			m, err := unix.Pwrite(out, buf[w:k], off+int64(w))
			if err != nil {
				return fmt.Errorf("write: %w", err)
			}
			w += m
		}
		off += int64(k)
		n -= int64(k)
	}
	return nil
}

func (c *copier) symlink(sfd, dfd int, name, rel string, st *unix.Stat_t) error {
	target, err := readlinkat(sfd, name)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read link %q: %w", rel, err)
	}
	if err := unix.Symlinkat(target, dfd, name); err != nil {
		return noSpace(fmt.Errorf("create link %q: %w", rel, err))
	}
	return c.setMetaAt(sfd, dfd, name, rel, st)
}

func (c *copier) special(sfd, dfd int, name, rel string, st *unix.Stat_t) error {
	if err := unix.Mknodat(dfd, name, st.Mode&unix.S_IFMT|0o600, int(st.Rdev)); err != nil {
		return noSpace(fmt.Errorf("create %q (mode %#o): %w", rel, st.Mode, err))
	}
	if err := unix.Fchmodat(dfd, name, st.Mode&0o7777, 0); err != nil {
		return fmt.Errorf("chmod %q: %w", rel, err)
	}
	return c.setMetaAt(sfd, dfd, name, rel, st)
}

func readlinkat(dfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		b := make([]byte, size)
		n, err := unix.Readlinkat(dfd, name, b)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(b[:n]), nil
		}
	}
}

// setMeta gives the open object dst the owner, extended attributes, mode
// and times of src. Order matters: chown clears setuid, setgid and file
// capabilities; user.* attributes need write permission, which the final
// mode may not give.
func (c *copier) setMeta(src, dst int, st *unix.Stat_t, rel string) error {
	if c.owners {
		if err := unix.Fchown(dst, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("chown %q: %w", rel, err)
		}
	}
	if err := copyXattrs(
		func(b []byte) (int, error) { return unix.Flistxattr(src, b) },
		func(a string, b []byte) (int, error) { return unix.Fgetxattr(src, a, b) },
		func(a string, v []byte) error { return unix.Fsetxattr(dst, a, v, 0) },
	); err != nil {
		return noSpace(fmt.Errorf("extended attributes of %q: %w", rel, err))
	}
	if err := unix.Fchmod(dst, st.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod %q: %w", rel, err)
	}
	if err := unix.UtimesNanoAt(dst, "", []unix.Timespec{st.Atim, st.Mtim}, unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("set times of %q: %w", rel, err)
	}
	return nil
}

// setMetaAt is setMeta for objects that cannot be opened (symlinks,
// devices, fifos): by name in their directory, never following. Extended
// attributes go by the /proc/self/fd path of the directory, which names it
// without resolving anything again.
func (c *copier) setMetaAt(sfd, dfd int, name, rel string, st *unix.Stat_t) error {
	if c.owners {
		if err := unix.Fchownat(dfd, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %q: %w", rel, err)
		}
	}
	sp := fmt.Sprintf("/proc/self/fd/%d/%s", sfd, name)
	dp := fmt.Sprintf("/proc/self/fd/%d/%s", dfd, name)
	if err := copyXattrs(
		func(b []byte) (int, error) { return unix.Llistxattr(sp, b) },
		func(a string, b []byte) (int, error) { return unix.Lgetxattr(sp, a, b) },
		func(a string, v []byte) error { return unix.Lsetxattr(dp, a, v, 0) },
	); err != nil {
		return noSpace(fmt.Errorf("extended attributes of %q: %w", rel, err))
	}
	if err := unix.UtimesNanoAt(dfd, name, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %q: %w", rel, err)
	}
	return nil
}

func copyXattrs(list func([]byte) (int, error), get func(string, []byte) (int, error), set func(string, []byte) error) error {
	names, err := xattr.Read(list)
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return nil // the source filesystem has none
		}
		return fmt.Errorf("list: %w", err)
	}
	for len(names) > 0 {
		i := 0
		for i < len(names) && names[i] != 0 {
			i++
		}
		a := string(names[:i])
		names = names[min(i+1, len(names)):]
		if a == "" {
			continue
		}
		v, err := xattr.Read(func(b []byte) (int, error) { return get(a, b) })
		if errors.Is(err, unix.ENODATA) {
			continue // removed since listed
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", a, err)
		}
		if err := set(a, v); err != nil {
			return fmt.Errorf("set %s: %w", a, err)
		}
	}
	return nil
}
