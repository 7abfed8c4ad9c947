package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"

	"github.com/holdfast/holdfast/agent/change"
)

const (
	ackName   = "ack"
	dirtyName = "dirty"
	cleanName = "clean"
	lockName  = "lock"
)

// sessions numbers each Open, so a DirtyMark cannot be used against a
// different Open of the same directory.
var sessions atomic.Uint64

// dirtySet is the persisted set of paths that need a block-level resync
// because changes to them were dropped. The file is append-only (one frame
// per newly dirty path, the same framing as segments) and is deduplicated
// when loaded; ClearDirty rewrites it atomically.
type dirtySet struct {
	dir      string
	f        *os.File          // O_APPEND; nil after close or a failed rewrite
	paths    map[string]uint64 // path -> epoch it was last marked in
	epoch    uint64
	session  uint64
	unsynced bool
	err      error // sticky, after a rewrite left no usable file
}

// DirtyMark identifies a DirtyPaths snapshot, for ClearDirty.
type DirtyMark struct {
	session uint64
	epoch   uint64
	fence   uint64
}

// Fence is the highest Seq stored when the snapshot was taken. Resync the
// snapshot's paths only after every change up to Fence has been applied by
// the replica (Stats().AckedSeq >= Fence): an older stored change applied
// after the resync would roll the file back.
func (m DirtyMark) Fence() uint64 { return m.fence }

func (d *dirtySet) path() string { return filepath.Join(d.dir, dirtyName) }

// load reads the dirty-path file, creating it if absent. A torn last entry
// is cut off and reported; damage before an intact entry is an error,
// because a lost dirty path is a silently divergent file.
func (d *dirtySet) load(dir string) (*Truncation, error) {
	d.dir = dir
	d.paths = make(map[string]uint64)
	d.session = sessions.Add(1)
	path := d.path()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if err := writeFileAtomic(dir, dirtyName, []byte(dirtyMagic)); err != nil {
			return nil, fmt.Errorf("create dirty-path file: %w", err)
		}
		return nil, d.open()
	}
	if err != nil {
		return nil, fmt.Errorf("open dirty-path file: %w", err)
	}
	defer f.Close()
	res, err := scanLog(f, path, dirtyMagic, true, func(off int64, _ frameHeader, rec []byte) error {
		p := string(rec)
		if err := change.ValidPath(p); err != nil {
			return &CorruptError{Path: path, Offset: off, Err: fmt.Errorf("dirty path: %w", err)}
		}
		d.epoch++
		d.paths[p] = d.epoch
		return nil
	})
	if err != nil {
		return nil, err
	}
	var cut *Truncation
	if res.torn {
		if err := truncateTail(f, res.end, dirtyMagic); err != nil {
			return nil, err
		}
		cut = &Truncation{Path: path, Offset: res.end, Bytes: res.size - res.end}
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("close %s: %w", path, err)
	}
	return cut, d.open()
}

func (d *dirtySet) open() error {
	f, err := os.OpenFile(d.path(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		d.err = fmt.Errorf("open dirty-path file: %w", err)
		return d.err
	}
	d.f = f
	return nil
}

// mark adds p. The path is kept in memory even when writing it fails, so
// DirtyPaths still reports it while the spool is being reopened.
func (d *dirtySet) mark(p string) error {
	d.epoch++
	_, known := d.paths[p]
	d.paths[p] = d.epoch
	if known {
		return nil
	}
	if d.err != nil {
		return d.err
	}
	if _, err := d.f.Write(appendFrame(nil, 0, 0, []byte(p))); err != nil {
		return fmt.Errorf("write dirty-path file: %w", err)
	}
	d.unsynced = true
	return nil
}

func (d *dirtySet) sync() error {
	if !d.unsynced {
		return nil
	}
	if d.err != nil {
		return d.err
	}
	if err := fsync(d.f); err != nil {
		return fmt.Errorf("sync dirty-path file: %w", err)
	}
	d.unsynced = false
	return nil
}

func (d *dirtySet) close() error {
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	if err != nil {
		return fmt.Errorf("close dirty-path file: %w", err)
	}
	return nil
}

// dirtyPathsOf lists the paths a change touches at path granularity: its
// Path, and for a rename or a hard link the new name as well. A directory
// operation names the directory, so a directory path in the set stands for
// its whole subtree.
func dirtyPathsOf(c *change.Change) []string {
	if c.Op == change.OpRename || c.Op == change.OpLink {
		return []string{c.Path, c.NewPath}
	}
	return []string{c.Path}
}

func (s *Spool) markDirty(c *change.Change) error {
	s.dirtyMu.Lock()
	defer s.dirtyMu.Unlock()
	for _, p := range dirtyPathsOf(c) {
		if err := s.dirty.mark(p); err != nil {
			return fmt.Errorf("mark %q dirty for change %d: %w", p, c.Seq, err)
		}
	}
	return nil
}

func (s *Spool) syncDirty() error {
	s.dirtyMu.Lock()
	defer s.dirtyMu.Unlock()
	return s.dirty.sync()
}

// Overflowed reports whether changes have been dropped since the dirty set
// was last cleared: a resync is owed (or the spool is still dropping).
func (s *Spool) Overflowed() bool {
	s.dirtyMu.Lock()
	n := len(s.dirty.paths)
	s.dirtyMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	return n > 0 || s.dropping
}

// DirtyPaths returns the dirty paths, sorted, and a mark for ClearDirty.
// Marks made by Append are durable once Sync returns.
func (s *Spool) DirtyPaths() ([]string, DirtyMark) {
	s.dirtyMu.Lock()
	defer s.dirtyMu.Unlock()
	paths := make([]string, 0, len(s.dirty.paths))
	for p := range s.dirty.paths {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	s.mu.Lock()
	fence := s.lastStoredSeq
	s.mu.Unlock()
	return paths, DirtyMark{session: s.dirty.session, epoch: s.dirty.epoch, fence: fence}
}

// ClearDirty removes the paths of the snapshot m came with, once they have
// been resynced. A path marked again after the snapshot stays: a change to
// it was dropped while its resync was running, so the resync may have
// missed it. The remaining set is rewritten atomically and durably.
func (s *Spool) ClearDirty(m DirtyMark) error {
	s.dirtyMu.Lock()
	defer s.dirtyMu.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	d := &s.dirty
	if m.session != d.session {
		return ErrStaleMark
	}
	keep := make(map[string]uint64)
	for p, e := range d.paths {
		if e > m.epoch {
			keep[p] = e
		}
	}
	if len(keep) == len(d.paths) {
		return nil
	}
	data := []byte(dirtyMagic)
	for _, p := range slices.Sorted(maps.Keys(keep)) {
		data = appendFrame(data, 0, 0, []byte(p))
	}
	if err := writeFileAtomic(s.dir, dirtyName, data); err != nil {
		return fmt.Errorf("clear dirty paths: %w", err)
	}
	// The rename replaced the file: the old descriptor points at the old
	// contents, which nothing will read again.
	if err := d.close(); err != nil {
		return err
	}
	d.paths = keep
	d.unsynced = false
	d.err = nil
	if err := d.open(); err != nil {
		return fmt.Errorf("clear dirty paths: %w", err)
	}
	return nil
}
