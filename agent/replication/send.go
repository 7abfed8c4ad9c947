package replication

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/holdfast/holdfast/agent/apply"
	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/spool"
)

var errDrained = errors.New("spool drained")

// drain applies what an earlier run left in the spool. It returns only when
// the spool is empty or the engine stops.
func (e *Engine) drain(ctx context.Context) error {
	for {
		err := e.sendBatch(ctx, e.ack)
		switch {
		case errors.Is(err, errDrained):
			return nil
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			e.trouble(err)
			if !e.sleep(ctx, e.cfg.RetryEvery) {
				return ctx.Err()
			}
		}
	}
}

// sendLoop applies spooled changes as they arrive, until the engine stops.
// Acknowledgements are written behind it (see acker), so that applying the
// next batch does not wait for the spool's fsyncs.
func (e *Engine) sendLoop(ctx context.Context, drained chan<- struct{}) {
	ak := newAcker(e)
	defer ak.stop()
	for ctx.Err() == nil {
		e.mu.Lock()
		suspended, resumed := e.suspended, e.resumed
		e.mu.Unlock()
		if suspended {
			select {
			case <-ctx.Done():
				return
			case <-resumed:
			}
			continue
		}
		err := e.sendBatch(ctx, ak.ack)
		switch {
		case errors.Is(err, errDrained):
			select {
			case drained <- struct{}{}:
			default:
			}
			if e.sp.Wait(ctx) != nil {
				return
			}
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			e.trouble(err)
			e.sleep(ctx, e.cfg.RetryEvery)
		}
	}
}

// sendBatch reads up to BatchMax changes, applies them, and acknowledges
// them in the spool with ack. errDrained means there was nothing to send.
func (e *Engine) sendBatch(ctx context.Context, ack func(seq uint64) error) error {
	batch := make([]change.Change, 0, e.cfg.BatchMax)
	for len(batch) < e.cfg.BatchMax {
		c, err := e.sp.Next()
		if errors.Is(err, spool.ErrEmpty) {
			break
		}
		if err != nil {
			e.sp.Rewind()
			return fmt.Errorf("read spool: %w", err)
		}
		batch = append(batch, c)
	}
	if len(batch) == 0 {
		return errDrained
	}
	if err := e.applyBatch(batch); err != nil {
		// Read these again from the last acknowledgement next time; the
		// replica skips what it already applied.
		e.sp.Rewind()
		return err
	}
	if err := ack(batch[len(batch)-1].Seq); err != nil {
		return err
	}
	e.recovered()
	return nil
}

// ack acknowledges seq in the spool now.
func (e *Engine) ack(seq uint64) error {
	if err := e.sp.Ack(seq); err != nil {
		return fmt.Errorf("acknowledge seq %d in spool: %w", seq, err)
	}
	return nil
}

// acker writes the spool's acknowledgements in its own goroutine, the
// newest seq only when several are waiting. An acknowledgement only lets
// the spool drop what the replica holds durably already; one that is late
// or lost to a crash makes the replica skip a few changes delivered again
// (Seq <= LastApplied), so the sender need not wait for its two fsyncs.
type acker struct {
	e    *Engine
	next chan uint64 // capacity 1: the newest seq not yet written
	done chan struct{}
}

func newAcker(e *Engine) *acker {
	a := &acker{e: e, next: make(chan uint64, 1), done: make(chan struct{})}
	go a.run()
	return a
}

func (a *acker) run() {
	defer close(a.done)
	for seq := range a.next {
		if err := a.e.ack(seq); err != nil {
			a.e.trouble(err)
		}
	}
}

// ack queues seq, replacing an older one still waiting. It never fails:
// errors are reported by the goroutine that writes.
func (a *acker) ack(seq uint64) error {
	for {
		select {
		case a.next <- seq:
			return nil
		default:
		}
		select {
		case old := <-a.next:
			seq = max(seq, old)
		default:
		}
	}
}

// stop writes what is waiting and returns when it is written.
func (a *acker) stop() {
	close(a.next)
	<-a.done
}

// applyBatch applies a batch on the replica. A change the replica refuses
// for good (an escaping path, a patch that no longer fits the replica's
// copy) must not block everything behind it: it is skipped, reported, and
// its path resynchronized. Running out of space is not for good: it is
// returned so the batch is retried once space comes back.
//
// Replacements of a file that a later one in the batch supersedes are not
// sent (see superseded); they count as applied with the batch.
func (e *Engine) applyBatch(batch []change.Change) error {
	sent := superseded(batch)
	err := e.cfg.Replica.ApplyBatch(sent)
	if err == nil {
		e.account(batch)
		return nil
	}
	if errors.Is(err, apply.ErrNoSpace) || errors.Is(err, apply.ErrInUse) {
		return err
	}
	// Find the change at fault by applying one at a time.
	for _, c := range sent {
		if c.Seq <= e.cfg.Replica.LastApplied() {
			continue
		}
		err := e.cfg.Replica.ApplyBatch([]change.Change{c})
		if err == nil {
			e.account([]change.Change{c})
			continue
		}
		if !isChangeError(err) {
			return err
		}
		kind := NoticeError
		resync := c.Path
		if errors.Is(err, apply.ErrEscape) {
			// Something on the replica (a planted symlink) is in the way:
			// resynchronizing the top of the path puts the master's
			// structure back in its place.
			kind = NoticeEscape
			resync, _, _ = strings.Cut(c.Path, "/")
		}
		e.mu.Lock()
		e.pendingSync[resync] = true
		if c.NewPath != "" {
			// A refused rename or link leaves its destination wrong
			// too (typically the source never reached the replica:
			// the stage saw it only after it had moved), so both ends
			// are resynchronized.
			dest := c.NewPath
			if kind == NoticeEscape {
				dest, _, _ = strings.Cut(dest, "/")
			}
			e.pendingSync[dest] = true
		}
		e.mu.Unlock()
		e.count(func(k *Counters) { k.Errors++ })
		e.cfg.Notify(Notice{Kind: kind, Path: c.Path, Err: err})
	}
	return nil
}

// isChangeError reports a failure of one change that retrying cannot fix.
// Everything else (no space, a failed sync, a replica that is unreachable)
// is worth retrying, so the batch is kept.
func isChangeError(err error) bool {
	var ae *apply.Error
	return errors.As(err, &ae) && !errors.Is(err, apply.ErrNoSpace)
}

func (e *Engine) account(batch []change.Change) {
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	k := &e.counters
	for _, c := range batch {
		k.Changes++
		k.Bytes += uint64(len(c.Data))
		switch c.Op {
		case change.OpCreate, change.OpMkdir, change.OpSymlink, change.OpLink:
			k.Created++
		case change.OpWrite, change.OpTruncate, change.OpReplaceFile, change.OpPatch:
			k.Updated++
		case change.OpRemove:
			k.Removed++
		case change.OpRename:
			k.Renamed++
		default:
			k.Meta++
		}
		if c.Captured > 0 {
			e.lags.add(now.Sub(time.Unix(0, c.Captured)))
			k.LastCaptured = time.Unix(0, c.Captured)
		}
		k.LastApplied = c.Seq
	}
}

// lagWindow keeps the most recent capture-to-durable delays.
type lagWindow struct {
	samples [4096]time.Duration
	n       int
	last    time.Duration
}

func (w *lagWindow) add(d time.Duration) {
	w.samples[w.n%len(w.samples)] = d
	w.n++
	w.last = d
}

func (w *lagWindow) summary() (last, p50, p99 time.Duration) {
	n := min(w.n, len(w.samples))
	if n == 0 {
		return 0, 0, 0
	}
	s := append([]time.Duration(nil), w.samples[:n]...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return w.last, s[n*50/100], s[min(n-1, n*99/100)]
}
