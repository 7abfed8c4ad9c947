package apply

import (
	"errors"
	"fmt"
	"os"
	"path"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/change"
)

// Limits of one run of whole-file replacements: the descriptors it keeps
// open, and the bytes it leaves unsynced in the page cache before they are
// all synced together.
const (
	maxRunFiles = 256
	maxRunBytes = 64 << 20
)

// wholeRun is a run of consecutive whole-file replacements (OpReplaceFile,
// each with the metadata changes of the same path that follow it) built
// under their temporary names and not yet renamed into place. Finishing it
// syncs every temporary file at once, renames them in order and leaves
// their directories to the commit, so a run of N files costs about one
// journal commit for the files, one for the directories and one record of
// LastApplied, where replacing them one by one cost several fsyncs each.
//
// Until it is finished nothing of the run is visible: a crash leaves only
// temporary names, which the replay of the same changes removes (they are
// named after the Seq). A crash while it is renamed leaves each path
// either old or new, since every temporary file is durable before the
// first rename; the replay renames the rest again, and applying a run over
// its own result gives the same tree (a replacement carries over the owner
// and attributes of the file it replaces, and those are exactly what the
// run itself set).
type wholeRun struct {
	files []*wholeFile
	// after are OpSetTimes of directories holding files of the run, in
	// order. They are applied after the renames, which would move the
	// times again: capture carries a directory's time after each group of
	// changes in it, and ending the run there would cost a commit a file.
	after []*change.Change
	paths map[string]bool
	dirs  map[string]dirRef // parent directory, by path ("" for the root)
	bytes int64
}

type wholeFile struct {
	c    *change.Change // the OpReplaceFile
	dir  int            // from wholeRun.dirs
	base string
	tmp  string
	fd   int
	last uint64 // highest Seq of the changes folded into this file
}

func (r *wholeRun) empty() bool { return len(r.files) == 0 }

func (r *wholeRun) full() bool {
	return len(r.files) >= maxRunFiles || r.bytes >= maxRunBytes
}

// last is the highest Seq in the run, 0 if it is empty.
func (r *wholeRun) last() uint64 {
	var last uint64
	if len(r.files) > 0 {
		last = r.files[len(r.files)-1].last
	}
	if len(r.after) > 0 {
		last = max(last, r.after[len(r.after)-1].Seq)
	}
	return last
}

// defers reports whether c sets the time of a directory holding files of
// the run, to be applied after their renames.
func (r *wholeRun) defers(c *change.Change) bool {
	if len(r.files) == 0 || c.Op != change.OpSetTimes {
		return false
	}
	_, ok := r.dirs[c.Path+"/"]
	return ok
}

// joins reports whether c only finishes the file the run built last: a
// metadata change of the same path, applied to the temporary file so that
// it needs no sync of its own.
func (r *wholeRun) joins(c *change.Change) bool {
	if len(r.files) == 0 {
		return false
	}
	switch c.Op {
	case change.OpChmod, change.OpChown, change.OpSetTimes, change.OpSetXattr, change.OpRemoveXattr:
		return c.Path == r.files[len(r.files)-1].c.Path
	}
	return false
}

// dir opens (once per run) the directory holding p.
func (a *Applier) runDir(p string) (int, string, error) {
	d, base := path.Split(p)
	if ref, ok := a.run.dirs[d]; ok {
		return ref.fd, base, nil
	}
	ref, base, err := a.parent(p)
	if err != nil {
		return -1, "", err
	}
	if a.run.dirs == nil {
		a.run.dirs = map[string]dirRef{}
	}
	a.run.dirs[d] = ref
	return ref.fd, base, nil
}

// stageWhole builds c, a checked OpReplaceFile, under its temporary name as
// the next file of the run. ok is false, with nothing done, when c must go
// the slow way: its path holds a file with several hard links, which is
// rewritten in place.
func (a *Applier) stageWhole(c *change.Change) (ok bool, err error) {
	if a.run.paths[c.Path] {
		// The same path twice: the second replaces the first's result,
		// which must be in place first.
		if err := a.commit(); err != nil {
			return false, err
		}
	}
	if a.run.empty() && (a.pending.len() > 0 || a.applied > a.last.Load()) {
		// What went before is committed first, as before any change that
		// replaces a name (see the package doc).
		if err := a.commit(); err != nil {
			return false, err
		}
	}
	dir, base, err := a.runDir(c.Path)
	if err != nil {
		return false, wrap(c, err)
	}
	st, exists, err := lstat(dir, base)
	if err != nil {
		return false, wrap(c, err)
	}
	regular := exists && isType(&st, unix.S_IFREG)
	switch {
	case exists && isType(&st, unix.S_IFDIR):
		return false, wrap(c, isDirErr(base))
	case regular && a.otherNames(&st):
		return false, nil
	}
	old := -1
	if regular {
		if old, err = openNode(dir, base, &st); err != nil {
			return false, wrap(c, err)
		}
		defer unix.Close(old)
	}
	tmp := tempName(c.Seq)
	if err := removeStale(dir, tmp); err != nil {
		return false, wrap(c, err)
	}
	fd, err := openat2(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return false, wrap(c, resolveErr(tmp, err))
	}
	err = pwriteAll(fd, c.Data, 0)
	if err == nil {
		err = a.finishNew(dir, tmp, fd, old, &st, c.Mode&0o7777, c.MTime)
	}
	if err == nil && len(c.Data) > 0 {
		// Start writing the data back now, so the disk works while the
		// rest of the run is built; the sync at the end waits for it.
		err = os.NewSyscallError("sync_file_range", unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE))
	}
	if err != nil {
		_ = unix.Close(fd)
		if uerr := unix.Unlinkat(dir, tmp, 0); uerr != nil {
			err = errors.Join(err, fmt.Errorf("remove temporary %s: %w", tmp, os.NewSyscallError("unlinkat", uerr)))
		}
		return false, wrap(c, err)
	}
	if a.run.paths == nil {
		a.run.paths = map[string]bool{}
	}
	a.run.paths[c.Path] = true
	a.run.files = append(a.run.files, &wholeFile{c: c, dir: dir, base: base, tmp: tmp, fd: fd, last: c.Seq})
	a.run.bytes += int64(len(c.Data))
	return true, nil
}

// fold applies c, a checked metadata change that joins the run, to the
// temporary file it finishes.
func (a *Applier) fold(c *change.Change) error {
	f := a.run.files[len(a.run.files)-1]
	var err error
	switch c.Op {
	case change.OpChmod:
		err = fchmod(f.fd, c.Mode&0o7777)
	case change.OpChown:
		if a.preserveOwner {
			err = os.NewSyscallError("fchown", unix.Fchown(f.fd, int(c.UID), int(c.GID)))
		}
	case change.OpSetTimes:
		err = setMTime(f.dir, f.tmp, c.MTime)
	case change.OpSetXattr:
		err = os.NewSyscallError("fsetxattr", unix.Fsetxattr(f.fd, c.XattrName, c.XattrValue, 0))
	case change.OpRemoveXattr:
		if err = unix.Fremovexattr(f.fd, c.XattrName); errors.Is(err, unix.ENODATA) {
			err = nil // absent already
		}
		err = os.NewSyscallError("fremovexattr", err)
	default:
		err = fmt.Errorf("%v does not finish a whole file", c.Op)
	}
	if err != nil {
		return wrap(c, err)
	}
	f.last = c.Seq
	return nil
}

// finishRun makes the run's temporary files durable, renames them into
// place in order and leaves their directories to be synced by the commit
// that called it. A failed sync leaves the Applier broken. A rename that
// fails is that change's error (an *Error): the files before it stay
// applied, the rest are removed unapplied.
func (a *Applier) finishRun() error {
	r := &a.run
	defer r.reset()
	if r.empty() {
		return nil
	}
	// Content and inode (mode, owner, times, attributes) durable before any
	// name points at them. The syncs run together so that the filesystem
	// can take them all in one journal commit.
	if err := syncEach(len(r.files), func(i int) error {
		return os.NewSyscallError("fsync", unix.Fsync(r.files[i].fd))
	}); err != nil {
		r.removeTemps(0)
		a.broken = fmt.Errorf("sync replica %s (reopen to replay from seq %d): %w", a.target, a.last.Load(), noSpace(err))
		return a.broken
	}
	for i, f := range r.files {
		if err := unix.Renameat(f.dir, f.tmp, f.dir, f.base); err != nil {
			err = wrap(f.c, os.NewSyscallError("renameat", err))
			r.removeTemps(i)
			return err
		}
		if err := a.pending.add(f.dir, syncMeta); err != nil {
			// The rename is done, but its directory would not be synced:
			// nothing after it may be recorded.
			r.removeTemps(i + 1)
			a.broken = fmt.Errorf("replica %s (reopen to replay from seq %d): %w", a.target, a.last.Load(), err)
			return a.broken
		}
		a.applied = f.last
	}
	for _, c := range r.after {
		if err := a.meta(c); err != nil {
			// The files renamed after c in the stream are in place, but
			// LastApplied may not pass c: they are renamed again on replay.
			a.applied = min(a.applied, c.Seq-1)
			return wrap(c, err)
		}
		a.applied = max(a.applied, c.Seq)
	}
	return nil
}

// removeTemps removes the temporary names of the files from i on, which
// were not renamed.
func (r *wholeRun) removeTemps(i int) {
	for _, f := range r.files[i:] {
		// A name that cannot be removed now is removed by the replay of
		// its change, which reuses the name.
		_ = unix.Unlinkat(f.dir, f.tmp, 0)
	}
}

// reset closes what the run holds and empties it.
func (r *wholeRun) reset() {
	for _, f := range r.files {
		_ = unix.Close(f.fd)
	}
	for _, d := range r.dirs {
		d.close()
	}
	r.files = r.files[:0]
	r.after = r.after[:0]
	clear(r.paths)
	clear(r.dirs)
	r.bytes = 0
}
