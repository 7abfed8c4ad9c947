package rewind

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/change"
)

// Rewind restores the tree, or only what is at or below path, to the
// target. It checks first that every record and kept copy it needs is
// there and sound (ErrDropped, ErrDamaged, ErrNoPoint, ErrNoBookmark
// change nothing), then records the rewind durably and undoes the points
// newest first, each undo journaled like a change, so that the rewind can
// itself be undone. A crash after the rewind is recorded is finished by
// the next Open. ctx is honoured until the rewind is recorded; after
// that it runs to the end.
func (r *Replica) Rewind(ctx context.Context, to Target, scope string, progress func(done, total int)) (Result, error) {
	start := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return Result{}, err
	}
	if scope != "" {
		if err := change.ValidPath(scope); err != nil {
			return Result{}, fmt.Errorf("rewind %s: %w", scope, err)
		}
	}
	p, err := r.resolve(to)
	if err != nil {
		return Result{}, err
	}
	if err := r.readable(p); err != nil {
		return Result{}, err
	}
	var recs []*Record
	for i := len(r.j.index) - 1; i >= 0 && r.j.index[i].rec.ID > p; i-- {
		e := r.j.index[i]
		if e.rec.Kind != KindChange || e.voided || !inScope(e.rec, scope) {
			continue
		}
		full, err := r.j.read(e)
		if err != nil {
			return Result{}, fmt.Errorf("rewind: %w", err)
		}
		if err := r.checkBlobs(full); err != nil {
			return Result{}, fmt.Errorf("rewind: %w", err)
		}
		recs = append(recs, full)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	begin := &Record{ID: r.j.newID(), Time: r.opts.Now(), Kind: KindRewindBegin, Target: p, Label: scope}
	for _, rec := range recs {
		begin.Refs = append(begin.Refs, rec.ID)
	}
	if err := r.j.append([]*Record{begin}, 0); err != nil {
		return Result{}, fmt.Errorf("rewind: %w", err)
	}
	res, err := r.undoAll(recs, nil, 0, progress)
	if err != nil {
		return res, fmt.Errorf("rewind to point %d (reopen to finish it): %w", p, err)
	}
	end := &Record{ID: r.j.newID(), Time: r.opts.Now(), Kind: KindRewindEnd, Target: p}
	if err := r.j.append([]*Record{end}, 0); err != nil {
		return res, fmt.Errorf("rewind to point %d: %w", p, err)
	}
	res.Duration = time.Since(start)
	r.opts.Log.Info("rewound replica", "replica", r.target, "to", p, "path", scope, "undone", res.Undone,
		"first_new", res.FirstNew, "last_new", res.LastNew, "duration", res.Duration)
	return res, r.retain()
}

// resolve turns a target into the point the tree is left at.
func (r *Replica) resolve(to Target) (uint64, error) {
	set := 0
	if to.Point != 0 {
		set++
	}
	if !to.Time.IsZero() {
		set++
	}
	if to.Bookmark != "" {
		set++
	}
	if set > 1 {
		return 0, errors.New("rewind target: set one of point, time and bookmark")
	}
	oldest, oldestTime := r.j.oldestKept()
	dropped := func(p uint64) error {
		return fmt.Errorf("%w: point %d was dropped by retention; the oldest kept is %d (%s)",
			ErrDropped, p, oldest, oldestTime.Format(time.RFC3339))
	}
	switch {
	case to.Bookmark != "":
		for i := len(r.j.index) - 1; i >= 0; i-- {
			if rec := r.j.index[i].rec; rec.Kind == KindBookmark && rec.Label == to.Bookmark {
				return rec.ID, nil
			}
		}
		return 0, fmt.Errorf("%w: %q", ErrNoBookmark, to.Bookmark)
	case !to.Time.IsZero():
		p := uint64(0)
		for i := len(r.j.index) - 1; i >= 0; i-- {
			if rec := r.j.index[i].rec; !rec.Time.After(to.Time) {
				p = rec.ID
				break
			}
		}
		if p == 0 {
			if oldest > 1 {
				return 0, fmt.Errorf("%w: every point up to %s was dropped by retention; the oldest kept is %d (%s)",
					ErrDropped, to.Time.Format(time.RFC3339), oldest, oldestTime.Format(time.RFC3339))
			}
		}
		return p, nil
	}
	p := to.Point
	if p >= r.j.next {
		return 0, fmt.Errorf("%w: %d (the newest is %d)", ErrNoPoint, p, r.j.next-1)
	}
	if p+1 < oldest {
		return 0, dropped(p)
	}
	if p != 0 && r.j.find(p) == nil {
		return 0, fmt.Errorf("%w: %d is not in the journal (it may lie in a damaged part)", ErrNoPoint, p)
	}
	return p, nil
}

// readable fails with ErrDamaged when records after p could not be read.
func (r *Replica) readable(p uint64) error {
	for i, s := range r.j.segs {
		if s.damage == nil {
			continue
		}
		end := r.j.next
		if i+1 < len(r.j.segs) {
			end = r.j.segs[i+1].first
		}
		if end > p+1 {
			return fmt.Errorf("rewind to point %d: %w", p, s.damage)
		}
	}
	return nil
}

// checkBlobs checks the kept copies rec's steps use: a linked blob must
// still be the inode it was, a copied one must have its checksum.
func (r *Replica) checkBlobs(rec *Record) error {
	for _, s := range rec.Steps {
		if s.Blob == "" {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(r.j.blobs, s.Blob, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("%w: blob %s of point %d: %v", ErrDamaged, s.Blob, rec.ID, err)
		}
		if s.Linked {
			if st.Ino != s.Ino || st.Size != s.Size {
				return fmt.Errorf("%w: blob %s of point %d is not the file it kept (inode %d size %d, kept %d %d)", ErrDamaged, s.Blob, rec.ID, st.Ino, st.Size, s.Ino, s.Size)
			}
			continue
		}
		if _, err := r.blobData(&s, rec.ID); err != nil {
			return err
		}
	}
	return nil
}

// blobData reads a copied blob and checks its checksum.
func (r *Replica) blobData(s *Step, id uint64) ([]byte, error) {
	fd, err := unix.Openat(r.j.blobs, s.Blob, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: blob %s of point %d: %v", ErrDamaged, s.Blob, id, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, os.NewSyscallError("fstat", err)
	}
	if st.Size != s.Size {
		return nil, fmt.Errorf("%w: blob %s of point %d has %d bytes, want %d", ErrDamaged, s.Blob, id, st.Size, s.Size)
	}
	if s.Restore {
		sum, err := crcOf(fd, st.Size)
		if err != nil || sum != s.CRC {
			return nil, fmt.Errorf("%w: blob %s of point %d: checksum mismatch", ErrDamaged, s.Blob, id)
		}
		return nil, nil
	}
	if st.Size > change.MaxData {
		return nil, fmt.Errorf("%w: blob %s of point %d is too large for a write", ErrDamaged, s.Blob, id)
	}
	b, err := readRange(fd, 0, st.Size)
	if err != nil {
		return nil, fmt.Errorf("%w: blob %s of point %d: %v", ErrDamaged, s.Blob, id, err)
	}
	if crc32Sum(b) != s.CRC {
		return nil, fmt.Errorf("%w: blob %s of point %d: checksum mismatch", ErrDamaged, s.Blob, id)
	}
	return b, nil
}

// undoAll undoes recs in order, in groups journaled like changes. again
// are the records of the last group a crash interrupted: applied again
// without being captured again.
func (r *Replica) undoAll(recs []*Record, again []*unit, from uint64, progress func(done, total int)) (Result, error) {
	var res Result
	if len(again) > 0 {
		if err := r.capture(again); err != nil {
			return res, err
		}
		if err := r.execute(again, from); err != nil {
			return res, err
		}
	}
	units := make([]*unit, len(recs))
	for i, rec := range recs {
		units[i] = &unit{rewindOf: rec.ID, orig: rec, changes: rec.Steps}
	}
	total := len(units)
	for done := 0; done < total; {
		n, err := r.rewindGroup(units[done:])
		if err != nil {
			return res, err
		}
		if err := r.execute(units[done:done+n], 0); err != nil {
			return res, err
		}
		for _, u := range units[done : done+n] {
			if res.FirstNew == 0 {
				res.FirstNew = u.rec.ID
			}
			res.LastNew = u.rec.ID
			u.changes = nil // free the data
		}
		done += n
		res.Undone = done
		if progress != nil {
			progress(done, total)
		}
	}
	return res, nil
}

// rewindGroup loads the data of the units that fit one group and
// journals them.
func (r *Replica) rewindGroup(units []*unit) (int, error) {
	cf := newConflicts()
	n := 0
	for n < len(units) && n < maxGroup {
		u := units[n]
		keys := r.inodes(u)
		if n > 0 && !cf.fits(u, keys) {
			break
		}
		if err := r.loadData(u); err != nil {
			return 0, err
		}
		cf.add(u, keys)
		n++
	}
	if err := r.capture(units[:n]); err != nil {
		return 0, err
	}
	return n, nil
}

// loadData gives the change steps kept in blobs their data.
func (r *Replica) loadData(u *unit) error {
	for i := range u.changes {
		s := &u.changes[i]
		if s.Blob == "" || s.Restore {
			continue
		}
		b, err := r.blobData(s, u.rewindOf)
		if err != nil {
			return err
		}
		s.Change.Data = b
	}
	return nil
}

// execute applies the steps of journaled units, in order, from the
// group's step from on (0 but when finishing a crashed group). Before each
// name op, what went before is made durable and the op's index recorded
// in the progress file (see progress.go).
func (r *Replica) execute(units []*unit, from uint64) error {
	var batch []change.Change
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := r.ap.ApplySteps(batch)
		batch = batch[:0]
		return err
	}
	group := units[0].rec.ID
	var k uint64
	err := func() error {
		for _, u := range units {
			for i := range u.changes {
				s := &u.changes[i]
				k++
				if k-1 < from {
					continue
				}
				if !s.Restore && !nameOp(s.Change.Op) {
					batch = append(batch, s.Change)
					continue
				}
				if err := flush(); err != nil {
					return err
				}
				if err := r.prog.record(progressMark{group: group, step: k - 1}); err != nil {
					return err
				}
				if s.Restore {
					if err := r.restore(s, u.rewindOf); err != nil {
						return err
					}
					continue
				}
				batch = append(batch, s.Change)
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return flush()
	}()
	for _, u := range units {
		if steps, serr := r.stepsOf(u); serr == nil {
			r.release(steps)
		}
	}
	return err
}

// restore restores a file from its blob or inline data.
func (r *Replica) restore(s *Step, id uint64) error {
	var src *os.File
	if s.Blob != "" {
		f, err := os.Open(filepath.Join(r.j.blobDir, s.Blob))
		if err != nil {
			return fmt.Errorf("%w: blob %s of point %d: %v", ErrDamaged, s.Blob, id, err)
		}
		src = f
	} else {
		fd, err := unix.MemfdCreate("holdfast-restore", unix.MFD_CLOEXEC)
		if err != nil {
			return fmt.Errorf("restore %s: %w", s.Change.Path, os.NewSyscallError("memfd_create", err))
		}
		src = os.NewFile(uintptr(fd), "holdfast-restore")
		if _, err := src.Write(s.Change.Data); err != nil {
			src.Close()
			return fmt.Errorf("restore %s: %w", s.Change.Path, err)
		}
	}
	defer src.Close()
	return r.ap.RestoreFile(s.Change.Path, src, s.Meta)
}

// rollForward finishes a rewind whose begin record is durable and whose
// end record is not: the group of steps journaled last is applied again
// (its steps are idempotent), then the remaining points are undone.
func (r *Replica) rollForward(mark progressMark) error {
	var begin *entry
	for i := len(r.j.index) - 1; i >= 0; i-- {
		e := r.j.index[i]
		if e.rec.Kind == KindRewindEnd {
			return nil
		}
		if e.rec.Kind == KindRewindBegin {
			begin = e
			break
		}
	}
	if begin == nil {
		return nil
	}
	full, err := r.j.read(begin)
	if err != nil {
		return fmt.Errorf("finish interrupted rewind: %w", err)
	}
	undone := map[uint64]bool{}
	var again []*unit
	for _, e := range r.j.index {
		if e.rec.ID <= begin.rec.ID || e.undone == 0 || e.voided {
			continue
		}
		undone[e.undone] = true
		if e.rec.First {
			again = again[:0]
		}
		orig := r.j.find(e.undone)
		if orig == nil {
			return fmt.Errorf("finish interrupted rewind: %w: point %d is gone", ErrDamaged, e.undone)
		}
		o, err := r.j.read(orig)
		if err != nil {
			return fmt.Errorf("finish interrupted rewind: %w", err)
		}
		u := &unit{rewindOf: o.ID, orig: o, changes: o.Steps, rec: e.rec}
		if err := r.loadData(u); err != nil {
			return err
		}
		again = append(again, u)
	}
	var rest []*Record
	for _, id := range full.Refs {
		if undone[id] {
			continue
		}
		e := r.j.find(id)
		if e == nil {
			return fmt.Errorf("finish interrupted rewind: %w: point %d is gone", ErrDamaged, id)
		}
		o, err := r.j.read(e)
		if err != nil {
			return fmt.Errorf("finish interrupted rewind: %w", err)
		}
		rest = append(rest, o)
	}
	r.opts.Log.Warn("finishing a rewind a crash interrupted", "replica", r.target, "to", full.Target,
		"again", len(again), "left", len(rest))
	var from uint64
	if len(again) > 0 && mark.group == again[0].rec.ID {
		from = mark.step
	}
	if _, err := r.undoAll(rest, again, from, nil); err != nil {
		return fmt.Errorf("finish interrupted rewind: %w", err)
	}
	end := &Record{ID: r.j.newID(), Time: r.opts.Now(), Kind: KindRewindEnd, Target: full.Target}
	return r.j.append([]*Record{end}, 0)
}
