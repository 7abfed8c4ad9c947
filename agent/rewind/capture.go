package rewind

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/apply"
	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/internal/xattr"
)

// inlineMax is the most old content a record holds itself; more goes to a
// blob file.
const inlineMax = 64 << 10

const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

func openat2(dir int, name string, flags int) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags) | unix.O_CLOEXEC, Resolve: resolveFlags}
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(dir, name, &how)
		if (err == unix.EINTR || err == unix.EAGAIN) && tries < 16 {
			continue
		}
		if err != nil {
			return -1, os.NewSyscallError("openat2", err)
		}
		return fd, nil
	}
}

// object is what a path held before a change: nothing, a directory, a
// symlink or a regular file (anything else the replica never creates).
type object struct {
	exists bool
	st     unix.Stat_t
	target string // symlink
	xattrs []apply.Xattr
	dir    int // open parent directory, -1 when the parent is missing
	base   string
}

func (o *object) is(t uint32) bool { return o.exists && o.st.Mode&unix.S_IFMT == t }
func (o *object) close() {
	if o.dir >= 0 {
		_ = unix.Close(o.dir)
		o.dir = -1
	}
}

type inodeKey struct{ dev, ino uint64 }

func (o *object) key() inodeKey { return inodeKey{o.st.Dev, o.st.Ino} }

// capturer reads the pre-state of the paths changes touch, below the
// target's descriptor and never through a symlink, and keeps what undoing
// them needs.
type capturer struct {
	root  int
	blobs int // the blobs directory
	held  func(dev, ino uint64) uint64
	id    uint64 // the record the blobs belong to
	// copyOnly: the unit moves names (a rewind's undo of a rename), so
	// an inode captured at a path may still be in the tree, elsewhere,
	// after the unit: it must be copied, never linked.
	copyOnly bool
	n        int
	made     []madeBlob
}

type madeBlob struct {
	name   string
	size   int64
	linked bool
	key    inodeKey
}

// lookup describes p without following anything. A path whose parent is
// missing or not a plain directory holds nothing, as the change will see.
func (c *capturer) lookup(p string) (*object, error) {
	o := &object{dir: -1}
	dir, base := path.Split(p)
	o.base = base
	if dir == "" {
		fd, err := unix.Dup(c.root)
		if err != nil {
			return nil, os.NewSyscallError("dup", err)
		}
		o.dir = fd
	} else {
		fd, err := openat2(c.root, dir[:len(dir)-1], unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
				return o, nil
			}
			return nil, fmt.Errorf("capture %s: %w", p, err)
		}
		o.dir = fd
	}
	err := unix.Fstatat(o.dir, base, &o.st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return o, nil
	}
	if err != nil {
		o.close()
		return nil, fmt.Errorf("capture %s: %w", p, os.NewSyscallError("fstatat", err))
	}
	o.exists = true
	switch {
	case o.is(unix.S_IFLNK):
		buf := make([]byte, change.MaxPath+1)
		n, err := unix.Readlinkat(o.dir, base, buf)
		if err != nil {
			o.close()
			return nil, fmt.Errorf("capture %s: %w", p, os.NewSyscallError("readlinkat", err))
		}
		o.target = string(buf[:n])
	case o.is(unix.S_IFREG), o.is(unix.S_IFDIR):
		fd, err := c.open(o)
		if err != nil {
			o.close()
			return nil, fmt.Errorf("capture %s: %w", p, err)
		}
		o.xattrs, err = readXattrs(fd)
		_ = unix.Close(fd)
		if err != nil {
			o.close()
			return nil, fmt.Errorf("capture %s: %w", p, err)
		}
	}
	return o, nil
}

// open opens the file or directory o read-only and checks it is the one
// that was looked up.
func (c *capturer) open(o *object) (int, error) {
	flags := unix.O_RDONLY | unix.O_NONBLOCK
	if o.is(unix.S_IFDIR) {
		flags |= unix.O_DIRECTORY
	} else {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := openat2(o.dir, o.base, flags)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Ino != o.st.Ino || st.Dev != o.st.Dev {
		_ = unix.Close(fd)
		return -1, fmt.Errorf("%s changed while being captured (is something else writing the replica?)", o.base)
	}
	return fd, nil
}

func readXattrs(fd int) ([]apply.Xattr, error) {
	names, err := xattr.Read(func(b []byte) (int, error) { return unix.Flistxattr(fd, b) })
	if err != nil {
		return nil, os.NewSyscallError("flistxattr", err)
	}
	var xs []apply.Xattr
	for name := range bytes.SplitSeq(names, []byte{0}) {
		if len(name) == 0 {
			continue
		}
		v, err := xattr.Read(func(b []byte) (int, error) { return unix.Fgetxattr(fd, string(name), b) })
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read xattr %s: %w", name, os.NewSyscallError("fgetxattr", err))
		}
		xs = append(xs, apply.Xattr{Name: string(name), Value: v})
	}
	return xs, nil
}

func mtime(st *unix.Stat_t) int64 { return st.Mtim.Nano() }

func step(c change.Change) Step { return Step{Change: c} }

// undo returns the steps that undo c, read from the tree before c is
// applied. parents adds steps that set back the times of the directories
// whose entries c changes; a rewind's steps carry those themselves.
func (c *capturer) undo(ch *change.Change, parents bool) ([]Step, error) {
	o, err := c.lookup(ch.Path)
	if err != nil {
		return nil, err
	}
	defer o.close()
	var steps []Step
	var dirs []string // parents whose times to set back
	p := ch.Path
	inPlace := o.is(unix.S_IFREG)
	switch ch.Op {
	case change.OpWrite, change.OpTruncate:
		if !inPlace {
			if !o.is(unix.S_IFDIR) {
				steps, err = c.restoreObject(p, o, true)
				dirs = append(dirs, p)
			}
			break
		}
		end := ch.Offset + int64(len(ch.Data))
		lost := [2]int64{ch.Offset, min(end, o.st.Size)} // bytes the write overwrites
		grows := end > o.st.Size
		if ch.Op == change.OpTruncate {
			lost = [2]int64{ch.Size, o.st.Size} // the cut tail
			grows = ch.Size > o.st.Size
		}
		if lost[1] > lost[0] {
			s, err := c.saveRange(p, o, lost[0], lost[1]-lost[0])
			if err != nil {
				return nil, err
			}
			steps = append(steps, s)
		}
		if grows {
			steps = append(steps, step(change.Change{Op: change.OpTruncate, Path: p, Size: o.st.Size}))
		}
		steps = append(steps, step(change.Change{Op: change.OpSetTimes, Path: p, MTime: mtime(&o.st)}))
	case change.OpCreate:
		if inPlace {
			// Truncated in place: the whole content is lost.
			s, err := c.restoreFile(p, o, false)
			if err != nil {
				return nil, err
			}
			steps = append(steps, s)
			dirs = append(dirs, p) // the restore renames a file into place
			break
		}
		if !o.is(unix.S_IFDIR) {
			steps, err = c.restoreObject(p, o, true)
			dirs = append(dirs, p)
		}
	case change.OpMkdir:
		if o.is(unix.S_IFDIR) {
			steps = append(steps, step(change.Change{Op: change.OpChmod, Path: p, Mode: o.st.Mode & 0o7777}))
			break
		}
		// The new directory is empty when its own undo comes.
		if o.exists {
			steps = []Step{step(change.Change{Op: change.OpRemove, Path: p})}
		}
		var rest []Step
		rest, err = c.restoreObject(p, o, true)
		steps = append(steps, rest...)
		dirs = append(dirs, p)
	case change.OpSymlink, change.OpReplaceFile, change.OpPatch, change.OpRemove:
		if o.is(unix.S_IFDIR) && ch.Op != change.OpRemove {
			break // the change fails on a directory
		}
		if o.is(unix.S_IFDIR) {
			steps = c.restoreDir(p, o)
		} else {
			steps, err = c.restoreObject(p, o, true)
		}
		dirs = append(dirs, p)
	case change.OpLink, change.OpRename:
		n, err := c.lookup(ch.NewPath)
		if err != nil {
			return nil, err
		}
		defer n.close()
		if !o.exists || (n.exists && n.key() == o.key()) {
			break // the change fails, was applied already, or does nothing
		}
		if ch.Op == change.OpRename {
			steps = append(steps, step(change.Change{Op: change.OpRename, Path: ch.NewPath, NewPath: p}))
			dirs = append(dirs, p)
		} else if n.exists {
			// Drop the new name first: restoring the old object in place
			// would write through it into the linked file.
			steps = append(steps, step(change.Change{Op: change.OpRemove, Path: ch.NewPath}))
		}
		rest, err := c.restoreObject(ch.NewPath, n, true)
		if err != nil {
			return nil, err
		}
		steps = append(steps, rest...)
		dirs = append(dirs, ch.NewPath)
	case change.OpChmod:
		if o.is(unix.S_IFREG) || o.is(unix.S_IFDIR) {
			steps = append(steps, step(change.Change{Op: change.OpChmod, Path: p, Mode: o.st.Mode & 0o7777}))
		}
	case change.OpChown:
		if o.exists {
			steps = append(steps, step(change.Change{Op: change.OpChown, Path: p, UID: o.st.Uid, GID: o.st.Gid}))
			if !o.is(unix.S_IFLNK) {
				// chown clears setuid and setgid.
				steps = append(steps, step(change.Change{Op: change.OpChmod, Path: p, Mode: o.st.Mode & 0o7777}))
			}
		}
	case change.OpSetTimes:
		if o.exists {
			steps = append(steps, step(change.Change{Op: change.OpSetTimes, Path: p, MTime: mtime(&o.st)}))
		}
	case change.OpSetXattr, change.OpRemoveXattr:
		if o.exists {
			steps = append(steps, xattrUndo(p, o, ch.XattrName))
		}
	default:
		return nil, fmt.Errorf("capture %s: unknown op %v", p, ch.Op)
	}
	if err != nil {
		return nil, err
	}
	if parents {
		steps = append(steps, c.parentTimes(dirs)...)
	}
	return steps, nil
}

func xattrUndo(p string, o *object, name string) Step {
	for _, x := range o.xattrs {
		if x.Name == name {
			return step(change.Change{Op: change.OpSetXattr, Path: p, XattrName: name, XattrValue: x.Value})
		}
	}
	return step(change.Change{Op: change.OpRemoveXattr, Path: p, XattrName: name})
}

// parentTimes sets back the times of the directories holding paths,
// after the steps before them moved their entries.
func (c *capturer) parentTimes(paths []string) []Step {
	var steps []Step
	seen := map[string]bool{}
	for _, p := range paths {
		d := path.Dir(p)
		if d == "." || seen[d] {
			continue // the root's times move with the journal; leave them
		}
		seen[d] = true
		o, err := c.lookup(d)
		if err != nil || !o.is(unix.S_IFDIR) {
			if o != nil {
				o.close()
			}
			continue
		}
		steps = append(steps, step(change.Change{Op: change.OpSetTimes, Path: d, MTime: mtime(&o.st)}))
		o.close()
	}
	return steps
}

// restoreObject returns the steps that put o back at p, whatever holds p
// then. replaced says the change takes the name away from o's inode, so
// that a file with no other name can be kept by linking it.
func (c *capturer) restoreObject(p string, o *object, replaced bool) ([]Step, error) {
	switch {
	case !o.exists:
		return []Step{step(change.Change{Op: change.OpRemove, Path: p})}, nil
	case o.is(unix.S_IFDIR):
		return c.restoreDir(p, o), nil
	case o.is(unix.S_IFLNK):
		return []Step{
			step(change.Change{Op: change.OpSymlink, Path: p, Target: o.target}),
			step(change.Change{Op: change.OpChown, Path: p, UID: o.st.Uid, GID: o.st.Gid}),
			step(change.Change{Op: change.OpSetTimes, Path: p, MTime: mtime(&o.st)}),
		}, nil
	case o.is(unix.S_IFREG):
		s, err := c.restoreFile(p, o, replaced)
		if err != nil {
			return nil, err
		}
		return []Step{s}, nil
	}
	return nil, nil // a special file: the replica never makes one, and cannot restore it
}

// restoreDir makes p the directory o was, without its entries (those are
// restored by undoing the changes that removed them).
func (c *capturer) restoreDir(p string, o *object) []Step {
	mode := o.st.Mode & 0o7777
	steps := []Step{
		step(change.Change{Op: change.OpMkdir, Path: p, Mode: mode}),
		step(change.Change{Op: change.OpChown, Path: p, UID: o.st.Uid, GID: o.st.Gid}),
		step(change.Change{Op: change.OpChmod, Path: p, Mode: mode}),
	}
	for _, x := range o.xattrs {
		steps = append(steps, step(change.Change{Op: change.OpSetXattr, Path: p, XattrName: x.Name, XattrValue: x.Value}))
	}
	return append(steps, step(change.Change{Op: change.OpSetTimes, Path: p, MTime: mtime(&o.st)}))
}

// restoreFile keeps the regular file o and returns the step that restores
// it at p. When the change takes the name from an inode with no other
// name, the inode itself is linked into the blobs: the applier renames a
// new file over the name and never writes the old inode again. Otherwise
// the content is copied (inline when small).
func (c *capturer) restoreFile(p string, o *object, replaced bool) (Step, error) {
	s := Step{
		Change:  change.Change{Op: change.OpReplaceFile, Path: p},
		Restore: true,
		Meta: apply.FileMeta{Mode: o.st.Mode & 0o7777, UID: o.st.Uid, GID: o.st.Gid,
			MTime: mtime(&o.st), Xattrs: o.xattrs},
		Size: o.st.Size,
	}
	links := uint64(o.st.Nlink)
	if c.held != nil {
		links -= min(links, c.held(o.st.Dev, o.st.Ino))
	}
	if replaced && links == 1 && !c.copyOnly {
		name := c.blobName()
		if err := unix.Linkat(o.dir, o.base, c.blobs, name, 0); err != nil {
			return Step{}, fmt.Errorf("keep %s: %w", p, os.NewSyscallError("linkat", err))
		}
		var st unix.Stat_t
		if err := unix.Fstatat(c.blobs, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return Step{}, fmt.Errorf("keep %s: %w", p, os.NewSyscallError("fstatat", err))
		}
		if st.Ino != o.st.Ino || st.Dev != o.st.Dev {
			return Step{}, fmt.Errorf("keep %s: the file changed while being kept (is something else writing the replica?)", p)
		}
		c.made = append(c.made, madeBlob{name: name, size: st.Size, linked: true, key: o.key()})
		s.Blob, s.Linked, s.Ino, s.Size = name, true, st.Ino, st.Size
		return s, nil
	}
	fd, err := c.open(o)
	if err != nil {
		return Step{}, fmt.Errorf("keep %s: %w", p, err)
	}
	defer unix.Close(fd)
	if o.st.Size <= inlineMax {
		s.Change.Data, err = readRange(fd, 0, o.st.Size)
		return s, err
	}
	s.Blob, s.CRC, err = c.copyBlob(fd, 0, o.st.Size)
	return s, err
}

// saveRange keeps n bytes of o from off and returns the OpWrite step that
// writes them back.
func (c *capturer) saveRange(p string, o *object, off, n int64) (Step, error) {
	s := Step{Change: change.Change{Op: change.OpWrite, Path: p, Offset: off}}
	fd, err := c.open(o)
	if err != nil {
		return Step{}, err
	}
	defer unix.Close(fd)
	if n <= inlineMax {
		s.Change.Data, err = readRange(fd, off, n)
	} else {
		s.Size = n
		s.Blob, s.CRC, err = c.copyBlob(fd, off, n)
	}
	return s, err
}

func readRange(fd int, off, n int64) ([]byte, error) {
	b := make([]byte, n)
	for done := int64(0); done < n; {
		m, err := unix.Pread(fd, b[done:], off+done)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, os.NewSyscallError("pread", err)
		}
		if m == 0 {
			return nil, fmt.Errorf("file shrank while being kept")
		}
		done += int64(m)
	}
	return b, nil
}

func (c *capturer) blobName() string {
	c.n++
	return fmt.Sprintf("%020d-%d", c.id, c.n)
}

// copyBlob copies n bytes of fd from off into a new blob file and returns
// its name and CRC-32C: cloned when the filesystem can, else with
// copy_file_range, then read back for the checksum.
func (c *capturer) copyBlob(fd int, off, n int64) (string, uint32, error) {
	name := c.blobName()
	out, err := unix.Openat(c.blobs, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", 0, fmt.Errorf("create blob %s: %w", name, os.NewSyscallError("openat", err))
	}
	defer unix.Close(out)
	c.made = append(c.made, madeBlob{name: name, size: n})
	cloned := false
	if off == 0 {
		cloned = unix.IoctlFileClone(out, fd) == nil
	} else {
		cloned = unix.IoctlFileCloneRange(out, &unix.FileCloneRange{Src_fd: int64(fd), Src_offset: uint64(off), Src_length: uint64(n)}) == nil
	}
	var done int64
	if cloned {
		done = n
	}
	for done < n {
		src, dst := off+done, done
		m, err := unix.CopyFileRange(fd, &src, out, &dst, int(min(n-done, 1<<30)), 0)
		if err != nil || m == 0 {
			break
		}
		done += int64(m)
	}
	if done < n {
		b, err := readRange(fd, off+done, n-done)
		if err != nil {
			return "", 0, err
		}
		for w := 0; w < len(b); {
			m, err := unix.Pwrite(out, b[w:], done+int64(w))
			if err != nil {
				return "", 0, fmt.Errorf("write blob %s: %w", name, os.NewSyscallError("pwrite", err))
			}
			w += m
		}
	}
	if err := unix.Ftruncate(out, n); err != nil {
		return "", 0, os.NewSyscallError("ftruncate", err)
	}
	sum, err := crcOf(out, n)
	if err != nil {
		return "", 0, fmt.Errorf("blob %s: %w", name, err)
	}
	if err := unix.Fdatasync(out); err != nil {
		return "", 0, fmt.Errorf("sync blob %s: %w", name, os.NewSyscallError("fdatasync", err))
	}
	return name, sum, nil
}

func crcOf(fd int, n int64) (uint32, error) {
	buf := make([]byte, min(n, 1<<20))
	var sum uint32
	for off := int64(0); off < n; {
		b := buf[:min(int64(len(buf)), n-off)]
		m, err := unix.Pread(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, os.NewSyscallError("pread", err)
		}
		if m == 0 {
			return 0, fmt.Errorf("cut short at %d of %d bytes", off, n)
		}
		sum = crc32.Update(sum, castagnoli, b[:m])
		off += int64(m)
	}
	return sum, nil
}

// validBlobName accepts the names blobName makes: 20 digits, '-', digits.
func validBlobName(s string) bool {
	id, n, ok := strings.Cut(s, "-")
	if !ok || len(id) != 20 || len(n) == 0 || len(n) > 10 {
		return false
	}
	for _, r := range id + n {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// blobID is the record a blob belongs to.
func blobID(name string) (uint64, bool) {
	if !validBlobName(name) {
		return 0, false
	}
	v, err := strconv.ParseUint(name[:20], 10, 64)
	return v, err == nil
}

func crc32Sum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
