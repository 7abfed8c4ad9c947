package apply

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/internal/xattr"
)

// do applies c, a checked change, leaving what it touched in a.pending for
// the next commit. replace says whether c may replace an existing name by
// an object of another type; if it would have to and may not, do returns
// errNeedCommit before changing anything. The per-op contract is in the
// package doc.
func (a *Applier) do(c *change.Change, replace bool) error {
	switch c.Op {
	case change.OpWrite:
		return a.writeFile(c, replace, func(fd int) error { return pwriteAll(fd, c.Data, c.Offset) })
	case change.OpTruncate:
		return a.writeFile(c, replace, func(fd int) error { return ftruncate(fd, c.Size) })
	case change.OpCreate:
		return a.create(c, replace)
	case change.OpMkdir:
		return a.mkdir(c, replace)
	case change.OpSymlink:
		return a.symlink(c)
	case change.OpLink:
		return a.link(c)
	case change.OpRename:
		return a.rename(c)
	case change.OpRemove:
		return a.remove(c)
	case change.OpChmod, change.OpChown, change.OpSetTimes, change.OpSetXattr, change.OpRemoveXattr:
		return a.meta(c)
	case change.OpReplaceFile:
		return a.replaceFile(c)
	case change.OpPatch:
		return a.patchFile(c)
	}
	return fmt.Errorf("%w: op %v", change.ErrInvalid, c.Op)
}

func isDirErr(name string) error { return fmt.Errorf("%q is a directory: %w", name, unix.EISDIR) }

// writeFile runs fill (a write or truncation) on the regular file at
// c.Path, in place. When there is no regular file there, it builds a new
// one holding just what fill gives, and renames it into place.
func (a *Applier) writeFile(c *change.Change, replace bool, fill func(fd int) error) error {
	dir, base, err := a.parent(c.Path)
	if err != nil {
		return err
	}
	defer dir.close()
	st, ok, err := lstat(dir.fd, base)
	switch {
	case err != nil:
		return err
	case ok && isType(&st, unix.S_IFDIR):
		return isDirErr(base)
	case ok && isType(&st, unix.S_IFREG):
		fd, err := openWritable(dir.fd, base, &st)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := fill(fd); err != nil {
			return err
		}
		return a.pending.add(fd, syncData)
	case ok && !replace:
		return errNeedCommit
	}
	// A symlink here is replaced, never written through.
	return a.newFile(dir.fd, base, c.Seq, func(fd int, _ string) error {
		if err := fchmod(fd, 0o600); err != nil {
			return err
		}
		return fill(fd)
	})
}

// newFile builds a regular file under a temporary name in dir with fill,
// syncs it, and renames it over base. On error the temporary name is
// removed.
func (a *Applier) newFile(dir int, base string, seq uint64, fill func(fd int, tmp string) error) (err error) {
	tmp := tempName(seq)
	if err := removeStale(dir, tmp); err != nil {
		return err
	}
	fd, err := openat2(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return resolveErr(tmp, err)
	}
	done := false
	defer func() {
		_ = unix.Close(fd)
		if !done {
			if uerr := unix.Unlinkat(dir, tmp, 0); uerr != nil {
				err = errors.Join(err, fmt.Errorf("remove temporary %s: %w", tmp, os.NewSyscallError("unlinkat", uerr)))
			}
		}
	}()
	if err := fill(fd, tmp); err != nil {
		return err
	}
	// The content must be durable before the name points at it, or a
	// crash could leave the new name on an empty file.
	if err := unix.Fsync(fd); err != nil {
		return os.NewSyscallError("fsync", err)
	}
	if err := unix.Renameat(dir, tmp, dir, base); err != nil {
		return os.NewSyscallError("renameat", err)
	}
	done = true
	return a.pending.add(dir, syncMeta)
}

func (a *Applier) create(c *change.Change, replace bool) error {
	dir, base, err := a.parent(c.Path)
	if err != nil {
		return err
	}
	defer dir.close()
	mode := c.Mode & 0o7777
	st, ok, err := lstat(dir.fd, base)
	switch {
	case err != nil:
		return err
	case ok && isType(&st, unix.S_IFDIR):
		return isDirErr(base)
	case ok && isType(&st, unix.S_IFREG):
		fd, err := openWritable(dir.fd, base, &st)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := ftruncate(fd, 0); err != nil {
			return err
		}
		if err := fchmod(fd, mode); err != nil {
			return err
		}
		// The name may not be durable yet if a crashed process created it.
		if err := a.pending.add(dir.fd, syncMeta); err != nil {
			return err
		}
		return a.pending.add(fd, syncMeta)
	case ok && !replace:
		return errNeedCommit
	}
	return a.newFile(dir.fd, base, c.Seq, func(fd int, _ string) error { return fchmod(fd, mode) })
}

func (a *Applier) mkdir(c *change.Change, replace bool) error {
	dir, base, err := a.parent(c.Path)
	if err != nil {
		return err
	}
	defer dir.close()
	st, ok, err := lstat(dir.fd, base)
	if err != nil {
		return err
	}
	if ok && !isType(&st, unix.S_IFDIR) {
		if !replace {
			return errNeedCommit
		}
		// A directory cannot be renamed over a file; remove the file first.
		// Only a diverged replica gets here, never the replay of a stream.
		if err := unix.Unlinkat(dir.fd, base, 0); err != nil {
			return os.NewSyscallError("unlinkat", err)
		}
		ok = false
	}
	if !ok {
		// 0700 until the exact mode is set below, which the umask cannot
		// spoil.
		if err := unix.Mkdirat(dir.fd, base, 0o700); err != nil {
			return os.NewSyscallError("mkdirat", err)
		}
	}
	fd, err := openat2(dir.fd, base, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return resolveErr(base, err)
	}
	defer unix.Close(fd)
	if err := fchmod(fd, c.Mode&0o7777); err != nil {
		return err
	}
	if err := a.pending.add(fd, syncMeta); err != nil {
		return err
	}
	return a.pending.add(dir.fd, syncMeta)
}

func (a *Applier) symlink(c *change.Change) error {
	dir, base, err := a.parent(c.Path)
	if err != nil {
		return err
	}
	defer dir.close()
	st, ok, err := lstat(dir.fd, base)
	switch {
	case err != nil:
		return err
	case ok && isType(&st, unix.S_IFDIR):
		return isDirErr(base)
	case ok && isType(&st, unix.S_IFLNK):
		if t, err := readlinkat(dir.fd, base); err != nil {
			return err
		} else if t == c.Target {
			return a.pending.add(dir.fd, syncMeta)
		}
	}
	tmp := tempName(c.Seq)
	if err := removeStale(dir.fd, tmp); err != nil {
		return err
	}
	// The target is stored as given: it is data, and never resolved here.
	if err := unix.Symlinkat(c.Target, dir.fd, tmp); err != nil {
		return os.NewSyscallError("symlinkat", err)
	}
	if err := unix.Renameat(dir.fd, tmp, dir.fd, base); err != nil {
		err = os.NewSyscallError("renameat", err)
		if uerr := unix.Unlinkat(dir.fd, tmp, 0); uerr != nil {
			err = errors.Join(err, fmt.Errorf("remove temporary %s: %w", tmp, os.NewSyscallError("unlinkat", uerr)))
		}
		return err
	}
	return a.pending.add(dir.fd, syncMeta)
}

func (a *Applier) link(c *change.Change) error {
	odir, obase, err := a.parent(c.Path)
	if err != nil {
		return err
	}
	defer odir.close()
	ndir, nbase, err := a.parent(c.NewPath)
	if err != nil {
		return err
	}
	defer ndir.close()
	ost, ok, err := lstat(odir.fd, obase)
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("link source %q: %w", c.Path, unix.ENOENT)
	case isType(&ost, unix.S_IFDIR):
		return fmt.Errorf("link source %q is a directory: %w", c.Path, unix.EPERM)
	}
	nst, nok, err := lstat(ndir.fd, nbase)
	switch {
	case err != nil:
		return err
	case nok && nst.Dev == ost.Dev && nst.Ino == ost.Ino:
		// Already linked.
	case nok && isType(&nst, unix.S_IFDIR):
		return isDirErr(nbase)
	case nok:
		// Another object holds the name: link under a temporary name and
		// rename over it, so the name is never missing.
		tmp := tempName(c.Seq)
		if err := removeStale(ndir.fd, tmp); err != nil {
			return err
		}
		// Flags 0: a symlink at Path is linked itself, not followed.
		if err := unix.Linkat(odir.fd, obase, ndir.fd, tmp, 0); err != nil {
			return os.NewSyscallError("linkat", err)
		}
		if err := unix.Renameat(ndir.fd, tmp, ndir.fd, nbase); err != nil {
			err = os.NewSyscallError("renameat", err)
			if uerr := unix.Unlinkat(ndir.fd, tmp, 0); uerr != nil {
				err = errors.Join(err, fmt.Errorf("remove temporary %s: %w", tmp, os.NewSyscallError("unlinkat", uerr)))
			}
			return err
		}
	default:
		if err := unix.Linkat(odir.fd, obase, ndir.fd, nbase, 0); err != nil {
			return os.NewSyscallError("linkat", err)
		}
	}
	// The link count lives in the inode: sync it too.
	if isType(&ost, unix.S_IFREG) {
		fd, err := openNode(odir.fd, obase, &ost)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := a.pending.add(fd, syncMeta); err != nil {
			return err
		}
	} else if err := a.pending.add(ndir.fd, syncFS); err != nil {
		return err
	}
	return a.pending.add(ndir.fd, syncMeta)
}

func (a *Applier) rename(c *change.Change) error {
	odir, obase, err := a.parent(c.Path)
	if err != nil {
		return err
	}
	defer odir.close()
	ndir, nbase, err := a.parent(c.NewPath)
	if err != nil {
		return err
	}
	defer ndir.close()
	_, ok, err := lstat(odir.fd, obase)
	if err != nil {
		return err
	}
	if ok {
		// renameat never follows a symlink at either end: it moves names.
		if err := unix.Renameat(odir.fd, obase, ndir.fd, nbase); err != nil {
			return os.NewSyscallError("renameat", err)
		}
	} else {
		// Source gone: if the new name exists, this rename was applied
		// before a crash; still sync both directories below.
		_, nok, err := lstat(ndir.fd, nbase)
		if err != nil {
			return err
		}
		if !nok {
			return fmt.Errorf("rename source %q: %w", c.Path, unix.ENOENT)
		}
	}
	if err := a.pending.add(odir.fd, syncMeta); err != nil {
		return err
	}
	return a.pending.add(ndir.fd, syncMeta)
}

func (a *Applier) remove(c *change.Change) error {
	dir, base, err := a.parent(c.Path)
	if err != nil {
		return err
	}
	defer dir.close()
	st, ok, err := lstat(dir.fd, base)
	if err != nil {
		return err
	}
	if ok {
		flags := 0
		if isType(&st, unix.S_IFDIR) {
			flags = unix.AT_REMOVEDIR
		}
		if err := unix.Unlinkat(dir.fd, base, flags); err != nil {
			return os.NewSyscallError("unlinkat", err)
		}
	}
	return a.pending.add(dir.fd, syncMeta)
}

// meta applies the metadata ops to the object itself, never to what a
// symlink points at.
func (a *Applier) meta(c *change.Change) error {
	dir, base, err := a.parent(c.Path)
	if err != nil {
		return err
	}
	defer dir.close()
	if c.Op == change.OpChown && !a.preserveOwner {
		return nil // after resolving, so that an escape is reported all the same
	}
	st, ok, err := lstat(dir.fd, base)
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("%q: %w", c.Path, unix.ENOENT)
	case isType(&st, unix.S_IFLNK):
		return a.metaLink(c, dir.fd, base)
	case !isType(&st, unix.S_IFREG) && !isType(&st, unix.S_IFDIR):
		return fmt.Errorf("%q is neither a file, a directory nor a symlink (mode %#o): the replica never creates such objects", c.Path, st.Mode)
	}
	fd, err := openNode(dir.fd, base, &st)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	switch c.Op {
	case change.OpChmod:
		err = fchmod(fd, c.Mode&0o7777)
	case change.OpChown:
		err = os.NewSyscallError("fchown", unix.Fchown(fd, int(c.UID), int(c.GID)))
	case change.OpSetTimes:
		err = setMTime(dir.fd, base, c.MTime)
	case change.OpSetXattr:
		err = os.NewSyscallError("fsetxattr", unix.Fsetxattr(fd, c.XattrName, c.XattrValue, 0))
	case change.OpRemoveXattr:
		if err = unix.Fremovexattr(fd, c.XattrName); errors.Is(err, unix.ENODATA) {
			err = nil // removed before
		}
		err = os.NewSyscallError("fremovexattr", err)
	}
	if err != nil {
		return err
	}
	return a.pending.add(fd, syncMeta)
}

func (a *Applier) metaLink(c *change.Change, dir int, base string) error {
	var err error
	switch c.Op {
	case change.OpChmod:
		return nil // Linux symlinks have no mode of their own
	case change.OpChown:
		err = os.NewSyscallError("fchownat", unix.Fchownat(dir, base, int(c.UID), int(c.GID), unix.AT_SYMLINK_NOFOLLOW))
	case change.OpSetTimes:
		err = setMTime(dir, base, c.MTime)
	case change.OpSetXattr:
		err = os.NewSyscallError("lsetxattr", unix.Lsetxattr(procPath(dir, base), c.XattrName, c.XattrValue, 0))
	case change.OpRemoveXattr:
		if err = unix.Lremovexattr(procPath(dir, base), c.XattrName); errors.Is(err, unix.ENODATA) {
			err = nil
		}
		err = os.NewSyscallError("lremovexattr", err)
	}
	if err != nil {
		return err
	}
	return a.pending.add(dir, syncFS)
}

func (a *Applier) replaceFile(c *change.Change) error {
	dir, base, err := a.parent(c.Path)
	if err != nil {
		return err
	}
	defer dir.close()
	mode := c.Mode & 0o7777
	st, ok, err := lstat(dir.fd, base)
	if err != nil {
		return err
	}
	regular := ok && isType(&st, unix.S_IFREG)
	switch {
	case ok && isType(&st, unix.S_IFDIR):
		return isDirErr(base)
	case regular && a.otherNames(&st):
		return a.rewrite(c, dir.fd, base, &st)
	}
	old := -1
	if regular {
		if old, err = openNode(dir.fd, base, &st); err != nil {
			return err
		}
		defer unix.Close(old)
	}
	return a.newFile(dir.fd, base, c.Seq, func(fd int, tmp string) error {
		if err := pwriteAll(fd, c.Data, 0); err != nil {
			return err
		}
		return a.finishNew(dir.fd, tmp, fd, old, &st, mode, c.MTime)
	})
}

// finishNew gives the new file fd, built under the name tmp in dir to
// replace a file, what OpReplaceFile and OpPatch set: the replaced file's
// owner and extended attributes (old is its descriptor and st its stat, or
// old is -1 when nothing is replaced), mode, and mtime unless it is 0.
func (a *Applier) finishNew(dir int, tmp string, fd, old int, st *unix.Stat_t, mode uint32, mtime int64) error {
	if old >= 0 && a.preserveOwner {
		// Before the mode: chown clears setuid and setgid.
		if err := unix.Fchown(fd, int(st.Uid), int(st.Gid)); err != nil {
			return os.NewSyscallError("fchown", err)
		}
	}
	if err := fchmod(fd, mode); err != nil {
		return err
	}
	if old >= 0 {
		if err := copyXattrs(old, fd); err != nil {
			return err
		}
	}
	if mtime != 0 {
		return setMTime(dir, tmp, mtime)
	}
	return nil
}

// rewrite replaces the content of a file with several links in place, so
// that all its names keep sharing it.
func (a *Applier) rewrite(c *change.Change, dir int, base string, st *unix.Stat_t) error {
	fd, err := openWritable(dir, base, st)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// Write first, then cut: the file is never shorter than both versions.
	if err := pwriteAll(fd, c.Data, 0); err != nil {
		return err
	}
	if err := ftruncate(fd, int64(len(c.Data))); err != nil {
		return err
	}
	if err := fchmod(fd, c.Mode&0o7777); err != nil {
		return err
	}
	if c.MTime != 0 {
		if err := setMTime(dir, base, c.MTime); err != nil {
			return err
		}
	}
	return a.pending.add(fd, syncMeta)
}

func fchmod(fd int, mode uint32) error {
	return os.NewSyscallError("fchmod", unix.Fchmod(fd, mode))
}

func ftruncate(fd int, size int64) error {
	return os.NewSyscallError("ftruncate", unix.Ftruncate(fd, size))
}

// setMTime sets the modification time of base in dir, to the nanosecond,
// without following a symlink. The access time is left as it is: it is
// not replicated.
func setMTime(dir int, base string, mtime int64) error {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(mtime)}
	return os.NewSyscallError("utimensat", unix.UtimesNanoAt(dir, base, ts, unix.AT_SYMLINK_NOFOLLOW))
}

func readlinkat(dir int, base string) (string, error) {
	buf := make([]byte, change.MaxPath+1)
	n, err := unix.Readlinkat(dir, base, buf)
	if err != nil {
		return "", os.NewSyscallError("readlinkat", err)
	}
	return string(buf[:n]), nil
}

// copyXattrs copies every extended attribute of from to to.
func copyXattrs(from, to int) error {
	names, err := xattr.Read(func(b []byte) (int, error) { return unix.Flistxattr(from, b) })
	if err != nil {
		return os.NewSyscallError("flistxattr", err)
	}
	for name := range bytes.SplitSeq(names, []byte{0}) {
		if len(name) == 0 {
			continue
		}
		v, err := xattr.Read(func(b []byte) (int, error) { return unix.Fgetxattr(from, string(name), b) })
		if err != nil {
			return fmt.Errorf("copy xattr %s: %w", name, os.NewSyscallError("fgetxattr", err))
		}
		if err := unix.Fsetxattr(to, string(name), v, 0); err != nil {
			return fmt.Errorf("copy xattr %s: %w", name, os.NewSyscallError("fsetxattr", err))
		}
	}
	return nil
}
