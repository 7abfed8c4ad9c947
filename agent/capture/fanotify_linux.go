//go:build linux

package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// fanotify backend.
//
// One fanotify group per Watch, initialised with FAN_REPORT_DFID_NAME_TARGET:
// every directory-entry event carries the parent directory's file handle and
// the entry's name, plus the handle of the entry itself (the "target"), and a
// rename arrives as one FAN_RENAME event with both the old and the new
// parent and name. A filesystem mark (FAN_MARK_FILESYSTEM) reports every
// change on the filesystem that holds the root, so there is no per-directory
// watch to add, no watch limit and no mkdir -p race: what happens in a new
// directory is queued by the kernel whether or not we have seen the
// directory yet.
//
// The mark covers the whole filesystem, so events are filtered to the root by
// a map from directory handle to path below the root. It is built by one walk
// at start and then kept up to date from the events themselves, in queue
// order: FAN_CREATE of a directory adds its handle (the target record), a
// directory FAN_RENAME rewrites the paths below it, FAN_DELETE removes it. A
// handle not in the map is a directory outside the root, and its events are
// dropped with one map lookup and no system call. Resolving handles with
// open_by_handle_at instead would give a directory's path at the time the
// event is read, not when it happened — wrong for events queued before a
// rename of an ancestor — and cost system calls for every event on the
// filesystem, most of which are not ours. After an overflow the map is
// rebuilt by a fresh walk.

// fanMask is what the filesystem mark asks for. FAN_RENAME (Linux 5.17)
// reports a rename as one event, so no cookie pairing is needed.
const fanMask = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_RENAME | unix.FAN_MODIFY |
	unix.FAN_ATTRIB | unix.FAN_ONDIR

// fanRootMask is asked of an inode mark on the root alone, so that the
// filesystem mark need not report every file's deletion twice.
const fanRootMask = unix.FAN_DELETE_SELF | unix.FAN_MOVE_SELF | unix.FAN_ONDIR

type fanotifyWatcher struct {
	*watcher
	fd     int
	dirs   map[string]string // directory handle key (see fidKey) -> relative path
	marked map[[8]byte]bool  // filesystems (by fsid) with a filesystem mark
	key    []byte            // scratch for lookups
	// unsettled holds directories moved in whose listing failed because
	// they vanished at once (see inotifyWatcher.unsettled).
	unsettled map[string]bool
	// fs.fanotify.max_queued_events when the queue was made
	queueLen string
}

func startFanotify(root string, opts Options) (Watcher, error) {
	bn, err := openBeneath(root)
	if err != nil {
		return nil, fmt.Errorf("capture: root: %w", err)
	}
	restore := func() {}
	if opts.testShrinkQueue != nil {
		restore = opts.testShrinkQueue()
	}
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_REPORT_DFID_NAME_TARGET,
		unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	// The kernel sized the queue from the sysctl just now (see inotify).
	queueLen := sysctl("fs/fanotify/max_queued_events")
	restore()
	if err != nil {
		bn.Close()
		return nil, fmt.Errorf("capture: %w: fanotify_init(FAN_CLASS_NOTIF|FAN_REPORT_DFID_NAME_TARGET): %w", ErrFanotifyUnavailable, err)
	}
	file := os.NewFile(uintptr(fd), "fanotify")
	w := &fanotifyWatcher{
		watcher:  newWatcher(root, bn, file, opts, BackendInfo{Backend: Fanotify}),
		fd:       fd,
		dirs:     make(map[string]string),
		marked:   make(map[[8]byte]bool),
		queueLen: queueLen,

		unsettled: make(map[string]bool),
	}
	fsid, err := w.markFilesystem(root)
	if err != nil {
		file.Close()
		bn.Close()
		return nil, fmt.Errorf("capture: %w: %w", ErrFanotifyUnavailable, err)
	}
	w.marked[fsid] = true
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, fanRootMask, unix.AT_FDCWD, root); err != nil {
		file.Close()
		bn.Close()
		return nil, fmt.Errorf("capture: %w: fanotify_mark(inode, %s): %w", ErrFanotifyUnavailable, root, err)
	}
	if err := w.mapRoot(); err != nil {
		file.Close()
		bn.Close()
		return nil, err
	}
	w.start(w.run)
	return w, nil
}

// markFilesystem adds a filesystem mark for the filesystem holding dir and
// returns its fsid.
func (w *fanotifyWatcher) markFilesystem(dir string) ([8]byte, error) {
	fsid, err := fsidOf(dir)
	if err != nil {
		return fsid, err
	}
	if err := unix.FanotifyMark(w.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, fanMask, unix.AT_FDCWD, dir); err != nil {
		hint := ""
		switch {
		case errors.Is(err, unix.EPERM):
			hint = " (filesystem marks need CAP_SYS_ADMIN in the initial user namespace)"
		case errors.Is(err, unix.EINVAL):
			hint = " (kernel older than 5.17 has no FAN_RENAME)"
		case errors.Is(err, unix.EXDEV), errors.Is(err, unix.ENODEV), errors.Is(err, unix.EOPNOTSUPP):
			hint = " (the filesystem cannot report file handles)"
		}
		return fsid, fmt.Errorf("fanotify_mark(FAN_MARK_FILESYSTEM, %s): %w%s", dir, err, hint)
	}
	return fsid, nil
}

func fsidOf(dir string) ([8]byte, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return [8]byte{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return fsidBytes(&st), nil
}

// fsidBytes is the fsid as fanotify reports it: __kernel_fsid_t, two
// native ints.
func fsidBytes(st *unix.Statfs_t) [8]byte {
	var fsid [8]byte
	binary.LittleEndian.PutUint32(fsid[0:4], uint32(st.Fsid.Val[0]))
	binary.LittleEndian.PutUint32(fsid[4:8], uint32(st.Fsid.Val[1]))
	return fsid
}

// fidKey is the map key for a directory: fsid, handle type and handle bytes.
func fidKey(dst []byte, fsid [8]byte, htype int32, handle []byte) []byte {
	dst = append(dst[:0], fsid[:]...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(htype))
	return append(dst, handle...)
}

func (w *fanotifyWatcher) lookup(fi *fanInfo) (string, bool) {
	w.key = fidKey(w.key, fi.FSID, fi.HandleType, fi.Handle)
	p, ok := w.dirs[string(w.key)]
	return p, ok
}

// mapRoot (re)builds the handle map from a walk of the whole root.
func (w *fanotifyWatcher) mapRoot() error {
	w.dirs = make(map[string]string, len(w.dirs))
	key, _, err := w.handleOf("")
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	w.dirs[key] = ""
	w.mapTree("", false)
	return nil
}

// handleOf returns the map key and fsid of the directory at rel, reached
// without following symlinks (see beneath).
func (w *fanotifyWatcher) handleOf(rel string) (string, [8]byte, error) {
	var fsid [8]byte
	dir, err := w.bn.open(rel, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return "", fsid, err
	}
	defer dir.Close()
	fd := int(dir.Fd())
	h, _, err := unix.NameToHandleAt(fd, "", unix.AT_EMPTY_PATH)
	if err != nil {
		return "", fsid, fmt.Errorf("name_to_handle_at %s: %w", w.abs(rel), err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return "", fsid, fmt.Errorf("fstatfs %s: %w", w.abs(rel), err)
	}
	fsid = fsidBytes(&st)
	return string(fidKey(nil, fsid, h.Type(), h.Bytes())), fsid, nil
}

// mapTree adds the directories below rel (already mapped) to the map and,
// when emit is set, reports everything found as created. A directory on
// another filesystem (a mount below the root) gets a filesystem mark of its
// own.
func (w *fanotifyWatcher) mapTree(rel string, emit bool) {
	var entries []os.DirEntry
	dir, err := w.bn.open(rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err == nil {
		entries, err = dir.ReadDir(-1)
		dir.Close()
	}
	if err != nil {
		if gone(err) && emit {
			w.unsettled[rel] = true
		}
		if !gone(err) {
			w.error(fmt.Errorf("capture: listing %s: %w", w.abs(rel), err))
			w.emit(Event{Kind: Overflow, Path: rel, Reason: "could not list directory: " + err.Error()})
		}
		return
	}
	for _, e := range entries {
		p := joinRel(rel, e.Name())
		if !e.IsDir() {
			if emit {
				w.emit(Event{Kind: Created, Path: p})
			}
			continue
		}
		if emit {
			w.emit(Event{Kind: DirCreated, Path: p, IsDir: true})
		}
		if !w.mapDir(p) {
			if emit {
				w.unsettled[p] = true
			}
			continue
		}
		w.mapTree(p, emit)
	}
}

// mapDir adds one directory to the map; false when it cannot be watched.
func (w *fanotifyWatcher) mapDir(p string) bool {
	key, fsid, err := w.handleOf(p)
	if err != nil {
		if !gone(err) {
			w.error(fmt.Errorf("capture: %w", err))
			w.emit(Event{Kind: Unwatched, Path: p, Reason: err.Error()})
		}
		return false
	}
	if !w.marked[fsid] {
		if _, err := w.markFilesystem(w.abs(p)); err != nil {
			w.error(fmt.Errorf("capture: mount below the root: %w", err))
			w.emit(Event{Kind: Unwatched, Path: p, Reason: err.Error()})
			return false
		}
		w.marked[fsid] = true
	}
	w.dirs[key] = p
	return true
}

func (w *fanotifyWatcher) run() {
	buf := make([]byte, 64<<10)
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			if w.closed() {
				return
			}
			w.fail(fmt.Errorf("capture: reading fanotify events: %w", err))
			return
		}
		recs, perr := parseFanotify(buf[:n])
		now := time.Now()
		for i := range recs {
			w.handle(&recs[i], now)
		}
		if perr != nil {
			w.error(fmt.Errorf("capture: decoding fanotify events: %w", perr))
			w.overflow(now, "undecodable fanotify record: "+perr.Error())
		}
	}
}

// settle forgets the unsettled directories at and below rel and says
// whether there were any.
func (w *fanotifyWatcher) settle(rel string) bool {
	found := false
	for p := range w.unsettled {
		if under(p, rel) {
			delete(w.unsettled, p)
			found = true
		}
	}
	return found
}

func (w *fanotifyWatcher) overflow(now time.Time, reason string) {
	w.emit(Event{Kind: Overflow, Time: now, Reason: reason + "; rescanning"})
	clear(w.unsettled) // the rescan covers them
	if err := w.mapRoot(); err != nil {
		w.fail(err)
	}
}

func (w *fanotifyWatcher) handle(r *fanRecord, now time.Time) {
	if r.FD >= 0 {
		// FID reporting modes never pass descriptors; do not leak one.
		unix.Close(int(r.FD))
	}
	if r.Mask&unix.FAN_Q_OVERFLOW != 0 {
		w.overflow(now, "fanotify queue overflow (fs.fanotify.max_queued_events="+w.queueLen+")")
		return
	}
	isDir := r.Mask&unix.FAN_ONDIR != 0
	var dfid, oldDir, newDir, target *fanInfo
	for i := range r.Infos {
		switch fi := &r.Infos[i]; fi.Type {
		case fanInfoDFIDName:
			dfid = fi
		case fanInfoOldDFIDNm:
			oldDir = fi
		case fanInfoNewDFIDNm:
			newDir = fi
		case fanInfoFID:
			target = fi
		}
	}
	if r.Mask&unix.FAN_RENAME != 0 {
		// The kernel never merges FAN_RENAME with other events.
		if oldDir != nil && newDir != nil {
			w.rename(oldDir, newDir, target, isDir, now)
		}
		return
	}
	if dfid == nil {
		return
	}
	dir, ok := w.lookup(dfid)
	if !ok {
		return // not below the root
	}
	if string(dfid.Name) == "." {
		// An event on a directory itself (the handle is the directory's).
		switch {
		case dir == "" && r.Mask&unix.FAN_DELETE_SELF != 0:
			w.goneRoot("was deleted")
		case dir == "" && r.Mask&unix.FAN_MOVE_SELF != 0:
			w.goneRoot("was moved")
		case dir != "" && r.Mask&unix.FAN_ATTRIB != 0:
			w.emit(Event{Kind: Attrib, Path: dir, IsDir: true, Time: now})
		}
		return
	}
	p := joinRel(dir, string(dfid.Name))
	// The kernel merges events for the same object (and name) while they
	// are queued, so one record may carry several, and their order is lost.
	// A creation and a removal of one object under one name are usually a
	// create-then-delete; but unlinking a name of a hard-linked file and
	// linking it again merges the other way round. Report the pair so that
	// it ends in the state the name is in now.
	if r.Mask&(unix.FAN_CREATE|unix.FAN_DELETE) == unix.FAN_CREATE|unix.FAN_DELETE {
		if _, err := w.bn.statx(p); err == nil {
			w.emit(Event{Kind: Removed, Path: p, IsDir: isDir, Time: now})
			if isDir {
				w.forget(target, p)
			}
			r.Mask &^= unix.FAN_DELETE
		}
	}
	if r.Mask&unix.FAN_CREATE != 0 {
		if isDir {
			w.emit(Event{Kind: DirCreated, Path: p, IsDir: true, Time: now})
			if target != nil {
				w.dirs[string(fidKey(nil, target.FSID, target.HandleType, target.Handle))] = p
			} else if !w.mapDir(p) {
				return
			}
		} else {
			w.emit(Event{Kind: Created, Path: p, Time: now})
		}
	}
	if r.Mask&unix.FAN_MODIFY != 0 {
		w.emit(Event{Kind: Modified, Path: p, IsDir: isDir, Time: now})
	}
	if r.Mask&unix.FAN_ATTRIB != 0 {
		w.emit(Event{Kind: Attrib, Path: p, IsDir: isDir, Time: now})
	}
	if r.Mask&unix.FAN_DELETE != 0 {
		w.emit(Event{Kind: Removed, Path: p, IsDir: isDir, Time: now})
		if isDir {
			w.forget(target, p)
			delete(w.unsettled, p)
		}
	}
}

func (w *fanotifyWatcher) rename(oldDir, newDir, target *fanInfo, isDir bool, now time.Time) {
	od, inOld := w.lookup(oldDir)
	nd, inNew := w.lookup(newDir)
	from := joinRel(od, string(oldDir.Name))
	to := joinRel(nd, string(newDir.Name))
	switch {
	case inOld && inNew && validRel(from) && validRel(to):
		if !isDir {
			w.emit(Event{Kind: Renamed, OldPath: from, Path: to, Time: now})
			return
		}
		settle := w.settle(from)
		w.moveTree(from, to)
		w.emit(Event{Kind: Renamed, OldPath: from, Path: to, IsDir: true, Time: now})
		if settle {
			w.mapTree(to, true)
		}
	case inOld && (!inNew || !validRel(to)):
		// Moved out of the root, or to a name that cannot be replicated:
		// for the replica it is gone.
		w.emit(Event{Kind: Removed, Path: from, IsDir: isDir, Time: now})
		if isDir {
			w.forgetTree(from)
			w.settle(from)
		}
		if inNew {
			w.error(fmt.Errorf("capture: %w: %q renamed to a name that is not valid UTF-8 or too long; replicated as a removal", ErrUnrepresentable, from))
		}
	case inNew:
		// Moved in from outside the root (or from a name that could not be
		// replicated): it appears, with everything inside it.
		if isDir {
			w.forgetTree(from)
			w.emit(Event{Kind: DirCreated, Path: to, IsDir: true, Time: now})
			if target != nil {
				w.dirs[string(fidKey(nil, target.FSID, target.HandleType, target.Handle))] = to
			} else if !w.mapDir(to) {
				return
			}
			w.mapTree(to, true)
		} else {
			w.emit(Event{Kind: Created, Path: to, Time: now})
		}
	}
}

// forget drops a removed directory: by its handle when the event carried
// it (a removed directory was empty, so nothing below it is mapped), by path
// otherwise.
func (w *fanotifyWatcher) forget(target *fanInfo, p string) {
	if target != nil {
		w.key = fidKey(w.key, target.FSID, target.HandleType, target.Handle)
		if w.dirs[string(w.key)] == p {
			delete(w.dirs, string(w.key))
			return
		}
	}
	w.forgetTree(p)
}

func (w *fanotifyWatcher) forgetTree(rel string) {
	for k, p := range w.dirs {
		if under(p, rel) {
			delete(w.dirs, k)
		}
	}
}

// moveTree rewrites the paths of the directories at and below oldRel to
// below newRel. A directory the rename replaced (renaming onto an empty
// directory) is dropped first. When nothing is mapped at oldRel (a rename
// the map already reflects, after an overflow rebuild), nothing changes.
func (w *fanotifyWatcher) moveTree(oldRel, newRel string) {
	moved := make(map[string]bool)
	for k, p := range w.dirs {
		if under(p, oldRel) {
			moved[k] = true
		}
	}
	if len(moved) == 0 {
		return
	}
	for k, p := range w.dirs {
		if p == newRel && !moved[k] {
			delete(w.dirs, k)
		}
	}
	for k := range moved {
		w.dirs[k] = rebase(w.dirs[k], oldRel, newRel)
	}
}
