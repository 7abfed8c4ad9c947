//go:build linux

package capture

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/holdfast/holdfast/agent/change"
)

// Watch starts capturing changes under root, which must be a directory.
// Changes made after Watch returns are reported; the state before it is the
// caller's to take, with a Scanner, after Watch returns (so nothing falls in
// between). With Options.Backend == Auto it tries fanotify first and falls
// back to inotify, recording why in BackendInfo.Fallback.
func Watch(root string, opts Options) (Watcher, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("capture: root %q: %w", root, err)
	}
	// Events name paths below the real directory; resolve a root given
	// through a symlink once, here.
	abs, err = filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("capture: root %q: %w", root, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("capture: root: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("capture: root %q is not a directory", abs)
	}
	switch opts.Backend {
	case Inotify:
		return startInotify(abs, opts, BackendInfo{Backend: Inotify})
	case Fanotify:
		return startFanotify(abs, opts)
	case Auto:
		w, err := startFanotify(abs, opts)
		if err == nil {
			return w, nil
		}
		if !errors.Is(err, ErrFanotifyUnavailable) {
			return nil, err
		}
		return startInotify(abs, opts, BackendInfo{Backend: Inotify, Fallback: err})
	}
	return nil, fmt.Errorf("capture: unknown backend %v", opts.Backend)
}

// watcher is what both backends share: the kernel descriptor, the queue
// between the kernel reader and the consumer, and shutdown.
type watcher struct {
	root   string   // absolute, symlinks resolved
	bn     *beneath // opens paths below root without following symlinks
	file   *os.File
	q      *queue
	events chan Event
	errs   chan error
	done   chan struct{}
	pause  <-chan struct{}
	info   BackendInfo
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
	rootGone  bool
}

func newWatcher(root string, bn *beneath, file *os.File, opts Options, info BackendInfo) *watcher {
	return &watcher{
		root:   root,
		bn:     bn,
		file:   file,
		q:      newQueue(opts.MaxPending),
		events: make(chan Event),
		errs:   make(chan error),
		done:   make(chan struct{}),
		pause:  opts.testPause,
		info:   info,
	}
}

func (w *watcher) Events() <-chan Event  { return w.events }
func (w *watcher) Errors() <-chan error  { return w.errs }
func (w *watcher) Backend() BackendInfo  { return w.info }
func (w *watcher) abs(rel string) string { return filepath.Join(w.root, filepath.FromSlash(rel)) }

// start runs the kernel reader and the delivery loop.
func (w *watcher) start(read func()) {
	w.wg.Add(2)
	go func() {
		defer w.wg.Done()
		if w.pause != nil {
			select {
			case <-w.pause:
			case <-w.done:
				return
			}
		}
		read()
	}()
	go func() {
		defer w.wg.Done()
		w.q.deliver(w.events, w.errs, w.done)
	}()
}

func (w *watcher) Close() error {
	w.closeOnce.Do(func() {
		close(w.done)
		// Closing the file wakes the reader blocked in Read.
		if err := w.file.Close(); err != nil {
			w.closeErr = fmt.Errorf("capture: closing %s descriptor: %w", w.info.Backend, err)
		}
		w.wg.Wait()
		w.bn.Close()
		close(w.events)
		close(w.errs)
	})
	return w.closeErr
}

func (w *watcher) closed() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// emit queues an event, first checking that its paths can be replicated.
func (w *watcher) emit(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if !(ev.Path == "" && (ev.Kind == Overflow || ev.Kind == Unwatched)) {
		if err := change.ValidPath(ev.Path); err != nil {
			w.q.pushErr(fmt.Errorf("capture: %w: %s event skipped: %v", ErrUnrepresentable, ev.Kind, err))
			return
		}
	}
	if ev.OldPath != "" {
		if err := change.ValidPath(ev.OldPath); err != nil {
			w.q.pushErr(fmt.Errorf("capture: %w: %s event skipped: old path: %v", ErrUnrepresentable, ev.Kind, err))
			return
		}
	}
	w.q.push(ev)
}

func (w *watcher) error(err error) { w.q.pushErr(err) }

// goneRoot reports, once, that the root itself went away.
func (w *watcher) goneRoot(how string) {
	if w.rootGone {
		return
	}
	w.rootGone = true
	w.error(fmt.Errorf("capture: %w: %s %s", ErrRootGone, w.root, how))
}

// fail reports that the reader stopped: nothing below the root is watched
// any more.
func (w *watcher) fail(err error) {
	w.error(err)
	w.emit(Event{Kind: Unwatched, Reason: "capture stopped: " + err.Error()})
}

// validRel says whether a relative path can be replicated.
func validRel(p string) bool { return change.ValidPath(p) == nil }

// joinRel joins a relative directory ("" for the root) and a name.
func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// under says whether p is dir or below it.
func under(p, dir string) bool {
	if dir == "" {
		return true
	}
	return p == dir || (len(p) > len(dir) && p[len(dir)] == '/' && p[:len(dir)] == dir)
}

// rebase moves p from below oldDir to below newDir; p must be under oldDir.
func rebase(p, oldDir, newDir string) string {
	if oldDir == "" {
		return joinRel(newDir, p)
	}
	rest := p[len(oldDir):]
	if newDir == "" {
		return rest[min(1, len(rest)):]
	}
	return newDir + rest
}
