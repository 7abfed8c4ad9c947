package apply

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/change"
)

// Errors callers test with errors.Is. A failure of one change is an
// *Error naming it, with the sentinel wrapped inside.
var (
	// ErrEscape: the change names something outside the replica tree: a
	// path leaving the root, a path through a symlink, or the applier's
	// own state directory. Nothing was changed; log it.
	ErrEscape = errors.New("path escapes the replica root")
	// ErrNoSpace: the replica's filesystem is full (ENOSPC) or the quota
	// is exhausted (EDQUOT). The change was not applied; deliver it again
	// once there is room.
	ErrNoSpace = errors.New("no space left on the replica")
	// ErrBaseMismatch: an OpPatch's delta was not made against the
	// replica's copy of the file (another version, a missing file, or
	// something else than a regular file in its place) and the copy is not
	// already the delta's result either. Nothing was changed; the master
	// sends the file whole instead (OpReplaceFile).
	ErrBaseMismatch = errors.New("replica file is not the base the delta was made against")
	// ErrInUse: another Applier holds the target.
	ErrInUse = errors.New("replica target is in use by another applier")
)

// Error is a failure to apply one change.
type Error struct {
	Seq     uint64
	Op      change.Op
	Path    string
	NewPath string // OpRename, OpLink
	Err     error
}

func (e *Error) Error() string {
	p := e.Path
	if e.NewPath != "" {
		p += " -> " + e.NewPath
	}
	return fmt.Sprintf("apply %s %s (seq %d): %v", e.Op, p, e.Seq, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// OwnerPolicy says whether OpChown is applied.
type OwnerPolicy uint8

const (
	// OwnerAuto preserves owners when the process runs as root, the only
	// case in which chown to arbitrary ids can succeed.
	OwnerAuto OwnerPolicy = iota
	// OwnerPreserve applies OpChown; failures are errors.
	OwnerPreserve
	// OwnerIgnore skips OpChown: files stay owned by the applier.
	OwnerIgnore
)

// Options tune an Applier. The zero value is the usual choice.
type Options struct {
	Owner OwnerPolicy
	// HeldLinks, when set, tells how many names of the inode (dev, ino)
	// the caller keeps outside the tree: the rewind journal hard-links a
	// file's old inode before a change replaces it. Those names are not
	// other names of the file in the tree, so they must not make a
	// replacement rewrite it in place (which would change the kept copy).
	HeldLinks func(dev, ino uint64) uint64
}

// StateDir is the directory below the target where the applier keeps its
// state. Changes naming it are refused with ErrEscape, and the replication
// engine must leave it out of scans and comparisons of the replica.
const StateDir = ".holdfast"

// tempPrefix starts the temporary names used to build objects before they
// are renamed into place.
const tempPrefix = ".holdfast-tmp-"

// maxPending bounds the descriptors a batch keeps open for its commit.
const maxPending = 256

// Applier applies changes to one replica tree. Its methods may be called
// from several goroutines; changes are applied one at a time.
type Applier struct {
	mu            sync.Mutex
	target        string // for messages only; never opened again
	root          int    // the target directory, O_RDONLY|O_DIRECTORY
	state         *stateFile
	preserveOwner bool
	heldLinks     func(dev, ino uint64) uint64
	pending       pending
	run           wholeRun
	applied       uint64        // highest Seq applied, durable or not
	last          atomic.Uint64 // highest Seq durably applied and recorded
	broken        error         // set when a sync failed; see the package doc
	closed        bool

	// beforeRecord, when set by tests, runs before LastApplied is written
	// and may fail to simulate a crash at that point.
	beforeRecord func(seq uint64) error
}

// Open opens the replica tree at target, which must be an existing
// directory, and becomes its only writer (a second Open of the same tree
// fails with ErrInUse until Close). target comes from the configuration
// and is trusted: it is opened once, following symlinks like any
// configured path, and everything after that is resolved below the
// descriptor it gave. Open creates target/.holdfast for its state,
// restricts target itself to mode 0700 (see the package doc), and reads
// LastApplied.
func Open(target string, opts Options) (*Applier, error) {
	root, err := unix.Open(target, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open replica %s: %w", target, os.NewSyscallError("open", err))
	}
	a := &Applier{target: target, root: root, pending: pending{m: map[fileKey]*pendingFile{}}, heldLinks: opts.HeldLinks}
	switch opts.Owner {
	case OwnerAuto:
		a.preserveOwner = os.Geteuid() == 0
	case OwnerPreserve:
		a.preserveOwner = true
	}
	if err := a.open(); err != nil {
		_ = unix.Close(root)
		return nil, fmt.Errorf("open replica %s: %w", target, err)
	}
	return a, nil
}

func (a *Applier) open() error {
	var st unix.Stat_t
	if err := unix.Fstat(a.root, &st); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	if st.Mode&0o077 != 0 {
		if err := unix.Fchmod(a.root, st.Mode&0o7700); err != nil {
			return fmt.Errorf("restrict target to its owner: %w", os.NewSyscallError("fchmod", err))
		}
		if err := unix.Fsync(a.root); err != nil {
			return os.NewSyscallError("fsync", err)
		}
	}
	state, err := openState(a.root)
	if err != nil {
		return err
	}
	a.state = state
	a.applied = state.seq
	a.last.Store(state.seq)
	return nil
}

// LastApplied returns the highest Seq durably applied. Changes with a Seq
// at or below it are skipped by Apply and ApplyBatch.
func (a *Applier) LastApplied() uint64 { return a.last.Load() }

// Apply applies one change and returns once it is durable and recorded in
// LastApplied. A change with Seq <= LastApplied was applied before and is
// skipped. On error nothing is recorded; see Error and the sentinels.
func (a *Applier) Apply(c change.Change) error {
	return a.ApplyBatch([]change.Change{c})
}

// ApplyBatch applies changes in order with group commit (see the package
// doc) and returns once all of them are durable and recorded. If one fails,
// those before it are made durable and recorded, and its error (an *Error)
// is returned: LastApplied then tells where to resume. A failed sync is not
// tied to one change; it leaves the Applier refusing further work until
// it is reopened.
func (a *Applier) ApplyBatch(cs []change.Change) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return fmt.Errorf("apply to %s: %w", a.target, fs.ErrClosed)
	}
	if a.broken != nil {
		return a.broken
	}
	for i := range cs {
		c := &cs[i]
		if c.Seq != 0 && c.Seq <= max(a.applied, a.run.last()) {
			continue // delivered again; applied before
		}
		err := a.applyInBatch(c)
		if err == nil && (a.pending.len() >= maxPending || a.run.full()) {
			err = a.commit()
		}
		if err != nil {
			// Make what went before durable; a broken Applier has
			// nothing more to say than err already does.
			if a.broken == nil {
				if cerr := a.commit(); cerr != nil {
					err = errors.Join(err, cerr)
				}
			}
			return err
		}
	}
	return a.commit()
}

// applyInBatch applies c after those already applied in this batch, taking
// a commit before and after it when it may drop or move a name. Whole-file
// replacements, and the metadata changes that finish them, are gathered in
// a run that commits once for all its files (see wholeRun).
func (a *Applier) applyInBatch(c *change.Change) error {
	if err := check(c); err != nil {
		return wrap(c, err)
	}
	if a.run.joins(c) {
		return a.fold(c)
	}
	if a.run.defers(c) {
		a.run.after = append(a.run.after, c)
		return nil
	}
	if c.Op == change.OpReplaceFile {
		if ok, err := a.stageWhole(c); ok || err != nil {
			return err
		}
	}
	if !a.run.empty() {
		if err := a.commit(); err != nil {
			return err
		}
	}
	if !destructive(c.Op) {
		err := a.do(c, false)
		if !errors.Is(err, errNeedCommit) {
			if err != nil {
				return wrap(c, err)
			}
			a.applied = c.Seq
			return nil
		}
	}
	if err := a.commit(); err != nil {
		return err
	}
	if err := a.do(c, true); err != nil {
		return wrap(c, err)
	}
	a.applied = c.Seq
	return a.commit()
}

// destructive reports whether op drops, moves or replaces a name: applying
// it again after later changes of its batch could undo them, so it is
// committed on its own.
func destructive(op change.Op) bool {
	switch op {
	case change.OpRename, change.OpRemove, change.OpLink, change.OpSymlink, change.OpReplaceFile, change.OpPatch:
		return true
	}
	return false
}

// errNeedCommit is returned by an op asked not to replace a name when it
// finds it would have to: the batch commits and runs it alone.
var errNeedCommit = errors.New("op replaces a name: needs a commit of its own")

// commit renames the run of whole files into place, syncs everything the
// applied changes touched and records the highest applied Seq. A failed
// sync or record leaves the Applier broken; a rename that failed is its
// change's error, returned once what went before it is committed.
func (a *Applier) commit() error {
	if a.broken != nil {
		return a.broken
	}
	runErr := a.finishRun()
	if a.broken != nil {
		return a.broken
	}
	if err := a.pending.flush(); err != nil {
		a.broken = fmt.Errorf("sync replica %s (reopen to replay from seq %d): %w", a.target, a.last.Load(), noSpace(err))
		return a.broken
	}
	if a.applied <= a.last.Load() {
		return runErr
	}
	if a.beforeRecord != nil {
		if err := a.beforeRecord(a.applied); err != nil {
			return err
		}
	}
	if err := a.state.record(a.applied); err != nil {
		a.broken = fmt.Errorf("record seq %d in %s (reopen to replay): %w", a.applied, a.target, noSpace(err))
		return a.broken
	}
	a.last.Store(a.applied)
	return runErr
}

// Close releases the tree. Everything applied is already durable.
func (a *Applier) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	a.run.removeTemps(0) // left only by a broken Applier
	a.run.reset()
	a.pending.discard()
	err := a.state.close()
	if cerr := unix.Close(a.root); cerr != nil {
		err = errors.Join(err, os.NewSyscallError("close", cerr))
	}
	if err != nil {
		return fmt.Errorf("close replica %s: %w", a.target, err)
	}
	return nil
}

// check re-validates c, whoever built it: the decoder validated it already,
// but Apply must not trust that it was decoded at all.
func check(c *change.Change) error {
	paths := []string{c.Path}
	if c.Op == change.OpRename || c.Op == change.OpLink {
		paths = append(paths, c.NewPath)
	}
	verr := c.Validate()
	for _, p := range paths {
		if leaves(p) {
			// Validate refuses these too; say both, so the caller both
			// logs an attempt to escape and knows the record was invalid.
			if verr == nil {
				verr = change.ErrInvalid
			}
			return fmt.Errorf("%w: %q leaves the root: %w", ErrEscape, p, verr)
		}
	}
	if verr != nil {
		return verr
	}
	if c.Seq == 0 {
		return fmt.Errorf("%w: seq 0 (sequence numbers start at 1)", change.ErrInvalid)
	}
	for _, p := range paths {
		if p == StateDir || strings.HasPrefix(p, StateDir+"/") {
			return fmt.Errorf("%w: %q is the applier's own state", ErrEscape, p)
		}
	}
	return nil
}

// leaves reports a path that is absolute or has a ".." component, clean
// or not: either would climb out of the root if it were ever joined.
func leaves(p string) bool {
	if strings.HasPrefix(p, "/") {
		return true
	}
	for el := range strings.SplitSeq(p, "/") {
		if el == ".." {
			return true
		}
	}
	return false
}

func wrap(c *change.Change, err error) error {
	e := &Error{Seq: c.Seq, Op: c.Op, Path: c.Path, Err: noSpace(err)}
	if c.Op == change.OpRename || c.Op == change.OpLink {
		e.NewPath = c.NewPath
	}
	return e
}

// noSpace marks out-of-space errors with ErrNoSpace.
func noSpace(err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}
