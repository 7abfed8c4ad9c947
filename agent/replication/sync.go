package replication

import (
	"context"
	"fmt"
	"io/fs"
	"sort"
	"strings"
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
		b = &batcher{e: e, max: e.cfg.BatchMax}
		emit = b.add
	}
	planner := treesync.Planner{
		MasterRoot: e.cfg.Root,
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

// batcher sends synchronization changes straight to the replica: they do
// not need the spool, since a synchronization interrupted by a crash is
// simply run again.
type batcher struct {
	e     *Engine
	max   int
	batch []change.Change
	bytes int
}

func (b *batcher) add(c change.Change) error {
	b.batch = append(b.batch, c)
	b.bytes += len(c.Data)
	if len(b.batch) >= b.max || b.bytes >= 64<<20 {
		return b.flush()
	}
	return nil
}

func (b *batcher) flush() error {
	if len(b.batch) == 0 {
		return nil
	}
	err := b.e.applyBatch(b.batch)
	b.batch, b.bytes = b.batch[:0], 0
	return err
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
