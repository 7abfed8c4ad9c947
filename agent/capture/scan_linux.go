//go:build linux

package capture

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Entry is one thing a Scanner found: the state a rescan diffs against the
// replica.
type Entry struct {
	Path   string      // relative, slash-separated, clean
	Mode   fs.FileMode // type and permission bits, as os.Lstat reports them
	Perm   uint32      // st_mode & 07777: permissions with setuid, setgid, sticky
	Size   int64
	MTime  time.Time
	UID    uint32
	GID    uint32
	Dev    uint64
	Ino    uint64
	Birth  time.Time // zero when the filesystem does not record it
	Nlink  uint64
	Target string   // symlinks: the link's target
	Xattrs []string // names of its extended attributes (values are not read)
	// Err, when set on a directory, says its contents could not be listed:
	// the entries below it are unknown, not absent, and must not be taken
	// as deleted.
	Err error
}

// Scanner walks a root for rescans: at start (the initial copy), after an
// Overflow or Unwatched event, and periodically to verify the replica (events
// are hints, not truth).
type Scanner struct {
	Root string
}

// Scan calls fn for every entry at and below rel ("" for the whole root; the
// root itself is not reported), parents before children and names in byte
// order within a directory, without following symlinks or leaving the root.
// Entries that vanish during the walk are skipped; a directory that cannot be
// listed is reported with Err set. Names that cannot be replicated are
// skipped and reported in the returned error, which wraps
// ErrUnrepresentable; an error from fn stops the walk and is returned.
func (s *Scanner) Scan(rel string, fn func(Entry) error) error {
	root, err := openBeneath(s.Root)
	if err != nil {
		return fmt.Errorf("capture: scan: %w", err)
	}
	defer root.Close()
	w := walker{root: root, rootPath: s.Root, fn: fn}
	if rel != "" {
		if !validRel(rel) {
			return fmt.Errorf("capture: scan %q: %w", rel, ErrUnrepresentable)
		}
		e, err := w.entry(rel)
		if err != nil {
			return fmt.Errorf("capture: scan: %w", err)
		}
		if err := w.visit(e); err != nil {
			return err
		}
		return errors.Join(w.skipped...)
	}
	if err := w.dir("", nil); err != nil {
		return err
	}
	return errors.Join(w.skipped...)
}

type walker struct {
	root     *beneath
	rootPath string
	fn       func(Entry) error
	skipped  []error
}

// visit reports e and, for a directory, everything below it.
func (w *walker) visit(e Entry) error {
	if !e.Mode.IsDir() {
		return w.fn(e)
	}
	return w.dir(e.Path, &e)
}

// dir lists the directory rel and visits its entries; self is rel's own
// entry, reported first (with Err set if the listing fails).
func (w *walker) dir(rel string, self *Entry) error {
	names, err := w.root.readDirNames(rel)
	if err != nil && gone(err) {
		return nil
	}
	if err != nil {
		err = fmt.Errorf("capture: listing %s: %w", filepath.Join(w.rootPath, rel), err)
		if self == nil {
			return err
		}
		self.Err = err
	}
	if self != nil {
		if err := w.fn(*self); err != nil {
			return err
		}
	}
	slices.Sort(names)
	for _, n := range names {
		p := joinRel(rel, n)
		if !validRel(p) {
			w.skipped = append(w.skipped, fmt.Errorf("capture: scan: %w: %q", ErrUnrepresentable, p))
			continue
		}
		e, err := w.entry(p)
		if err != nil {
			if gone(err) {
				continue
			}
			return fmt.Errorf("capture: scan: %w", err)
		}
		if err := w.visit(e); err != nil {
			return err
		}
	}
	return nil
}

// entry reads one entry's state.
func (w *walker) entry(rel string) (Entry, error) {
	stx, err := w.root.statx(rel)
	if err != nil {
		return Entry{}, err
	}
	id := identOf(stx)
	e := Entry{
		Path:  rel,
		Mode:  fileMode(stx.Mode),
		Perm:  uint32(stx.Mode) & 0o7777,
		Size:  int64(stx.Size),
		MTime: statxTime(stx.Mtime),
		UID:   stx.Uid,
		GID:   stx.Gid,
		Dev:   id.dev,
		Ino:   id.ino,
		Nlink: uint64(stx.Nlink),
	}
	if id.birth != 0 {
		e.Birth = time.Unix(0, id.birth)
	}
	if e.Mode&fs.ModeSymlink != 0 {
		if e.Target, err = w.root.readlink(rel); err != nil {
			return Entry{}, err
		}
		return e, nil
	}
	if !e.Mode.IsDir() && !e.Mode.IsRegular() {
		return e, nil // FIFOs, sockets, devices: nothing more to read
	}
	// Names only: a diff that finds them different reads the values. An
	// O_PATH descriptor cannot list them, so the entry is opened
	// (non-blocking, should it have become a FIFO meanwhile).
	f, err := w.root.open(rel, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return Entry{}, err
	}
	defer f.Close()
	e.Xattrs, err = xattrNames(func(b []byte) (int, error) { return unix.Flistxattr(int(f.Fd()), b) })
	if err != nil {
		return Entry{}, fmt.Errorf("listing extended attributes of %s: %w", rel, err)
	}
	return e, nil
}

// xattrNames lists extended attribute names with list, which fills b (or
// returns the size needed when b is empty). A filesystem without xattr
// support has none.
func xattrNames(list func([]byte) (int, error)) ([]string, error) {
	for range 4 {
		n, err := list(nil)
		if err != nil {
			if errors.Is(err, unix.ENOTSUP) {
				return nil, nil
			}
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
		buf := make([]byte, n)
		n, err = list(buf)
		if errors.Is(err, unix.ERANGE) {
			continue // the list grew between the two calls
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		slices.Sort(names)
		return names, nil
	}
	return nil, fmt.Errorf("extended attribute list kept changing size: %w", unix.ERANGE)
}
