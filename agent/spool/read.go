package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/holdfast/holdfast/agent/change"
)

// segReader reads frames from one segment at a time through its own
// descriptor. The reader and the acknowledger each have one, so neither
// waits for the other's I/O.
type segReader struct {
	dir   string
	index uint64
	f     *os.File
	fr    frameReader
}

func (r *segReader) use(index uint64, name string) error {
	if r.f != nil && r.index == index {
		return nil
	}
	r.close()
	f, err := os.Open(filepath.Join(r.dir, name))
	if err != nil {
		return fmt.Errorf("open segment %s: %w", name, err)
	}
	r.f, r.index = f, index
	r.fr.reset(f)
	return nil
}

func (r *segReader) close() {
	if r.f != nil {
		// Read-only: closing cannot lose data, and the one error Close
		// could report (a bad descriptor) would be a bug caught elsewhere.
		_ = r.f.Close()
		r.f = nil
	}
}

// frame reads the frame at p, below limit, as a *CorruptError if damaged.
func (r *segReader) frame(p pos, name string, limit int64) (frameHeader, []byte, error) {
	if err := r.use(p.seg, name); err != nil {
		return frameHeader{}, nil, err
	}
	h, rec, err := r.fr.frame(p.off, limit)
	var d *damage
	if errors.As(err, &d) {
		return h, nil, &CorruptError{Path: filepath.Join(r.dir, name), Offset: p.off, Err: d}
	}
	return h, rec, err
}

// change reads and decodes the change at p.
func (r *segReader) change(p pos, name string, limit int64) (change.Change, frameHeader, error) {
	h, rec, err := r.frame(p, name, limit)
	if err != nil {
		return change.Change{}, h, err
	}
	c, err := change.Decode(rec)
	if err != nil {
		return c, h, &CorruptError{Path: filepath.Join(r.dir, name), Offset: p.off, Err: fmt.Errorf("decode change: %w", err)}
	}
	if c.Seq != h.seq || c.Captured != h.captured {
		return c, h, &CorruptError{Path: filepath.Join(r.dir, name), Offset: p.off,
			Err: fmt.Errorf("record (seq %d) disagrees with its frame header (seq %d)", c.Seq, h.seq)}
	}
	return c, h, nil
}

type peeked struct {
	c         change.Change
	at, after pos
}

// Next returns the oldest durable change the reader has not yet consumed,
// starting after the last acknowledged one, in Seq order. It returns
// ErrEmpty when there is none (Wait for one), and a *CorruptError for a
// damaged record, which it never skips.
func (s *Spool) Next() (change.Change, error) { return s.next(true) }

// Peek returns what Next would return, without consuming it.
func (s *Spool) Peek() (change.Change, error) { return s.next(false) }

func (s *Spool) next(consume bool) (change.Change, error) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return change.Change{}, ErrClosed
		}
		if s.rpos.less(s.ackPos) {
			// Acknowledged past the reader: after a restart, or when the
			// replica already had these changes.
			s.rpos, s.peek = s.ackPos, nil
		}
		if p := s.peek; p != nil {
			if consume {
				s.rpos, s.peek = p.after, nil
			}
			s.mu.Unlock()
			return p.c, nil
		}
		seg := s.segLocked(s.rpos.seg)
		if seg == nil {
			at := s.rpos
			s.mu.Unlock()
			return change.Change{}, fmt.Errorf("spool: reader position %d:%d has no segment", at.seg, at.off)
		}
		if s.rpos.off >= seg.synced {
			if seg.sealed {
				s.rpos = pos{seg.index + 1, segHeaderLen, 0}
				s.mu.Unlock()
				continue
			}
			s.mu.Unlock()
			return change.Change{}, ErrEmpty
		}
		at, name, limit := s.rpos, seg.name, seg.synced
		s.mu.Unlock()

		c, h, err := s.rd.change(at, name, limit)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				// A concurrent Ack passed this segment and deleted it.
				s.mu.Lock()
				passed := at.less(s.ackPos)
				s.mu.Unlock()
				if passed {
					continue
				}
			}
			return change.Change{}, err
		}
		after := pos{at.seg, at.off + h.frameLen(), at.rec + 1}
		s.mu.Lock()
		if c.Seq <= s.ackSeq {
			s.rpos = after
			s.mu.Unlock()
			continue
		}
		if consume {
			s.rpos = after
		} else {
			s.peek = &peeked{c: c, at: at, after: after}
		}
		s.mu.Unlock()
		return c, nil
	}
}

// Rewind moves the reader back to the oldest unacknowledged change, so
// everything not acknowledged is delivered again: for a sender that lost
// its connection and cannot know what the replica received.
func (s *Spool) Rewind() {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rpos, s.peek = s.ackPos, nil
}

// Wait blocks until Next has a change to return, ctx is done or the spool
// is closed (ErrClosed).
func (s *Spool) Wait(ctx context.Context) error {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		if s.readableLocked() {
			s.mu.Unlock()
			return nil
		}
		ready := s.ready
		s.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *Spool) readableLocked() bool {
	if s.peek != nil {
		return true
	}
	p := s.rpos
	if p.less(s.ackPos) {
		p = s.ackPos
	}
	for {
		seg := s.segLocked(p.seg)
		switch {
		case seg == nil:
			return false
		case p.off < seg.synced:
			return true
		case !seg.sealed:
			return false
		}
		p = pos{seg.index + 1, segHeaderLen, 0}
	}
}

// Ack records that the replica has applied every change with Seq <= seq.
// The acknowledgement is durable when Ack returns (ack file written to a
// temporary, fsynced, renamed, directory fsynced: two fsyncs, so
// acknowledge batches, not single changes); segments it covers entirely
// are then deleted. Acknowledging a Seq at or below the last one is a
// no-op; one beyond every durable change is ErrAckAhead.
func (s *Spool) Ack(seq uint64) error {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if seq <= s.ackSeq {
		s.mu.Unlock()
		return nil
	}
	if seq > s.durableSeq {
		durable := s.durableSeq
		s.mu.Unlock()
		return fmt.Errorf("ack %d: %w (%d)", seq, ErrAckAhead, durable)
	}
	// The durable parts of the segments from ackPos on do not change, so
	// the walk below runs on this snapshot without the lock.
	p := s.ackPos
	var views []segment
	for i := p.seg; ; i++ {
		seg := s.segLocked(i)
		if seg == nil {
			break
		}
		views = append(views, *seg)
	}
	s.mu.Unlock()

	var bytes, recs int64
	var first seqTime // the first record after the acknowledged ones, if read
	for k, v := range views {
		if seq >= v.syncedLastSeq {
			// Everything durable in this segment is acknowledged.
			bytes += v.synced - p.off
			recs += v.syncedRecords - p.rec
			p = pos{v.index, v.synced, v.syncedRecords}
			if v.sealed && k+1 < len(views) {
				p = pos{v.index + 1, segHeaderLen, 0}
				continue
			}
			break
		}
		for p.off < v.synced {
			h, _, err := s.ak.frame(p, v.name, v.synced)
			if err != nil {
				return fmt.Errorf("ack %d: %w", seq, err)
			}
			if h.seq > seq {
				first = seqTime{at: p, seq: h.seq, captured: h.captured, ok: true}
				break
			}
			bytes += h.frameLen()
			recs++
			p = pos{p.seg, p.off + h.frameLen(), p.rec + 1}
		}
		break
	}

	if err := writeFileAtomic(s.dir, ackName, encodeAck(seq)); err != nil {
		return fmt.Errorf("ack %d: %w", seq, err)
	}

	s.mu.Lock()
	s.ackSeq, s.ackPos = seq, p
	s.pendingBytes -= bytes
	s.pendingRecords -= recs
	if s.dropping && s.pendingBytes <= s.opts.ResumeBytes {
		s.dropping = false // drained: the next Append stores
	}
	if first.ok {
		s.oldest = first
	}
	s.normalizeAckLocked()
	var dead []*segment
	for len(s.segs) > 1 && s.segs[0].index < s.ackPos.seg {
		dead = append(dead, s.segs[0])
		s.segs = s.segs[1:]
	}
	s.mu.Unlock()

	// Oldest first, so a crash part-way leaves no gap in the indexes.
	var errs []error
	for _, d := range dead {
		if s.ak.f != nil && s.ak.index == d.index {
			s.ak.close()
		}
		if err := os.Remove(filepath.Join(s.dir, d.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("ack %d: remove segment %s: %w", seq, d.name, err))
		}
	}
	if err := s.resolveOldest(); err != nil {
		errs = append(errs, fmt.Errorf("ack %d: %w", seq, err))
	}
	return errors.Join(errs...)
}

// resolveOldest makes sure Stats knows the record at ackPos when one is
// pending: if neither the walk nor the writer recorded it (the writer
// synced or rolled while Ack ran), read its header. Called with ackMu held,
// so only a roll can move ackPos meanwhile.
func (s *Spool) resolveOldest() error {
	for {
		s.mu.Lock()
		at := s.ackPos
		if s.pendingRecords == 0 || s.oldest.ok && s.oldest.at == at || s.unsynced.ok && s.unsynced.at == at {
			s.mu.Unlock()
			return nil
		}
		seg := s.segLocked(at.seg)
		if seg == nil || at.off >= seg.synced {
			// Nothing durable there yet; the append that puts a record
			// there records it as unsynced.
			s.mu.Unlock()
			return nil
		}
		name, limit := seg.name, seg.synced
		s.mu.Unlock()
		h, _, err := s.ak.frame(at, name, limit)
		if err != nil {
			return fmt.Errorf("read oldest pending change: %w", err)
		}
		s.mu.Lock()
		if s.ackPos == at {
			s.oldest = seqTime{at: at, seq: h.seq, captured: h.captured, ok: true}
		}
		s.mu.Unlock()
	}
}
