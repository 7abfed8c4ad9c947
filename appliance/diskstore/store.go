package diskstore

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/holdfast/holdfast/appliance/diskstore/chunker"
)

// DefaultPackTarget is the size at which a pack is closed.
const DefaultPackTarget = 16 << 20

// Options tune a store. Zero values take the defaults.
type Options struct {
	// Chunker sizes, fixed at Create (they are kept in the key file).
	Chunker chunker.Params
	// PasswordIterations for new password slots (PBKDF2-HMAC-SHA-256).
	PasswordIterations int
	// PackTarget is the pack size in bytes at which a pack is closed.
	PackTarget int64
	Logger     *slog.Logger
}

func (o *Options) fill() {
	if o.Chunker == (chunker.Params{}) {
		o.Chunker = chunker.DefaultParams()
	}
	if o.PasswordIterations == 0 {
		o.PasswordIterations = DefaultPasswordIterations
	}
	if o.PackTarget == 0 {
		o.PackTarget = DefaultPackTarget
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

type location struct {
	pack   int // index in Store.packs; -1: the pack being written
	offset uint64
	length uint32
	kind   blobKind
}

// Store is one open store directory. One process at a time holds it (an
// exclusive flock on DIR/lock); within the process its methods are safe
// for concurrent use and several sessions may be written at once.
type Store struct {
	dir  string
	kr   *keyring
	opts Options
	log  *slog.Logger
	lock *os.File

	mu      sync.Mutex
	packs   []string
	index   map[ID]location
	cur     *packWriter
	pending map[ID]location // blobs in cur
	files   map[int]*os.File
	closed  bool
	// dropped counts packs given up unfinished (a write failed): a session
	// that began before one may name chunks that are gone, so it must not
	// commit.
	dropped int
	// active is read-held by every session being written and write-held
	// by Prune.
	active sync.RWMutex
}

// Create makes a new store in dir (absent or empty), its secrets sealed for
// u, and opens it.
func Create(dir string, u Unlock, opts Options) (*Store, error) {
	opts.fill()
	if err := u.check(); err != nil {
		return nil, fmt.Errorf("create store %s: %w", dir, err)
	}
	if err := opts.Chunker.Validate(); err != nil {
		return nil, fmt.Errorf("create store %s: %w", dir, err)
	}
	if opts.PasswordIterations < minPasswordIterations || opts.PasswordIterations > maxPasswordIterations {
		return nil, fmt.Errorf("create store %s: password iterations %d out of range", dir, opts.PasswordIterations)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, ioErr(err, "create store %s", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, ioErr(err, "create store %s", dir)
	}
	if len(ents) > 0 {
		return nil, fmt.Errorf("create store %s: directory not empty", dir)
	}
	sec := &secrets{params: opts.Chunker}
	rand.Read(sec.dataKey[:])
	rand.Read(sec.idKey[:])
	rand.Read(sec.chunkerKey[:])
	var kf keyFile
	rand.Read(kf.storeID[:])
	slot, err := newSlot(kf.storeID, u, sec, opts.PasswordIterations)
	if err != nil {
		return nil, fmt.Errorf("create store %s: %w", dir, err)
	}
	kf.slots = []keySlot{slot}
	for _, sub := range []string{"packs", "sessions"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, ioErr(err, "create store %s", dir)
		}
	}
	// The key file last: a directory with one is a whole store.
	if err := writeFileAtomic(dir, "store.key", kf.encode()); err != nil {
		return nil, fmt.Errorf("create store %s: %w", dir, err)
	}
	return Open(dir, u, opts)
}

// Open opens the store in dir with u, rebuilding its index from the packs.
func Open(dir string, u Unlock, opts Options) (*Store, error) {
	opts.fill()
	if err := u.check(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "store.key"))
	if err != nil {
		return nil, ioErr(err, "open store %s", dir)
	}
	kf, err := decodeKeyFile(raw)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	sec, err := kf.open(u)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, ioErr(err, "open store %s lock", dir)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("open store %s: %w", dir, ErrLocked)
		}
		return nil, ioErr(err, "lock store %s", dir)
	}
	s := &Store{
		dir: dir, kr: newKeyring(kf.storeID, sec), opts: opts, log: opts.Logger, lock: lock,
		index: map[ID]location{}, pending: map[ID]location{}, files: map[int]*os.File{},
	}
	if err := s.removeTemporaries(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.loadIndex(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// AddUnlock seals the store's secrets for one more appliance key or
// password, so either opens the store.
func (s *Store) AddUnlock(u Unlock) error {
	if err := u.check(); err != nil {
		return fmt.Errorf("add key slot: %w", err)
	}
	raw, err := os.ReadFile(filepath.Join(s.dir, "store.key"))
	if err != nil {
		return ioErr(err, "add key slot")
	}
	kf, err := decodeKeyFile(raw)
	if err != nil {
		return fmt.Errorf("add key slot: %w", err)
	}
	if len(kf.slots) >= maxSlots {
		return fmt.Errorf("add key slot: store already has %d slots", maxSlots)
	}
	slot, err := newSlot(kf.storeID, u, s.kr.sec, s.opts.PasswordIterations)
	if err != nil {
		return fmt.Errorf("add key slot: %w", err)
	}
	kf.slots = append(kf.slots, slot)
	if err := writeFileAtomic(s.dir, "store.key", kf.encode()); err != nil {
		return fmt.Errorf("add key slot: %w", err)
	}
	return nil
}

// Close finishes the open pack (its chunks stay, unreferenced unless a
// committed session names them) and releases the store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.cur != nil {
		s.cur.abort()
		s.cur = nil
	}
	for _, f := range s.files {
		f.Close()
	}
	if err := s.lock.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close store lock: %w", err))
	}
	return errors.Join(errs...)
}

// removeTemporaries deletes what an earlier process left half written; the
// lock says no other process is writing them.
func (s *Store) removeTemporaries() error {
	for _, sub := range []string{"packs", "sessions"} {
		ents, err := os.ReadDir(filepath.Join(s.dir, sub))
		if err != nil {
			return ioErr(err, "open store %s", s.dir)
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "tmp-") {
				p := filepath.Join(s.dir, sub, e.Name())
				if err := os.Remove(p); err != nil {
					return ioErr(err, "remove leftover %s", p)
				}
				s.log.Info("diskstore: removed a file an interrupted writer left", "path", p)
			}
		}
	}
	return nil
}

// loadIndex reads every pack's index. A pack whose index cannot be read is
// logged and left out: sessions needing its chunks then fail Verify with
// the chunk named, rather than the whole store failing to open.
func (s *Store) loadIndex() error {
	root := filepath.Join(s.dir, "packs")
	subs, err := os.ReadDir(root)
	if err != nil {
		return ioErr(err, "scan packs")
	}
	for _, sub := range subs {
		if !sub.IsDir() {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(root, sub.Name()))
		if err != nil {
			return ioErr(err, "scan packs")
		}
		for _, e := range ents {
			name, ok := strings.CutSuffix(e.Name(), ".pack")
			if !ok || !validPackName(name) || name[:2] != sub.Name() {
				continue
			}
			if err := s.loadPack(name); err != nil {
				if errors.Is(err, ErrCorrupt) {
					s.log.Warn("diskstore: pack left out of the index", "pack", name, "err", err)
					continue
				}
				return err
			}
		}
	}
	return nil
}

func (s *Store) loadPack(name string) error {
	f, err := os.Open(packPath(s.dir, name))
	if err != nil {
		return ioErr(err, "open pack %s", name)
	}
	defer f.Close()
	entries, err := readPackIndex(s.kr, f, name)
	if err != nil {
		return err
	}
	n := len(s.packs)
	s.packs = append(s.packs, name)
	for _, p := range entries {
		s.index[p.id] = location{pack: n, offset: p.offset, length: p.length, kind: p.kind}
	}
	return nil
}

// put stores plain as a blob of kind unless a blob with its id is already
// stored, and returns its id.
func (s *Store) put(kind blobKind, plain []byte) (id ID, isNew bool, err error) {
	id = s.kr.id(plain)
	s.mu.Lock()
	_, have := s.index[id]
	if !have {
		_, have = s.pending[id]
	}
	s.mu.Unlock()
	if have {
		return id, false, nil
	}
	blob := s.kr.seal(kind, id, plain)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ID{}, false, errors.New("store closed")
	}
	if _, ok := s.index[id]; ok {
		return id, false, nil
	}
	if _, ok := s.pending[id]; ok {
		return id, false, nil
	}
	if s.cur == nil {
		w, err := createPack(s.dir)
		if err != nil {
			return ID{}, false, err
		}
		s.cur = w
	}
	p, err := s.cur.append(kind, id, blob)
	if err != nil {
		// The pack may hold a torn blob now: drop it and its pending
		// blobs, which no committed session names yet.
		s.dropPackLocked()
		return ID{}, false, err
	}
	s.pending[id] = location{pack: -1, offset: p.offset, length: p.length, kind: kind}
	if s.cur.size >= s.opts.PackTarget {
		if err := s.flushLocked(); err != nil {
			return ID{}, false, err
		}
	}
	return id, true, nil
}

func (s *Store) dropPackLocked() {
	s.dropped++
	s.cur.abort()
	s.cur = nil
	clear(s.pending)
}

// flush makes every blob put so far durable in a finished pack.
func (s *Store) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushLocked()
}

func (s *Store) flushLocked() error {
	if s.cur == nil {
		return nil
	}
	if err := s.cur.finish(s.kr); err != nil {
		s.dropPackLocked()
		return err
	}
	n := len(s.packs)
	s.packs = append(s.packs, s.cur.name)
	for id, l := range s.pending {
		l.pack = n
		s.index[id] = l
	}
	clear(s.pending)
	s.cur = nil
	return nil
}

// get reads and checks the blob of id.
func (s *Store) get(kind blobKind, id ID) ([]byte, error) {
	for tries := 0; ; tries++ {
		b, err := s.getOnce(kind, id)
		// Another reader may have closed the pack file, making room
		// among the open ones (packFileLocked), between our lookup and
		// our read: look it up again.
		if errors.Is(err, os.ErrClosed) && tries < 8 {
			continue
		}
		return b, err
	}
}

func (s *Store) getOnce(kind blobKind, id ID) ([]byte, error) {
	s.mu.Lock()
	l, ok := s.index[id]
	var f *os.File
	if !ok {
		if l, ok = s.pending[id]; ok {
			f = s.cur.f
		}
	}
	if !ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: chunk %s is in no pack", ErrCorrupt, shortID(id))
	}
	if f != nil {
		// The pack being written may be finished and closed as soon as
		// the lock is let go: read it under the lock.
		defer s.mu.Unlock()
		return s.readBlob(f, l, kind, id)
	}
	if f == nil {
		var err error
		if f, err = s.packFileLocked(l.pack); err != nil {
			s.mu.Unlock()
			return nil, err
		}
	}
	s.mu.Unlock()
	return s.readBlob(f, l, kind, id)
}

func (s *Store) readBlob(f *os.File, l location, kind blobKind, id ID) ([]byte, error) {
	blob := make([]byte, l.length)
	if _, err := f.ReadAt(blob, int64(l.offset)); err != nil {
		if err == io.EOF {
			return nil, corrupt("chunk %s: pack is shorter than its index says", shortID(id))
		}
		return nil, ioErr(err, "read chunk %s", shortID(id))
	}
	// Data and tree chunks share one id space (equal content is stored
	// once), so a manifest chunk may be a blob first stored as data.
	if l.kind != kind && !(isContent(l.kind) && isContent(kind)) {
		return nil, corrupt("chunk %s is %v, want %v", shortID(id), l.kind, kind)
	}
	return s.kr.open(blob, l.kind, id)
}

func (s *Store) packFileLocked(n int) (*os.File, error) {
	if f, ok := s.files[n]; ok {
		return f, nil
	}
	if len(s.files) >= 64 {
		for k, f := range s.files {
			f.Close()
			delete(s.files, k)
		}
	}
	f, err := os.Open(packPath(s.dir, s.packs[n]))
	if err != nil {
		return nil, ioErr(err, "open pack %s", s.packs[n])
	}
	s.files[n] = f
	return f, nil
}

// writeFileAtomic writes dir/name by temp file, fsync, rename, dir fsync.
func writeFileAtomic(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, "tmp-"+name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return ioErr(err, "create %s", tmp)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return ioErr(err, "write %s", tmp)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return ioErr(err, "fsync %s", tmp)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return ioErr(err, "close %s", tmp)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return ioErr(err, "rename %s", tmp)
	}
	return syncDir(dir)
}

func isContent(k blobKind) bool { return k == kindData || k == kindTree }
