package snapshot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

var (
	// ErrNotFound: no snapshot has this ID.
	ErrNotFound = errors.New("snapshot not found")
	// ErrNoSpace: the store's filesystem is full (ENOSPC) or a quota is
	// reached (EDQUOT).
	ErrNoSpace = errors.New("no space left for the snapshot")
	// ErrInUse: a View or Writable (of this or another process) holds the
	// snapshot.
	ErrInUse = errors.New("snapshot in use")
)

const (
	treeName      = "tree"
	infoName      = "info.json"
	partialSuffix = ".partial"
	releaseSuffix = ".released"
)

// Store is the snapshots of one replica tree, kept in one directory. Its
// methods may be called concurrently, also by several processes on the
// same directory.
type Store struct {
	dir   string
	mu    sync.Mutex // serializes rewrites of info.json in this process
	clone cloneChoice
}

// OpenStore opens (creating it, mode 0700) the store directory dir, which
// must be on the filesystem of the trees it will copy for copy-on-write
// clones to work, and removes what a crashed Create or Release left.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create snapshot store %s: %w", dir, err)
	}
	// Snapshots hold every file of the replica whatever its mode, so the
	// store is root's only.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restrict snapshot store %s: %w", dir, err)
	}
	s := &Store{dir: dir}
	if err := s.removeLeftovers(); err != nil {
		return nil, err
	}
	return s, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// removeLeftovers deletes the .partial and .released directories of
// Creates and Releases that are no longer running: a live one holds an
// exclusive flock on its directory.
func (s *Store) removeLeftovers() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("read snapshot store %s: %w", s.dir, err)
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, partialSuffix) && !strings.HasSuffix(name, releaseSuffix) {
			continue
		}
		p := filepath.Join(s.dir, name)
		lock, err := lockDir(p, unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) || errors.Is(err, fs.ErrNotExist) {
			continue // still being built or deleted, or just finished
		}
		if err != nil {
			return fmt.Errorf("lock leftover snapshot %s: %w", p, err)
		}
		slog.Info("snapshot: removing the leftover of an interrupted create or release", "dir", p)
		err = removeTree(p)
		_ = lock.Close()
		if err != nil {
			return fmt.Errorf("remove leftover snapshot %s: %w", p, err)
		}
	}
	return nil
}

// List returns the snapshots, oldest first. A snapshot whose info.json
// cannot be read is logged and left out (Release still deletes it by ID).
func (s *Store) List() ([]Info, error) {
	if err := s.removeLeftovers(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("read snapshot store %s: %w", s.dir, err)
	}
	var out []Info
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if _, _, err := parseID(e.Name()); err != nil {
			continue
		}
		in, err := s.readInfo(e.Name())
		if errors.Is(err, ErrNotFound) {
			continue // released meanwhile
		}
		if err != nil {
			slog.Warn("snapshot: unreadable snapshot left out of the list", "id", e.Name(), "err", err)
			continue
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Info) int {
		switch {
		case idLess(a.ID, b.ID):
			return -1
		case idLess(b.ID, a.ID):
			return 1
		}
		return 0
	})
	return out, nil
}

// Get returns the Info of snapshot id.
func (s *Store) Get(id string) (Info, error) {
	if _, _, err := parseID(id); err != nil {
		return Info{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return s.readInfo(id)
}

func (s *Store) readInfo(id string) (Info, error) {
	p := filepath.Join(s.dir, id, infoName)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Info{}, fmt.Errorf("open snapshot info %s: %w", p, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxInfoBytes+1))
	if err != nil {
		return Info{}, fmt.Errorf("read snapshot info %s: %w", p, err)
	}
	in, err := decodeInfo(b)
	if err != nil {
		return Info{}, fmt.Errorf("snapshot info %s: %w", p, err)
	}
	if in.ID != id {
		return Info{}, fmt.Errorf("snapshot info %s: %w: it names snapshot %s", p, errBadInfo, in.ID)
	}
	return in, nil
}

// SetConsistency records the consistency of snapshot id, for example
// ApplicationConsistent after an Assured Recovery test passed on it.
func (s *Store) SetConsistency(id, c string) error {
	if c != CrashConsistent && c != ApplicationConsistent {
		return fmt.Errorf("set consistency of snapshot %s: unknown consistency %q", id, c)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in, err := s.Get(id)
	if err != nil {
		return err
	}
	in.Consistency = c
	b, err := encodeInfo(in)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(s.dir, id), infoName, b); err != nil {
		return fmt.Errorf("set consistency of snapshot %s: %w", id, err)
	}
	return nil
}

// Release deletes snapshot id. It fails with ErrInUse while a View or
// Writable holds it.
func (s *Store) Release(id string) error {
	if _, _, err := parseID(id); err != nil {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	p := filepath.Join(s.dir, id)
	lock, err := lockDir(p, unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if errors.Is(err, unix.EWOULDBLOCK) {
		return fmt.Errorf("release snapshot %s: %w", id, ErrInUse)
	}
	if err != nil {
		return fmt.Errorf("release snapshot %s: %w", id, err)
	}
	defer lock.Close()
	// Renamed first, so that a crash in the middle of the deletion leaves a
	// leftover that is never listed, rather than a listed half snapshot.
	gone := p + releaseSuffix
	if err := os.Rename(p, gone); err != nil {
		return fmt.Errorf("release snapshot %s: %w", id, err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("release snapshot %s: %w", id, err)
	}
	if err := removeTree(gone); err != nil {
		return fmt.Errorf("release snapshot %s: %w", id, err)
	}
	return nil
}

// Keep releases the oldest snapshots beyond the newest n and returns those
// it released. A snapshot in use is skipped (kept until a later Keep): the
// others are still released and the error wraps ErrInUse.
func (s *Store) Keep(n int) ([]Info, error) {
	if n < 0 {
		return nil, fmt.Errorf("keep %d snapshots: negative count", n)
	}
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	var released []Info
	var busy []string
	for _, in := range all[:max(0, len(all)-n)] {
		err := s.Release(in.ID)
		switch {
		case errors.Is(err, ErrInUse):
			busy = append(busy, in.ID)
		case errors.Is(err, ErrNotFound):
			// released by someone else meanwhile
		case err != nil:
			return released, err
		default:
			released = append(released, in)
		}
	}
	if len(busy) > 0 {
		return released, fmt.Errorf("keep %d snapshots: %w, kept for now: %s", n, ErrInUse, strings.Join(busy, ", "))
	}
	return released, nil
}

// hold takes a shared lock on snapshot id for a View or Writable, so that
// Release refuses it meanwhile. It waits for a Release in progress, then
// finds the snapshot gone.
func (s *Store) hold(id string) (*os.File, error) {
	if _, _, err := parseID(id); err != nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	p := filepath.Join(s.dir, id)
	lock, err := lockDir(p, unix.LOCK_SH)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("hold snapshot %s: %w", id, err)
	}
	// The lock is on the directory we opened; if a Release renamed it
	// before we got the lock, that directory is no longer the snapshot.
	var held, now unix.Stat_t
	if err := unix.Fstat(int(lock.Fd()), &held); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("hold snapshot %s: %w", id, err)
	}
	if err := unix.Stat(p, &now); err != nil || now.Ino != held.Ino || now.Dev != held.Dev {
		_ = lock.Close()
		return nil, fmt.Errorf("%w: %s (released)", ErrNotFound, id)
	}
	return lock, nil
}

// lockDir opens directory p and flocks it (how: unix.LOCK_*). The lock
// lasts until the returned file is closed.
func lockDir(p string, how int) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// writeFileAtomic replaces dir/name with b: a temporary file, fsynced,
// renamed over the name, and the directory fsynced.
func writeFileAtomic(dir, name string, b []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return noSpace(fmt.Errorf("write %s: %w", tmp, err))
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return noSpace(fmt.Errorf("write %s: %w", filepath.Join(dir, name), err))
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// removeTree removes p and everything below. Without root, directories
// copied read-only (mode 0500) cannot be emptied, so on a permission error
// they are made writable by their owner and the removal tried again.
func removeTree(p string) error {
	err := os.RemoveAll(p)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	werr := filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: the chmod of its parent below may fix it; RemoveAll reports what stays
		}
		if d.IsDir() {
			return os.Chmod(q, 0o700)
		}
		return nil
	})
	if werr != nil {
		return fmt.Errorf("%w (making it writable: %w)", err, werr)
	}
	return os.RemoveAll(p)
}

// noSpace marks out-of-space errors with ErrNoSpace.
func noSpace(err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}
