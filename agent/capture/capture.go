package capture

import (
	"errors"
	"fmt"
	"time"
)

// Kind is what an Event says happened to Path.
type Kind uint8

const (
	// Created: a non-directory entry (file, symlink, hard link, or anything
	// else) appeared at Path, by creation or by a move in from outside the
	// root. Read its whole state.
	Created Kind = iota + 1
	// Modified: the content of the file at Path changed (write or truncate).
	// No byte range is known; see Stage for how content is carried.
	Modified
	// Attrib: mode, owner, times, link count or extended attributes of Path
	// changed; the event does not say which.
	Attrib
	// Removed: Path is gone, by unlink, rmdir or a move out of the root. For a
	// directory moved out (IsDir) the whole subtree went with it.
	Removed
	// Renamed: OldPath was renamed to Path, both inside the root. For a
	// directory, everything below it moved too; later events use the new
	// paths.
	Renamed
	// DirCreated: a directory appeared at Path. When it arrived already
	// populated (mkdir -p racing the watch, or a move in from outside),
	// Created and DirCreated events for its contents follow.
	DirCreated
	// Overflow: events were lost (kernel queue overflow, or the consumer fell
	// so far behind that the capture queue hit Options.MaxPending). Rescan
	// Path's subtree, or the whole root when Path is "", and diff it against
	// the replica. Reason says why, for the activity log.
	Overflow
	// Unwatched: Path's subtree cannot be watched (for example the inotify
	// watch limit fs.inotify.max_user_watches was reached). Changes below it
	// are not reported: rescan it now and periodically. Reason says why.
	Unwatched
	kindLimit
)

var kindNames = [...]string{"", "created", "modified", "attrib", "removed", "renamed", "dircreated", "overflow", "unwatched"}

func (k Kind) String() string {
	if k > 0 && k < kindLimit {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Event is one path-level change. Paths are relative to the watched root,
// slash-separated and clean: change.ValidPath accepts every Path and OldPath
// a Watcher delivers (except Overflow's "" meaning the whole root).
type Event struct {
	Kind    Kind
	Path    string
	OldPath string // Renamed only
	IsDir   bool
	Time    time.Time // when the capture read it from the kernel (the kernel gives no timestamp)
	Reason  string    // Overflow and Unwatched: a sentence for the activity log
}

func (e Event) String() string {
	switch e.Kind {
	case Renamed:
		return fmt.Sprintf("%s %q -> %q dir=%v", e.Kind, e.OldPath, e.Path, e.IsDir)
	case Overflow, Unwatched:
		return fmt.Sprintf("%s %q (%s)", e.Kind, e.Path, e.Reason)
	}
	return fmt.Sprintf("%s %q dir=%v", e.Kind, e.Path, e.IsDir)
}

// Backend is the kernel interface a Watcher uses.
type Backend uint8

const (
	// Auto picks fanotify when the kernel and the process's privileges allow
	// it, and inotify otherwise.
	Auto Backend = iota
	// Inotify: one watch per directory, no special privileges, subject to
	// fs.inotify.max_user_watches.
	Inotify
	// Fanotify: one filesystem mark per filesystem under the root, filtered
	// to the root; needs CAP_SYS_ADMIN and Linux 5.17+ (FAN_RENAME).
	Fanotify
)

// ParseBackend reads a backend's name as String writes it.
func ParseBackend(s string) (Backend, error) {
	for _, b := range []Backend{Auto, Inotify, Fanotify} {
		if s == b.String() {
			return b, nil
		}
	}
	return Auto, fmt.Errorf("capture backend %q: use auto, fanotify or inotify", s)
}

func (b Backend) String() string {
	switch b {
	case Auto:
		return "auto"
	case Inotify:
		return "inotify"
	case Fanotify:
		return "fanotify"
	}
	return fmt.Sprintf("backend(%d)", uint8(b))
}

// BackendInfo says which backend a Watcher runs on and, when Auto did not
// get fanotify, why: the activity log should say both.
type BackendInfo struct {
	Backend  Backend
	Fallback error // nil unless Options.Backend was Auto and fanotify could not be used
}

// Options tune Watch. The zero value is ready to use.
type Options struct {
	// Backend forces a backend; Auto (the zero value) prefers fanotify.
	Backend Backend
	// MaxPending bounds the events held for a slow consumer. Past it they
	// are dropped and replaced by one Overflow for the whole root. Zero means
	// DefaultMaxPending.
	MaxPending int

	// testPause, when non-nil, holds the kernel reader before its first read
	// until it is closed, so tests can overflow the kernel queue on purpose.
	testPause <-chan struct{}
	// testAddWatch, when non-nil, runs before each inotify_add_watch; an
	// error it returns is taken as the call's, so tests can simulate the
	// watch limit without lowering a machine-wide sysctl.
	testAddWatch func(rel string) error
	// testShrinkQueue, when non-nil, runs just before the kernel queue is
	// created and the function it returns right after: the queue length
	// sysctls are read once, at creation (see watch_test.go).
	testShrinkQueue func() (restore func())
}

// DefaultMaxPending is the default Options.MaxPending.
const DefaultMaxPending = 1 << 16

// Watcher delivers the changes under one root. Both channels must be
// drained: an undrained Errors channel eventually stalls event delivery
// (errors are never dropped silently). Close stops the watcher and closes
// both channels; it is safe to call more than once.
type Watcher interface {
	Events() <-chan Event
	Errors() <-chan error
	Backend() BackendInfo
	Close() error
}

var (
	// ErrWatchLimit is wrapped by the error reported when the inotify watch
	// limit stops a directory from being watched; an Unwatched event for the
	// same subtree accompanies it.
	ErrWatchLimit = errors.New("inotify watch limit reached")
	// ErrUnrepresentable is wrapped by the error reported for a change whose
	// path cannot be replicated (not valid UTF-8, or too long); the change
	// itself is skipped.
	ErrUnrepresentable = errors.New("path cannot be replicated")
	// ErrRootGone is wrapped by the error reported when the watched root
	// itself is removed, moved or unmounted; no further events follow.
	ErrRootGone = errors.New("watched root is gone")
	// ErrFanotifyUnavailable is wrapped by BackendInfo.Fallback and by Watch's
	// error when fanotify was forced but cannot be used.
	ErrFanotifyUnavailable = errors.New("fanotify unavailable")
)
