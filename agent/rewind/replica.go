package rewind

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/apply"
	"github.com/holdfast/holdfast/agent/change"
)

// Errors callers test with errors.Is.
var (
	// ErrDropped: the point rewound to is older than what retention kept.
	ErrDropped = errors.New("point was dropped by retention")
	// ErrDamaged: a journal record or kept copy is damaged; the error
	// names the segment file and offset, or the blob.
	ErrDamaged = errors.New("rewind journal is damaged")
	// ErrNoPoint: no such point.
	ErrNoPoint = errors.New("no such rewind point")
	// ErrNoBookmark: no bookmark has that label.
	ErrNoBookmark = errors.New("no such bookmark")
)

// Defaults of Options.
const (
	DefaultMaxBytes = 1 << 30
	DefaultMaxAge   = 24 * time.Hour
)

// Options tune a Replica. Zero MaxBytes and MaxAge take the defaults.
type Options struct {
	MaxBytes int64         // segments and blobs together
	MaxAge   time.Duration // points older than this are dropped
	Now      func() time.Time
	Log      *slog.Logger
	OnDrop   func(Dropped) // told of every drop by retention
	Apply    apply.Options
}

// Dropped describes points retention dropped.
type Dropped struct {
	Points          int
	FirstID, LastID uint64
	Oldest, Newest  time.Time
	Bytes           int64
	Why             string
}

// Point is a journal record as listed.
type Point struct {
	ID                uint64
	Time              time.Time
	Kind              Kind
	Op, Path, NewPath string
	Label             string
	Seq, RewindOf     uint64
}

// Filter selects points: below Path (or all), not before Since, at most
// Limit (0: all).
type Filter struct {
	Path  string
	Since time.Time
	Limit int
}

// Target is where a rewind goes: exactly one of its fields is set. Point
// leaves the tree as it was right after that point (0: before the first);
// Time undoes every point later than it; Bookmark undoes everything after
// the newest bookmark with that label.
type Target struct {
	Point    uint64
	Time     time.Time
	Bookmark string
}

// Result tells what a rewind did.
type Result struct {
	Undone            int    // points undone
	FirstNew, LastNew uint64 // the points the rewind's own steps made
	Duration          time.Duration
}

// Usage is the journal's size and span.
type Usage struct {
	Points         int
	Bytes          int64
	OldestID       uint64
	NewestID       uint64
	Oldest, Newest time.Time
}

// Replica applies replicated changes to a replica tree, journaling first
// what undoes each of them. See the package doc.
type Replica struct {
	mu      sync.Mutex
	target  string
	opts    Options
	ap      *apply.Applier
	root    int
	dev     uint64
	j       *journal
	prog    *progressFile     // where a rewind's group has got to
	pending map[uint64]*entry // Seq -> record of a change journaled but not yet applied
	held    map[inodeKey]int  // inodes linked into blobs whose change is not yet applied
	heldMu  sync.Mutex
	closed  bool
}

// journalDir is where the journal lives below the target: inside the
// applier's state directory, which changes cannot name and scans skip,
// and on the replica's filesystem, so that files can be kept by linking.
const journalDir = "rewind"

// Open opens the replica tree at target with its journal, finishing a
// rewind a crash interrupted.
func Open(target string, opts Options) (*Replica, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	r := &Replica{target: target, opts: opts, root: -1, pending: map[uint64]*entry{}, held: map[inodeKey]int{}}
	ao := opts.Apply
	ao.HeldLinks = r.heldLinks
	ap, err := apply.Open(target, ao)
	if err != nil {
		return nil, err
	}
	r.ap = ap
	fail := func(err error) (*Replica, error) {
		_ = r.close()
		return nil, fmt.Errorf("open rewind journal of %s: %w", target, err)
	}
	if r.root, err = unix.Open(target, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		return fail(os.NewSyscallError("open", err))
	}
	var st unix.Stat_t
	if err := unix.Fstat(r.root, &st); err != nil {
		return fail(os.NewSyscallError("fstat", err))
	}
	r.dev = st.Dev
	segLimit := min(max(opts.MaxBytes/16, 1<<20), 64<<20)
	if r.j, err = openJournal(filepath.Join(target, apply.StateDir, journalDir), segLimit); err != nil {
		return fail(err)
	}
	if err := r.loadPending(); err != nil {
		return fail(err)
	}
	var mark progressMark
	if r.prog, mark, err = openProgress(r.j.dir); err != nil {
		return fail(err)
	}
	if err := r.rollForward(mark); err != nil {
		return fail(err)
	}
	return r, nil
}

// loadPending finds the changes journaled but not applied before a crash
// or failure, so that their delivery again is not captured again (the
// tree may already hold part of them).
func (r *Replica) loadPending() error {
	last := r.ap.LastApplied()
	for _, e := range r.j.index {
		if e.rec.Kind != KindChange || e.rec.Seq <= last || e.voided {
			continue
		}
		r.pending[e.rec.Seq] = e
	}
	return nil
}

func (r *Replica) heldLinks(dev, ino uint64) uint64 {
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	return uint64(r.held[inodeKey{dev, ino}])
}

func (r *Replica) hold(steps []Step) {
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	for _, s := range steps {
		if s.Linked {
			r.held[inodeKey{r.dev, s.Ino}]++
		}
	}
}

func (r *Replica) release(steps []Step) {
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	for _, s := range steps {
		if s.Linked {
			k := inodeKey{r.dev, s.Ino}
			if r.held[k]--; r.held[k] <= 0 {
				delete(r.held, k)
			}
		}
	}
}

// LastApplied is the highest Seq durably applied.
func (r *Replica) LastApplied() uint64 { return r.ap.LastApplied() }

// Applier is the applier the replica writes through, for callers that
// read the tree's state (it must not be used to apply changes).
func (r *Replica) Applier() *apply.Applier { return r.ap }

// Close closes the journal and the applier.
func (r *Replica) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.close()
}

func (r *Replica) close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	if r.j != nil {
		errs = append(errs, r.j.close())
	}
	if r.prog != nil {
		errs = append(errs, r.prog.close())
	}
	if r.root >= 0 {
		errs = append(errs, os.NewSyscallError("close", unix.Close(r.root)))
	}
	errs = append(errs, r.ap.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close rewind replica %s: %w", r.target, err)
	}
	return nil
}

func (r *Replica) usable() error {
	if r.closed {
		return fmt.Errorf("rewind replica %s: %w", r.target, os.ErrClosed)
	}
	return nil
}

// unit is what one record covers: one change of the stream, or the undo
// of one point by a rewind.
type unit struct {
	seq      uint64
	changes  []Step // applied in order
	rewindOf uint64
	orig     *Record // the point undone
	rec      *Record // its record once journaled (or found journaled)
	made     []madeBlob
}

// paths are the paths a unit's changes name.
func (u *unit) paths() []string {
	var ps []string
	for _, s := range u.changes {
		ps = append(ps, s.Change.Path)
		if s.Change.NewPath != "" {
			ps = append(ps, s.Change.NewPath)
		}
	}
	return ps
}

// conflicts tracks what the units of one group touch, so that a group
// never holds two units touching the same object: all of a group is
// captured before any of it is applied, so each capture must see the
// state right before its own unit.
type conflicts struct {
	exact  map[string]bool // paths touched
	names  map[string]bool // paths whose name a unit made, moved or dropped
	inodes map[inodeKey]bool
	n      int
}

func newConflicts() *conflicts {
	return &conflicts{exact: map[string]bool{}, names: map[string]bool{}, inodes: map[inodeKey]bool{}}
}

func nameOp(op change.Op) bool {
	switch op {
	case change.OpChmod, change.OpChown, change.OpSetTimes, change.OpSetXattr, change.OpRemoveXattr,
		change.OpWrite, change.OpTruncate:
		return false
	}
	return true
}

// below reports whether p is q or below it.
func below(p, q string) bool { return p == q || strings.HasPrefix(p, q+"/") }

// fits reports whether u can join the group. Steps setting a directory's
// time do not conflict with each other (a rewind's units all end by
// setting the times of the directories they touched).
func (cf *conflicts) fits(u *unit, keys []inodeKey) bool {
	for _, s := range u.changes {
		for _, p := range []string{s.Change.Path, s.Change.NewPath} {
			if p == "" {
				continue
			}
			if cf.exact[p] && !(s.Change.Op == change.OpSetTimes && u.rewindOf != 0) {
				return false
			}
			for q := range cf.names {
				if below(p, q) || (nameOp(s.Change.Op) && below(q, p)) {
					return false
				}
			}
			if nameOp(s.Change.Op) {
				for q := range cf.exact {
					if below(q, p) && q != p {
						return false
					}
				}
			}
		}
	}
	for _, k := range keys {
		if cf.inodes[k] {
			return false
		}
	}
	return true
}

func (cf *conflicts) add(u *unit, keys []inodeKey) {
	for _, s := range u.changes {
		for _, p := range []string{s.Change.Path, s.Change.NewPath} {
			if p == "" {
				continue
			}
			cf.exact[p] = true
			if nameOp(s.Change.Op) {
				cf.names[p] = true
			}
		}
	}
	for _, k := range keys {
		cf.inodes[k] = true
	}
	cf.n++
}

// inodes are the inodes of the regular files u touches, so that two names
// of one file are not in one group.
func (r *Replica) inodes(u *unit) []inodeKey {
	var keys []inodeKey
	for _, p := range u.paths() {
		if change.ValidPath(p) != nil {
			continue
		}
		dir, base := path.Split(p)
		fd := r.root
		if dir != "" {
			d, err := openat2(r.root, dir[:len(dir)-1], unix.O_RDONLY|unix.O_DIRECTORY)
			if err != nil {
				continue
			}
			defer unix.Close(d)
			fd = d
		}
		var st unix.Stat_t
		if unix.Fstatat(fd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink > 1 {
			keys = append(keys, inodeKey{st.Dev, st.Ino})
		}
	}
	return keys
}

// maxGroup bounds the units captured before they are applied.
const maxGroup = 1024

// capture journals units as one group: captures each (unless it was
// journaled before a crash), keeps what they need, and appends their
// records with one sync. After it returns nil, the units may be applied.
func (r *Replica) capture(units []*unit) error {
	var recs []*Record
	var blobBytes int64
	linked := false
	now := r.opts.Now()
	for _, u := range units {
		if u.rec != nil {
			// Journaled before a crash: what it linked is held again
			// until it is applied.
			steps, err := r.stepsOf(u)
			if err != nil {
				return err
			}
			r.hold(steps)
			continue
		}
		id := r.j.newID()
		c := &capturer{root: r.root, blobs: r.j.blobs, held: r.heldLinks, id: id}
		if len(u.changes) > 1 {
			for _, s := range u.changes {
				if s.Change.Op == change.OpRename || s.Change.Op == change.OpLink {
					c.copyOnly = true
				}
			}
		}
		rec := &Record{ID: id, Time: now, Seq: u.seq, Kind: KindChange, RewindOf: u.rewindOf}
		if len(u.changes) > 0 {
			first := u.changes[0].Change
			rec.Op, rec.Path, rec.NewPath = first.Op, first.Path, first.NewPath
		}
		if u.orig != nil {
			rec.Op, rec.Path, rec.NewPath = u.orig.Op, u.orig.Path, u.orig.NewPath
		}
		// A unit's undo is the undo of its changes, last first.
		for i := len(u.changes) - 1; i >= 0; i-- {
			steps, err := c.undo(&u.changes[i].Change, true)
			if err != nil {
				r.dropMade(c.made)
				for _, v := range units {
					r.dropMade(v.made)
				}
				return err
			}
			rec.Steps = append(rec.Steps, steps...)
		}
		rec.Steps = timesLast(rec.Steps)
		u.made = c.made
		for _, m := range c.made {
			blobBytes += m.size
			linked = true
		}
		u.rec = rec
		recs = append(recs, rec)
	}
	if linked {
		if err := r.j.syncBlobs(); err != nil {
			return err
		}
	}
	if err := r.j.append(recs, blobBytes); err != nil {
		for _, u := range units {
			r.dropMade(u.made)
		}
		return err
	}
	for _, rec := range recs {
		r.hold(rec.Steps)
	}
	return nil
}

func (r *Replica) dropMade(made []madeBlob) {
	for _, m := range made {
		_ = unix.Unlinkat(r.j.blobs, m.name, 0)
	}
}

// ApplyBatch applies cs in Seq order, journaling each change's undo
// before the change can reach the disk. It returns as apply.ApplyBatch
// does; a change that failed is voided in the journal.
func (r *Replica) ApplyBatch(cs []change.Change) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	last := r.ap.LastApplied()
	var todo []*unit
	for i := range cs {
		if cs[i].Seq <= last {
			continue
		}
		todo = append(todo, &unit{seq: cs[i].Seq, changes: []Step{{Change: cs[i]}}})
	}
	for len(todo) > 0 {
		n, err := r.group(todo)
		if err != nil {
			return err
		}
		if err := r.applyStream(todo[:n]); err != nil {
			return err
		}
		todo = todo[n:]
	}
	return r.retain()
}

// group captures and journals the longest prefix of units that fits one
// group, and returns its length.
func (r *Replica) group(units []*unit) (int, error) {
	cf := newConflicts()
	n := 0
	for n < len(units) && n < maxGroup {
		u := units[n]
		if u.seq != 0 {
			if e := r.pending[u.seq]; e != nil && u.rec == nil {
				u.rec = e.rec
			}
		}
		keys := r.inodes(u)
		if n > 0 && !cf.fits(u, keys) {
			break
		}
		cf.add(u, keys)
		n++
	}
	if err := r.capture(units[:n]); err != nil {
		return 0, err
	}
	return n, nil
}

// applyStream applies a journaled group of stream changes.
func (r *Replica) applyStream(units []*unit) error {
	cs := make([]change.Change, len(units))
	for i, u := range units {
		cs[i] = u.changes[0].Change
		if e := r.j.find(u.rec.ID); e != nil {
			r.pending[u.seq] = e
		}
	}
	err := r.ap.ApplyBatch(cs)
	last := r.ap.LastApplied()
	var ae *apply.Error
	failed := errors.As(err, &ae)
	var void []uint64
	for _, u := range units {
		switch {
		case u.seq <= last:
			r.done(u)
		case failed && u.seq >= ae.Seq:
			// Not applied: the failed change and those after it.
			void = append(void, u.rec.ID)
			r.done(u)
			_, _ = r.j.removeBlobs(u.rec.ID, u.rec.ID)
		}
	}
	if len(void) > 0 {
		rec := &Record{ID: r.j.newID(), Time: r.opts.Now(), Kind: KindVoid, Refs: void}
		if verr := r.j.append([]*Record{rec}, 0); verr != nil {
			err = errors.Join(err, verr)
		}
	}
	return err
}

// done forgets a unit's pending state once it is applied or voided.
func (r *Replica) done(u *unit) {
	delete(r.pending, u.seq)
	if full, err := r.stepsOf(u); err == nil {
		r.release(full)
	}
}

func (r *Replica) stepsOf(u *unit) ([]Step, error) {
	if u.rec != nil && u.rec.Steps != nil {
		return u.rec.Steps, nil
	}
	e := r.j.find(u.rec.ID)
	if e == nil {
		return nil, ErrNoPoint
	}
	full, err := r.j.read(e)
	if err != nil {
		return nil, err
	}
	return full.Steps, nil
}

// Bookmark labels the tree as it is now.
func (r *Replica) Bookmark(label string) (Point, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return Point{}, err
	}
	if label == "" || len(label) > maxLabelLen {
		return Point{}, fmt.Errorf("bookmark label must have 1 to %d bytes", maxLabelLen)
	}
	rec := &Record{ID: r.j.newID(), Time: r.opts.Now(), Kind: KindBookmark, Label: label}
	if err := r.j.append([]*Record{rec}, 0); err != nil {
		return Point{}, fmt.Errorf("bookmark %q: %w", label, err)
	}
	return pointOf(rec), nil
}

func pointOf(rec *Record) Point {
	p := Point{ID: rec.ID, Time: rec.Time, Kind: rec.Kind, Path: rec.Path, NewPath: rec.NewPath,
		Label: rec.Label, Seq: rec.Seq, RewindOf: rec.RewindOf}
	if rec.Op != 0 {
		p.Op = rec.Op.String()
		if rec.RewindOf != 0 {
			p.Op = "undo " + p.Op
		}
	}
	return p
}

func inScope(rec *Record, scope string) bool {
	return scope == "" || below(rec.Path, scope) || (rec.NewPath != "" && below(rec.NewPath, scope))
}

// Points lists the journal's points, bookmarks and rewinds, newest first.
// Changes that failed (voided) are left out.
func (r *Replica) Points(f Filter) ([]Point, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return nil, err
	}
	var ps []Point
	for i := len(r.j.index) - 1; i >= 0; i-- {
		e := r.j.index[i]
		rec := e.rec
		if rec.Kind == KindVoid || e.voided {
			continue
		}
		if !f.Since.IsZero() && rec.Time.Before(f.Since) {
			break
		}
		if rec.Kind == KindChange && !inScope(rec, f.Path) {
			continue
		}
		ps = append(ps, pointOf(rec))
		if f.Limit > 0 && len(ps) >= f.Limit {
			break
		}
	}
	return ps, nil
}

// Usage tells the journal's size and span.
func (r *Replica) Usage() (Usage, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return Usage{}, err
	}
	u := Usage{Bytes: r.j.bytes()}
	for _, e := range r.j.index {
		if e.rec.Kind != KindChange || e.voided {
			continue
		}
		if u.Points == 0 {
			u.OldestID, u.Oldest = e.rec.ID, e.rec.Time
		}
		u.Points++
		u.NewestID, u.Newest = e.rec.ID, e.rec.Time
	}
	return u, nil
}

// retain drops the oldest segments while the journal is over MaxBytes or
// they are older than MaxAge. The segment being written, and any holding
// a change not yet applied, are kept.
func (r *Replica) retain() error {
	now := r.opts.Now()
	for len(r.j.segs) > 1 {
		s := r.j.segs[0]
		why := ""
		if total := r.j.bytes(); total > r.opts.MaxBytes {
			why = fmt.Sprintf("journal holds %d bytes, more than the %d allowed", total, r.opts.MaxBytes)
		} else if !s.newest.IsZero() && now.Sub(s.newest) > r.opts.MaxAge {
			why = fmt.Sprintf("points older than %s", r.opts.MaxAge)
		}
		if why == "" {
			return nil
		}
		for _, e := range r.pending {
			if e.seg == s {
				return nil
			}
		}
		d := Dropped{FirstID: s.first, LastID: s.last, Bytes: s.size + s.blobBytes, Why: why}
		for _, e := range r.j.index {
			if e.seg != s {
				break
			}
			if e.rec.Kind == KindChange && !e.voided {
				if d.Points == 0 {
					d.Oldest = e.rec.Time
				}
				d.Points++
				d.Newest = e.rec.Time
			}
		}
		if _, _, err := r.j.dropOldest(); err != nil {
			return fmt.Errorf("retention: %w", err)
		}
		r.opts.Log.Info("rewind journal dropped its oldest points", "replica", r.target,
			"points", d.Points, "first", d.FirstID, "last", d.LastID, "oldest", d.Oldest, "newest", d.Newest,
			"bytes", d.Bytes, "why", d.Why)
		if r.opts.OnDrop != nil {
			r.opts.OnDrop(d)
		}
	}
	return nil
}

// timesLast moves the steps that set times after the others, keeping
// their order: every other step may move the time of a directory whose
// entries it changes, or of the file it writes. No step sets the time of
// a path a later step of the same undo removes: a time is set back only
// on what existed before, and only what did not is removed.
func timesLast(steps []Step) []Step {
	out := make([]Step, 0, len(steps))
	for _, s := range steps {
		if s.Change.Op != change.OpSetTimes || s.Restore {
			out = append(out, s)
		}
	}
	for _, s := range steps {
		if s.Change.Op == change.OpSetTimes && !s.Restore {
			out = append(out, s)
		}
	}
	return out
}
