package replication

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/holdfast/holdfast/agent/capture"
	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/spool"
)

// captureLoop converts events into spooled changes until the engine stops.
// It is the spool's only writer. Work that needs the replica to be current
// (block-level sync of large files, rescans after an overflow, the paths a
// full spool recorded) waits until the sender reports the spool drained.
func (e *Engine) captureLoop(ctx context.Context, drained <-chan struct{}) {
	rescans := map[string]bool{}
	overflowing := false
	// The ticker catches work queued while the sender was already idle
	// (a large file's block-level sync) and retries failed rescans.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if len(rescans) > 0 || e.hasPendingSync() || e.sp.Overflowed() {
				e.resyncWhenCurrent(ctx, rescans, &overflowing)
			}
		case ev, ok := <-e.watcher.Events():
			if !ok {
				return
			}
			dirs := map[string]time.Time{}
			e.handleEvent(ev, rescans, &overflowing)
			touchedTimes(ev, dirs)
			// Group commit: take whatever else is already queued, then
			// one fsync for all of it.
		more:
			for i := 0; i < 4096; i++ {
				select {
				case ev, ok := <-e.watcher.Events():
					if !ok {
						break more
					}
					e.handleEvent(ev, rescans, &overflowing)
					touchedTimes(ev, dirs)
				default:
					break more
				}
			}
			e.carryTimes(dirs, &overflowing)
			if err := e.sp.Sync(); err != nil {
				e.trouble(fmt.Errorf("sync spool: %w", err))
			}
		case <-drained:
			e.resyncWhenCurrent(ctx, rescans, &overflowing)
		}
	}
}

func (e *Engine) handleEvent(ev capture.Event, rescans map[string]bool, overflowing *bool) {
	switch ev.Kind {
	case capture.Overflow, capture.Unwatched:
		kind := NoticeCaptureOverflow
		if ev.Kind == capture.Unwatched {
			kind = NoticeUnwatched
		}
		e.cfg.Notify(Notice{Kind: kind, Path: ev.Path, Text: ev.Reason})
		rescans[ev.Path] = true
		e.count(func(c *Counters) { c.Rescans++ })
	}
	items, err := e.stage.Convert(ev)
	for _, it := range items {
		if it.Sync != "" {
			e.mu.Lock()
			e.pendingSync[it.Sync] = true
			e.mu.Unlock()
			continue
		}
		e.append(it.Change, overflowing)
	}
	if err != nil {
		e.count(func(c *Counters) { c.Errors++ })
		e.cfg.Notify(Notice{Kind: NoticeError, Path: ev.Path, Err: fmt.Errorf("read %s after %s: %w", ev.Path, ev.Kind, err)})
		if ev.Path != "" {
			rescans[ev.Path] = true
		}
	}
}

// append spools one change. A full spool is a condition, not a failure: it
// records the change's paths for a later resync, and the operator is told
// once per overflow.
func (e *Engine) append(c change.Change, overflowing *bool) {
	c.Seq = e.takeSeq()
	err := e.sp.Append(c)
	switch {
	case err == nil:
		*overflowing = false
	case errors.Is(err, spool.ErrOverflow):
		if !*overflowing {
			*overflowing = true
			e.cfg.Notify(Notice{Kind: NoticeSpoolOverflow, Path: c.Path})
		}
	default:
		e.trouble(fmt.Errorf("spool seq %d: %w", c.Seq, err))
	}
}

// resyncWhenCurrent runs the work that needs an up-to-date replica, if the
// spool really is empty now (the capture loop is its only writer, so it
// stays empty while this runs).
func (e *Engine) resyncWhenCurrent(ctx context.Context, rescans map[string]bool, overflowing *bool) {
	if e.sp.Stats().PendingRecords > 0 {
		return
	}
	e.mu.Lock()
	paths := sortedKeys(e.pendingSync)
	clear(e.pendingSync)
	e.mu.Unlock()
	dirty, mark := e.sp.DirtyPaths()
	paths = append(paths, dirty...)
	paths = append(paths, sortedKeys(rescans)...)
	clear(rescans)
	if len(paths) == 0 {
		return
	}
	emit := func(c change.Change) error {
		e.append(c, overflowing)
		return nil
	}
	for _, p := range collapse(paths) {
		if ctx.Err() != nil {
			return
		}
		if _, err := e.synchronize(ctx, p, emit); err != nil {
			e.cfg.Notify(Notice{Kind: NoticeError, Path: p, Err: fmt.Errorf("resynchronize %s: %w", p, err)})
			rescans[p] = true
		}
		e.count(func(c *Counters) { c.BlockSyncs++ })
	}
	if len(dirty) > 0 {
		if err := e.sp.ClearDirty(mark); err != nil {
			e.trouble(fmt.Errorf("clear spool dirty paths: %w", err))
		}
	}
	if err := e.sp.Sync(); err != nil {
		e.trouble(fmt.Errorf("sync spool: %w", err))
	}
}

// collapse drops paths that lie under another path of the list ("" is the
// whole root), so each subtree is resynchronized once.
func collapse(paths []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range paths {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	var kept []string
	for _, p := range out {
		covered := false
		for _, q := range out {
			if q != p && (q == "" || strings.HasPrefix(p, q+"/")) {
				covered = true
				break
			}
		}
		if !covered {
			kept = append(kept, p)
		}
	}
	return kept
}

func (e *Engine) hasPendingSync() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.pendingSync) > 0
}

// touchedTimes notes the directories whose entries ev changed, and a new
// symlink: applying the change on the replica moves their modification
// time, so the master's must be carried after it.
func touchedTimes(ev capture.Event, dirs map[string]time.Time) {
	switch ev.Kind {
	case capture.Created, capture.DirCreated, capture.Removed, capture.Renamed, capture.Modified:
		// Modified too: the replica replaces a file's content with a
		// rename in its directory.
	default:
		return
	}
	for _, p := range []string{ev.Path, ev.OldPath} {
		if p == "" {
			continue
		}
		if dir := path.Dir(p); dir != "." {
			dirs[dir] = ev.Time
		}
	}
	if ev.Kind == capture.Created || ev.Kind == capture.DirCreated {
		// The ops that create a symlink or a directory do not carry its
		// own time; the replica's would be the moment it applied them.
		dirs[ev.Path] = ev.Time
	}
}

// carryTimes spools the master's modification time of each directory (and
// new symlink) that replication touched.
func (e *Engine) carryTimes(dirs map[string]time.Time, overflowing *bool) {
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		st, err := os.Lstat(filepath.Join(e.cfg.Root, filepath.FromSlash(d)))
		if err != nil || !(st.IsDir() || st.Mode()&os.ModeSymlink != 0) {
			continue // gone, replaced, or a file whose time its own op carries
		}
		e.append(change.Change{Op: change.OpSetTimes, Path: d, MTime: st.ModTime().UnixNano(), Captured: dirs[d].UnixNano()}, overflowing)
	}
}
