package treesync

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/change"
)

// ScanOptions adjust Scan. The zero value is the usual choice.
type ScanOptions struct {
	// NoXattrs skips extended attributes: entries then have none, on both
	// sides of a comparison. For trees whose attributes do not matter, or
	// to save the two system calls per entry they cost.
	NoXattrs bool
}

// ScanError is an entry Scan could not read, or read only in part.
type ScanError struct {
	Path string // "." for the root
	Err  error
}

func (e *ScanError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *ScanError) Unwrap() error { return e.Err }

// Scan walks the tree at root and returns its entries sorted by path (the
// root itself excluded: its mode and owner are the host's, and the
// applier restricts a replica's root on purpose), with the problems met
// on the way.
//
// Scan never follows a symlink: a symlink is an entry, and a directory is
// entered only if it is still the directory that was listed. The replica
// applier's state directory (StateDir) at the top is left out.
//
// An entry that cannot be read is a problem, not a failure of the scan:
// it is left out (or kept, marked XattrsUnread or Unlisted, when only part
// of it could not be read), and the walk goes on. Names that
// change.ValidPath refuses (not UTF-8, too long) cannot be replicated, and
// are problems too. An entry removed while the walk runs is simply absent.
// Only a root that cannot be opened or listed fails the scan.
func Scan(root string, opts ScanOptions) ([]Entry, []*ScanError, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("scan %s: %w", root, os.NewSyscallError("open", err))
	}
	s := &scanner{opts: opts}
	if !s.walk(fd, "") {
		return nil, s.problems, fmt.Errorf("scan %s: %w", root, s.problems[len(s.problems)-1].Err)
	}
	s.sort()
	return s.entries, s.problems, nil
}

// scanBelow scans the subtree at rel below the directory rootfd, rel
// excluded, resolving rel without following symlinks. Paths are relative
// to rootfd's directory.
func scanBelow(rootfd int, rel string, opts ScanOptions) ([]Entry, []*ScanError, error) {
	fd, err := openBeneath(rootfd, rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, nil, err
	}
	s := &scanner{opts: opts}
	if !s.walk(fd, rel) {
		return nil, s.problems, s.problems[len(s.problems)-1].Err
	}
	s.sort()
	return s.entries, s.problems, nil
}

type scanner struct {
	opts     ScanOptions
	entries  []Entry
	problems []*ScanError
}

func (s *scanner) problem(rel string, err error) {
	if rel == "" {
		rel = "."
	}
	s.problems = append(s.problems, &ScanError{Path: rel, Err: err})
}

// sort orders the entries by path: the walk lists a directory's names in
// order, but "a/b" sorts after "a-c" while the walk reaches it before.
func (s *scanner) sort() {
	sort.Slice(s.entries, func(i, j int) bool { return s.entries[i].Path < s.entries[j].Path })
}

// walk lists the directory open at fd, whose path is rel ("" for the
// root), and everything below it, and closes fd. It returns false if the
// directory could not be listed.
func (s *scanner) walk(fd int, rel string) bool {
	dir := os.NewFile(uintptr(fd), rel)
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		s.problem(rel, fmt.Errorf("list directory: %w", err))
		return false
	}
	sort.Strings(names)
	for _, name := range names {
		p := name
		if rel != "" {
			p = rel + "/" + name
		} else if name == StateDir {
			continue
		}
		if err := change.ValidPath(p); err != nil {
			s.problem(p, fmt.Errorf("cannot be replicated: %w", err))
			continue
		}
		e, xerr, err := readEntry(fd, name, p, !s.opts.NoXattrs)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the listing: it is not there
		}
		if err != nil {
			s.problem(p, err)
			continue
		}
		if xerr != nil {
			s.problem(p, xerr)
		}
		s.entries = append(s.entries, e)
		if e.Type != Dir {
			continue
		}
		i := len(s.entries) - 1
		cfd, err := openDir(fd, name, &e)
		if err == nil && !s.walk(cfd, p) {
			err = errListed // walk recorded why
		}
		if err != nil {
			if err != errListed {
				s.problem(p, err)
			}
			s.entries[i].Unlisted = true
		}
	}
	return true
}

var errListed = errors.New("listed already")

// openDir opens the directory name in dirfd, which must still be the
// object e describes: opening never follows a symlink, and a directory
// replaced since it was seen is not entered.
func openDir(dirfd int, name string, e *Entry) (int, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open directory: %w", os.NewSyscallError("openat", err))
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd)
		return -1, os.NewSyscallError("fstat", err)
	}
	if st.Dev != e.Dev || st.Ino != e.Ino {
		_ = unix.Close(fd)
		return -1, fmt.Errorf("directory replaced while being scanned")
	}
	return fd, nil
}
