package apply

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/internal/xattr"
)

// This file holds what the rewind journal (package rewind) needs beyond
// the replication stream: applying its undo steps, which are changes that
// belong to no stream, and restoring a regular file from a kept copy.

// otherNames reports whether the file st describes has other names in the
// tree than the one being changed, leaving out names the caller holds
// outside it (Options.HeldLinks).
func (a *Applier) otherNames(st *unix.Stat_t) bool {
	n := uint64(st.Nlink)
	if a.heldLinks != nil {
		n -= min(n, a.heldLinks(st.Dev, st.Ino))
	}
	return n > 1
}

// ApplySteps applies changes that are not part of the replication stream
// (the undo steps of a rewind): each must have Seq 0, and none is recorded
// in LastApplied or skipped because of it. The per-op contract, the
// confinement and the durability are those of ApplyBatch: ApplySteps
// returns once every step is durable. Steps are applied one at a time
// (no whole-file runs), so the temporary name they share, derived from
// Seq 0, is never used by two of them at once; a crash leaves at most one
// such name per directory, which the next step in that directory reuses.
// ApplyBatch keeps refusing Seq 0, so that a stream cannot pass changes by
// LastApplied.
func (a *Applier) ApplySteps(cs []change.Change) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.usable(); err != nil {
		return err
	}
	for i := range cs {
		if err := a.applyStep(&cs[i]); err != nil {
			if a.broken == nil {
				if cerr := a.commit(); cerr != nil {
					err = errors.Join(err, cerr)
				}
			}
			return err
		}
	}
	return a.commit()
}

func (a *Applier) usable() error {
	if a.closed {
		return fmt.Errorf("apply to %s: %w", a.target, fs.ErrClosed)
	}
	return a.broken
}

func (a *Applier) applyStep(c *change.Change) error {
	if c.Seq != 0 {
		return wrap(c, fmt.Errorf("%w: a step has seq %d, want 0", change.ErrInvalid, c.Seq))
	}
	step := *c
	step.Seq = 1 // check refuses seq 0, which only the stream must not use
	if err := check(&step); err != nil {
		return wrap(c, err)
	}
	if !destructive(c.Op) {
		err := a.do(c, false)
		if !errors.Is(err, errNeedCommit) {
			if err != nil {
				return wrap(c, err)
			}
			return nil
		}
	}
	if err := a.commit(); err != nil {
		return err
	}
	if err := a.do(c, true); err != nil {
		return wrap(c, err)
	}
	return a.commit()
}

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value []byte
}

// FileMeta is what RestoreFile sets on the restored file besides its
// content. The owner is set only when owners are preserved (Options.Owner).
type FileMeta struct {
	Mode     uint32 // permission bits, setuid, setgid, sticky
	UID, GID uint32
	MTime    int64 // Unix nanoseconds
	Xattrs   []Xattr
}

// restoreTemp is the temporary name RestoreFile builds under; one restore
// runs at a time, and the next one in the directory removes a leftover.
const restoreTemp = tempPrefix + "restore"

// RestoreFile makes the regular file at path hold exactly the content of
// src (from its start to its end) and meta (mode, owner, mtime and exactly
// the extended attributes listed), and returns once that is durable. src
// is only read: the rewind journal restores from kept copies it must use
// again. Like OpReplaceFile, the new file is built under a temporary name
// and renamed over path, except that a file with other names in the tree
// is rewritten in place so that they keep sharing it. A directory at path
// is an error; a symlink or special file is replaced. Applying it again
// gives the same file. path is confined as every change's path is.
func (a *Applier) RestoreFile(path string, src *os.File, meta FileMeta) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.usable(); err != nil {
		return err
	}
	c := &change.Change{Seq: 1, Op: change.OpReplaceFile, Path: path}
	if err := check(c); err != nil {
		return fmt.Errorf("restore %s: %w", path, err)
	}
	if err := a.restore(path, src, &meta); err != nil {
		err = noSpace(err)
		if a.broken == nil {
			if cerr := a.commit(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
		return fmt.Errorf("restore %s: %w", path, err)
	}
	return a.commit()
}

func (a *Applier) restore(path string, src *os.File, meta *FileMeta) error {
	var sst unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &sst); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	dir, base, err := a.parent(path)
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
	case ok && isType(&st, unix.S_IFREG) && a.otherNames(&st):
		fd, err := openWritable(dir.fd, base, &st)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := copyContent(int(src.Fd()), fd, sst.Size, false); err != nil {
			return err
		}
		if err := ftruncate(fd, sst.Size); err != nil {
			return err
		}
		if err := a.setMeta(fd, dir.fd, base, meta); err != nil {
			return err
		}
		return a.pending.add(fd, syncMeta)
	}
	if err := removeStale(dir.fd, restoreTemp); err != nil {
		return err
	}
	fd, err := openat2(dir.fd, restoreTemp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return resolveErr(restoreTemp, err)
	}
	done := false
	defer func() {
		_ = unix.Close(fd)
		if !done {
			_ = unix.Unlinkat(dir.fd, restoreTemp, 0)
		}
	}()
	if err := copyContent(int(src.Fd()), fd, sst.Size, true); err != nil {
		return err
	}
	if err := a.setMeta(fd, dir.fd, restoreTemp, meta); err != nil {
		return err
	}
	if err := unix.Fsync(fd); err != nil {
		return os.NewSyscallError("fsync", err)
	}
	if err := unix.Renameat(dir.fd, restoreTemp, dir.fd, base); err != nil {
		return os.NewSyscallError("renameat", err)
	}
	done = true
	return a.pending.add(dir.fd, syncMeta)
}

// setMeta gives fd, named base in dir, the owner, mode, attributes and
// mtime of meta; the mtime last, as the others do not move it.
func (a *Applier) setMeta(fd, dir int, base string, meta *FileMeta) error {
	if a.preserveOwner {
		// Before the mode: chown clears setuid and setgid.
		if err := unix.Fchown(fd, int(meta.UID), int(meta.GID)); err != nil {
			return os.NewSyscallError("fchown", err)
		}
	}
	if err := fchmod(fd, meta.Mode&0o7777); err != nil {
		return err
	}
	names, err := xattr.Read(func(b []byte) (int, error) { return unix.Flistxattr(fd, b) })
	if err != nil {
		return os.NewSyscallError("flistxattr", err)
	}
	keep := map[string]bool{}
	for _, x := range meta.Xattrs {
		keep[x.Name] = true
		if err := unix.Fsetxattr(fd, x.Name, x.Value, 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", x.Name, os.NewSyscallError("fsetxattr", err))
		}
	}
	for name := range bytes.SplitSeq(names, []byte{0}) {
		if len(name) == 0 || keep[string(name)] {
			continue
		}
		if err := unix.Fremovexattr(fd, string(name)); err != nil && !errors.Is(err, unix.ENODATA) {
			return fmt.Errorf("remove xattr %s: %w", name, os.NewSyscallError("fremovexattr", err))
		}
	}
	return setMTime(dir, base, meta.MTime)
}

// copyContent copies the first n bytes of from to the start of to: by
// cloning the whole file when the filesystem shares extents (only into a
// new, empty file), else with copy_file_range, else by reading and
// writing.
func copyContent(from, to int, n int64, fresh bool) error {
	if fresh && n > 0 {
		if err := unix.IoctlFileClone(to, from); err == nil {
			return nil
		}
	}
	var off int64
	for off < n {
		src, dst := off, off
		m, err := unix.CopyFileRange(from, &src, to, &dst, int(min(n-off, 1<<30)), 0)
		if err != nil || m == 0 {
			break // not supported across these files: copy by hand below
		}
		off += int64(m)
	}
	if off >= n {
		return nil
	}
	buf := make([]byte, min(n-off, 1<<20))
	for off < n {
		b := buf[:min(int64(len(buf)), n-off)]
		if _, err := fdReaderAt(from).ReadAt(b, off); err != nil {
			return fmt.Errorf("read the kept copy at offset %d: %w", off, err)
		}
		if err := pwriteAll(to, b, off); err != nil {
			return err
		}
		off += int64(len(b))
	}
	return nil
}
