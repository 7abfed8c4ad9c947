package snapshot

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// View is read access to one snapshot for the backup side. Names are
// relative to the snapshot's root ("." is the root) and resolved by
// os.Root: a name with "..", an absolute name, or a symlink on the way
// that leads out of the snapshot fails instead of reaching outside. While a
// View is open the snapshot cannot be released.
type View struct {
	info Info
	dir  string
	root *os.Root
	lock *os.File
}

// Open returns a View of snapshot id. Close it when done.
func (s *Store) Open(id string) (*View, error) {
	lock, err := s.hold(id)
	if err != nil {
		return nil, err
	}
	in, err := s.readInfo(id)
	if err != nil {
		_ = lock.Close()
		return nil, err
	}
	dir := filepath.Join(s.dir, id, treeName)
	root, err := os.OpenRoot(dir)
	if err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("open snapshot %s: %w", id, err)
	}
	return &View{info: in, dir: dir, root: root, lock: lock}, nil
}

// Info describes the snapshot.
func (v *View) Info() Info { return v.info }

// Dir is the snapshot's tree on disk, for tools that need a path (its
// parent directories are root's only). Reading through the View's methods
// is what keeps paths confined.
func (v *View) Dir() string { return v.dir }

// Open opens the named file for reading (following symlinks that stay
// inside the snapshot).
func (v *View) Open(name string) (*os.File, error) { return v.root.Open(name) }

// Lstat describes the named object without following a final symlink.
func (v *View) Lstat(name string) (fs.FileInfo, error) { return v.root.Lstat(name) }

// ReadDir lists the named directory, sorted by name.
func (v *View) ReadDir(name string) ([]fs.DirEntry, error) {
	f, err := v.root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("read directory %s in snapshot %s: %w", name, v.info.ID, err)
	}
	sortEntries(ents)
	return ents, nil
}

// Readlink returns the target of the named symlink, verbatim.
func (v *View) Readlink(name string) (string, error) { return v.root.Readlink(name) }

// FS is the snapshot as an fs.FS (read only, confined like the View).
func (v *View) FS() fs.FS { return v.root.FS() }

// Close releases the snapshot for Release.
func (v *View) Close() error {
	err := v.root.Close()
	if lerr := v.lock.Close(); err == nil {
		err = lerr
	}
	return err
}

func sortEntries(ents []fs.DirEntry) {
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
}
