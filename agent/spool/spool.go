package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/holdfast/holdfast/agent/change"
)

var (
	// ErrOverflow is returned by Append when the change was not stored
	// because the spool is over its capacity; the change's paths were marked
	// dirty instead (see the package documentation for what the caller does
	// next). It is a condition to alert on, not a failure: keep appending.
	ErrOverflow = errors.New("spool overflow: change not stored, its paths are marked dirty")
	// ErrEmpty is returned by Next and Peek when no durable change is
	// waiting. Wait blocks until one is.
	ErrEmpty = errors.New("spool: no durable change waiting")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("spool closed")
	// ErrSeqOrder is wrapped when Append gets a Seq that is not greater than
	// Stats().LastSeq: every Seq appended in this Open (dropped ones too) and
	// every Seq stored or acknowledged before it. Seqs of changes dropped
	// just before a restart are forgotten and may be used again: they were
	// never sent anywhere.
	ErrSeqOrder = errors.New("seq not increasing")
	// ErrAckAhead is wrapped when Ack names a Seq the spool never made
	// durable: the replica claims changes this master cannot have sent.
	ErrAckAhead = errors.New("acknowledgement beyond the last durable change")
	// ErrCorrupt is matched (errors.Is) by every *CorruptError.
	ErrCorrupt = errors.New("spool data corrupt")
	// ErrStaleMark is returned by ClearDirty for a mark taken from another
	// Open of the spool: its epochs mean nothing to this one.
	ErrStaleMark = errors.New("dirty mark from another Open of the spool")
	// ErrLocked is wrapped when another process (or another Open in this
	// one) holds the spool directory.
	ErrLocked = errors.New("spool directory in use")
)

// CorruptError reports damaged spool data that is not a torn tail: the
// spool never skips it, because skipping would lose changes silently.
type CorruptError struct {
	Path   string // the damaged file
	Offset int64  // where the damage starts
	Err    error  // what is wrong; wraps change.ErrInvalid when a record fails to decode
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("spool: corrupt %s at offset %d: %v", e.Path, e.Offset, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrCorrupt) match.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// Defaults for Options.
const (
	DefaultSegmentSize = 64 << 20
	DefaultMaxBytes    = 1 << 30
)

// Options configure a spool. The zero value is usable.
type Options struct {
	// SegmentSize is the size at which a segment file is closed and a new
	// one started; acknowledged segments are deleted whole, so it is also
	// the granularity at which disk space comes back. Default 64 MiB.
	SegmentSize int64
	// MaxBytes caps PendingBytes: the framed size of changes stored and not
	// yet acknowledged. A change that would exceed it is dropped and its
	// paths marked dirty (ErrOverflow). Default 1 GiB.
	MaxBytes int64
	// ResumeBytes is where storing starts again after an overflow: once
	// PendingBytes has drained to it or below. 0 means MaxBytes/2; it must
	// be below MaxBytes.
	ResumeBytes int64
}

func (o Options) withDefaults() (Options, error) {
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.ResumeBytes == 0 {
		o.ResumeBytes = o.MaxBytes / 2
	}
	switch {
	case o.SegmentSize < segHeaderLen+frameOverhead+1:
		return o, fmt.Errorf("segment size %d is too small", o.SegmentSize)
	case o.MaxBytes < 0:
		return o, fmt.Errorf("negative MaxBytes %d", o.MaxBytes)
	case o.ResumeBytes < 0 || o.ResumeBytes >= o.MaxBytes:
		return o, fmt.Errorf("ResumeBytes %d must be in [0, MaxBytes=%d)", o.ResumeBytes, o.MaxBytes)
	}
	return o, nil
}

// Stats describe the spool at one moment.
type Stats struct {
	PendingRecords int64  // changes stored and not yet acknowledged
	PendingBytes   int64  // their framed size: what MaxBytes caps
	DiskBytes      int64  // size of all segments, acknowledged parts and buffered appends included
	Segments       int    // segment files
	OldestSeq      uint64 // oldest unacknowledged change; 0 if none
	OldestCaptured int64  // its Captured time (Unix ns): now minus this is the replication lag
	AckedSeq       uint64 // highest acknowledged Seq
	DurableSeq     uint64 // highest Seq stored and synced (readable)
	LastSeq        uint64 // highest Seq appended (stored, or dropped in this Open); the next must exceed it
	Dropping       bool   // appends are dropped into the dirty set (overflow, not yet drained to ResumeBytes)
	DirtyPaths     int    // paths waiting for a block-level resync
}

// Truncation is one torn tail that Open cut off.
type Truncation struct {
	Path   string
	Offset int64 // where the torn tail started; the file was cut there (a torn magic is rewritten)
	Bytes  int64 // bytes dropped
}

// Recovery is what Open found and repaired.
type Recovery struct {
	// Unclean is true when the previous process did not Close the spool: a
	// crash, a kill or a power cut. Changes it appended after its last
	// successful Sync are gone (and, after a power cut, possibly dirty
	// marks of the same window), so the caller should run a verify scan of
	// the tree.
	Unclean bool
	// Truncated lists torn tails cut off: bytes of the last write that no
	// successful Sync covered.
	Truncated []Truncation
}

// pos is a place in the spool: a segment, an offset in it, and how many
// records precede that offset in the segment.
type pos struct {
	seg uint64
	off int64
	rec int64
}

func (p pos) less(q pos) bool { return p.seg < q.seg || p.seg == q.seg && p.off < q.off }

// segment is the in-memory account of one segment file. Its fields change
// under Spool.mu; the writer also reads them without the lock, which is
// safe because only the writer changes them.
type segment struct {
	index         uint64
	name          string
	size          int64  // bytes appended, buffered ones included
	records       int64  // records appended
	lastSeq       uint64 // Seq of the last record appended; 0 if none
	synced        int64  // durable prefix: the reader and Ack never look past it
	syncedRecords int64  // records in the durable prefix
	syncedLastSeq uint64 // Seq of the last durable record
	sealed        bool   // a later segment exists; size == synced
}

type seqTime struct {
	at       pos
	seq      uint64
	captured int64
	ok       bool
}

// writer is the append side, owned by whoever holds writeMu.
type writer struct {
	f       *os.File // active segment, O_APPEND; nil once closed
	seg     *segment
	buf     []byte // frames appended but not yet written
	scratch []byte // encoding space for one frame
	written int64  // bytes in the file
	synced  int64  // bytes fsynced
	err     error  // sticky: after a failed write or sync nothing is certain
}

// flushAt is how much the writer buffers before a write system call.
const flushAt = 256 << 10

// Spool is a durable, capped queue of changes in one directory. All methods
// are safe for concurrent use; it is built for one appending goroutine
// (capture), one reading goroutine (the sender) and acknowledgements from
// either the reader or a third goroutine.
type Spool struct {
	dir  string
	opts Options
	lock *os.File

	// Lock order: writeMu, readMu, ackMu, dirtyMu, mu.
	writeMu sync.Mutex
	w       writer

	readMu sync.Mutex
	rd     segReader

	ackMu sync.Mutex
	ak    segReader

	dirtyMu sync.Mutex
	dirty   dirtySet

	mu             sync.Mutex
	closed         bool
	segs           []*segment // contiguous indexes, oldest first; the last one is active
	lastSeq        uint64     // highest Seq appended
	lastStoredSeq  uint64     // highest Seq stored (or acknowledged before a restart)
	durableSeq     uint64     // highest Seq durable
	ackSeq         uint64
	ackPos         pos // first record with Seq > ackSeq; never the end of a sealed segment
	rpos           pos // reader position
	peek           *peeked
	pendingBytes   int64
	pendingRecords int64
	dropping       bool
	unsynced       seqTime       // first record appended since the last sync of the active segment
	oldest         seqTime       // the record at oldest.at, cached for Stats
	ready          chan struct{} // closed and replaced whenever records become durable
	recovery       Recovery
}

// Recovery reports what Open found: whether the last shutdown was clean and
// which torn tails it cut off.
func (s *Spool) Recovery() Recovery {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.recovery
	r.Truncated = append([]Truncation(nil), r.Truncated...)
	return r
}

// Append adds c to the spool. Seq must be greater than every Seq appended
// before (ErrSeqOrder otherwise) and c must be valid (change.ErrInvalid).
// The change is buffered: it is neither durable nor visible to the reader
// until Sync returns. When the spool is over capacity Append stores
// nothing, marks c's paths dirty and returns an error wrapping ErrOverflow;
// the caller keeps appending. Any other error is final for this Open: the
// spool must be closed and opened again.
func (s *Spool) Append(c change.Change) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.append(&c)
}

// AppendSync is Append followed by Sync, for callers that commit one change
// at a time. A dropped change's dirty mark is synced too, and ErrOverflow
// is returned after it is.
func (s *Spool) AppendSync(c change.Change) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err := s.append(&c)
	if err != nil && !errors.Is(err, ErrOverflow) {
		return err
	}
	if serr := s.sync(); serr != nil {
		return serr
	}
	return err
}

// Sync makes everything appended so far durable, then visible to the
// reader. Group commit is Append for a batch, then one Sync.
func (s *Spool) Sync() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.sync()
}

func (s *Spool) usable() error {
	if s.w.err != nil {
		return fmt.Errorf("spool %s failed earlier (close and open it again): %w", s.dir, s.w.err)
	}
	if s.w.f == nil {
		return ErrClosed
	}
	return nil
}

func (s *Spool) fail(err error) error {
	s.w.err = err
	return err
}

func (s *Spool) append(c *change.Change) error {
	if err := s.usable(); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("append change %d: %w", c.Seq, err)
	}
	frame, err := appendChangeFrame(s.w.scratch[:0], c)
	if err != nil {
		return fmt.Errorf("append: %w", err)
	}
	if cap(frame) <= 4*flushAt {
		s.w.scratch = frame
	} else {
		s.w.scratch = nil
	}
	n := int64(len(frame))

	s.mu.Lock()
	if c.Seq <= s.lastSeq {
		last := s.lastSeq
		s.mu.Unlock()
		return fmt.Errorf("append change %d after %d: %w", c.Seq, last, ErrSeqOrder)
	}
	s.lastSeq = c.Seq
	// Hysteresis: stop storing when the next frame would pass MaxBytes,
	// start again only once the sender has drained to ResumeBytes, so a
	// spool at its cap does not flip between storing and dropping with
	// every acknowledgement.
	if s.dropping && s.pendingBytes <= s.opts.ResumeBytes {
		s.dropping = false
	}
	if !s.dropping && s.pendingBytes+n > s.opts.MaxBytes {
		s.dropping = true
	}
	dropping := s.dropping
	s.mu.Unlock()

	if dropping {
		if err := s.markDirty(c); err != nil {
			return s.fail(err)
		}
		return fmt.Errorf("append change %d: %w", c.Seq, ErrOverflow)
	}

	seg := s.w.seg
	if seg.records > 0 && seg.size+n > s.opts.SegmentSize {
		if err := s.roll(); err != nil {
			return s.fail(err)
		}
		seg = s.w.seg
	}
	s.mu.Lock()
	if !s.unsynced.ok {
		s.unsynced = seqTime{at: pos{seg.index, seg.size, seg.records}, seq: c.Seq, captured: c.Captured, ok: true}
	}
	seg.size += n
	seg.records++
	seg.lastSeq = c.Seq
	s.lastStoredSeq = c.Seq
	s.pendingBytes += n
	s.pendingRecords++
	s.mu.Unlock()

	if len(frame) >= flushAt {
		// A large record goes straight to the file instead of through the buffer.
		if err := s.flush(); err != nil {
			return s.fail(err)
		}
		if err := s.write(frame); err != nil {
			return s.fail(err)
		}
		return nil
	}
	s.w.buf = append(s.w.buf, frame...)
	if len(s.w.buf) >= flushAt {
		if err := s.flush(); err != nil {
			return s.fail(err)
		}
	}
	return nil
}

func (s *Spool) write(b []byte) error {
	n, err := s.w.f.Write(b)
	s.w.written += int64(n)
	if err != nil {
		return fmt.Errorf("write segment %s: %w", s.w.seg.name, err)
	}
	return nil
}

func (s *Spool) flush() error {
	if len(s.w.buf) == 0 {
		return nil
	}
	if err := s.write(s.w.buf); err != nil {
		return err
	}
	s.w.buf = s.w.buf[:0]
	if cap(s.w.buf) > 4*flushAt {
		s.w.buf = nil
	}
	return nil
}

// sync writes the buffer and fsyncs, dirty-path file first: a change
// stored after a dropped one must never be durable (and deliverable)
// without the dropped one's dirty mark.
func (s *Spool) sync() error {
	if err := s.usable(); err != nil {
		return err
	}
	if err := s.flush(); err != nil {
		return s.fail(err)
	}
	if err := s.syncDirty(); err != nil {
		return s.fail(err)
	}
	if s.w.synced < s.w.written {
		if err := fsync(s.w.f); err != nil {
			return s.fail(fmt.Errorf("sync segment %s: %w", s.w.seg.name, err))
		}
		s.w.synced = s.w.written
	}
	s.mu.Lock()
	s.publishLocked(s.w.seg)
	s.mu.Unlock()
	return nil
}

// publishLocked marks everything appended to seg durable and wakes the
// reader.
func (s *Spool) publishLocked(seg *segment) {
	if seg.synced == seg.size {
		return
	}
	if s.unsynced.ok && s.unsynced.at == s.ackPos {
		// The oldest pending record is the first one this sync covers;
		// remember it so Stats never has to read it back.
		s.oldest = s.unsynced
	}
	seg.synced, seg.syncedRecords, seg.syncedLastSeq = seg.size, seg.records, seg.lastSeq
	s.durableSeq = max(s.durableSeq, seg.lastSeq)
	s.unsynced.ok = false
	close(s.ready)
	s.ready = make(chan struct{})
}

// roll seals the active segment and starts the next one. The old segment
// is fsynced before the new one exists, which is why only the last segment
// can have a torn tail.
func (s *Spool) roll() error {
	old := s.w.seg
	if err := s.flush(); err != nil {
		return err
	}
	if err := s.syncDirty(); err != nil {
		return err
	}
	if err := fsync(s.w.f); err != nil {
		return fmt.Errorf("sync segment %s: %w", old.name, err)
	}
	err := s.w.f.Close()
	s.w.f = nil
	if err != nil {
		return fmt.Errorf("close segment %s: %w", old.name, err)
	}
	ns := &segment{index: old.index + 1, name: segName(old.index + 1), size: segHeaderLen, synced: segHeaderLen}
	f, err := createSegment(s.dir, ns.name)
	if err != nil {
		return err
	}
	s.w.f, s.w.seg, s.w.written, s.w.synced = f, ns, segHeaderLen, segHeaderLen

	s.mu.Lock()
	s.publishLocked(old)
	old.sealed = true
	s.segs = append(s.segs, ns)
	s.normalizeAckLocked()
	s.mu.Unlock()
	return nil
}

// createSegment creates a segment holding only its magic, durably: file
// contents and directory entry are both fsynced.
func createSegment(dir, name string) (*os.File, error) {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create segment %s: %w", name, err)
	}
	if _, err := f.Write([]byte(segMagic)); err != nil {
		f.Close()
		return nil, fmt.Errorf("write segment %s: %w", name, err)
	}
	if err := fsync(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("sync segment %s: %w", name, err)
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// segLocked returns the segment with index i, or nil if it is gone.
func (s *Spool) segLocked(i uint64) *segment {
	if len(s.segs) == 0 || i < s.segs[0].index {
		return nil
	}
	k := i - s.segs[0].index
	if k >= uint64(len(s.segs)) {
		return nil
	}
	return s.segs[k]
}

// normalizeAckLocked moves ackPos off the end of a sealed segment to the
// start of the next, so segments wholly before ackPos are exactly the ones
// fully acknowledged.
func (s *Spool) normalizeAckLocked() {
	for {
		seg := s.segLocked(s.ackPos.seg)
		if seg == nil || !seg.sealed || s.ackPos.off < seg.size {
			return
		}
		s.ackPos = pos{seg.index + 1, segHeaderLen, 0}
	}
}

// Stats returns counters for monitoring; it does no I/O.
func (s *Spool) Stats() Stats {
	s.dirtyMu.Lock()
	dirty := len(s.dirty.paths)
	s.dirtyMu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		PendingRecords: s.pendingRecords,
		PendingBytes:   s.pendingBytes,
		Segments:       len(s.segs),
		AckedSeq:       s.ackSeq,
		DurableSeq:     s.durableSeq,
		LastSeq:        s.lastSeq,
		Dropping:       s.dropping,
		DirtyPaths:     dirty,
	}
	for _, seg := range s.segs {
		st.DiskBytes += seg.size
	}
	if s.pendingRecords > 0 {
		// The record at ackPos is known either from Open, from the Ack
		// that moved ackPos there, or from the append that put it there.
		for _, o := range []seqTime{s.oldest, s.unsynced} {
			if o.ok && o.at == s.ackPos {
				st.OldestSeq, st.OldestCaptured = o.seq, o.captured
				break
			}
		}
	}
	return st
}

// Close syncs what was appended, closes the files and records a clean
// shutdown (see Recovery.Unclean). After Close every method returns
// ErrClosed; a second Close returns nil.
func (s *Spool) Close() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.readMu.Lock()
	defer s.readMu.Unlock()
	s.ackMu.Lock()
	defer s.ackMu.Unlock()

	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil
	}
	var errs []error
	if s.w.err == nil {
		if err := s.sync(); err != nil {
			errs = append(errs, err)
		}
	} else {
		errs = append(errs, s.w.err)
	}

	s.mu.Lock()
	s.closed = true
	close(s.ready)
	s.mu.Unlock()

	if s.w.f != nil {
		if err := s.w.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close segment %s: %w", s.w.seg.name, err))
		}
		s.w.f = nil
	}
	s.rd.close()
	s.ak.close()
	s.dirtyMu.Lock()
	if err := s.dirty.close(); err != nil {
		errs = append(errs, err)
	}
	s.dirtyMu.Unlock()
	if len(errs) == 0 {
		if err := writeFileAtomic(s.dir, cleanName, nil); err != nil {
			errs = append(errs, fmt.Errorf("record clean shutdown: %w", err))
		}
	}
	if err := s.lock.Close(); err != nil {
		errs = append(errs, fmt.Errorf("unlock %s: %w", s.dir, err))
	}
	return errors.Join(errs...)
}
