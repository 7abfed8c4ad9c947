package replication

import (
	"context"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/agent/capture"
	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/treesync"
)

// maxScanProblems bounds how many unreadable entries one synchronization
// reports one by one; the rest are counted.
const maxScanProblems = 20

// synchronize makes the replica's copy of rel ("" for the whole root) equal
// the master's, sending only differences through emit (nil: straight to the
// replica in batches).
func (e *Engine) synchronize(ctx context.Context, rel string, emit func(change.Change) error) (SyncStats, error) {
	start := time.Now()
	master, problems, err := treesync.Scan(e.cfg.Root, treesync.ScanOptions{})
	if err != nil {
		return SyncStats{}, fmt.Errorf("scan master: %w", err)
	}
	e.reportProblems("master", problems)
	replica, problems, err := e.cfg.Replica.Scan()
	if err != nil {
		return SyncStats{}, fmt.Errorf("scan replica: %w", err)
	}
	e.reportProblems("replica", problems)
	if rel != "" {
		master, replica = below(master, rel), below(replica, rel)
	}
	// The stage recognises renames and hard links by identity; tell it what
	// the replica now holds, from the scan just made.
	for _, m := range master {
		e.stage.Observe(stageEntry(m))
	}
	diffs := treesync.Compare(master, replica)

	var b *batcher
	if emit == nil {
		b = newBatcher(e)
		// Whatever way this returns, the applier is stopped first;
		// after a successful flush there is nothing left to discard.
		defer b.close(true)
		emit = b.add
	}
	planner := treesync.Planner{
		MasterRoot: e.cfg.Root,
		Mode:       e.cfg.SyncMode,
		Signature:  e.cfg.Replica.Signature,
		Emit: func(c change.Change) error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if b != nil {
				// The spool assigns sequence numbers to what it stores;
				// what bypasses it takes them here.
				c.Seq = e.takeSeq()
			}
			return emit(c)
		},
	}
	ps, err := planner.Sync(diffs)
	if err == nil && b != nil {
		err = b.flush()
	}
	st := SyncStats{
		Elapsed: time.Since(start), Differences: len(diffs),
		FilesWhole: ps.FilesWhole, BytesWhole: ps.BytesWhole, FilesBlock: ps.FilesBlock,
		BytesLiteral: ps.BytesLiteral, BytesMatched: ps.BytesCopied,
		Removed: ps.Removed, MetadataFixes: ps.MetadataFixes,
	}
	if err != nil {
		return st, fmt.Errorf("synchronize: %w", err)
	}
	return st, nil
}

// Limits of the synchronization pipeline: the changes and payload bytes of
// one batch, and the batches prepared ahead of the one being applied. At
// most syncAhead+2 batches exist at once (one applied, syncAhead waiting,
// one being filled), so the planner holds up to that many times
// syncBatchBytes of file data.
const (
	syncBatchBytes = 64 << 20
	syncAhead      = 1
)

// batcher sends synchronization changes straight to the replica: they do
// not need the spool, since a synchronization interrupted by a crash is
// simply run again. Batches are applied by a goroutine of its own, in the
// order they were filled, so that the planner reads and encodes the next
// batch from the master while the replica applies (and syncs) the current
// one. Only one ApplyBatch is ever in progress: every batch is durable on
// the replica before the next one is applied.
type batcher struct {
	e     *Engine
	max   int
	batch []change.Change
	bytes int

	queue   chan []change.Change
	failed  chan struct{} // closed when the applier stops on an error
	done    chan struct{} // closed when the applier goroutine has returned
	err     error         // the applier's error; read after failed or done
	discard atomic.Bool   // set when the planner gave up: apply nothing more
	closed  bool
}

func newBatcher(e *Engine) *batcher {
	b := &batcher{
		e: e, max: e.cfg.BatchMax,
		queue:  make(chan []change.Change, syncAhead),
		failed: make(chan struct{}),
		done:   make(chan struct{}),
	}
	go b.apply()
	return b
}

// apply applies the queued batches in order. After a failure it applies
// nothing more (later changes may depend on the failed ones) and only
// empties the queue until it is closed.
func (b *batcher) apply() {
	defer close(b.done)
	for batch := range b.queue {
		if b.err != nil || b.discard.Load() {
			continue
		}
		if err := b.e.applyBatch(batch); err != nil {
			b.err = err
			close(b.failed)
		}
	}
}

func (b *batcher) add(c change.Change) error {
	b.batch = append(b.batch, c)
	b.bytes += len(c.Data)
	if len(b.batch) >= b.max || b.bytes >= syncBatchBytes {
		return b.send()
	}
	return nil
}

// send hands the batch being filled to the applier, waiting while
// syncAhead batches are queued already. It returns the applier's error,
// if it failed, so that the planner stops.
func (b *batcher) send() error {
	if len(b.batch) == 0 {
		return nil
	}
	select {
	case <-b.failed:
		return b.err
	default:
	}
	select {
	case b.queue <- b.batch:
	case <-b.failed:
		return b.err
	}
	// The applier owns the sent slice now: fill a new one.
	b.batch, b.bytes = make([]change.Change, 0, len(b.batch)), 0
	return nil
}

// flush sends what is left and returns once every batch is durable on the
// replica, with the applier's error if one failed.
func (b *batcher) flush() error {
	err := b.send()
	b.close(false)
	if b.err != nil {
		return b.err
	}
	return err
}

// close stops the applier and waits for it: after the batches already
// queued, or, with discard, after the one it is applying (the planner
// failed or the engine is stopping, and the synchronization will be run
// again). It is safe to call more than once.
func (b *batcher) close(discard bool) {
	if discard {
		b.discard.Store(true)
	}
	if !b.closed {
		b.closed = true
		close(b.queue)
	}
	<-b.done
}

func (e *Engine) reportProblems(side string, problems []*treesync.ScanError) {
	for i, p := range problems {
		if i == maxScanProblems {
			e.cfg.Notify(Notice{Kind: NoticeError, Err: fmt.Errorf("%s: %d more entries could not be read", side, len(problems)-i)})
			return
		}
		e.cfg.Notify(Notice{Kind: NoticeError, Path: p.Path, Err: fmt.Errorf("%s: %w", side, p)})
	}
}

// below keeps the entries at or under rel.
func below(entries []treesync.Entry, rel string) []treesync.Entry {
	i := sort.Search(len(entries), func(i int) bool { return entries[i].Path >= rel })
	var out []treesync.Entry
	for ; i < len(entries); i++ {
		p := entries[i].Path
		if p == rel || strings.HasPrefix(p, rel+"/") {
			out = append(out, entries[i])
			continue
		}
		if !strings.HasPrefix(p, rel) {
			break
		}
	}
	return out
}

// stageEntry describes a scanned master entry in the capture stage's terms.
func stageEntry(m treesync.Entry) capture.Entry {
	mode := fs.FileMode(m.Mode & 0o777)
	switch m.Type {
	case treesync.Dir:
		mode |= fs.ModeDir
	case treesync.Symlink:
		mode |= fs.ModeSymlink
	case treesync.Other:
		mode |= fs.ModeIrregular
	}
	names := make([]string, 0, len(m.Xattrs))
	for k := range m.Xattrs {
		names = append(names, k)
	}
	sort.Strings(names)
	e := capture.Entry{
		Path: m.Path, Mode: mode, Perm: m.Mode, Size: m.Size, MTime: time.Unix(0, m.MTime),
		UID: m.UID, GID: m.GID, Dev: m.Dev, Ino: m.Ino, Nlink: uint64(m.Nlink), Target: m.Target, Xattrs: names,
	}
	if m.Birth != 0 {
		e.Birth = time.Unix(0, m.Birth)
	}
	return e
}
