//go:build linux

package capture

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// inotifyDirMask is what every directory watch asks for. IN_EXCL_UNLINK
// drops events on files already unlinked (an open temp file being written
// has no path to replicate); IN_ONLYDIR and IN_DONT_FOLLOW make a directory
// replaced by a symlink or file fail to be watched rather than watch
// something else.
const inotifyDirMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_ATTRIB |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF |
	unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW | unix.IN_EXCL_UNLINK

// moveGrace is how long an IN_MOVED_FROM waits for its IN_MOVED_TO when the
// read that returned it ended right after it. The kernel queues both halves
// of a rename back to back, so the wait only matters when a read lands
// between them; past it the move is taken to leave the root.
const moveGrace = 50 * time.Millisecond

type inotifyWatcher struct {
	*watcher
	fd      int
	testAdd func(rel string) error
	procFD  bool             // watches are added through /proc/self/fd (see watchDir)
	wds     map[int32]string // watch descriptor -> relative directory
	paths   map[string]int32 // relative directory -> watch descriptor
	rootWD  int32
	pending *movedFrom // an IN_MOVED_FROM whose IN_MOVED_TO has not been read yet
	// unsettled holds new directories that vanished before they could be
	// watched or listed (renamed away at once, typically). If a rename
	// shows where they went, they are watched and listed there.
	unsettled map[string]bool
	deadline  bool   // a read deadline is set for pending
	queueLen  string // fs.inotify.max_queued_events when the queue was made
}

type movedFrom struct {
	cookie uint32
	path   string
	isDir  bool
	time   time.Time
}

func startInotify(root string, opts Options, info BackendInfo) (Watcher, error) {
	bn, err := openBeneath(root)
	if err != nil {
		return nil, fmt.Errorf("capture: root: %w", err)
	}
	restore := func() {}
	if opts.testShrinkQueue != nil {
		restore = opts.testShrinkQueue()
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	// The kernel sized the queue from the sysctl just now; quote that value
	// in overflow messages, not whatever it is when the overflow happens.
	queueLen := sysctl("fs/inotify/max_queued_events")
	restore()
	if err != nil {
		bn.Close()
		return nil, fmt.Errorf("capture: inotify_init1: %w", err)
	}
	// A non-blocking descriptor goes to the runtime poller: Read parks the
	// goroutine instead of a thread, deadlines work, and Close wakes it.
	file := os.NewFile(uintptr(fd), "inotify")
	w := &inotifyWatcher{
		watcher:  newWatcher(root, bn, file, opts, info),
		fd:       fd,
		testAdd:  opts.testAddWatch,
		procFD:   isDir("/proc/self/fd"),
		wds:      make(map[int32]string),
		paths:    make(map[string]int32),
		queueLen: queueLen,

		unsettled: make(map[string]bool),
	}
	dir, err := bn.open("", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		file.Close()
		bn.Close()
		return nil, fmt.Errorf("capture: root: %w", err)
	}
	wd, err := w.watchDir("", dir)
	dir.Close()
	if err != nil {
		file.Close()
		bn.Close()
		return nil, w.watchErr("", err)
	}
	w.rootWD = int32(wd)
	w.wds[w.rootWD] = ""
	w.paths[""] = w.rootWD
	w.addTree("", false)
	w.start(w.run)
	return w, nil
}

func (w *inotifyWatcher) run() {
	buf := make([]byte, 64<<10)
	for {
		if err := w.setDeadline(); err != nil {
			// Without deadlines an unpaired IN_MOVED_FROM cannot wait for
			// its other half; take it as a move out now (see setDeadline).
			w.flushMove()
		}
		n, err := w.file.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				w.flushMove()
				continue
			}
			if w.closed() {
				return
			}
			w.fail(fmt.Errorf("capture: reading inotify events: %w", err))
			return
		}
		recs, perr := parseInotify(buf[:n])
		now := time.Now()
		for _, r := range recs {
			w.handle(r, now)
		}
		if perr != nil {
			// The rest of this read is lost: treat it like an overflow.
			w.error(fmt.Errorf("capture: decoding inotify events: %w", perr))
			w.overflow(now, "undecodable inotify record: "+perr.Error())
		}
	}
}

// setDeadline arms a read deadline while an IN_MOVED_FROM waits for its
// IN_MOVED_TO, and disarms it otherwise.
func (w *inotifyWatcher) setDeadline() error {
	switch {
	case w.pending != nil && !w.deadline:
		if err := w.file.SetReadDeadline(time.Now().Add(moveGrace)); err != nil {
			return err
		}
		w.deadline = true
	case w.pending == nil && w.deadline:
		w.deadline = false
		return w.file.SetReadDeadline(time.Time{})
	}
	return nil
}

func (w *inotifyWatcher) handle(r inotifyRecord, now time.Time) {
	if r.Mask&unix.IN_Q_OVERFLOW != 0 {
		w.overflow(now, "inotify queue overflow (fs.inotify.max_queued_events="+w.queueLen+")")
		return
	}
	if w.pending != nil {
		if r.Mask&unix.IN_MOVED_TO != 0 && r.Cookie == w.pending.cookie {
			w.finishMove(r, now)
			return
		}
		w.flushMove()
	}
	dir, ok := w.wds[r.WD]
	if !ok {
		// A watch already dropped (its directory was deleted or moved out):
		// what it still had queued is about paths no longer under the root.
		return
	}
	if r.Mask&unix.IN_IGNORED != 0 {
		w.dropWD(r.WD)
		if r.WD == w.rootWD {
			w.goneRoot("(its watch was removed)")
		}
		return
	}
	if r.Name == "" {
		// An event on a watched directory itself. Its parent's watch reports
		// the same change with the directory's name, so only the root's own
		// events and unmounts matter here.
		switch {
		case r.WD == w.rootWD && r.Mask&unix.IN_DELETE_SELF != 0:
			w.goneRoot("was deleted")
		case r.WD == w.rootWD && r.Mask&unix.IN_MOVE_SELF != 0:
			w.goneRoot("was moved")
		case r.Mask&unix.IN_UNMOUNT != 0:
			if r.WD == w.rootWD {
				w.goneRoot("was unmounted")
				return
			}
			// What is visible at dir now is whatever the mount covered: watch
			// that (the old watch ends with IN_IGNORED) and have it rescanned.
			w.emit(Event{Kind: Overflow, Path: dir, Time: now, Reason: "filesystem mounted at " + dir + " was unmounted"})
			w.addTree(dir, false)
		}
		return
	}
	p := joinRel(dir, r.Name)
	isDir := r.Mask&unix.IN_ISDIR != 0
	switch {
	case r.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
		// IN_MOVED_TO without a pending IN_MOVED_FROM: moved in from outside.
		w.appeared(p, isDir, now)
	case r.Mask&unix.IN_MOVED_FROM != 0:
		w.pending = &movedFrom{cookie: r.Cookie, path: p, isDir: isDir, time: now}
	case r.Mask&unix.IN_DELETE != 0:
		w.emit(Event{Kind: Removed, Path: p, IsDir: isDir, Time: now})
		if isDir {
			// The kernel drops the watch itself (IN_IGNORED); forget the
			// name now so a new directory of the same name is not confused
			// with it. A removed directory was empty: nothing below it.
			w.forgetOne(p)
			delete(w.unsettled, p)
		}
	case r.Mask&unix.IN_MODIFY != 0:
		w.emit(Event{Kind: Modified, Path: p, IsDir: isDir, Time: now})
	case r.Mask&unix.IN_ATTRIB != 0:
		w.emit(Event{Kind: Attrib, Path: p, IsDir: isDir, Time: now})
	}
}

// appeared reports an entry that was created or moved in. A directory is
// watched, then listed: whatever is already inside was created before the
// watch existed and would otherwise never be reported.
func (w *inotifyWatcher) appeared(p string, isDir bool, now time.Time) {
	if !isDir {
		w.emit(Event{Kind: Created, Path: p, Time: now})
		return
	}
	w.emit(Event{Kind: DirCreated, Path: p, IsDir: true, Time: now})
	w.addTree(p, true)
}

func (w *inotifyWatcher) finishMove(to inotifyRecord, now time.Time) {
	from := w.pending
	w.pending = nil
	dir, ok := w.wds[to.WD]
	if !ok {
		// The destination's watch is gone: as far as the root is
		// concerned the entry left.
		w.pending = from
		w.flushMove()
		return
	}
	newPath := joinRel(dir, to.Name)
	switch {
	case !validRel(from.path):
		// It was never replicated under its old name: for the replica it
		// appears now (emit reports it if the new name is no better).
		if from.isDir {
			w.forgetTree(from.path, true)
		}
		w.appeared(newPath, from.isDir, now)
		return
	case !validRel(newPath):
		// Renamed to a name that cannot be replicated: for the replica the
		// entry is gone.
		w.pending = from
		w.flushMove()
		w.error(fmt.Errorf("capture: %w: %q renamed to a name that is not valid UTF-8 or too long; replicated as a removal", ErrUnrepresentable, from.path))
		return
	}
	if !from.isDir {
		w.emit(Event{Kind: Renamed, OldPath: from.path, Path: newPath, Time: from.time})
		return
	}
	_, watched := w.paths[from.path]
	settle := !watched
	for p := range w.unsettled {
		if under(p, from.path) {
			delete(w.unsettled, p)
			settle = true
		}
	}
	w.moveTree(from.path, newPath)
	w.emit(Event{Kind: Renamed, OldPath: from.path, Path: newPath, IsDir: true, Time: from.time})
	if settle {
		// Part of this tree was never watched or listed: do it now, at
		// its new name, reporting what is inside.
		w.addTree(newPath, true)
	}
}

// flushMove turns a pending IN_MOVED_FROM into a move out of the root.
func (w *inotifyWatcher) flushMove() {
	from := w.pending
	if from == nil {
		return
	}
	w.pending = nil
	w.emit(Event{Kind: Removed, Path: from.path, IsDir: from.isDir, Time: from.time})
	if from.isDir {
		// The directory lives on outside the root and its watches with it:
		// remove them so it stops reporting.
		w.forgetTree(from.path, true)
		for p := range w.unsettled {
			if under(p, from.path) {
				delete(w.unsettled, p)
			}
		}
	}
}

// overflow reports lost events and re-establishes the watches, since
// directories created or renamed in the lost stretch are unknown.
func (w *inotifyWatcher) overflow(now time.Time, reason string) {
	w.flushMove()
	w.emit(Event{Kind: Overflow, Time: now, Reason: reason + "; rescanning"})
	clear(w.unsettled) // the rescan covers them
	old := w.wds
	w.wds = make(map[int32]string, len(old))
	w.paths = make(map[string]int32, len(old))
	w.wds[w.rootWD] = ""
	w.paths[""] = w.rootWD
	w.addTree("", false)
	for wd := range old {
		if _, ok := w.wds[wd]; !ok {
			// No longer below the root (deleted or moved out unseen). EINVAL
			// means the kernel already dropped it, which is what we want.
			if _, err := unix.InotifyRmWatch(w.fd, uint32(wd)); err != nil && !errors.Is(err, unix.EINVAL) {
				w.error(fmt.Errorf("capture: inotify_rm_watch after overflow: %w", err))
			}
		}
	}
}

// addTree watches every directory below rel (rel itself must already be
// watched, or be watched here when it is not the root) and, when emit is
// set, reports everything found as created.
func (w *inotifyWatcher) addTree(rel string, emit bool) {
	dir, err := w.bn.open(rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err == nil {
		defer dir.Close()
	}
	if err == nil && rel != "" {
		var wd int
		if wd, err = w.watchDir(rel, dir); err == nil {
			w.setWD(int32(wd), rel)
		} else if !gone(err) {
			err = w.watchErr(rel, err)
			w.error(err)
			w.emit(Event{Kind: Unwatched, Path: rel, Reason: err.Error()})
			return
		}
	}
	if err != nil {
		if gone(err) && emit {
			w.unsettled[rel] = true
		}
		return
	}
	entries, err := dir.ReadDir(-1)
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
		isDir := e.IsDir()
		if emit {
			if isDir {
				w.emit(Event{Kind: DirCreated, Path: p, IsDir: true})
			} else {
				w.emit(Event{Kind: Created, Path: p})
			}
		}
		if isDir {
			w.addTree(p, emit)
		}
	}
}

func (w *inotifyWatcher) setWD(wd int32, rel string) {
	if old, ok := w.wds[wd]; ok && old != rel && w.paths[old] == wd {
		// The same directory under a new name: a rename we did not see.
		delete(w.paths, old)
	}
	w.wds[wd] = rel
	w.paths[rel] = wd
}

func (w *inotifyWatcher) forgetOne(rel string) {
	if wd, ok := w.paths[rel]; ok {
		delete(w.paths, rel)
		if w.wds[wd] == rel {
			delete(w.wds, wd)
		}
	}
}

func (w *inotifyWatcher) dropWD(wd int32) {
	if p, ok := w.wds[wd]; ok {
		delete(w.wds, wd)
		if w.paths[p] == wd {
			delete(w.paths, p)
		}
	}
}

// forgetTree forgets the watches at and below rel, removing them from the
// kernel too when rm is set.
func (w *inotifyWatcher) forgetTree(rel string, rm bool) {
	for p, wd := range w.paths {
		if !under(p, rel) {
			continue
		}
		delete(w.paths, p)
		delete(w.wds, wd)
		if rm {
			if _, err := unix.InotifyRmWatch(w.fd, uint32(wd)); err != nil && !errors.Is(err, unix.EINVAL) {
				w.error(fmt.Errorf("capture: inotify_rm_watch for %s: %w", p, err))
			}
		}
	}
}

// moveTree renames the watches at and below oldRel to below newRel. A
// directory that the rename replaced (renaming onto an empty directory) is
// forgotten first; its watch ends with IN_IGNORED. When nothing is known at
// oldRel (a rename the watcher learns of late), what is at newRel stays.
func (w *inotifyWatcher) moveTree(oldRel, newRel string) {
	type mv struct {
		from string
		wd   int32
	}
	var moves []mv
	for p, wd := range w.paths {
		if under(p, oldRel) {
			moves = append(moves, mv{p, wd})
		}
	}
	if len(moves) == 0 {
		return
	}
	w.forgetOne(newRel)
	for _, m := range moves {
		delete(w.paths, m.from)
	}
	for _, m := range moves {
		np := rebase(m.from, oldRel, newRel)
		w.wds[m.wd] = np
		w.paths[np] = m.wd
	}
}

// watchDir adds the watch for the directory rel, open as dir. The watch is
// added through /proc/self/fd, so that it is on the directory that was
// opened without following symlinks (see beneath), not on whatever the path
// leads to by now; without /proc it falls back to the path, with
// IN_DONT_FOLLOW for its last component.
func (w *inotifyWatcher) watchDir(rel string, dir *os.File) (int, error) {
	if w.testAdd != nil {
		if err := w.testAdd(rel); err != nil {
			return -1, err
		}
	}
	if w.procFD {
		// IN_DONT_FOLLOW would watch the /proc link itself.
		return unix.InotifyAddWatch(w.fd, "/proc/self/fd/"+strconv.Itoa(int(dir.Fd())), inotifyDirMask&^unix.IN_DONT_FOLLOW)
	}
	return unix.InotifyAddWatch(w.fd, w.abs(rel), inotifyDirMask)
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// watchErr explains a failed inotify_add_watch; ENOSPC is the per-user
// watch limit, not a full disk.
func (w *inotifyWatcher) watchErr(rel string, err error) error {
	where := w.abs(rel)
	if errors.Is(err, unix.ENOSPC) {
		return fmt.Errorf("capture: %w: cannot watch %s (fs.inotify.max_user_watches=%s); it and everything below it are not watched and need periodic rescans: %w",
			ErrWatchLimit, where, sysctl("fs/inotify/max_user_watches"), err)
	}
	return fmt.Errorf("capture: inotify_add_watch %s: %w", where, err)
}

// gone says whether err means the entry vanished or changed type under us
// (a later event reports that): ELOOP is a path component that became a
// symlink, which a lookup that does not follow symlinks refuses.
func gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) ||
		errors.Is(err, os.ErrNotExist)
}

// sysctl reads a /proc/sys value for messages; "?" when unreadable.
func sysctl(name string) string {
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return "?"
	}
	s := strings.TrimSpace(string(b))
	if _, err := strconv.Atoi(s); err != nil {
		return "?"
	}
	return s
}
