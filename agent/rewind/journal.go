package rewind

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// entry is a record as the index keeps it: without its steps, which are
// read back from the segment when a rewind needs them.
type entry struct {
	rec    *Record
	seg    *segment
	off    int64
	voided bool
	undone uint64 // a rewind step: the point undone (rec.RewindOf)
}

// journal is the segment files and blobs of one replica, and the index of
// the records they hold.
type journal struct {
	dir      string
	blobDir  string
	dirFd    int
	blobs    int
	segs     []*segment
	active   *os.File // the last segment, open for appending
	index    []*entry // by ID, increasing
	next     uint64   // the ID the next record gets
	segLimit int64
}

func openJournal(dir string, segLimit int64) (*journal, error) {
	j := &journal{dir: dir, blobDir: filepath.Join(dir, "blobs"), dirFd: -1, blobs: -1, segLimit: segLimit}
	for _, d := range []string{dir, j.blobDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create journal directory: %w", err)
		}
	}
	var err error
	if j.dirFd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		return nil, fmt.Errorf("open journal %s: %w", dir, os.NewSyscallError("open", err))
	}
	if j.blobs, err = unix.Open(j.blobDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		j.close()
		return nil, fmt.Errorf("open journal %s: %w", j.blobDir, os.NewSyscallError("open", err))
	}
	if err := j.load(); err != nil {
		j.close()
		return nil, err
	}
	return j, nil
}

// load reads every segment into the index, cuts a torn tail off the last
// one, removes blobs no durable record names, and opens the last segment
// for appending (a new one if it ends in damage).
func (j *journal) load() error {
	names, err := os.ReadDir(j.dir)
	if err != nil {
		return fmt.Errorf("list journal %s: %w", j.dir, err)
	}
	for _, d := range names {
		if first, ok := parseSegName(d.Name()); ok {
			j.segs = append(j.segs, &segment{name: d.Name(), first: first, last: first - 1})
		}
	}
	sort.Slice(j.segs, func(a, b int) bool { return j.segs[a].first < j.segs[b].first })
	j.next = 1
	for i, s := range j.segs {
		last := i == len(j.segs)-1
		p := filepath.Join(j.dir, s.name)
		recs, torn, rerr := readSegment(p, last)
		if rerr != nil && !errors.Is(rerr, ErrDamaged) {
			return rerr
		}
		s.damage = rerr
		for _, r := range recs {
			if r.rec.ID < j.next || r.rec.ID < s.first {
				s.damage = fmt.Errorf("%w: %s at offset %d: record id %d out of order", ErrDamaged, s.name, r.off, r.rec.ID)
				break
			}
			j.add(r.rec, s, r.off)
			s.size = r.off + r.len
		}
		if s.size == 0 {
			s.size = segHeader
		}
		j.next = max(j.next, s.first, s.last+1)
		if torn >= 0 {
			if err := cutTail(p, max(torn, segHeader)); err != nil {
				return err
			}
			s.size = max(torn, segHeader)
		}
		if s.damage != nil {
			// IDs in the unreadable rest of the segment are unknown; each
			// record takes more than frameHead bytes, which bounds them.
			st, err := os.Stat(p)
			if err != nil {
				return fmt.Errorf("stat journal segment: %w", err)
			}
			j.next += uint64(st.Size()-s.size)/frameHead + 1
			s.size = st.Size()
		}
	}
	if err := j.loadBlobs(); err != nil {
		return err
	}
	if len(j.segs) == 0 || j.segs[len(j.segs)-1].damage != nil {
		return j.rotate(j.next)
	}
	s := j.segs[len(j.segs)-1]
	f, err := os.OpenFile(filepath.Join(j.dir, s.name), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open journal segment: %w", err)
	}
	j.active = f
	return nil
}

func cutTail(p string, size int64) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("cut torn tail of %s: %w", p, err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("cut torn tail of %s: %w", p, err)
	}
	if size == segHeader {
		if _, err := f.WriteAt(segmentHeader(), 0); err != nil {
			return fmt.Errorf("rewrite header of %s: %w", p, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("cut torn tail of %s: %w", p, err)
	}
	return nil
}

// loadBlobs counts the blobs' bytes against their segments and removes
// those of records that never became durable (a crash between keeping a
// file and writing its record).
func (j *journal) loadBlobs() error {
	names, err := os.ReadDir(j.blobDir)
	if err != nil {
		return fmt.Errorf("list blobs: %w", err)
	}
	for _, d := range names {
		id, ok := blobID(d.Name())
		if !ok {
			continue
		}
		s := j.segmentOf(id)
		if id >= j.next || s == nil {
			if err := unix.Unlinkat(j.blobs, d.Name(), 0); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("remove orphan blob %s: %w", d.Name(), os.NewSyscallError("unlinkat", err))
			}
			continue
		}
		if info, err := d.Info(); err == nil {
			s.blobBytes += info.Size()
		}
	}
	return nil
}

func (j *journal) segmentOf(id uint64) *segment {
	i := sort.Search(len(j.segs), func(i int) bool { return j.segs[i].first > id }) - 1
	if i < 0 {
		return nil
	}
	return j.segs[i]
}

func (j *journal) add(r *Record, s *segment, off int64) {
	short := *r
	short.Steps = nil // read back when needed
	e := &entry{rec: &short, seg: s, off: off, undone: r.RewindOf}
	j.index = append(j.index, e)
	s.last = r.ID
	s.newest = r.Time
	j.next = r.ID + 1
	if r.Kind == KindVoid {
		for _, id := range r.Refs {
			if v := j.find(id); v != nil {
				v.voided = true
			}
		}
	}
}

// find returns the index entry of id, nil if it is not (or no longer) known.
func (j *journal) find(id uint64) *entry {
	i, ok := slices.BinarySearchFunc(j.index, id, func(e *entry, id uint64) int {
		switch {
		case e.rec.ID < id:
			return -1
		case e.rec.ID > id:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return j.index[i]
}

// read returns the whole record of e, checked again.
func (j *journal) read(e *entry) (*Record, error) {
	r, err := readRecordAt(filepath.Join(j.dir, e.seg.name), e.off)
	if err != nil {
		return nil, err
	}
	if r.ID != e.rec.ID {
		return nil, fmt.Errorf("%w: %s at offset %d holds record %d, not %d", ErrDamaged, e.seg.name, e.off, r.ID, e.rec.ID)
	}
	return r, nil
}

// newID reserves an ID for records about to be written.
func (j *journal) newID() uint64 {
	id := j.next
	j.next++
	return id
}

// append writes recs as one group with one write and one fdatasync, so
// that they are durable before anything they describe is done. Their IDs
// must have been given by newID, in order.
func (j *journal) append(recs []*Record, blobBytes int64) error {
	if len(recs) == 0 {
		return nil
	}
	s := j.segs[len(j.segs)-1]
	if s.size+s.blobBytes >= j.segLimit && s.last >= s.first {
		if err := j.rotate(recs[0].ID); err != nil {
			return err
		}
		s = j.segs[len(j.segs)-1]
	}
	var b []byte
	offs := make([]int64, len(recs))
	for i, r := range recs {
		r.First = i == 0
		offs[i] = s.size + int64(len(b))
		b = frame(b, r.marshal())
	}
	if _, err := j.active.Write(b); err != nil {
		// What was written may be part of a record: cut it, so the next
		// write does not follow garbage.
		_ = j.active.Truncate(s.size)
		return fmt.Errorf("append to journal %s: %w", s.name, err)
	}
	if err := unix.Fdatasync(int(j.active.Fd())); err != nil {
		return fmt.Errorf("sync journal %s: %w", s.name, os.NewSyscallError("fdatasync", err))
	}
	for i, r := range recs {
		j.add(r, s, offs[i])
	}
	s.size += int64(len(b))
	s.blobBytes += blobBytes
	return nil
}

// rotate starts a new segment for the records from first on. Records get
// their IDs when they are captured, before the append that may rotate, so
// first is the ID of the first record to go in, not j.next.
func (j *journal) rotate(first uint64) error {
	s := &segment{name: segName(first), first: first, last: first - 1, size: segHeader}
	p := filepath.Join(j.dir, s.name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("create journal segment: %w", err)
	}
	if _, err := f.Write(segmentHeader()); err != nil {
		f.Close()
		return fmt.Errorf("write journal segment header: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync journal segment: %w", err)
	}
	if err := unix.Fsync(j.dirFd); err != nil {
		f.Close()
		return fmt.Errorf("sync journal directory: %w", os.NewSyscallError("fsync", err))
	}
	if j.active != nil {
		_ = j.active.Close()
	}
	j.active = f
	j.segs = append(j.segs, s)
	return nil
}

// syncBlobs makes the names of blobs linked or created since the last
// call durable.
func (j *journal) syncBlobs() error {
	if err := unix.Fsync(j.blobs); err != nil {
		return fmt.Errorf("sync blobs directory: %w", os.NewSyscallError("fsync", err))
	}
	return nil
}

// removeBlobs removes the blobs of records first to last.
func (j *journal) removeBlobs(first, last uint64) (int64, error) {
	names, err := os.ReadDir(j.blobDir)
	if err != nil {
		return 0, fmt.Errorf("list blobs: %w", err)
	}
	var freed int64
	for _, d := range names {
		id, ok := blobID(d.Name())
		if !ok || id < first || id > last {
			continue
		}
		if info, err := d.Info(); err == nil {
			freed += info.Size()
		}
		if err := unix.Unlinkat(j.blobs, d.Name(), 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return freed, fmt.Errorf("remove blob %s: %w", d.Name(), os.NewSyscallError("unlinkat", err))
		}
	}
	return freed, nil
}

// dropOldest removes the oldest segment and its blobs.
func (j *journal) dropOldest() (*segment, int, error) {
	s := j.segs[0]
	if _, err := j.removeBlobs(s.first, s.last); err != nil {
		return nil, 0, err
	}
	if err := os.Remove(filepath.Join(j.dir, s.name)); err != nil {
		return nil, 0, fmt.Errorf("drop journal segment: %w", err)
	}
	if err := unix.Fsync(j.dirFd); err != nil {
		return nil, 0, fmt.Errorf("sync journal directory: %w", os.NewSyscallError("fsync", err))
	}
	j.segs = j.segs[1:]
	n := 0
	for n < len(j.index) && j.index[n].seg == s {
		n++
	}
	j.index = slices.Delete(j.index, 0, n)
	return s, n, nil
}

func (j *journal) bytes() int64 {
	var n int64
	for _, s := range j.segs {
		n += s.size + s.blobBytes
	}
	return n
}

func (j *journal) close() error {
	var errs []error
	if j.active != nil {
		errs = append(errs, j.active.Close())
	}
	for _, fd := range []int{j.dirFd, j.blobs} {
		if fd >= 0 {
			errs = append(errs, os.NewSyscallError("close", unix.Close(fd)))
		}
	}
	return errors.Join(errs...)
}

// oldestKept is the lowest ID still in the journal and the time of its
// record.
func (j *journal) oldestKept() (uint64, time.Time) {
	if len(j.segs) == 0 {
		return j.next, time.Time{}
	}
	if len(j.index) > 0 {
		return min(j.segs[0].first, j.index[0].rec.ID), j.index[0].rec.Time
	}
	return j.segs[0].first, time.Time{}
}
