//go:build linux

package capture

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/change"
)

// DefaultMaxInline is the default size up to which a file's content travels
// whole in an OpReplaceFile; larger files are left to block-level sync.
const DefaultMaxInline = 1 << 20

// DefaultMaxInodes is the default number of regular files whose inode the
// Stage remembers to recognise hard links (about 100 bytes each).
const DefaultMaxInodes = 1 << 20

// maxUnresolved bounds the Stage's memory of changes at vanished paths.
const maxUnresolved = 1 << 16

// ErrRescan is wrapped by Convert's error when the Stage lost track of
// changes it could not place: rescan the whole root.
var ErrRescan = errors.New("rescan needed")

// ErrUnsupportedType is wrapped by Convert's error for an entry that no
// change op can create: a FIFO, socket or device node.
var ErrUnsupportedType = errors.New("file type not replicated")

// Item is one step of what an event becomes, applied in order: either a
// change record, or (Sync non-empty) a request to bring the content of the
// file at Sync up to date now, in place, with block-level sync.
type Item struct {
	Change change.Change
	Sync   string
}

// Stage turns events into change records by reading the current state of
// the paths they name. Reading current state is what makes events hints: a
// burst of writes needs one read, and an event for a path that is gone by
// the time it is converted yields nothing, because a later event (removal,
// rename) describes what became of it.
//
// Reading current state has a trap: by the time an event is converted the
// path may name another object than the one the event was about (the
// consumer lags, or a listing of a new directory already showed what
// later-queued events are about to describe), and the replica may not hold
// what the event assumes. So the Stage keeps a bounded memory of what it put
// on the replica:
//   - the identity (device, inode and birth time: inode numbers are reused)
//     of the master object behind each entry it recently created
//     (MaxRecent). A rename is replicated as a rename only when the object
//     now at the new name is the one the replica holds at the old name, and
//     remembered entries below a renamed directory still match; otherwise
//     the new name is removed on the replica and built again from the
//     master's state. A creation under a parent the replica is not known to
//     hold creates the parent first.
//   - paths it recently removed from the replica, so that a late rename
//     from one of them creates the new name instead of moving nothing.
//   - paths whose event found nothing there. If a later Renamed moves them
//     (or an ancestor), they are converted at the new path right after the
//     rename: the change they stood for (say a write just before its
//     directory was renamed) would otherwise be lost. A Removed or Overflow
//     covering them forgets them.
//   - extended attribute names (for paths that have any), to tell a
//     removed attribute, and the inode of regular files (up to MaxInodes),
//     so that a new name for an existing inode becomes OpLink, not a copy.
//
// Entries it has forgotten, or never saw, are trusted to be on the replica
// as the events say. Feed it every scanned Entry with Observe once the
// replica matches the scan (the initial copy, or after a rescan, preceded by
// Forget), so that its memory starts from the real state. A Stage is not
// safe for concurrent use.
//
// What the output asks of the applier:
//   - OpReplaceFile replaces the directory entry (write a temporary file and
//     rename it over), while Sync items update the existing file in place:
//     content changes to a file with several names travel as Sync, so that
//     the replica's other names see them. If the file is gone from the
//     master when its Sync runs, call SyncFailed.
//   - OpRemove of a missing path succeeds, and removes a directory with
//     everything in it (a directory moved out of the root, or replaced).
//   - OpMkdir of an existing directory sets its mode; OpCreate of an
//     existing file leaves its content; OpRemoveXattr of an absent
//     attribute succeeds. (Events may be reported twice.)
//   - Any other failure (a rename whose source or target directory is
//     missing, a directory not empty) means the replica is not what the
//     Stage assumed. Rebuild the paths of the failed change (or rescan and
//     diff) and go on. Under heavy reuse of names while the consumer lags,
//     this happens now and then (TestReplicateRandom counts it); it is the
//     price of converting hints, and the reason verify scans exist.
type Stage struct {
	// MaxInline is the largest file carried whole in OpReplaceFile; it
	// cannot exceed change.MaxData. Zero means DefaultMaxInline.
	MaxInline int64
	// MaxInodes bounds the hard-link memory; past it only files that
	// already have several names are remembered. Zero means
	// DefaultMaxInodes.
	MaxInodes int
	// MaxRecent bounds the identity memory used to check renames (about
	// 100 bytes an entry). Renames of entries it has forgotten are trusted.
	// Zero means DefaultMaxRecent.
	MaxRecent int

	root    *beneath
	missing pathMap[kindSet]
	xattrs  pathMap[[]string]
	seen    pathMap[seenID]
	seenGen uint64
	// absent holds paths the Stage recently removed from the replica (by
	// generation, for eviction), so that a late rename from one of them is
	// known to have nothing to move.
	absent pathMap[uint64]
	byPath pathMap[ident]
	byIno  map[ident]string
}

// DefaultMaxRecent is the default Stage.MaxRecent.
const DefaultMaxRecent = 1 << 17

// seenID is the identity of the master object whose state the replica holds
// at a path, and when it was recorded (for eviction).
type seenID struct {
	id  ident
	gen uint64
}

// kindSet is a set of event kinds, as bits.
type kindSet uint16

func (k kindSet) has(kind Kind) bool { return k&(1<<kind) != 0 }

const fullKinds = kindSet(1<<Created | 1<<DirCreated)

// NewStage returns a Stage reading below root. It follows no symlink on the
// way to a path (see beneath), so nothing it reads is outside root, or
// anything but the entry the path names.
func NewStage(root string) (*Stage, error) {
	r, err := openBeneath(root)
	if err != nil {
		return nil, fmt.Errorf("capture: stage: %w", err)
	}
	return &Stage{
		root:    r,
		missing: pathMap[kindSet]{},
		xattrs:  pathMap[[]string]{},
		seen:    pathMap[seenID]{},
		absent:  pathMap[uint64]{},
		byPath:  pathMap[ident]{},
		byIno:   make(map[ident]string),
	}, nil
}

// Close releases the root directory.
func (s *Stage) Close() error { return s.root.Close() }

func (s *Stage) maxInline() int64 {
	if s.MaxInline <= 0 {
		return DefaultMaxInline
	}
	return min(s.MaxInline, change.MaxData)
}

// Observe records a scanned entry that the replica holds: its identity,
// inode and attribute names.
func (s *Stage) Observe(e Entry) {
	if len(e.Xattrs) > 0 {
		s.xattrs[e.Path] = e.Xattrs
	} else {
		delete(s.xattrs, e.Path)
	}
	id := ident{dev: e.Dev, ino: e.Ino}
	if !e.Birth.IsZero() {
		id.birth = e.Birth.UnixNano()
	}
	s.see(e.Path, id)
	if e.Mode.IsRegular() {
		s.remember(e.Path, id, e.Nlink)
	}
}

// SyncFailed tells the Stage that the block-level sync of a Sync item could
// not run because the file was gone from the master by then. The replica's
// copy is then incomplete: the path is treated like one whose event found
// nothing there, so a later rename carries the content to the new name.
func (s *Stage) SyncFailed(p string) {
	delete(s.seen, p)
	s.missing[p] |= 1 << Modified
}

// Forget drops everything the Stage remembers at and below rel ("" for the
// whole root): for a caller about to rescan rel and Observe what it finds.
func (s *Stage) Forget(rel string) {
	s.forgetTree(rel)
	s.absent.deleteTree(rel)
}

// Rebuild returns the steps that remove rel on the replica and create it
// again, with everything below it, from the master's current state. It is
// the fallback when applying a change failed in a way that shows the replica
// is not what the Stage assumed (a rename whose source is missing, a
// missing parent, a directory not empty): events are hints, and in a long
// enough stretch of renames and reused names a late conversion can guess
// wrong. For the whole root (rel ""), or a large subtree, a rescan with a
// Scanner and a diff against the replica is the better tool.
func (s *Stage) Rebuild(rel string) ([]Item, error) {
	if err := change.ValidPath(rel); err != nil {
		return nil, fmt.Errorf("capture: stage: rebuild: %w", err)
	}
	c := converter{s: s, captured: time.Now().UnixNano()}
	err := c.replace(rel)
	return c.items, err
}

// Convert returns the steps that bring a replica up to date with ev. Overflow
// and Unwatched yield none: the caller rescans (a Stage forgets what it
// remembered about missing paths below an Overflow's path). Every change it
// returns passes change.Validate; Seq is left for the spool to assign, and
// Captured is ev.Time.
//
// An error means some state could not be read (or cannot be replicated);
// the items returned alongside are still to be applied, and the path needs
// a rescan.
func (s *Stage) Convert(ev Event) ([]Item, error) {
	c := converter{s: s, captured: ev.Time.UnixNano()}
	switch ev.Kind {
	case Overflow:
		s.missing.deleteTree(ev.Path)
		return nil, nil
	case Unwatched:
		return nil, nil
	case Removed:
		s.forgetTree(ev.Path)
		c.add(change.Change{Op: change.OpRemove, Path: ev.Path})
		s.markAbsent(ev.Path)
		return c.items, nil
	case Renamed:
		err := c.rename(ev.OldPath, ev.Path)
		return c.items, err
	case Created, DirCreated, Modified, Attrib:
		err := c.convert(ev.Path, 1<<ev.Kind)
		return c.items, err
	}
	return nil, fmt.Errorf("capture: stage: unknown event kind %v", ev.Kind)
}

// forgetTree forgets everything remembered at and below rel: the replica no
// longer has it.
func (s *Stage) forgetTree(rel string) {
	s.missing.deleteTree(rel)
	s.xattrs.deleteTree(rel)
	s.seen.deleteTree(rel)
	s.forgetInodes(rel)
}

// markAbsent records that the replica no longer holds p (nor anything
// below it).
func (s *Stage) markAbsent(p string) {
	max := s.MaxRecent
	if max <= 0 {
		max = DefaultMaxRecent
	}
	s.seenGen++
	s.absent[p] = s.seenGen
	if len(s.absent) > max {
		cutoff := s.seenGen - uint64(max/2)
		for k, g := range s.absent {
			if g <= cutoff {
				delete(s.absent, k)
			}
		}
	}
}

// knownAbsent says whether the Stage removed p, or an ancestor of p, from
// the replica and has created nothing there since.
func (s *Stage) knownAbsent(p string) bool {
	for {
		if _, ok := s.absent[p]; ok {
			return true
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return false
		}
		p = p[:i]
		if _, ok := s.seen[p]; ok {
			return false // recreated since
		}
	}
}

// see records that the replica now holds, at p, the master object id.
func (s *Stage) see(p string, id ident) {
	max := s.MaxRecent
	if max <= 0 {
		max = DefaultMaxRecent
	}
	s.seenGen++
	s.seen[p] = seenID{id, s.seenGen}
	delete(s.absent, p)
	if len(s.seen) > max {
		// Forget the older half: amortised constant time per entry.
		cutoff := s.seenGen - uint64(max/2)
		for k, v := range s.seen {
			if v.gen <= cutoff {
				delete(s.seen, k)
			}
		}
	}
}

type converter struct {
	s        *Stage
	captured int64
	items    []Item
}

func (c *converter) add(ch change.Change) {
	ch.Captured = c.captured
	c.items = append(c.items, Item{Change: ch})
}

// rename converts a rename from old to new (see Stage for the checks).
func (c *converter) rename(old, new string) error {
	s := c.s
	stx, err := s.root.statx(new)
	if err != nil && !gone(err) {
		return fmt.Errorf("capture: stage: %w", err)
	}
	var cur ident
	if err == nil {
		cur = identOf(stx)
	}
	so, knownOld := s.seen[old]
	sn, knownNew := s.seen[new]
	// The creation of old was never converted (it was gone by then) and no
	// other conversion put it on the replica, or the Stage removed it there.
	neverThere := !knownOld && (s.missing[old]&fullKinds != 0 || s.knownAbsent(old))
	switch {
	case neverThere && err != nil:
		// Nothing to move, and the object moved on again: what the rename
		// replaced at new goes; the pending changes follow the object.
		c.add(change.Change{Op: change.OpRemove, Path: new})
		c.replaced(new)
		s.markAbsent(new)
		s.missing.renameTree(old, new)
		return nil
	case neverThere:
		s.missing.deleteTree(old)
		return c.replace(new)
	case err != nil:
		// Moved on again already; later events say where. The replica's
		// old entry is the best guess for what moved.
		if err := c.move(old, new); err != nil {
			return err
		}
		return c.resolve(new)
	case knownNew && sn.id == cur:
		// The replica already holds this object at the new name (a listing
		// or a late conversion got there first).
		s.missing.renameTree(old, new)
		if knownOld && so.id == cur {
			// ... and at the old name too: drop that copy. (Otherwise the
			// old name holds another object, which its own events account
			// for.)
			c.add(change.Change{Op: change.OpRemove, Path: old})
			s.forgetTree(old)
			s.markAbsent(old)
		}
		return c.resolve(new)
	case knownOld && so.id == cur:
		if err := c.move(old, new); err != nil {
			return err
		}
		return errors.Join(c.verify(new), c.resolve(new))
	case knownOld:
		// The replica holds another object at the old name: build the new
		// name from the master's state. Unresolved changes under the old
		// name stay: they may be about the object the replica still holds
		// there.
		return c.replace(new)
	default:
		// Nothing known (forgotten, or from before the Stage): trust it.
		if err := c.move(old, new); err != nil {
			return err
		}
		return c.resolve(new)
	}
}

// move emits a rename and moves what is remembered with it; what the rename
// replaced at new is forgotten, except the changes still unresolved there:
// converting them reads the master's current state, which is always safe,
// and they may be about the object that just arrived (a listing can report
// a renamed directory's contents under the new name before the rename).
//
// When new's parent is not on the replica and no longer a directory on the
// master, the object has moved on; the rename cannot be applied, so old is
// removed and new remembered as unresolved, to be created wherever later
// events find it.
func (c *converter) move(old, new string) error {
	s := c.s
	ok, err := c.ensureParents(new)
	if err != nil {
		return err
	}
	if !ok {
		c.add(change.Change{Op: change.OpRemove, Path: old})
		s.forgetTree(old)
		s.markAbsent(old)
		return c.unresolved(new, 1<<Created)
	}
	c.add(change.Change{Op: change.OpRename, Path: old, NewPath: new})
	c.replaced(new)
	s.absent.deleteTree(new)
	s.markAbsent(old)
	s.xattrs.renameTree(old, new)
	s.seen.renameTree(old, new)
	s.renameInodes(old, new)
	s.missing.renameTree(old, new)
	return nil
}

// replaced forgets what the replica held at and below p, which a rename
// replaced, keeping the unresolved changes (see move).
func (c *converter) replaced(p string) {
	c.s.xattrs.deleteTree(p)
	c.s.seen.deleteTree(p)
	c.s.forgetInodes(p)
}

// resolve converts the paths at and below rel whose earlier events found
// nothing there, parents first.
func (c *converter) resolve(rel string) error {
	var ps []string
	for p := range c.s.missing {
		if under(p, rel) {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	var errs []error
	for _, p := range ps {
		k, ok := c.s.missing[p]
		if !ok {
			continue // resolved by a parent's replacement
		}
		delete(c.s.missing, p)
		if _, ok := c.s.seen[p]; ok {
			errs = append(errs, c.convert(p, k))
			continue
		}
		// Whether the replica has p at all is unknown (the change may be
		// about an object a rename replaced): create it whole, which is
		// right either way; if it is gone again, remember it as never
		// created, so that a later rename builds its new name afresh.
		if _, err := c.s.root.statx(p); gone(err) {
			errs = append(errs, c.unresolved(p, k|1<<Created))
			continue
		}
		errs = append(errs, c.place(p))
	}
	return errors.Join(errs...)
}

// ensureParents creates on the replica the ancestors of p that it is not
// known to hold (their creation may be converted only later, or may have
// found nothing at the time), so that p can be created. It says false when
// an ancestor is not a directory on the master (any more): p cannot be
// placed now, and later events say where it went.
func (c *converter) ensureParents(p string) (bool, error) {
	for i := 0; i < len(p); i++ {
		if p[i] != '/' {
			continue
		}
		a := p[:i]
		if _, ok := c.s.seen[a]; ok {
			continue
		}
		if err := c.convert(a, 1<<DirCreated); err != nil {
			return false, err
		}
		if _, ok := c.s.seen[a]; !ok {
			return false, nil
		}
	}
	return true, nil
}

// place creates p from scratch, parents first, or remembers it as
// unresolved when it cannot be placed now.
func (c *converter) place(p string) error {
	ok, err := c.ensureParents(p)
	if err != nil {
		return err
	}
	if !ok {
		return c.unresolved(p, 1<<Created)
	}
	return c.walk(p)
}

// verify checks the remembered entries below a renamed directory against
// the master and replaces those that are other objects now.
func (c *converter) verify(rel string) error {
	var ps []string
	for p := range c.s.seen {
		if p != rel && under(p, rel) {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	var errs []error
	for _, p := range ps {
		e, ok := c.s.seen[p]
		if !ok {
			continue // below one replaced already
		}
		stx, err := c.s.root.statx(p)
		if err != nil {
			if !gone(err) {
				errs = append(errs, fmt.Errorf("capture: stage: %w", err))
			}
			continue // gone: its own events follow
		}
		if identOf(stx) != e.id {
			errs = append(errs, c.replace(p))
		}
	}
	return errors.Join(errs...)
}

// replace removes p on the replica and builds it again, with everything
// below it, from the master's state.
func (c *converter) replace(p string) error {
	c.add(change.Change{Op: change.OpRemove, Path: p})
	c.s.forgetTree(p)
	c.s.markAbsent(p)
	return c.place(p)
}

// walk converts p and everything below it as created.
func (c *converter) walk(p string) error {
	stx, err := c.s.root.statx(p)
	if err != nil {
		if gone(err) {
			return nil
		}
		return fmt.Errorf("capture: stage: %w", err)
	}
	if stx.Mode&unix.S_IFMT != unix.S_IFDIR {
		return c.convert(p, 1<<Created)
	}
	if err := c.convert(p, 1<<DirCreated); err != nil {
		return err
	}
	names, err := c.s.root.readDirNames(p)
	if err != nil {
		if gone(err) {
			return nil // removed meanwhile; its own events follow
		}
		return fmt.Errorf("capture: stage: listing %s: %w", p, err)
	}
	slices.Sort(names)
	var errs []error
	for _, n := range names {
		child := p + "/" + n
		if !validRel(child) {
			errs = append(errs, fmt.Errorf("capture: stage: %w: %q", ErrUnrepresentable, child))
			continue
		}
		errs = append(errs, c.walk(child))
	}
	return errors.Join(errs...)
}

// convert appends the steps for the kinds of change seen at p.
func (c *converter) convert(p string, kinds kindSet) error {
	s := c.s
	// Whatever an earlier event left unresolved at p is resolved now.
	kinds |= s.missing[p]
	delete(s.missing, p)
	stx, err := s.root.statx(p)
	if err != nil {
		if gone(err) {
			return c.unresolved(p, kinds)
		}
		return fmt.Errorf("capture: stage: %w", err)
	}
	id := identOf(stx)
	if e, ok := s.seen[p]; ok && e.id != id {
		// The replica holds another object here: a late conversion or a
		// listing put it there. Start over from the master's state.
		return c.replace(p)
	}
	full := kinds&fullKinds != 0
	if full {
		// The parent's own creation may have found nothing at the time.
		ok, err := c.ensureParents(p)
		if err != nil {
			return err
		}
		if !ok {
			return c.unresolved(p, kinds)
		}
	}
	switch stx.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		if full {
			target, err := s.root.readlink(p)
			if err != nil {
				return c.vanished(p, kinds, err)
			}
			// Symlinks cannot be replaced in place; remove what may be there
			// (an event reported twice).
			c.add(change.Change{Op: change.OpRemove, Path: p})
			c.add(change.Change{Op: change.OpSymlink, Path: p, Target: target})
			s.see(p, id)
		}
		// Ownership is the one attribute of a symlink worth carrying:
		// Linux ignores a symlink's mode and forbids user xattrs on it.
		c.add(change.Change{Op: change.OpChown, Path: p, UID: stx.Uid, GID: stx.Gid})
		return nil
	case unix.S_IFDIR:
		return c.dir(p, kinds, full, id)
	case unix.S_IFREG:
		return c.file(p, kinds, full, id, stx)
	default:
		return fmt.Errorf("capture: stage: %q: %w (mode %#o)", p, ErrUnsupportedType, stx.Mode)
	}
}

// vanished handles an entry that disappeared (or changed type) between two
// reads: remember it like one missing from the start.
func (c *converter) vanished(p string, kinds kindSet, err error) error {
	if gone(err) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EINVAL) {
		return c.unresolved(p, kinds)
	}
	return fmt.Errorf("capture: stage: %w", err)
}

// unresolved remembers that the change kinds at p found nothing there. The
// memory is bounded: events lost upstream could leave entries that no
// rename or removal ever resolves.
func (c *converter) unresolved(p string, kinds kindSet) error {
	s := c.s
	if _, ok := s.missing[p]; !ok && len(s.missing) >= maxUnresolved {
		n := len(s.missing)
		clear(s.missing)
		return fmt.Errorf("capture: stage: %w: %d changes at paths that vanished were never resolved by a rename or removal", ErrRescan, n)
	}
	s.missing[p] |= kinds
	return nil
}

// open opens p for reading its content or attributes and checks that it is
// still the object id. O_NONBLOCK: if the entry was swapped for a FIFO,
// opening it must not wait for a writer; O_NOFOLLOW: nor may it have become
// a symlink. A nil file means p is something else now, and kinds have been
// remembered as unresolved.
func (c *converter) open(p string, kinds kindSet, id ident, flags int) (*os.File, *unix.Statx_t, error) {
	f, err := c.s.root.open(p, os.O_RDONLY|syscall.O_NONBLOCK|flags)
	if err != nil {
		return nil, nil, c.vanished(p, kinds, err)
	}
	stx, err := statxFile(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("capture: stage: %w", err)
	}
	if identOf(stx) != id {
		f.Close()
		return nil, nil, c.unresolved(p, kinds) // replaced meanwhile; its own events follow
	}
	return f, stx, nil
}

func (c *converter) dir(p string, kinds kindSet, full bool, id ident) error {
	s := c.s
	f, stx, err := c.open(p, kinds, id, syscall.O_DIRECTORY)
	if f == nil {
		return err
	}
	defer f.Close()
	mode := uint32(stx.Mode) & 0o7777
	if full {
		c.add(change.Change{Op: change.OpMkdir, Path: p, Mode: mode})
		s.see(p, id)
	}
	// Owner before mode: a chown may clear setuid and setgid bits.
	c.add(change.Change{Op: change.OpChown, Path: p, UID: stx.Uid, GID: stx.Gid})
	if !full {
		c.add(change.Change{Op: change.OpChmod, Path: p, Mode: mode})
	}
	if err := c.xattrs(p, f); err != nil {
		return err
	}
	// A directory's mtime moves whenever an entry is added or removed, on
	// the replica as on the master, so it is only carried when it was set
	// explicitly (an Attrib event).
	if kinds.has(Attrib) {
		c.add(change.Change{Op: change.OpSetTimes, Path: p, MTime: nanos(stx.Mtime)})
	}
	return nil
}

func (c *converter) file(p string, kinds kindSet, full bool, id ident, stx *unix.Statx_t) error {
	s := c.s
	if full && stx.Nlink > 1 {
		if other, ok := s.byIno[id]; ok && other != p {
			if ostx, err := s.root.statx(other); err == nil && identOf(ostx) == id {
				// A new name for a file the replica already has: everything
				// else (content, owner, xattrs) is shared with it.
				c.add(change.Change{Op: change.OpRemove, Path: p})
				c.add(change.Change{Op: change.OpLink, Path: other, NewPath: p})
				s.byPath[p] = id
				if names, ok := s.xattrs[other]; ok {
					s.xattrs[p] = names // shared with the inode
				}
				s.see(p, id)
				return nil
			}
		}
	}
	f, fst, err := c.open(p, kinds, id, 0)
	if f == nil {
		return err
	}
	defer f.Close()
	s.remember(p, id, uint64(fst.Nlink))
	mode := uint32(fst.Mode) & 0o7777
	mtime := nanos(fst.Mtime)
	if !full && !kinds.has(Modified) {
		// Attributes only; owner before mode, as a chown clears setuid and
		// setgid.
		c.add(change.Change{Op: change.OpChown, Path: p, UID: fst.Uid, GID: fst.Gid})
		c.add(change.Change{Op: change.OpChmod, Path: p, Mode: mode})
		if err := c.xattrs(p, f); err != nil {
			return err
		}
		c.add(change.Change{Op: change.OpSetTimes, Path: p, MTime: mtime})
		return nil
	}
	// Content goes whole when the file is small, unless it is an update of
	// a file with several names: the replica's other names share its
	// inode, and only an in-place update (Sync) reaches them.
	inPlace := !full && fst.Nlink > 1
	var data []byte
	if !inPlace {
		data, err = io.ReadAll(io.LimitReader(f, s.maxInline()+1))
		if err != nil {
			return fmt.Errorf("capture: stage: reading %s: %w", p, err)
		}
	}
	whole := !inPlace && int64(len(data)) <= s.maxInline()
	switch {
	case whole:
		c.add(change.Change{Op: change.OpReplaceFile, Path: p, Data: data, Mode: mode, MTime: mtime})
	case full:
		// A fresh, empty file for the block-level sync to fill; remove
		// first so that sync cannot write into an object that was here.
		c.add(change.Change{Op: change.OpRemove, Path: p})
		c.add(change.Change{Op: change.OpCreate, Path: p, Mode: mode})
	}
	// Owner and xattrs follow a replacement, which creates a new inode.
	// The mode follows the owner when it has setuid or setgid bits (or was
	// not sent yet): a chown clears them.
	if full || whole || kinds.has(Attrib) {
		c.add(change.Change{Op: change.OpChown, Path: p, UID: fst.Uid, GID: fst.Gid})
		if (!full && !whole) || mode&0o6000 != 0 {
			c.add(change.Change{Op: change.OpChmod, Path: p, Mode: mode})
		}
		if err := c.xattrs(p, f); err != nil {
			return err
		}
	}
	if !whole {
		// The block-level sync rewrites the replica's mtime; set it after.
		c.items = append(c.items, Item{Sync: p})
		c.add(change.Change{Op: change.OpSetTimes, Path: p, MTime: mtime})
	}
	if full {
		s.see(p, id)
	}
	return nil
}

// xattrs appends RemoveXattr for each name remembered for p that is gone
// and SetXattr for every attribute the open file has. (An applier must take
// the removal of an attribute that is already absent as done.)
func (c *converter) xattrs(p string, f *os.File) error {
	fd := int(f.Fd())
	names, err := xattrNames(func(b []byte) (int, error) { return unix.Flistxattr(fd, b) })
	if err != nil {
		return fmt.Errorf("capture: stage: listing extended attributes of %s: %w", p, err)
	}
	for _, old := range c.s.xattrs[p] {
		if !slices.Contains(names, old) {
			c.add(change.Change{Op: change.OpRemoveXattr, Path: p, XattrName: old})
		}
	}
	var errs []error
	for _, n := range names {
		v, err := getXattr(fd, n)
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue // removed since the listing
			}
			errs = append(errs, fmt.Errorf("capture: stage: reading extended attribute %s of %s: %w", n, p, err))
			continue
		}
		if len(n) > change.MaxXattrName || len(v) > change.MaxXattrVal {
			errs = append(errs, fmt.Errorf("capture: stage: extended attribute %s of %s (%d bytes) exceeds the change limits", n, p, len(v)))
			continue
		}
		c.add(change.Change{Op: change.OpSetXattr, Path: p, XattrName: n, XattrValue: v})
	}
	if len(names) > 0 {
		c.s.xattrs[p] = names
	} else {
		delete(c.s.xattrs, p)
	}
	return errors.Join(errs...)
}

func getXattr(fd int, name string) ([]byte, error) {
	for range 4 {
		n, err := unix.Fgetxattr(fd, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, n)
		if n == 0 {
			return buf, nil
		}
		n, err = unix.Fgetxattr(fd, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // the value grew between the two calls
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	return nil, fmt.Errorf("extended attribute %s kept changing size: %w", name, unix.ERANGE)
}

// remember records p as a name of inode di.
func (s *Stage) remember(p string, di ident, nlink uint64) {
	max := s.MaxInodes
	if max <= 0 {
		max = DefaultMaxInodes
	}
	if old, ok := s.byPath[p]; ok && old != di && s.byIno[old] == p {
		delete(s.byIno, old)
	}
	if _, ok := s.byIno[di]; !ok && len(s.byIno) >= max && nlink < 2 {
		return
	}
	s.byPath[p] = di
	if _, ok := s.byIno[di]; !ok {
		s.byIno[di] = p
	}
}

func (s *Stage) forgetInodes(rel string) {
	for p, di := range s.byPath {
		if under(p, rel) {
			delete(s.byPath, p)
			if s.byIno[di] == p {
				delete(s.byIno, di)
			}
		}
	}
}

func (s *Stage) renameInodes(oldRel, newRel string) {
	for _, np := range s.byPath.renameTree(oldRel, newRel) {
		di := s.byPath[np]
		if s.byIno[di] == rebase(np, newRel, oldRel) {
			s.byIno[di] = np
		}
	}
}

// pathMap is a map keyed by relative path with subtree operations.
type pathMap[V any] map[string]V

func (m pathMap[V]) deleteTree(rel string) {
	if rel == "" {
		clear(m)
		return
	}
	for p := range m {
		if under(p, rel) {
			delete(m, p)
		}
	}
}

// renameTree moves the keys at and below oldRel to below newRel and
// returns the new keys.
func (m pathMap[V]) renameTree(oldRel, newRel string) []string {
	type kv struct {
		k string
		v V
	}
	var moved []kv
	for p, v := range m {
		if under(p, oldRel) {
			moved = append(moved, kv{p, v})
		}
	}
	keys := make([]string, 0, len(moved))
	for _, e := range moved {
		delete(m, e.k)
	}
	for _, e := range moved {
		np := rebase(e.k, oldRel, newRel)
		m[np] = e.v
		keys = append(keys, np)
	}
	return keys
}
