package spool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Open opens the spool in dir, creating it if needed, and recovers from
// whatever the previous process left: it checks every frame of every
// segment, cuts off a torn tail of the last segment (Recovery reports it),
// fsyncs what it keeps, deletes fully acknowledged segments and positions
// the reader after the last persisted acknowledgement. Damage that is not a
// torn tail fails Open with a *CorruptError naming file and offset.
//
// Open reads the whole spool once (frame checksums only, no decoding), so
// its cost grows with PendingBytes. Only one Open of a directory may be
// live at a time (ErrLocked).
func Open(dir string, opts Options) (*Spool, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	s := &Spool{dir: dir, opts: o, lock: lock, ready: make(chan struct{})}
	s.rd.dir, s.ak.dir = dir, dir
	if err := s.recover(); err != nil {
		// Nothing was written through these; the recovery error is the one
		// worth returning.
		if s.w.f != nil {
			s.w.f.Close()
		}
		s.dirty.close()
		lock.Close()
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	return s, nil
}

// logScan is what scanLog found in one file.
type logScan struct {
	size int64 // file size
	end  int64 // just past the last intact frame
	torn bool  // a torn tail starts at end
}

// scanLog checks f's magic and calls fn for each intact frame in order.
// When tail is set (f is the last file written to), damage with no intact
// frame anywhere after it is a torn write: scanLog stops there and reports
// it. Any other damage is a *CorruptError: an intact frame after damage
// means the damage is not where an interrupted write would leave it.
func scanLog(f *os.File, path, magic string, tail bool, fn func(off int64, h frameHeader, rec []byte) error) (logScan, error) {
	st, err := f.Stat()
	if err != nil {
		return logScan{}, fmt.Errorf("stat %s: %w", path, err)
	}
	res := logScan{size: st.Size()}
	damaged := func(off int64, why error) (logScan, error) {
		if tail {
			intact, err := intactAfter(f, path, off, res.size)
			if err != nil {
				return res, err
			}
			if !intact {
				res.end, res.torn = off, true
				return res, nil
			}
		}
		return res, &CorruptError{Path: path, Offset: off, Err: why}
	}
	var fr frameReader
	fr.reset(f)
	hb, err := fr.bytes(0, magicLen, res.size)
	var d *damage
	switch {
	case errors.As(err, &d):
		return damaged(0, d)
	case err != nil:
		return res, err
	case string(hb) != magic:
		return damaged(0, fmt.Errorf("bad magic %q", hb))
	}
	off := int64(magicLen)
	for off < res.size {
		h, rec, err := fr.frame(off, res.size)
		if errors.As(err, &d) {
			return damaged(off, d)
		}
		if err != nil {
			return res, err
		}
		if err := fn(off, h, rec); err != nil {
			return res, err
		}
		off += h.frameLen()
	}
	res.end = off
	return res, nil
}

// intactAfter reports whether any intact frame starts in [off, size).
// Beyond maxTailSearch it answers yes without looking: a region that large
// is not the tail of one interrupted write, so it must not be cut off.
func intactAfter(f *os.File, path string, off, size int64) (bool, error) {
	if size-off > maxTailSearch {
		return true, nil
	}
	b := make([]byte, size-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	return intactFrameIn(b), nil
}

// truncateTail cuts f at end (rewriting the magic if even that was torn)
// and makes the cut durable.
func truncateTail(f *os.File, end int64, magic string) error {
	if end < int64(len(magic)) {
		end = 0
	}
	if err := f.Truncate(end); err != nil {
		return fmt.Errorf("truncate %s: %w", f.Name(), err)
	}
	if end == 0 {
		if _, err := f.WriteAt([]byte(magic), 0); err != nil {
			return fmt.Errorf("write %s: %w", f.Name(), err)
		}
	}
	if err := fsync(f); err != nil {
		return fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	return nil
}

func (s *Spool) recover() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	var idx []uint64
	fresh, clean := true, false
	for _, e := range entries {
		name := e.Name()
		if i, ok := parseSegName(name); ok {
			idx = append(idx, i)
			fresh = false
			continue
		}
		switch name {
		case ackName, dirtyName:
			fresh = false
		case cleanName:
			clean = true
		case ackName + ".tmp", dirtyName + ".tmp", cleanName + ".tmp":
			// An atomic replacement that did not finish; the file it was
			// to replace is intact.
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
				return fmt.Errorf("remove leftover %s: %w", name, err)
			}
		}
	}
	slices.Sort(idx)
	s.recovery.Unclean = !fresh && !clean

	ackPath := filepath.Join(s.dir, ackName)
	if b, err := os.ReadFile(ackPath); err == nil {
		if s.ackSeq, err = decodeAck(b); err != nil {
			return &CorruptError{Path: ackPath, Err: err}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read ack: %w", err)
	}

	var (
		prevSeq uint64
		found   bool // ackPos is set
	)
	for k, i := range idx {
		seg := &segment{index: i, name: segName(i)}
		path := filepath.Join(s.dir, seg.name)
		last := k == len(idx)-1
		flag := os.O_RDONLY
		if last {
			flag = os.O_RDWR
		}
		f, err := os.OpenFile(path, flag, 0)
		if err != nil {
			return fmt.Errorf("open segment %s: %w", seg.name, err)
		}
		res, err := scanLog(f, path, segMagic, last, func(off int64, h frameHeader, _ []byte) error {
			if h.seq <= prevSeq {
				return &CorruptError{Path: path, Offset: off, Err: fmt.Errorf("seq %d does not follow %d", h.seq, prevSeq)}
			}
			prevSeq = h.seq
			if h.seq > s.ackSeq {
				if !found {
					found = true
					s.ackPos = pos{i, off, seg.records}
					s.oldest = seqTime{at: s.ackPos, seq: h.seq, captured: h.captured, ok: true}
				}
				s.pendingBytes += h.frameLen()
				s.pendingRecords++
			}
			seg.records++
			seg.lastSeq = h.seq
			return nil
		})
		if err == nil && last {
			if res.torn {
				err = truncateTail(f, res.end, segMagic)
				if res.size > res.end {
					s.recovery.Truncated = append(s.recovery.Truncated, Truncation{Path: path, Offset: res.end, Bytes: res.size - res.end})
				}
			} else if err = fsync(f); err != nil {
				// The previous process may have been killed between write
				// and fsync: make durable what is about to become readable.
				err = fmt.Errorf("sync segment %s: %w", seg.name, err)
			}
		}
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close segment %s: %w", seg.name, cerr)
		}
		if err != nil {
			return err
		}
		seg.size = max(res.end, segHeaderLen)
		seg.synced, seg.syncedRecords, seg.syncedLastSeq = seg.size, seg.records, seg.lastSeq
		seg.sealed = !last
		s.segs = append(s.segs, seg)
	}

	// Fully acknowledged segments whose deletion was interrupted.
	for len(s.segs) > 1 && s.segs[0].lastSeq <= s.ackSeq {
		if err := os.Remove(filepath.Join(s.dir, s.segs[0].name)); err != nil {
			return fmt.Errorf("remove acknowledged segment %s: %w", s.segs[0].name, err)
		}
		s.segs = s.segs[1:]
	}
	for k := 1; k < len(s.segs); k++ {
		if want := s.segs[k-1].index + 1; s.segs[k].index != want {
			return &CorruptError{Path: filepath.Join(s.dir, segName(want)), Err: errors.New("segment missing")}
		}
	}

	if len(s.segs) == 0 {
		seg := &segment{index: 1, name: segName(1), size: segHeaderLen, synced: segHeaderLen}
		f, err := createSegment(s.dir, seg.name)
		if err != nil {
			return err
		}
		s.w.f = f
		s.segs = append(s.segs, seg)
	} else {
		seg := s.segs[len(s.segs)-1]
		f, err := os.OpenFile(filepath.Join(s.dir, seg.name), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("open segment %s: %w", seg.name, err)
		}
		s.w.f = f
	}
	active := s.segs[len(s.segs)-1]
	s.w.seg, s.w.written, s.w.synced = active, active.size, active.size
	if !found {
		s.ackPos = pos{active.index, active.size, active.records}
	}
	s.rpos = s.ackPos
	s.lastSeq = max(s.ackSeq, prevSeq)
	s.lastStoredSeq, s.durableSeq = s.lastSeq, s.lastSeq

	cut, err := s.dirty.load(s.dir)
	if err != nil {
		return err
	}
	if cut != nil && cut.Bytes > 0 {
		s.recovery.Truncated = append(s.recovery.Truncated, *cut)
	}
	// Still over ResumeBytes with paths dirty: the previous process was
	// dropping, and the hysteresis carries over.
	s.dropping = len(s.dirty.paths) > 0 && s.pendingBytes > s.opts.ResumeBytes

	if clean {
		// From here on a crash must show as unclean.
		if err := os.Remove(filepath.Join(s.dir, cleanName)); err != nil {
			return fmt.Errorf("remove clean-shutdown marker: %w", err)
		}
		if err := syncDir(s.dir); err != nil {
			return err
		}
	}
	return nil
}
