// Package restore writes restored files, directories and symlinks into a
// destination directory: the last step of every restore, whether to the
// original location on the master, on the replica or to an alternate
// folder. The names and link targets come from a backup and are not
// trusted: every name is resolved below the destination's descriptor
// (package beneath), so that no "..", absolute path or symlink — in the
// backup or planted in the destination — makes a restore write elsewhere.
// Files appear whole or not at all (temporary name, fsync, rename), and an
// existing object is overwritten, kept, kept beside a renamed restore, or
// overwritten only if older, as the operator's policy says. In batch mode
// (Options.Batch) the fsync of each file before its rename becomes the
// fsyncs of a batch of files issued together, in the background, before
// their renames: the same promise, far fewer waits for the disk.
package restore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/internal/beneath"
)

// Errors callers test with errors.Is.
var (
	// ErrUnsafePath: the entry's name is empty, absolute, unclean or
	// climbs out with "..". Nothing was written.
	ErrUnsafePath = errors.New("unsafe path in the restore")
	// ErrInTheWay: a symlink or another non-directory stands where the
	// entry's parent directories should be, or a directory stands where a
	// file or link is restored. Nothing was written through it.
	ErrInTheWay = errors.New("something is in the way of the restore")
	// ErrNoSpace: the destination's filesystem is full; the entry was not
	// written and no temporary file is left.
	ErrNoSpace = errors.New("no space left at the restore destination")
)

// Type is the kind of object an entry restores.
type Type uint8

// Types of entries.
const (
	File Type = iota + 1
	Dir
	Symlink
)

func (t Type) String() string {
	switch t {
	case File:
		return "file"
	case Dir:
		return "directory"
	case Symlink:
		return "symlink"
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// Entry is one object to restore.
type Entry struct {
	Path     string // slash-separated, relative to the destination
	Type     Type
	Mode     uint32 // permission bits with setuid, setgid and sticky
	UID, GID uint32
	MTime    time.Time
	Target   string // symlinks: stored verbatim, never followed
}

// Policy says what happens when the destination already has the name.
type Policy string

// Policies, as the operator names them.
const (
	Overwrite Policy = "overwrite" // replace what is there
	Skip      Policy = "skip"      // keep what is there
	Rename    Policy = "rename"    // keep it, restore beside it as NAME~N
	IfNewer   Policy = "newer"     // replace only what is older than the restored version
)

// ParsePolicy reads a policy name.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case Overwrite, Skip, Rename, IfNewer:
		return p, nil
	}
	return "", fmt.Errorf("overwrite policy %q: use overwrite, skip, rename or newer", s)
}

// Options tune a Writer.
type Options struct {
	Policy Policy // "" means Overwrite
	// Owners restores owners (needs root); otherwise files belong to the
	// restoring process.
	Owners bool
	// Batch queues files instead of making each durable in Put: a file
	// is written under its temporary name, unsynced, and its rename waits
	// until its batch is full (batchFiles files or batchBytes bytes), a
	// later entry needs one of the batch's names, or Close. A full batch
	// is flushed in the background while Put writes the next: its files
	// are fsynced together (in parallel, so the filesystem commits them
	// at once), then renamed in the order they were put; their
	// directories are fsynced at Close. A file under its real name is
	// still always whole, and everything restored is durable when Close
	// returns. What changes: Put's Outcome is a decision, not yet a fact
	// on disk (see Outcome), and a queued entry can fail after Put
	// returned (see Failed and EntryError). Entries that meet a queued
	// name are decided after a flush, so the outcomes are those of the
	// same entries put one by one.
	Batch bool
	// Failed receives each queued entry that failed after Put accepted
	// it, on the goroutine that called Put or Close (the flush runs
	// there). Without it those failures are returned by Close, each as an
	// *EntryError. Only used with Batch.
	Failed func(*EntryError)
}

// Action is what Put did.
type Action uint8

// Actions.
const (
	Written Action = iota + 1
	Skipped
	Renamed
)

func (a Action) String() string {
	return [...]string{"", "written", "skipped", "renamed"}[a]
}

// Outcome says what Put did and where the entry went. With Options.Batch
// a Written or Renamed file is decided but not yet in place: it appears
// under Path, whole, at the next flush, and is durable once Close
// returned without naming it (an *EntryError to Options.Failed or in
// Close's error). Skipped, directories and symlinks are final when Put
// returns, as they are without Batch.
type Outcome struct {
	Action Action
	Path   string // the name written: Entry.Path, or the new name when Renamed
}

// Writer restores entries below one destination directory.
type Writer struct {
	dest     string
	root     int
	opts     Options
	dirs     map[string]time.Time // directory times to set once their content is in
	synced   map[string]bool      // parents whose entries changed, fsynced at Close
	queue    batch                // files waiting for their rename (Options.Batch)
	inflight *flushing            // the batch before, being synced and renamed
	failed   []error              // queued entries that failed, for Close when there is no Options.Failed
}

// tempPrefix starts the names files are built under before the rename.
const tempPrefix = ".holdfast-restore-"

// Open opens (creating if needed, mode 0700) the destination directory.
// dest itself comes from the operator and is trusted; everything below it
// is not.
func Open(dest string, opts Options) (*Writer, error) {
	if opts.Policy == "" {
		opts.Policy = Overwrite
	}
	if _, err := ParsePolicy(string(opts.Policy)); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dest, 0o700); err != nil {
		return nil, fmt.Errorf("restore destination %s: %w", dest, noSpace(err))
	}
	root, err := unix.Open(dest, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("restore destination %s: %w", dest, os.NewSyscallError("open", err))
	}
	return &Writer{dest: dest, root: root, opts: opts, dirs: map[string]time.Time{}, synced: map[string]bool{}, queue: newBatch()}, nil
}

// Put restores e; content is read for files only. An error names the
// entry; the Writer stays usable for the next one.
func (w *Writer) Put(e Entry, content io.Reader) (Outcome, error) {
	out, err := w.put(e, content)
	if err != nil {
		return out, fmt.Errorf("restore %s %q to %s: %w", e.Type, e.Path, w.dest, err)
	}
	return out, nil
}

func (w *Writer) put(e Entry, content io.Reader) (Outcome, error) {
	if err := change.ValidPath(e.Path); err != nil {
		return Outcome{}, fmt.Errorf("%w: %v", ErrUnsafePath, err)
	}
	if e.Type < File || e.Type > Symlink {
		return Outcome{}, fmt.Errorf("unknown entry type %d", e.Type)
	}
	w.settle(e.Path)
	dirName, base := path.Split(e.Path)
	dirName = strings.TrimSuffix(dirName, "/")
	dir, err := w.parent(dirName)
	if err != nil {
		return Outcome{}, err
	}
	if dir != w.root {
		defer unix.Close(dir)
	}
	var st unix.Stat_t
	exists := true
	if err := unix.Fstatat(dir, base, &st, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
		exists = false
	} else if err != nil {
		return Outcome{}, os.NewSyscallError("fstatat", err)
	}
	if e.Type == Dir && exists && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		// Directories merge whatever the policy: their content is what
		// the policy is about.
		return w.finishDir(e, dir, base)
	}
	name := base
	action := Written
	if exists {
		switch w.opts.Policy {
		case Skip:
			removeLeftover(dir, base)
			return Outcome{Action: Skipped, Path: e.Path}, nil
		case IfNewer:
			if !time.Unix(st.Mtim.Unix()).Before(e.MTime) {
				removeLeftover(dir, base)
				return Outcome{Action: Skipped, Path: e.Path}, nil
			}
		case Rename:
			queued := func(name string) bool {
				rel := path.Join(dirName, name)
				return w.queue.names[rel] || w.inflight != nil && w.inflight.names[rel]
			}
			if name, err = freeName(dir, base, queued); err != nil {
				return Outcome{}, err
			}
			w.settle(path.Join(dirName, name))
			action = Renamed
		}
		if name == base && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return Outcome{}, fmt.Errorf("%w: %q is a directory", ErrInTheWay, e.Path)
		}
	}
	rel := path.Join(dirName, name)
	switch e.Type {
	case Dir:
		if name == base && exists {
			// Overwrite or newer of a non-directory by a directory.
			if err := unix.Unlinkat(dir, base, 0); err != nil {
				return Outcome{}, os.NewSyscallError("unlinkat", err)
			}
		}
		if err := unix.Mkdirat(dir, name, 0o700); err != nil {
			return Outcome{}, noSpace(os.NewSyscallError("mkdirat", err))
		}
		w.synced[dirName] = true
		if _, err := w.finishDir(Entry{Path: rel, Mode: e.Mode, UID: e.UID, GID: e.GID, MTime: e.MTime}, dir, name); err != nil {
			return Outcome{}, err
		}
	case File:
		if w.opts.Batch {
			out := Outcome{Action: action, Path: rel}
			if err := w.queueFile(e, out, dir, dirName, name, content); err != nil {
				return Outcome{}, err
			}
			return out, nil
		}
		if err := w.writeFile(e, dir, name, content); err != nil {
			return Outcome{}, err
		}
		w.synced[dirName] = true
	case Symlink:
		if err := w.writeLink(e, dir, name); err != nil {
			return Outcome{}, err
		}
		w.synced[dirName] = true
	}
	return Outcome{Action: action, Path: rel}, nil
}

// parent opens (creating with mode 0700 what is missing) the directory
// rel below the destination, never through a symlink.
func (w *Writer) parent(rel string) (int, error) {
	if rel == "" {
		return w.root, nil
	}
	fd, err := beneath.Open(w.root, rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err == nil {
		return fd, nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return -1, inTheWay(rel, err)
	}
	cur := w.root
	done := ""
	for _, part := range strings.Split(rel, "/") {
		next := path.Join(done, part)
		if err := unix.Mkdirat(cur, part, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			closeIfOwned(cur, w.root)
			return -1, noSpace(os.NewSyscallError("mkdirat", err))
		} else if err == nil {
			w.synced[done] = true
		}
		fd, err := beneath.Open(cur, part, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		closeIfOwned(cur, w.root)
		if err != nil {
			return -1, inTheWay(next, err)
		}
		cur, done = fd, next
	}
	return cur, nil
}

func closeIfOwned(fd, root int) {
	if fd != root {
		_ = unix.Close(fd)
	}
}

// inTheWay turns openat2's refusals into ErrInTheWay.
func inTheWay(rel string, err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EXDEV) {
		return fmt.Errorf("%w: %q is a symlink or not a directory: %v", ErrInTheWay, rel, err)
	}
	return fmt.Errorf("open %q: %w", rel, err)
}

// freeName finds base~N (before the extension) that does not exist yet
// and is not taken by a queued file.
func freeName(dir int, base string, queued func(string) bool) (string, error) {
	ext := path.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	if stem == "" {
		stem, ext = base, ""
	}
	for n := 1; n < 10000; n++ {
		name := stem + "~" + strconv.Itoa(n) + ext
		if queued(name) {
			continue
		}
		var st unix.Stat_t
		err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) {
			return name, nil
		}
		if err != nil {
			return "", os.NewSyscallError("fstatat", err)
		}
	}
	return "", fmt.Errorf("no free name for %q after 9999 tries", base)
}

// tempName is the name a file or link is built under before its rename:
// the same for the same name, so that a restore run again after a crash
// replaces what the crash left.
func tempName(name string) string {
	tmp := tempPrefix + name
	if len(tmp) > 255 {
		tmp = tempPrefix + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return tmp
}

// removeLeftover removes the temporary file a crashed restore of name may
// have left: a name the policy keeps is never written, so nothing else
// would.
func removeLeftover(dir int, name string) {
	if tmp := tempPrefix + name; len(tmp) <= 255 {
		_ = unix.Unlinkat(dir, tmp, 0)
	}
}

func (w *Writer) writeFile(e Entry, dir int, name string, content io.Reader) (err error) {
	f, tmp, _, err := w.writeTemp(e, dir, name, content)
	if err != nil {
		return err
	}
	defer func() {
		f.Close()
		if err != nil {
			_ = unix.Unlinkat(dir, tmp, 0)
		}
	}()
	if err := f.Sync(); err != nil {
		return noSpace(fmt.Errorf("sync: %w", err))
	}
	if err := unix.Renameat(dir, tmp, dir, name); err != nil {
		return os.NewSyscallError("renameat", err)
	}
	return nil
}

// writeTemp writes content and e's metadata to a new temporary file in
// dir, named for name; on error nothing is left.
func (w *Writer) writeTemp(e Entry, dir int, name string, content io.Reader) (f *os.File, tmp string, n int64, err error) {
	tmp = tempName(name)
	_ = unix.Unlinkat(dir, tmp, 0) // a leftover of a crash
	fd, err := beneath.Open(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		return nil, "", 0, noSpace(err)
	}
	f = os.NewFile(uintptr(fd), tmp)
	fail := func(err error) (*os.File, string, int64, error) {
		f.Close()
		_ = unix.Unlinkat(dir, tmp, 0)
		return nil, "", 0, err
	}
	if content != nil {
		if n, err = io.Copy(f, content); err != nil {
			return fail(noSpace(fmt.Errorf("write: %w", err)))
		}
	}
	if err := w.setMeta(fd, e); err != nil {
		return fail(err)
	}
	return f, tmp, n, nil
}

// setMeta gives an open file its owner, mode and time; the mode after
// the owner, since chown clears setuid and setgid.
func (w *Writer) setMeta(fd int, e Entry) error {
	if w.opts.Owners {
		if err := unix.Fchown(fd, int(e.UID), int(e.GID)); err != nil {
			return os.NewSyscallError("fchown", err)
		}
	}
	if err := unix.Fchmod(fd, e.Mode&0o7777); err != nil {
		return os.NewSyscallError("fchmod", err)
	}
	if !e.MTime.IsZero() {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(e.MTime.UnixNano())}
		if err := unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH); err != nil {
			return os.NewSyscallError("utimensat", err)
		}
	}
	return nil
}

func (w *Writer) writeLink(e Entry, dir int, name string) error {
	tmp := tempName(name)
	_ = unix.Unlinkat(dir, tmp, 0)
	if err := unix.Symlinkat(e.Target, dir, tmp); err != nil {
		return noSpace(os.NewSyscallError("symlinkat", err))
	}
	fail := func(err error) error {
		_ = unix.Unlinkat(dir, tmp, 0)
		return err
	}
	if w.opts.Owners {
		if err := unix.Fchownat(dir, tmp, int(e.UID), int(e.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fail(os.NewSyscallError("fchownat", err))
		}
	}
	if !e.MTime.IsZero() {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(e.MTime.UnixNano())}
		if err := unix.UtimesNanoAt(dir, tmp, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fail(os.NewSyscallError("utimensat", err))
		}
	}
	if err := unix.Renameat(dir, tmp, dir, name); err != nil {
		return fail(os.NewSyscallError("renameat", err))
	}
	return nil
}

// finishDir sets a directory's owner and mode now and remembers its time
// for Close (its content, restored after it, would change it).
func (w *Writer) finishDir(e Entry, dir int, name string) (Outcome, error) {
	fd, err := beneath.Open(dir, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return Outcome{}, inTheWay(e.Path, err)
	}
	defer unix.Close(fd)
	if err := w.setMeta(fd, Entry{Mode: e.Mode, UID: e.UID, GID: e.GID}); err != nil {
		return Outcome{}, err
	}
	if !e.MTime.IsZero() {
		w.dirs[e.Path] = e.MTime
	}
	return Outcome{Action: Written, Path: e.Path}, nil
}

// Close renames what is still queued, sets the directories' times,
// deepest first, makes the restored names durable and releases the
// destination. With Options.Batch and no Options.Failed, each queued
// entry that failed is in the error as an *EntryError (see Failed).
func (w *Writer) Close() error {
	if w.root < 0 {
		return nil
	}
	w.flushNow()
	errs := w.failed
	w.failed = nil
	paths := make([]string, 0, len(w.dirs))
	for p := range w.dirs {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool { return strings.Count(paths[i], "/") > strings.Count(paths[j], "/") })
	for _, p := range paths {
		fd, err := beneath.Open(w.root, p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			errs = append(errs, inTheWay(p, err))
			continue
		}
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(w.dirs[p].UnixNano())}
		if err := unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH); err != nil {
			errs = append(errs, fmt.Errorf("set time of %q: %w", p, os.NewSyscallError("utimensat", err)))
		}
		_ = unix.Close(fd)
	}
	for p := range w.synced {
		fd := w.root
		if p != "" {
			var err error
			if fd, err = beneath.Open(w.root, p, unix.O_RDONLY|unix.O_DIRECTORY, 0); err != nil {
				errs = append(errs, inTheWay(p, err))
				continue
			}
		}
		if err := unix.Fsync(fd); err != nil {
			errs = append(errs, fmt.Errorf("sync %q: %w", p, os.NewSyscallError("fsync", err)))
		}
		closeIfOwned(fd, w.root)
	}
	errs = append(errs, os.NewSyscallError("close", unix.Close(w.root)))
	w.root = -1
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("finish restore to %s: %w", w.dest, err)
	}
	return nil
}

func noSpace(err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}
