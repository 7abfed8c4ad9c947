package apply

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// What a commit must do for one object.
type syncKind uint8

const (
	syncData syncKind = 1 << iota // fdatasync: data and size
	syncMeta                      // fsync: data and the whole inode (mode, owner, times, xattrs, entries of a directory)
	syncFS                        // syncfs: metadata of a symlink in this filesystem, which cannot be opened to fsync
)

type fileKey struct{ dev, ino uint64 }

type pendingFile struct {
	fd   int
	dir  bool
	kind syncKind
}

// pending is what the changes applied since the last commit left to sync,
// one descriptor per object however many changes touched it: this is what
// makes group commit cheaper than a sync per change.
type pending struct {
	m map[fileKey]*pendingFile
}

func (p *pending) len() int { return len(p.m) }

// add remembers that fd's object must be synced. The caller keeps fd; the
// set holds its own duplicate.
func (p *pending) add(fd int, kind syncKind) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	k := fileKey{st.Dev, st.Ino}
	if f, ok := p.m[k]; ok {
		f.kind |= kind
		return nil
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("dup", err)
	}
	p.m[k] = &pendingFile{fd: dup, dir: isType(&st, unix.S_IFDIR), kind: kind}
	return nil
}

// flush syncs files before directories, so that a name made durable
// points at durable content, then forgets everything. After an error the
// set is empty all the same: see the package doc on failed syncs.
func (p *pending) flush() error {
	var errs []error
	for _, dirs := range []bool{false, true} {
		var fs []*pendingFile
		for _, f := range p.m {
			if f.dir == dirs {
				fs = append(fs, f)
			}
		}
		if err := syncEach(len(fs), func(i int) error { return fs[i].sync() }); err != nil {
			errs = append(errs, err)
		}
	}
	p.discard()
	return errors.Join(errs...)
}

func (f *pendingFile) sync() error {
	var err error
	switch {
	case f.kind&syncFS != 0:
		if err = unix.Syncfs(f.fd); err == nil && f.kind&^syncFS != 0 {
			err = unix.Fsync(f.fd)
		}
	case f.kind&syncMeta != 0 || f.dir:
		err = unix.Fsync(f.fd)
	default:
		err = unix.Fdatasync(f.fd)
	}
	if err != nil {
		return fmt.Errorf("sync: %w", os.NewSyscallError("fsync", err))
	}
	return nil
}

// maxSyncers bounds the syncs run at once.
const maxSyncers = 16

// syncEach runs syncOne(0) to syncOne(n-1) side by side and joins their errors.
// Syncs issued together let the filesystem write the data of all of them
// at once and cover them with one journal commit, where syncs in a row
// wait for one commit each.
func syncEach(n int, syncOne func(i int) error) error {
	if n <= 1 {
		if n == 1 {
			return syncOne(0)
		}
		return nil
	}
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(n, maxSyncers) {
		wg.Go(func() {
			for i := range next {
				errs[i] = syncOne(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

func (p *pending) discard() {
	for k, f := range p.m {
		_ = unix.Close(f.fd)
		delete(p.m, k)
	}
}
