// Package capture reports, in real time, what changes under a master's root
// directory, and turns those reports into replication change records
// (change.Change) for the spool.
//
// It has three parts:
//
//   - Watch starts a Watcher, which delivers path-level Events: Created,
//     DirCreated, Modified (content), Attrib (mode, owner, times, xattrs,
//     link count), Removed, Renamed (old and new path), and two rescan
//     signals, Overflow and Unwatched. Paths are relative to the root,
//     slash-separated and clean (change.ValidPath accepts them).
//   - Scanner walks a subtree and reports each entry's state: for the initial
//     copy, after an Overflow or Unwatched event, and for periodic verify
//     scans.
//   - Stage converts an Event into the change records (and in-place
//     block-sync requests, for large files) that bring a replica up to date,
//     by reading the entry's current state. It checks renames against the
//     identity of what it put on the replica, and offers Rebuild for when
//     applying a change shows the replica is not what it assumed (see
//     Stage).
//
// # Events are hints
//
// The kernel says that something changed, not what the bytes are, and it
// may drop events (queue overflow) or be unable to watch (inotify's watch
// limit). So an Event means "look at this path": the Stage reads the
// current state when it converts it, duplicates are harmless, and a lost
// stretch of events becomes an Overflow that the caller answers with a
// rescan and a diff against the replica. Periodic verify scans remain the
// final safety net; capture makes them rare, not unnecessary.
//
// # Guarantees
//
//   - Nothing is missed silently. Kernel queue overflow, an undecodable
//     kernel record, and a consumer so slow that Options.MaxPending events
//     pile up each yield an Overflow event (Path "" = the whole root) whose
//     Reason is a sentence for the activity log. A directory that cannot be
//     watched yields an error on Errors and an Unwatched event for its
//     subtree. A name that cannot be replicated (not UTF-8, too long) yields
//     an error wrapping ErrUnrepresentable. Errors are never dropped; if the
//     consumer stops draining Errors, the excess is summarised in one error.
//   - Renames are renames: a rename inside the root, across directories
//     too, is one Renamed event, and for a directory later events carry the
//     new paths. A move in from outside the root is a creation of the whole
//     subtree (each entry reported); a move out is a Removed of the top.
//   - Changes to one path are delivered in the order they happened. The
//     only reordering is merging: a Modified or Attrib event for a path is
//     dropped while an event for the same path that already covers it
//     (same kind, or a creation) is still queued, no rename or removal is
//     queued after that one, and the consumer has not taken it yet. The
//     consumer reads the path's state when it handles the earlier event,
//     which includes the later change.
//   - A new directory is watched and then listed, so files created in it
//     before the watch existed (mkdir -p a/b/c && touch a/b/c/f) are
//     reported as Created (possibly twice).
//
// It does not guarantee:
//
//   - Byte ranges. Neither inotify nor fanotify reports them: a Modified
//     file is re-read (small files, whole) or block-synced (large ones).
//   - Exactly-once delivery. Duplicates happen around new directories and
//     after renames the watcher could not follow directly.
//   - The root's own attributes, directory mtimes (they change whenever an
//     entry is added, on the replica as on the master; only an explicit
//     Attrib carries them), and the mode or times of symlinks.
//   - FIFOs, sockets and device nodes: no change op creates them; the Stage
//     reports them with ErrUnsupportedType.
//   - Changes while the Watcher is not running: take the initial copy with a
//     Scanner after Watch returns, and rescan after a restart.
//
// # Backends
//
// fanotify (preferred; Linux 5.17+, CAP_SYS_ADMIN): one group with
// FAN_REPORT_DFID_NAME_TARGET and a filesystem mark on each filesystem
// under the root. There is no per-directory watch, no watch limit and no
// race with new directories; a rename is one FAN_RENAME event. Events for
// the whole filesystem arrive and are filtered to the root by a map from
// directory file handle to path, kept in step with the events themselves
// (see fanotify_linux.go for why handles are not resolved with
// open_by_handle_at). Mounts that appear under the root after Watch starts
// are not marked.
//
// inotify (fallback, unprivileged): one watch per directory, added as
// directories appear; IN_MOVED_FROM and IN_MOVED_TO are paired by cookie
// (waiting up to 50ms when a read ends between them; a half with no partner
// is a move in or out of the root). Every directory costs one of the user's
// fs.inotify.max_user_watches; past the limit, the subtree is Unwatched.
//
// Options.Backend forces one; BackendInfo says which runs and, when Auto fell
// back to inotify, why.
//
// Kernel records are decoded by pure functions over byte slices that never
// panic on truncated or garbage input (they are fuzzed: FuzzParseInotify,
// FuzzParseFanotify).
//
// Watch, Scanner and Stage are implemented for Linux only; elsewhere Watch
// returns an error wrapping errors.ErrUnsupported.
package capture
