package treesync

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/blocksync"
	"github.com/holdfast/holdfast/agent/change"
)

// Synchronization modes (Planner.Mode).
const (
	// ModeAuto sends files up to FileLevelMax whole and larger ones that
	// the replica holds a version of as deltas.
	ModeAuto = "auto"
	// ModeFile sends every file whole, never asking for a signature.
	ModeFile = "file"
	// ModeBlock tries a delta for every file the replica holds a version
	// of, whatever its size.
	ModeBlock = "block"
)

// DefaultFileLevelMax is Planner.FileLevelMax when it is not set: below
// about a megabyte a delta saves little over the signature round trip and
// the replica's read of its old copy.
const DefaultFileLevelMax = 1 << 20

// writeChunk is the data of one OpWrite when a file too large for one
// OpReplaceFile is sent whole.
const writeChunk = 4 << 20

// Errors a Problem wraps.
var (
	// ErrChanged: the master's entry changed while it was being read or
	// since it was compared. The caller queues the path again: a later
	// compare and sync bring it up to date.
	ErrChanged = errors.New("changed on the master during synchronization")
	// ErrUnsupported: the entry is of a kind no change can create on the
	// replica (device, FIFO, socket).
	ErrUnsupported = errors.New("cannot be replicated")
	// ErrIncomplete is wrapped by the error Sync returns when it went
	// through the differences but some paths could not be synchronized;
	// Stats.Problems lists them.
	ErrIncomplete = errors.New("some paths were not synchronized")
)

// Problem is one path Sync could not synchronize, and why.
type Problem struct {
	Path string
	Err  error
}

func (p Problem) Error() string { return p.Path + ": " + p.Err.Error() }
func (p Problem) Unwrap() error { return p.Err }

// Stats say what a Sync sent.
type Stats struct {
	Changes int64 // changes emitted

	FilesWhole int64 // files sent whole (OpReplaceFile, or OpCreate and OpWrite)
	BytesWhole int64 // their size

	FilesBlock   int64 // files sent as a delta (OpPatch)
	BytesBlock   int64 // their size
	BytesLiteral int64 // bytes of them sent literally in the deltas
	BytesCopied  int64 // bytes of them the replica copies from its old version
	BytesDelta   int64 // encoded size of the deltas: what the OpPatch changes carry

	Dirs          int64 // directories created
	Symlinks      int64 // symlinks created or replaced
	HardLinks     int64 // hard links made (OpLink) instead of sending content again
	Removed       int64 // entries removed from the replica
	MetadataFixes int64 // OpChmod, OpChown, OpSetTimes, OpSetXattr and OpRemoveXattr changes

	// Problems are the paths not synchronized; the caller queues them
	// again. Sync's error says so too (ErrIncomplete).
	Problems []Problem
	// SignatureErrors are the files for which the replica could not give
	// a usable signature; they were sent whole instead, so they are not
	// problems, but a replica that keeps failing to read its files is.
	SignatureErrors []Problem
}

// Planner turns differences into changes. Set MasterRoot and Emit;
// Signature enables block-level synchronization.
type Planner struct {
	// MasterRoot is the master's tree, the root the differences are
	// relative to. The planner reads it, confined below it and through no
	// symlink.
	MasterRoot string
	// Signature asks the replica for the signature of its copy of the file
	// at path (see blocksync.ComputeSignature; the replica picks the block
	// size). Nil: every file is sent whole. An error is no failure: the
	// file is sent whole and the error listed in Stats.SignatureErrors.
	// It is only asked about a file that no change emitted before in the
	// same Sync touches, so Emit may hold changes back and apply them in
	// batches.
	Signature func(path string) (blocksync.Signature, error)
	// Emit sends one change towards the replica. It is called in the order
	// the changes must be applied; the caller assigns Seq. Emit may keep c:
	// the planner never reuses c.Data. An error from Emit stops Sync.
	Emit func(c change.Change) error
	// FileLevelMax: files up to this size are sent whole; larger ones that
	// the replica holds a version of go block-level (ModeAuto). Zero or
	// less means DefaultFileLevelMax.
	FileLevelMax int64
	// Mode is ModeAuto (the default, when empty), ModeFile or ModeBlock.
	Mode string
	// Links optionally maps the master's hard-linked files to their first
	// path: Links of the master scan that gave the differences. The
	// planner links the files it finds below a directory missing on the
	// replica to names elsewhere in the tree with it; without it, such a
	// file is sent again and the next compare reports LinkDiffers. Links
	// within one Sync are found without it.
	Links map[FileID]string
	// ScanOptions for the master entries the planner reads itself: the
	// contents of directories missing on the replica, and the current
	// metadata of each entry it synchronizes.
	ScanOptions ScanOptions

	// afterRead, set by tests, runs after a master file's content was read
	// and before the check that it did not change meanwhile.
	afterRead func(path string)
}

var errDeltaTooBig = errors.New("delta larger than one change can carry")

// Sync emits the changes that make the replica equal the master as
// diffs describe them (see Compare), in this order:
//
//  1. Directories, parents before children: created with OpMkdir and their
//     mode, then owner and extended attributes; an object of another type
//     in their place is removed first. A directory missing on the replica
//     brings everything the master now has below it, read at this point.
//  2. Files and symlinks, in path order. A file whose master path is
//     another name of a file synchronized before (hard links) is linked to
//     it (OpLink) instead of being sent again. Other files are sent whole
//     or as a delta (see below), then their owner, their mode again if
//     chown cleared setuid or setgid, and their extended attributes are
//     set. A different type in their place is removed first (a replica
//     directory with everything below it).
//  3. Extra entries on the replica are removed, deepest first. They go
//     last so that a rename on the master, which compares as a missing and
//     an extra path, never leaves the replica without either.
//  4. Directory modification times are set, because creating and removing
//     names in a directory (the applier's temporary names included) change
//     it.
//
// Whole files: up to change.MaxData bytes one OpReplaceFile, atomic on the
// replica. Larger files go as OpCreate, OpWrite chunks of 4 MiB (chunks of
// zeros are skipped: the final OpTruncate to the size makes them holes),
// and metadata changes; such a file is not atomic on the replica while it
// is being sent: the scenario is "synchronizing" until the stream is
// applied.
//
// Block level (ModeAuto above FileLevelMax, or ModeBlock): Signature gives
// the replica's copy's signature, blocksync.Diff the delta; when the delta
// says most of the file differs (blocksync.Stats.WholeFile) or its encoding
// exceeds change.MaxData, the file is sent whole, else as one OpPatch. A
// file up to change.MaxData bytes is read once, for the delta and the
// whole-file fallback alike; a larger one is read again for the fallback.
//
// Each master file's size, mtime and ctime are checked after it was read:
// if they changed, the file changed during the read, and what was read may
// mix two versions. Nothing is sent for it then, except for a large whole
// file whose first chunks went already (the replica's copy stays
// incomplete until the file is sent again). Either way the path is a
// Problem wrapping ErrChanged, for the caller to queue it again. An entry
// that vanished or changed type since the compare is reported the same
// way.
//
// Sync returns an error wrapping ErrIncomplete when some paths could not
// be synchronized (Stats.Problems lists them; the others were), and any
// error of Emit or of opening MasterRoot as it is.
func (p *Planner) Sync(diffs []Difference) (Stats, error) {
	switch p.Mode {
	case "", ModeAuto, ModeFile, ModeBlock:
	default:
		return Stats{}, fmt.Errorf("treesync: unknown mode %q (want %q, %q or %q)", p.Mode, ModeAuto, ModeFile, ModeBlock)
	}
	if p.Emit == nil {
		return Stats{}, errors.New("treesync: Planner.Emit is not set")
	}
	root, err := unix.Open(p.MasterRoot, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Stats{}, fmt.Errorf("treesync: open master %s: %w", p.MasterRoot, os.NewSyscallError("open", err))
	}
	defer unix.Close(root)
	r := &run{
		p:       p,
		root:    root,
		synced:  map[FileID]string{},
		failed:  map[string]bool{},
		handled: map[string]bool{},
		restamp: map[string]bool{},
	}
	if err := r.sync(diffs); err != nil {
		return r.st, err
	}
	if n := len(r.st.Problems); n > 0 {
		errs := make([]error, 0, n)
		for _, pr := range r.st.Problems {
			errs = append(errs, pr)
		}
		return r.st, fmt.Errorf("treesync: %w (%d): %w", ErrIncomplete, n, errors.Join(errs...))
	}
	return r.st, nil
}

// run is one Sync in progress.
type run struct {
	p    *Planner
	root int // MasterRoot
	st   Stats

	extras  []*Difference     // ExtraOnReplica, sorted by path
	synced  map[FileID]string // master file -> path whose content this run sent
	failed  map[string]bool   // paths not synchronized: nothing below them is
	handled map[string]bool   // extras removed already (below a replaced directory)
	restamp map[string]bool   // directories whose mtime to set at the end
}

// item is one master entry to synchronize: from a difference, or found
// below a directory missing on the replica (expanded).
type item struct {
	path     string
	kind     DiffKind
	master   *Entry // as compared, or as scanned below a new directory
	replica  *Entry // as compared; nil if absent
	link     string // Difference.Link
	expanded bool
}

func (r *run) sync(diffs []Difference) error {
	ds := make([]Difference, len(diffs))
	copy(ds, diffs)
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].Path < ds[j].Path })

	var dirs, files []item
	seen := map[string]bool{}
	for i := range ds {
		d := &ds[i]
		if err := change.ValidPath(d.Path); err != nil {
			r.fail(d.Path, err)
			continue
		}
		seen[d.Path] = true
		switch {
		case d.Kind == ExtraOnReplica:
			if d.Replica == nil {
				r.fail(d.Path, errors.New("extra path without its replica entry"))
				continue
			}
			r.extras = append(r.extras, d)
		case d.Master == nil:
			r.fail(d.Path, fmt.Errorf("%v without the master's entry", d.Kind))
		case d.Master.Type == Dir:
			dirs = append(dirs, item{path: d.Path, kind: d.Kind, master: d.Master, replica: d.Replica})
		default:
			files = append(files, item{path: d.Path, kind: d.Kind, master: d.Master, replica: d.Replica, link: d.Link})
		}
	}

	// A directory the replica lacks stands for its whole subtree: read it
	// now, so what is created is what the master has now.
	for _, it := range dirs {
		if it.replica != nil && it.replica.Type == Dir {
			continue
		}
		entries, problems, err := scanBelow(r.root, it.path, r.p.ScanOptions)
		for _, pr := range problems {
			// Reported, not failed: an entry that could not be read is
			// absent from entries (and so is what is below it), and one
			// read in part is synchronized without the unread part.
			r.st.Problems = append(r.st.Problems, Problem{Path: pr.Path, Err: pr.Err})
		}
		if err != nil {
			r.fail(it.path, changedOr(err))
			continue
		}
		for i := range entries {
			e := &entries[i]
			if seen[e.Path] {
				continue
			}
			x := item{path: e.Path, kind: MissingOnReplica, master: e, expanded: true}
			if e.Type == Dir {
				dirs = append(dirs, x)
			} else {
				files = append(files, x)
			}
		}
	}

	sort.Slice(dirs, func(i, j int) bool { return dirs[i].path < dirs[j].path })
	for _, it := range dirs {
		if err := r.dir(it); err != nil {
			return err
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	for _, it := range files {
		if err := r.file(it); err != nil {
			return err
		}
	}
	if err := r.removeExtras(); err != nil {
		return err
	}
	return r.setDirTimes()
}

// fail records that path was not synchronized.
func (r *run) fail(path string, err error) {
	r.st.Problems = append(r.st.Problems, Problem{Path: path, Err: err})
	r.failed[path] = true
}

// blocked reports (and records) a path below one that failed: its parent
// may not exist on the replica.
func (r *run) blocked(p string) bool {
	for i := strings.LastIndexByte(p, '/'); i > 0; i = strings.LastIndexByte(p[:i], '/') {
		if r.failed[p[:i]] {
			r.fail(p, fmt.Errorf("not synchronized: %s was not", p[:i]))
			return true
		}
	}
	return false
}

func changedOr(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return fmt.Errorf("%w: %w", ErrChanged, err)
	}
	return err
}

// emit sends c and counts it.
func (r *run) emit(c change.Change) error {
	c.Captured = time.Now().UnixNano()
	if err := r.p.Emit(c); err != nil {
		return fmt.Errorf("treesync: emit %v %s: %w", c.Op, c.Path, err)
	}
	r.st.Changes++
	switch c.Op {
	case change.OpChmod, change.OpChown, change.OpSetTimes, change.OpSetXattr, change.OpRemoveXattr:
		r.st.MetadataFixes++
	}
	return nil
}

// touched notes that names in p's directory were added or removed.
func (r *run) touched(p string) {
	if d := path.Dir(p); d != "." {
		r.restamp[d] = true
	}
}

// stat reads the master's entry at rel now. An entry that is gone, or is
// no longer of type want, is ErrChanged.
func (r *run) stat(rel string, want EntryType) (Entry, error) {
	dir, base := path.Split(rel)
	dfd := r.root
	if dir != "" {
		fd, err := openBeneath(r.root, dir[:len(dir)-1], unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return Entry{}, changedOr(err)
		}
		defer unix.Close(fd)
		dfd = fd
	}
	e, xerr, err := readEntry(dfd, base, rel, !r.p.ScanOptions.NoXattrs)
	if err != nil {
		return e, changedOr(err)
	}
	if e.Type != want {
		return e, fmt.Errorf("%w: now a %v, compared as a %v", ErrChanged, e.Type, want)
	}
	if xerr != nil {
		// The rest of the entry is synchronized; its attributes are left
		// alone (XattrsUnread), and the path is reported.
		r.st.Problems = append(r.st.Problems, Problem{Path: rel, Err: xerr})
	}
	return e, nil
}

// current is the master entry to synchronize for it: read again now,
// unless it was just scanned below a new directory.
func (r *run) current(it item) (*Entry, bool) {
	if it.expanded {
		return it.master, true
	}
	e, err := r.stat(it.path, it.master.Type)
	if err != nil {
		r.fail(it.path, err)
		return nil, false
	}
	return &e, true
}

func (r *run) dir(it item) error {
	if r.blocked(it.path) {
		return nil
	}
	e, ok := r.current(it)
	if !ok {
		return nil
	}
	if it.replica != nil && it.replica.Type == Dir {
		r.restamp[it.path] = true // its mtime, if that differs, is set last
		return r.meta(e, it.replica, false)
	}
	if it.replica != nil {
		if ok, err := r.removeReplica(it.path, it.replica); !ok || err != nil {
			return err
		}
	}
	if err := r.emit(change.Change{Op: change.OpMkdir, Path: it.path, Mode: e.Mode}); err != nil {
		return err
	}
	r.st.Dirs++
	r.touched(it.path)
	r.restamp[it.path] = true
	return r.meta(e, nil, true)
}

// meta emits what makes the replica object's metadata, old (nil for an
// object just created by the applier, whose owner is the applier's),
// match e's. modeSet says the change that made the object set the mode.
// Modification times are the caller's: they must come after the content.
func (r *run) meta(e, old *Entry, modeSet bool) error {
	chowned := false
	if old == nil || old.UID != e.UID || old.GID != e.GID {
		if err := r.emit(change.Change{Op: change.OpChown, Path: e.Path, UID: e.UID, GID: e.GID}); err != nil {
			return err
		}
		chowned = true
	}
	// chown clears setuid and setgid: set the mode again after it.
	if e.Type != Symlink && (!modeSet && (old == nil || old.Mode != e.Mode) || chowned && e.Mode&0o6000 != 0) {
		if err := r.emit(change.Change{Op: change.OpChmod, Path: e.Path, Mode: e.Mode}); err != nil {
			return err
		}
	}
	if e.XattrsUnread || old != nil && old.XattrsUnread {
		return nil // attributes unknown on one side: leave them
	}
	names := make([]string, 0, len(e.Xattrs))
	for n := range e.Xattrs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v := e.Xattrs[n]
		if old != nil {
			if w, ok := old.Xattrs[n]; ok && bytes.Equal(v, w) {
				continue
			}
		}
		if err := r.emit(change.Change{Op: change.OpSetXattr, Path: e.Path, XattrName: n, XattrValue: bytes.Clone(v)}); err != nil {
			return err
		}
	}
	if old == nil {
		return nil
	}
	names = names[:0]
	for n := range old.Xattrs {
		if _, ok := e.Xattrs[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if err := r.emit(change.Change{Op: change.OpRemoveXattr, Path: e.Path, XattrName: n}); err != nil {
			return err
		}
	}
	return nil
}

// removeReplica removes the replica's object at p, which the master has as
// another type: a directory with everything below it, deepest first. ok is
// false (and a problem recorded) when that cannot be done.
func (r *run) removeReplica(p string, re *Entry) (ok bool, err error) {
	if re.Type == Dir {
		if re.Unlisted {
			r.fail(p, errors.New("the replica's directory in its place could not be listed, so it cannot be removed"))
			return false, nil
		}
		prefix := p + "/"
		lo := sort.Search(len(r.extras), func(i int) bool { return r.extras[i].Path >= prefix })
		hi := lo
		for hi < len(r.extras) && strings.HasPrefix(r.extras[hi].Path, prefix) {
			hi++
		}
		for i := hi - 1; i >= lo; i-- {
			x := r.extras[i]
			if r.handled[x.Path] {
				continue
			}
			if x.Replica.Type == Dir && x.Replica.Unlisted {
				r.fail(p, fmt.Errorf("the replica's directory %s below it could not be listed, so it cannot be removed", x.Path))
				return false, nil
			}
			if err := r.emit(change.Change{Op: change.OpRemove, Path: x.Path}); err != nil {
				return false, err
			}
			r.handled[x.Path] = true
			r.st.Removed++
		}
	}
	if err := r.emit(change.Change{Op: change.OpRemove, Path: p}); err != nil {
		return false, err
	}
	r.st.Removed++
	r.touched(p)
	return true, nil
}

func (r *run) file(it item) error {
	if r.blocked(it.path) {
		return nil
	}
	if it.master.Type == Other {
		r.fail(it.path, fmt.Errorf("%w: a %v", ErrUnsupported, it.master.Type))
		return nil
	}
	// A further name of a file whose replica name already shares the first
	// name's inode: the first name's own difference fixes that inode.
	if it.link != "" && (it.kind == ContentDiffers || it.kind == MetadataDiffers) {
		return nil
	}
	if it.master.Type == File {
		if l := r.leaderFor(it); l != "" {
			return r.hardLink(it, l)
		}
	}
	e, ok := r.current(it)
	if !ok {
		return nil
	}
	replica := it.replica
	if replica != nil && (replica.Type != e.Type || it.kind == LinkDiffers) {
		// Another type, or a file sharing its inode with names it must not
		// share it with: remove, then create anew.
		if ok, err := r.removeReplica(it.path, replica); !ok || err != nil {
			return err
		}
		replica = nil
	}
	switch {
	case e.Type == Symlink:
		return r.symlink(e, replica)
	case it.kind == MetadataDiffers:
		return r.meta(e, replica, false)
	}
	return r.content(e, replica)
}

// leaderFor returns the path it must be hard-linked to, if any: the first
// name of its master inode, when that is another path that is either
// synchronized already by this run or (being first) needed no change.
func (r *run) leaderFor(it item) string {
	if it.link != "" {
		return it.link
	}
	if it.master.Nlink < 2 {
		return ""
	}
	id := it.master.ID()
	if l, ok := r.synced[id]; ok && l != it.path {
		return l
	}
	if l, ok := r.p.Links[id]; ok && l != it.path {
		return l
	}
	return ""
}

func (r *run) hardLink(it item, leader string) error {
	if r.failed[leader] {
		r.fail(it.path, fmt.Errorf("not linked: %s, the name it shares its content with, was not synchronized", leader))
		return nil
	}
	if !it.expanded {
		if _, err := r.stat(it.path, File); err != nil {
			r.fail(it.path, err)
			return nil
		}
	}
	if it.replica != nil && it.replica.Type == Dir {
		if ok, err := r.removeReplica(it.path, it.replica); !ok || err != nil {
			return err
		}
	}
	// An existing object at the name is replaced atomically by the applier.
	if err := r.emit(change.Change{Op: change.OpLink, Path: leader, NewPath: it.path}); err != nil {
		return err
	}
	r.st.HardLinks++
	r.touched(it.path)
	return nil
}

func (r *run) symlink(e, replica *Entry) error {
	if replica != nil && replica.Target == e.Target {
		if err := r.meta(e, replica, true); err != nil {
			return err
		}
		if replica.MTime == e.MTime {
			return nil
		}
		return r.emit(change.Change{Op: change.OpSetTimes, Path: e.Path, MTime: e.MTime})
	}
	// The applier replaces a link atomically; the new one is its own.
	if err := r.emit(change.Change{Op: change.OpSymlink, Path: e.Path, Target: e.Target}); err != nil {
		return err
	}
	r.st.Symlinks++
	r.touched(e.Path)
	if err := r.meta(e, nil, true); err != nil {
		return err
	}
	return r.emit(change.Change{Op: change.OpSetTimes, Path: e.Path, MTime: e.MTime})
}

// masterFile is a master file open for reading, with its state when
// opened: what is sent is described by that state, and the same state
// after the read proves the read saw one version.
type masterFile struct {
	f      *os.File
	before unix.Stat_t
}

func (r *run) open(e *Entry) (*masterFile, error) {
	fd, err := openBeneath(r.root, e.Path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK)
	if err != nil {
		return nil, changedOr(err)
	}
	mf := &masterFile{f: os.NewFile(uintptr(fd), e.Path)}
	if err := unix.Fstat(fd, &mf.before); err != nil {
		_ = mf.f.Close()
		return nil, os.NewSyscallError("fstat", err)
	}
	if mf.before.Mode&unix.S_IFMT != unix.S_IFREG || mf.before.Dev != e.Dev || mf.before.Ino != e.Ino {
		_ = mf.f.Close()
		return nil, fmt.Errorf("%w: replaced since it was compared", ErrChanged)
	}
	// What is sent is the file as opened.
	e.Size, e.Mode, e.MTime = mf.before.Size, mf.before.Mode&0o7777, mf.before.Mtim.Nano()
	e.UID, e.GID = mf.before.Uid, mf.before.Gid
	return mf, nil
}

// unchanged checks, after a read, that the file is as it was when opened.
// ctime catches writes that put the mtime back.
func (r *run) unchanged(mf *masterFile, read int64) error {
	if r.p.afterRead != nil {
		r.p.afterRead(mf.f.Name())
	}
	var now unix.Stat_t
	if err := unix.Fstat(int(mf.f.Fd()), &now); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	b := &mf.before
	if now.Size != b.Size || now.Mtim != b.Mtim || now.Ctim != b.Ctim || read != b.Size {
		return fmt.Errorf("%w: modified while being read (%d bytes read of %d, now %d)", ErrChanged, read, b.Size, now.Size)
	}
	return nil
}

// content sends the file e (replica: the replica's regular file at the
// path as compared, or nil if it has none) whole or as a delta.
func (r *run) content(e, replica *Entry) error {
	mf, err := r.open(e)
	if err != nil {
		r.fail(e.Path, err)
		return nil
	}
	defer mf.f.Close()
	size := e.Size
	var data []byte
	if size <= change.MaxData {
		// Read once, for the delta and the whole-file fallback alike.
		data = make([]byte, size)
		n, err := io.ReadFull(io.NewSectionReader(mf.f, 0, size), data)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			r.fail(e.Path, fmt.Errorf("read: %w", err))
			return nil
		}
		if err := r.unchanged(mf, int64(n)); err != nil {
			r.fail(e.Path, err)
			return nil
		}
	}
	if r.blockLevel(size, replica) {
		sent, err := r.delta(e, replica, mf, data)
		if sent || err != nil {
			return err
		}
		if r.failed[e.Path] {
			return nil
		}
	}
	if data != nil {
		return r.replaceFile(e, replica, data)
	}
	return r.stream(e, replica, mf)
}

func (r *run) blockLevel(size int64, replica *Entry) bool {
	if replica == nil || replica.Type != File || r.p.Signature == nil {
		return false
	}
	switch r.p.Mode {
	case ModeFile:
		return false
	case ModeBlock:
		return true
	}
	limit := r.p.FileLevelMax
	if limit <= 0 {
		limit = DefaultFileLevelMax
	}
	return size > limit
}

// delta tries to send e as one OpPatch against the replica's copy. sent is
// false when the file must go whole instead (or failed: r.failed says).
func (r *run) delta(e, replica *Entry, mf *masterFile, data []byte) (sent bool, err error) {
	sig, err := r.p.Signature(e.Path)
	if err != nil {
		r.st.SignatureErrors = append(r.st.SignatureErrors, Problem{Path: e.Path, Err: err})
		return false, nil
	}
	var enc []byte
	emit := func(op blocksync.Op) error {
		var err error
		if enc, err = blocksync.AppendOp(enc, op); err != nil {
			return err
		}
		if len(enc) > change.MaxData {
			return errDeltaTooBig
		}
		return nil
	}
	var src io.Reader = bytes.NewReader(data)
	if data == nil {
		src = io.NewSectionReader(mf.f, 0, e.Size)
	}
	// NewSize makes Diff give up as soon as most of the file proves new.
	st, err := blocksync.DiffWith(sig, src, blocksync.DiffOptions{NewSize: e.Size}, emit)
	switch {
	case errors.Is(err, blocksync.ErrWholeFile), errors.Is(err, errDeltaTooBig):
		return false, nil
	case errors.Is(err, blocksync.ErrInvalid):
		// A signature that does not hold together: the replica's fault,
		// not the file's.
		r.st.SignatureErrors = append(r.st.SignatureErrors, Problem{Path: e.Path, Err: err})
		return false, nil
	case err != nil:
		r.fail(e.Path, fmt.Errorf("delta: %w", err))
		return false, nil
	case st.WholeFile():
		return false, nil
	}
	if data == nil {
		if err := r.unchanged(mf, st.NewSize); err != nil {
			r.fail(e.Path, err)
			return false, nil
		}
	}
	if err := r.emit(change.Change{Op: change.OpPatch, Path: e.Path, Data: enc, Mode: e.Mode, MTime: e.MTime}); err != nil {
		return false, err
	}
	r.st.FilesBlock++
	r.st.BytesBlock += e.Size
	r.st.BytesLiteral += st.LiteralBytes
	r.st.BytesCopied += st.CopiedBytes
	r.st.BytesDelta += int64(len(enc))
	// The applier keeps the replaced file's owner and attributes.
	return true, r.finishFile(e, replica, true)
}

func (r *run) replaceFile(e, replica *Entry, data []byte) error {
	if err := r.emit(change.Change{Op: change.OpReplaceFile, Path: e.Path, Data: data, Mode: e.Mode, MTime: e.MTime}); err != nil {
		return err
	}
	r.st.FilesWhole++
	r.st.BytesWhole += e.Size
	// The applier keeps the replaced file's owner and attributes.
	return r.finishFile(e, replica, true)
}

// stream sends a file too large for one change: created (or emptied in
// place) by OpCreate, written in chunks, cut to its size. Not atomic on
// the replica; see Sync.
func (r *run) stream(e, replica *Entry, mf *masterFile) error {
	if err := r.emit(change.Change{Op: change.OpCreate, Path: e.Path, Mode: e.Mode}); err != nil {
		return err
	}
	var off int64
	for off < e.Size {
		// A new buffer per chunk: Emit may keep the change it is given.
		buf := make([]byte, min(writeChunk, e.Size-off))
		n, err := io.ReadFull(io.NewSectionReader(mf.f, off, int64(len(buf))), buf)
		if n > 0 && !allZero(buf[:n]) {
			if err := r.emit(change.Change{Op: change.OpWrite, Path: e.Path, Offset: off, Data: buf[:n]}); err != nil {
				return err
			}
		}
		off += int64(n)
		if err != nil {
			break // short: the file shrank, which unchanged reports
		}
	}
	if err := r.emit(change.Change{Op: change.OpTruncate, Path: e.Path, Size: e.Size}); err != nil {
		return err
	}
	if err := r.unchanged(mf, off); err != nil {
		r.fail(e.Path, fmt.Errorf("%w; the replica's copy is incomplete until it is sent again", err))
		return nil
	}
	r.st.FilesWhole++
	r.st.BytesWhole += e.Size
	// OpCreate empties an existing file in place: owner and attributes stay.
	if err := r.finishFile(e, replica, true); err != nil {
		return err
	}
	return r.emit(change.Change{Op: change.OpSetTimes, Path: e.Path, MTime: e.MTime})
}

// finishFile sets what the content change left to set, and remembers the
// file for its other names.
func (r *run) finishFile(e, replica *Entry, modeSet bool) error {
	r.touched(e.Path)
	if e.Nlink > 1 {
		r.synced[e.ID()] = e.Path
	}
	if err := r.meta(e, replica, modeSet); err != nil {
		return err
	}
	// An mtime of 0 in OpReplaceFile and OpPatch means "not captured".
	if e.MTime == 0 {
		return r.emit(change.Change{Op: change.OpSetTimes, Path: e.Path, MTime: 0})
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// removeExtras removes the replica's extra entries, deepest first. An
// extra directory that could not be listed on the replica cannot be
// emptied: it stays, and so do its ancestors.
func (r *run) removeExtras() error {
	keep := map[string]bool{}
	for i := len(r.extras) - 1; i >= 0; i-- {
		x := r.extras[i]
		if r.handled[x.Path] {
			continue
		}
		if keep[x.Path] || x.Replica.Type == Dir && x.Replica.Unlisted {
			if !keep[x.Path] {
				r.fail(x.Path, errors.New("the replica's directory could not be listed, so it cannot be removed"))
			}
			for d := path.Dir(x.Path); d != "."; d = path.Dir(d) {
				keep[d] = true
			}
			continue
		}
		if err := r.emit(change.Change{Op: change.OpRemove, Path: x.Path}); err != nil {
			return err
		}
		r.handled[x.Path] = true
		r.st.Removed++
		r.touched(x.Path)
	}
	return nil
}

// setDirTimes sets the mtime of every directory whose entries changed, to
// the master's, deepest first. Setting a directory's time does not change
// its parent's, so the order only makes the stream easy to read.
func (r *run) setDirTimes() error {
	dirs := make([]string, 0, len(r.restamp))
	for d := range r.restamp {
		dirs = append(dirs, d)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if r.failed[d] {
			continue
		}
		// Parents of removed extras may be gone from the master too, or
		// be something else there: only the master's directories count.
		e, err := r.stat(d, Dir)
		if errors.Is(err, ErrChanged) {
			continue
		}
		if err != nil {
			r.fail(d, err)
			continue
		}
		if err := r.emit(change.Change{Op: change.OpSetTimes, Path: d, MTime: e.MTime}); err != nil {
			return err
		}
	}
	return nil
}
