package diskstore

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast/appliance/diskstore/chunker"
)

func newSessionID(t time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// validSessionID accepts what newSessionID makes: the root file's name.
func validSessionID(id string) bool {
	ts, rnd, ok := strings.Cut(id, "-")
	if !ok || len(rnd) != 8 {
		return false
	}
	if _, err := time.Parse("20060102T150405Z", ts); err != nil {
		return false
	}
	_, err := hex.DecodeString(rnd)
	return err == nil && strings.ToLower(rnd) == rnd
}

// SessionWriter adds one session's entries. Its methods are not for
// concurrent use; several writers on one store may run at once.
type SessionWriter struct {
	s        *Store
	id       string
	meta     SessionMeta
	entries  []Entry
	paths    map[string]bool
	info     SessionInfo
	dropped0 int
	err      error
	done     bool
	chunker  *chunker.Chunker // kept from file to file for its buffer
	password string           // protects the session when not empty
}

// BeginSession starts a session. Nothing of it is visible until Commit.
// The caller must end it with Commit or Abort; while Prune runs it waits.
func (s *Store) BeginSession(meta SessionMeta, opts ...SessionOption) *SessionWriter {
	var o sessionOptions
	for _, opt := range opts {
		opt(&o)
	}
	if meta.Started.IsZero() {
		meta.Started = time.Now()
	}
	// Held until Commit or Abort, so Prune never runs while a session
	// may name chunks it could delete.
	s.active.RLock()
	s.mu.Lock()
	d := s.dropped
	s.mu.Unlock()
	id := newSessionID(meta.Started)
	return &SessionWriter{s: s, id: id, meta: meta, paths: map[string]bool{}, dropped0: d, password: o.password,
		info: SessionInfo{ID: id, Meta: meta, Protected: o.password != ""}}
}

// ID is the session's id, known from the start.
func (w *SessionWriter) ID() string { return w.id }

func (w *SessionWriter) add(en Entry) error {
	if w.done {
		return errors.New("session already committed or aborted")
	}
	if w.err != nil {
		return w.err
	}
	if en.Path == "" || len(en.Path) > maxPathLen {
		return fmt.Errorf("session %s: bad path %q", w.id, en.Path)
	}
	if w.paths[en.Path] {
		return fmt.Errorf("session %s: path %q added twice", w.id, en.Path)
	}
	if len(en.Xattrs) > maxXattrs {
		return fmt.Errorf("session %s: %s: %d xattrs", w.id, en.Path, len(en.Xattrs))
	}
	for k, v := range en.Xattrs {
		if len(k) > maxNameLen || len(v) > maxXattrValue {
			return fmt.Errorf("session %s: %s: xattr %q too large", w.id, en.Path, k)
		}
	}
	w.paths[en.Path] = true
	w.entries = append(w.entries, en)
	return nil
}

// AddDir records a directory.
func (w *SessionWriter) AddDir(hdr FileHeader) error {
	return w.add(Entry{Type: TypeDir, FileHeader: hdr})
}

// AddSymlink records a symbolic link.
func (w *SessionWriter) AddSymlink(hdr FileHeader, target string) error {
	if len(target) > maxPathLen {
		return fmt.Errorf("session %s: %s: symlink target too long", w.id, hdr.Path)
	}
	return w.add(Entry{Type: TypeSymlink, FileHeader: hdr, Target: target})
}

// AddFile records a file and stores its content, read from r to the end.
// An error while storing ends the session: Commit then fails.
//
// Chunks are cut here, one after another, and sealed and stored by up to
// GOMAXPROCS goroutines at once (hashing, zstd and AES cost more than
// cutting); their ids are kept in file order.
func (w *SessionWriter) AddFile(hdr FileHeader, r io.Reader) error {
	if w.done || w.err != nil || w.paths[hdr.Path] {
		return w.add(Entry{FileHeader: hdr}) // reports why
	}
	en := Entry{Type: TypeFile, FileHeader: hdr}
	if w.chunker == nil {
		c, err := chunker.New(r, w.s.kr.gear, w.s.kr.sec.params)
		if err != nil {
			return fmt.Errorf("session %s: %s: %w", w.id, hdr.Path, err)
		}
		w.chunker = c
	}
	c := w.chunker
	c.Reset(r)
	type stored struct {
		id    ID
		isNew bool
		err   error
	}
	var results []chan stored
	var offsets []int64
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var readErr error
	for {
		chunk, err := c.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			readErr = err
			break
		}
		done := make(chan stored, 1)
		results = append(results, done)
		offsets = append(offsets, en.Size)
		en.Size += int64(len(chunk))
		data := bytes.Clone(chunk) // the chunker reuses its buffer
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			id, isNew, err := w.s.put(kindData, data)
			done <- stored{id, isNew, err}
		}()
	}
	var storeErr error
	for i, done := range results {
		res := <-done
		if res.err != nil {
			if storeErr == nil {
				storeErr = fmt.Errorf("session %s: store %s at %d: %w", w.id, hdr.Path, offsets[i], res.err)
			}
			continue
		}
		if res.isNew {
			w.info.NewChunks++
		}
		en.Chunks = append(en.Chunks, res.id)
	}
	if storeErr != nil {
		w.err = storeErr
		return w.err
	}
	if readErr != nil {
		// The source failed, not the store: the session may go on.
		return fmt.Errorf("session %s: read %s at %d: %w", w.id, hdr.Path, en.Size, readErr)
	}
	if err := w.add(en); err != nil {
		return err
	}
	w.info.Files++
	w.info.Bytes += en.Size
	w.info.Chunks += len(en.Chunks)
	return nil
}

// AddUnchanged records a file with the content of prev, an entry of an
// earlier session, without reading it: the caller has decided the file did
// not change (size and mtime, say). Every chunk of prev must be stored.
func (w *SessionWriter) AddUnchanged(hdr FileHeader, prev Entry) error {
	if prev.Type != TypeFile {
		return fmt.Errorf("session %s: %s: previous entry is a %v", w.id, hdr.Path, prev.Type)
	}
	w.s.mu.Lock()
	for _, id := range prev.Chunks {
		_, ok := w.s.index[id]
		if !ok {
			_, ok = w.s.pending[id]
		}
		if !ok {
			w.s.mu.Unlock()
			return fmt.Errorf("session %s: %s: chunk %s of the previous entry is not stored: %w", w.id, hdr.Path, shortID(id), ErrNotFound)
		}
	}
	w.s.mu.Unlock()
	en := Entry{Type: TypeFile, FileHeader: hdr, Size: prev.Size, Chunks: slices.Clone(prev.Chunks)}
	if err := w.add(en); err != nil {
		return err
	}
	w.info.Files++
	w.info.Bytes += en.Size
	w.info.Chunks += len(en.Chunks)
	return nil
}

// Abort gives the session up; chunks it stored stay until pruned.
func (w *SessionWriter) Abort() {
	if !w.done {
		w.done = true
		w.s.active.RUnlock()
	}
}

// Commit stores the manifest, makes every chunk durable and writes the
// session root, in that order.
func (w *SessionWriter) Commit() (SessionInfo, error) {
	if w.done {
		return SessionInfo{}, errors.New("session already committed or aborted")
	}
	w.done = true
	defer w.s.active.RUnlock()
	if w.err != nil {
		return SessionInfo{}, w.err
	}
	for _, en := range w.entries {
		switch en.Type {
		case TypeDir:
			w.info.Dirs++
		case TypeSymlink:
			w.info.Symlinks++
		}
	}
	man := encodeManifest(w.id, w.meta, w.entries)
	var root sessionRoot
	var key []byte
	if w.password != "" {
		var err error
		if root.lock, key, err = w.s.kr.newSessionLock(w.id, w.password, w.s.opts.PasswordIterations); err != nil {
			return SessionInfo{}, fmt.Errorf("session %s: %w", w.id, err)
		}
		// The manifest is stored like any other, but as ciphertext
		// under the session key: the store's key does not read it.
		man = sealWith(key, man, w.s.kr.sessionAAD("manifest", w.id, root.lock))
	}
	root.manifestLen = uint64(len(man))
	c, err := chunker.New(bytes.NewReader(man), w.s.kr.gear, w.s.kr.sec.params)
	if err != nil {
		return SessionInfo{}, fmt.Errorf("session %s: manifest: %w", w.id, err)
	}
	for {
		chunk, err := c.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return SessionInfo{}, fmt.Errorf("session %s: manifest: %w", w.id, err)
		}
		id, _, err := w.s.put(kindTree, chunk)
		if err != nil {
			return SessionInfo{}, fmt.Errorf("session %s: store manifest: %w", w.id, err)
		}
		root.manifest = append(root.manifest, id)
	}
	if err := w.s.flush(); err != nil {
		return SessionInfo{}, fmt.Errorf("session %s: %w", w.id, err)
	}
	w.s.mu.Lock()
	lost := w.s.dropped != w.dropped0
	w.s.mu.Unlock()
	if lost {
		return SessionInfo{}, fmt.Errorf("session %s: a pack holding its chunks could not be finished; not committed", w.id)
	}
	w.info.Committed = time.Now().UTC()
	root.info = w.info
	if key != nil {
		root.pins = w.pins(root.manifest)
		w.s.kr.sealPrivate(&root, key)
	}
	blob := w.s.kr.seal(kindSessionRoot, rootBlobID(w.id), root.encode())
	if err := writeFileAtomic(filepath.Join(w.s.dir, "sessions"), w.id, blob); err != nil {
		return SessionInfo{}, fmt.Errorf("session %s: write root: %w", w.id, err)
	}
	return w.info, nil
}

// pins lists every chunk the session names, sorted and without repeats.
func (w *SessionWriter) pins(manifest []ID) []ID {
	set := map[ID]bool{}
	for _, id := range manifest {
		set[id] = true
	}
	for _, en := range w.entries {
		for _, id := range en.Chunks {
			set[id] = true
		}
	}
	out := slices.SortedFunc(maps.Keys(set), func(a, b ID) int { return bytes.Compare(a[:], b[:]) })
	return out
}

func (s *Store) readRoot(id string) (*sessionRoot, error) {
	if !validSessionID(id) {
		return nil, fmt.Errorf("session %q: %w", id, ErrNotFound)
	}
	p := filepath.Join(s.dir, "sessions", id)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("session %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, ioErr(err, "session %s", id)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRootFile+1))
	if err != nil {
		return nil, ioErr(err, "read session %s root", id)
	}
	if len(b) > maxRootFile {
		return nil, fmt.Errorf("session %s: %w", id, corrupt("root file too large"))
	}
	plain, err := s.kr.open(b, kindSessionRoot, rootBlobID(id))
	if err != nil {
		return nil, fmt.Errorf("session %s root: %w", id, err)
	}
	r, err := decodeSessionRoot(plain)
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", id, err)
	}
	if r.info.ID != id {
		return nil, fmt.Errorf("session %s: %w", id, corrupt("root names session %s", r.info.ID))
	}
	return r, nil
}

// ListSessions lists the committed sessions, oldest first, from the
// session roots alone. Roots that cannot be read are left out and named in
// the error, which wraps ErrCorrupt; the list is still returned.
func (s *Store) ListSessions() ([]SessionInfo, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "sessions"))
	if err != nil {
		return nil, ioErr(err, "list sessions")
	}
	var out []SessionInfo
	var errs []error
	for _, e := range ents {
		if !validSessionID(e.Name()) {
			continue
		}
		r, err := s.readRoot(e.Name())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, r.info)
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return strings.Compare(a.ID, b.ID) })
	return out, errors.Join(errs...)
}

// Session is an open committed session.
type Session struct {
	s       *Store
	info    SessionInfo
	entries []Entry
	byPath  map[string]int
}

// OpenSession reads a session's root and manifest, checking every chunk.
// A protected session fails with ErrPasswordRequired.
func (s *Store) OpenSession(id string) (*Session, error) {
	return s.OpenSessionWithPassword(id, "")
}

// OpenSessionWithPassword opens a session that may be protected. A wrong
// password fails with an error matching ErrWrongPassword; the password of
// a session that is not protected is ignored.
func (s *Store) OpenSessionWithPassword(id, password string) (*Session, error) {
	r, err := s.readRoot(id)
	if err != nil {
		return nil, err
	}
	var key []byte
	if r.lock != nil {
		if key, err = s.kr.unlock(r, password); err != nil {
			return nil, err
		}
	}
	var man []byte
	for i, cid := range r.manifest {
		b, err := s.get(kindTree, cid)
		if err != nil {
			return nil, fmt.Errorf("session %s: manifest chunk %d: %w", id, i, err)
		}
		man = append(man, b...)
	}
	if uint64(len(man)) != r.manifestLen {
		return nil, fmt.Errorf("session %s: %w", id, corrupt("manifest has %d bytes, root says %d", len(man), r.manifestLen))
	}
	if key != nil {
		if man, err = openWith(key, man, s.kr.sessionAAD("manifest", id, r.lock), "manifest"); err != nil {
			return nil, fmt.Errorf("session %s: %w", id, err)
		}
	}
	mid, _, entries, err := decodeManifest(man)
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", id, err)
	}
	if mid != id {
		return nil, fmt.Errorf("session %s: %w", id, corrupt("manifest names session %s", mid))
	}
	ss := &Session{s: s, info: r.info, entries: entries, byPath: make(map[string]int, len(entries))}
	for i, en := range entries {
		ss.byPath[en.Path] = i
	}
	return ss, nil
}

// Info returns the session's summary.
func (ss *Session) Info() SessionInfo { return ss.info }

// Entries returns the entries in the order they were added.
func (ss *Session) Entries() []Entry { return ss.entries }

// Entry returns the entry recorded at path.
func (ss *Session) Entry(path string) (Entry, bool) {
	i, ok := ss.byPath[path]
	if !ok {
		return Entry{}, false
	}
	return ss.entries[i], true
}

// Open returns a reader of a file's content. Every chunk is checked as it
// is read; a bad one ends the read with an error wrapping ErrCorrupt that
// names the session, the file and the offset.
func (ss *Session) Open(path string) (io.ReadCloser, error) {
	en, ok := ss.Entry(path)
	if !ok {
		return nil, fmt.Errorf("session %s: %s: %w", ss.info.ID, path, ErrNotFound)
	}
	if en.Type != TypeFile {
		return nil, fmt.Errorf("session %s: %s is a %v", ss.info.ID, path, en.Type)
	}
	return &fileReader{ss: ss, en: en}, nil
}

type fileReader struct {
	ss     *Session
	en     Entry
	next   int   // next chunk
	offset int64 // offset of buf[0] in the file
	buf    []byte
	err    error
	once   sync.Once
}

func (r *fileReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.next == len(r.en.Chunks) {
			if r.offset != r.en.Size {
				r.err = r.fail(corrupt("file ends at %d, manifest says %d bytes", r.offset, r.en.Size))
			} else {
				r.err = io.EOF
			}
			return 0, r.err
		}
		b, err := r.ss.s.get(kindData, r.en.Chunks[r.next])
		if err != nil {
			r.err = r.fail(err)
			return 0, r.err
		}
		r.next++
		r.buf = b
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	r.offset += int64(n)
	return n, nil
}

func (r *fileReader) fail(err error) error {
	return fmt.Errorf("session %s, file %s, offset %d: %w", r.ss.info.ID, r.en.Path, r.offset, err)
}

func (r *fileReader) Close() error {
	r.once.Do(func() { r.buf, r.err = nil, errors.New("reader closed") })
	return nil
}

// Problem is one fault Verify found.
type Problem struct {
	Session string
	Path    string // empty for the session's root or manifest
	Offset  int64
	Chunk   string // a protected session verified without its password: the chunk, not the file
	Err     error
}

func (p Problem) String() string {
	if p.Chunk != "" {
		return fmt.Sprintf("session %s, chunk %s (protected: give its password to name the file): %v", p.Session, p.Chunk, p.Err)
	}
	if p.Path == "" {
		return fmt.Sprintf("session %s: %v", p.Session, p.Err)
	}
	return fmt.Sprintf("session %s, file %s, offset %d: %v", p.Session, p.Path, p.Offset, p.Err)
}

// Verify reads back every chunk of a session and checks it (decryption,
// decompression, id). It returns the problems found; the error is for
// failures to run the check at all. A protected session is checked chunk
// by chunk from its pins, without its password: every chunk it names is
// read and checked, but a problem names the chunk, not the file and offset
// (VerifyWithPassword names them).
func (s *Store) Verify(id string) ([]Problem, error) {
	return s.VerifyWithPassword(id, "")
}

// VerifyWithPassword is Verify with the password of a protected session,
// so that problems name file and offset; without one (empty) a protected
// session is verified chunk by chunk.
func (s *Store) VerifyWithPassword(id, password string) ([]Problem, error) {
	r, err := s.readRoot(id)
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return []Problem{{Session: id, Err: err}}, nil
		}
		return nil, err
	}
	if r.lock != nil && password == "" {
		return s.verifyPins(id, r.pins)
	}
	ss, err := s.OpenSessionWithPassword(id, password)
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return []Problem{{Session: id, Err: err}}, nil
		}
		return nil, err
	}
	good := map[ID]int{} // chunk -> its length, checked once
	var problems []Problem
	for _, en := range ss.entries {
		var off int64
		for _, cid := range en.Chunks {
			n, ok := good[cid]
			if !ok {
				b, err := s.get(kindData, cid)
				if err != nil {
					if !errors.Is(err, ErrCorrupt) {
						return problems, fmt.Errorf("verify session %s, file %s, offset %d: %w", id, en.Path, off, err)
					}
					problems = append(problems, Problem{Session: id, Path: en.Path, Offset: off, Err: err})
					break // later offsets of this file are unknown
				}
				n = len(b)
				good[cid] = n
			}
			off += int64(n)
		}
		if len(problems) == 0 || problems[len(problems)-1].Path != en.Path {
			if off != en.Size {
				problems = append(problems, Problem{Session: id, Path: en.Path, Offset: off, Err: corrupt("chunks hold %d bytes, manifest says %d", off, en.Size)})
			}
		}
	}
	return problems, nil
}

// verifyPins reads and checks every chunk a protected session pins.
func (s *Store) verifyPins(id string, pins []ID) ([]Problem, error) {
	var problems []Problem
	for _, cid := range pins {
		// Pins hold content and manifest chunks alike; get accepts either.
		if _, err := s.get(kindData, cid); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				return problems, fmt.Errorf("verify session %s, chunk %s: %w", id, shortID(cid), err)
			}
			problems = append(problems, Problem{Session: id, Chunk: shortID(cid), Err: err})
		}
	}
	return problems, nil
}
