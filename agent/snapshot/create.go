package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/apply"
)

// Create copies the tree src (leaving out apply.StateDir at its top) into a
// new snapshot described by meta, and returns its Info. progress, when not
// nil, is called from Create's goroutine after each file with the files
// and bytes copied so far. On any error, a cancelled ctx included, nothing
// of the snapshot is left; a full filesystem gives an error wrapping
// ErrNoSpace that names what was being copied.
func (s *Store) Create(ctx context.Context, src string, meta Meta, progress func(files, bytes int64)) (Info, error) {
	if meta.Consistency == "" {
		meta.Consistency = CrashConsistent
	}
	start := time.Now().UTC().Truncate(time.Millisecond)
	in := Info{ID: formatID(start, 1), Time: start, Scenario: meta.Scenario, Method: Reflink, Consistency: meta.Consistency, Label: meta.Label}
	if err := checkInfo(in); err != nil {
		return Info{}, fmt.Errorf("create snapshot: %w", err)
	}
	id, partial, lock, err := s.newPartial(start)
	if err != nil {
		return Info{}, err
	}
	in.ID = id
	info, err := s.build(ctx, src, partial, in, progress)
	if err != nil {
		if rerr := removeTree(partial); rerr != nil {
			err = fmt.Errorf("%w (and removing the partial snapshot: %w)", err, rerr)
		}
		_ = lock.Close()
		return Info{}, err
	}
	// The lock is held across the rename, so no OpenStore can take the
	// finished snapshot for a leftover; it then names the snapshot.
	err = os.Rename(partial, filepath.Join(s.dir, id))
	if err == nil {
		err = syncDir(s.dir)
	}
	_ = lock.Close()
	if err != nil {
		return Info{}, fmt.Errorf("create snapshot %s: %w", id, err)
	}
	return info, nil
}

// newPartial makes the directory <id>.partial for a new snapshot of time t
// and locks it, so that leftover cleaning leaves it alone.
func (s *Store) newPartial(t time.Time) (id, dir string, lock *os.File, err error) {
	for n := 1; ; n++ {
		id = formatID(t, n)
		dir = filepath.Join(s.dir, id+partialSuffix)
		if _, err := os.Lstat(filepath.Join(s.dir, id)); err == nil {
			continue
		}
		if err := os.Mkdir(dir, 0o700); errors.Is(err, fs.ErrExist) {
			continue
		} else if err != nil {
			return "", "", nil, noSpace(fmt.Errorf("create snapshot %s: %w", id, err))
		}
		lock, err = lockDir(dir, unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			// Another store's leftover cleaning got it between our mkdir
			// and the lock, and is deleting it: take the next number.
			continue
		}
		// Between mkdir and lock, a cleaning may also have deleted it
		// already; the lock is then on an unnamed directory.
		var held, now unix.Stat_t
		if unix.Fstat(int(lock.Fd()), &held) == nil && unix.Lstat(dir, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev {
			return id, dir, lock, nil
		}
		_ = lock.Close()
	}
}

func (s *Store) build(ctx context.Context, src, partial string, in Info, progress func(files, bytes int64)) (Info, error) {
	tree := filepath.Join(partial, treeName)
	c := &copier{ctx: ctx, clone: &s.clone, dstRoot: tree, skipTop: apply.StateDir, progress: progress, links: map[inode]string{}}
	if err := c.copyTree(src, tree); err != nil {
		return Info{}, fmt.Errorf("create snapshot %s of %s: %w", in.ID, src, err)
	}
	if err := syncFS(partial); err != nil {
		return Info{}, fmt.Errorf("create snapshot %s: %w", in.ID, err)
	}
	in.Files, in.Bytes = c.files, c.bytes
	// Reflink only when clones were actually made: a tree without file
	// content proves nothing about the filesystem.
	if c.copied || !c.cloned {
		in.Method = Copy
	}
	b, err := encodeInfo(in)
	if err != nil {
		return Info{}, err
	}
	if err := writeFileAtomic(partial, infoName, b); err != nil {
		return Info{}, fmt.Errorf("create snapshot %s: %w", in.ID, err)
	}
	return in, nil
}

// syncFS flushes the whole filesystem holding dir: one syncfs instead of
// an fsync per copied file and directory.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return noSpace(fmt.Errorf("syncfs %s: %w", dir, err))
	}
	return nil
}
