// Package replication keeps one replica directory continuously identical to
// one master root: it captures changes on the master as they happen, holds
// them in a durable spool, and applies them on the replica in order, after
// an initial synchronization that sends only what differs.
//
// The order of work is what makes it correct:
//  1. the watcher starts first, so nothing that happens during the rest is
//     missed (events wait in its queue; an overflow becomes a rescan);
//  2. whatever an earlier run left in the spool is applied, because those
//     changes are older than the master's current state;
//  3. synchronization compares the two trees and sends the differences
//     straight to the replica (file-level for small files, block-level for
//     large ones);
//  4. then captured events are converted to changes, appended to the
//     spool and applied by the sender, which acknowledges them.
//
// Suspending stops the sender only: capture goes on into the spool, which is
// drained on resume without a resynchronization. When the spool reaches its
// limit it records paths instead of data, and those paths are resynchronized
// block-level once it has drained: never silent loss.
package replication

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/holdfast/holdfast/agent/apply"
	"github.com/holdfast/holdfast/agent/capture"
	"github.com/holdfast/holdfast/agent/spool"
	"github.com/holdfast/holdfast/agent/treesync"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// Phase is where an engine stands.
type Phase string

const (
	PhaseStarting      Phase = "starting"
	PhaseSynchronizing Phase = "synchronizing"
	PhaseReplicating   Phase = "replicating"
	PhaseSuspended     Phase = "suspended"
	PhaseProblem       Phase = "problem"
	// PhaseNotAuthorized: the replica host refused this master (or the
	// transport refused the peer's certificate). Retrying goes on, but
	// only an operator enrolling the host again ends it.
	PhaseNotAuthorized Phase = "not authorized"
	PhaseStopped       Phase = "stopped"
)

// NoticeKind says what a Notice reports; the appliance maps each to a
// message code.
type NoticeKind uint8

const (
	NoticeStarted         NoticeKind = iota + 1 // Text: capture backend
	NoticeSyncDone                              // Sync holds the figures
	NoticeSpoolOverflow                         // the spool hit its limit
	NoticeCaptureOverflow                       // events were lost; Text: why, Path: what is rescanned
	NoticeUnwatched                             // a subtree cannot be watched
	NoticeNoSpace                               // replica full; replication paused
	NoticeEscape                                // a change was refused by the replica
	NoticeError                                 // anything else; Err
	NoticeRecovered                             // a problem cleared
	NoticeSpoolRecovered                        // Open repaired a torn spool tail
	NoticeNotAuthorized                         // the replica host refused this master; Err
)

// Notice is something the operator should read in the activity log.
type Notice struct {
	Kind NoticeKind
	Path string
	Text string
	Err  error
	Sync SyncStats
}

// Config is one replicated root.
type Config struct {
	Root          string  // master directory
	Replica       Replica // where changes go
	SpoolDir      string  // the master's spool for this root
	SpoolMaxBytes int64   // 0: the spool's default
	Backend       capture.Backend
	BatchMax      int           // changes applied per replica call; 0: 512
	RetryEvery    time.Duration // retry interval after a replica failure; 0: 2 s
	Notify        func(Notice)  // called from the engine's goroutines
	// SyncMode is how synchronization sends files that differ:
	// treesync.ModeAuto (when empty), ModeFile or ModeBlock.
	SyncMode string
}

// Engine replicates one root.
type Engine struct {
	cfg     Config
	sp      *spool.Spool
	watcher capture.Watcher
	stage   *capture.Stage
	cancel  context.CancelFunc
	done    sync.WaitGroup

	mu          sync.Mutex
	phase       Phase
	problem     string
	suspended   bool
	resumed     chan struct{} // closed and replaced on Resume
	nextSeq     uint64
	counters    Counters
	lags        lagWindow
	sync        SyncStats
	pendingSync map[string]bool // large files waiting for block-level sync while suspended
	started     time.Time
}

// Counters are what replication did since the engine started.
type Counters struct {
	Changes      uint64
	Bytes        uint64 // change payload bytes applied
	Created      uint64
	Updated      uint64
	Removed      uint64
	Renamed      uint64
	Meta         uint64
	Errors       uint64
	Rescans      uint64
	BlockSyncs   uint64
	LastApplied  uint64
	LastCaptured time.Time
}

// Status is a snapshot for reports and the console.
type Status struct {
	Phase        Phase
	Problem      string
	Backend      string
	Started      time.Time
	Counters     Counters
	Sync         SyncStats
	SpoolPending int64
	SpoolBytes   int64
	DirtyPaths   int
	LagLast      time.Duration
	LagP50       time.Duration
	LagP99       time.Duration
}

// Start opens the spool, starts capture and runs the engine until Stop.
func Start(cfg Config) (*Engine, error) {
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = 512
	}
	if cfg.RetryEvery <= 0 {
		cfg.RetryEvery = 2 * time.Second
	}
	if cfg.Notify == nil {
		cfg.Notify = func(Notice) {}
	}
	switch cfg.SyncMode {
	case "", treesync.ModeAuto, treesync.ModeFile, treesync.ModeBlock:
	default:
		return nil, fmt.Errorf("synchronization mode %q: want auto, file or block", cfg.SyncMode)
	}
	sp, err := spool.Open(cfg.SpoolDir, spool.Options{MaxBytes: cfg.SpoolMaxBytes})
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", cfg.SpoolDir, err)
	}
	if rec := sp.Recovery(); rec.Unclean {
		// The synchronization that follows every start is the verify scan
		// an unclean stop calls for.
		cfg.Notify(Notice{Kind: NoticeSpoolRecovered, Text: fmt.Sprintf("%d torn tail(s) cut", len(rec.Truncated))})
	}
	w, err := capture.Watch(cfg.Root, capture.Options{Backend: cfg.Backend})
	if err != nil {
		sp.Close()
		return nil, fmt.Errorf("watch %s: %w", cfg.Root, err)
	}
	st, err := capture.NewStage(cfg.Root)
	if err != nil {
		w.Close()
		sp.Close()
		return nil, fmt.Errorf("watch %s: %w", cfg.Root, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		cfg: cfg, sp: sp, watcher: w, stage: st, cancel: cancel,
		phase: PhaseStarting, resumed: make(chan struct{}),
		pendingSync: map[string]bool{}, started: time.Now(),
	}
	stats := sp.Stats()
	e.nextSeq = max(stats.LastSeq, cfg.Replica.LastApplied()) + 1
	info := w.Backend()
	text := info.Backend.String()
	if info.Fallback != nil {
		text += fmt.Sprintf(" (fanotify not used: %v)", info.Fallback)
	}
	cfg.Notify(Notice{Kind: NoticeStarted, Text: text})
	e.done.Add(2)
	go e.drainErrors()
	go e.run(ctx)
	return e, nil
}

// Stop ends capture and the sender; what the spool holds stays for the next
// start. It is safe to call more than once.
func (e *Engine) Stop() error {
	e.mu.Lock()
	if e.cancel == nil {
		e.mu.Unlock()
		return nil
	}
	cancel := e.cancel
	e.cancel = nil
	e.mu.Unlock()
	cancel()
	werr := e.watcher.Close()
	e.done.Wait()
	e.stage.Close()
	serr := e.sp.Close()
	e.setPhase(PhaseStopped, "")
	return errors.Join(werr, serr)
}

// Suspend stops applying changes; capture continues into the spool.
func (e *Engine) Suspend() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.suspended = true
	if e.phase == PhaseReplicating {
		e.phase = PhaseSuspended
	}
}

// Resume lets the sender drain the spool again.
func (e *Engine) Resume() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.suspended {
		return
	}
	e.suspended = false
	close(e.resumed)
	e.resumed = make(chan struct{})
	if e.phase == PhaseSuspended {
		e.phase = PhaseReplicating
	}
}

// Status returns a snapshot of the engine.
func (e *Engine) Status() Status {
	ss := e.sp.Stats()
	e.mu.Lock()
	defer e.mu.Unlock()
	last, p50, p99 := e.lags.summary()
	return Status{
		Phase: e.phase, Problem: e.problem, Backend: e.watcher.Backend().Backend.String(),
		Started: e.started, Counters: e.counters, Sync: e.sync,
		SpoolPending: ss.PendingRecords, SpoolBytes: ss.PendingBytes, DirtyPaths: ss.DirtyPaths,
		LagLast: last, LagP50: p50, LagP99: p99,
	}
}

func (e *Engine) setPhase(p Phase, problem string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p == PhaseReplicating && e.suspended {
		p = PhaseSuspended
	}
	e.phase, e.problem = p, problem
}

func (e *Engine) drainErrors() {
	defer e.done.Done()
	for err := range e.watcher.Errors() {
		e.count(func(c *Counters) { c.Errors++ })
		e.cfg.Notify(Notice{Kind: NoticeError, Err: fmt.Errorf("capture: %w", err)})
	}
}

func (e *Engine) count(f func(*Counters)) {
	e.mu.Lock()
	f(&e.counters)
	e.mu.Unlock()
}

// run is the engine's life: drain the old spool, synchronize, then capture
// and send until stopped.
func (e *Engine) run(ctx context.Context) {
	defer e.done.Done()
	if err := e.drain(ctx); err != nil {
		return // stopped
	}
	e.setPhase(PhaseSynchronizing, "")
	for {
		stats, err := e.synchronize(ctx, "", nil)
		if err == nil {
			e.mu.Lock()
			e.sync = stats
			e.mu.Unlock()
			e.cfg.Notify(Notice{Kind: NoticeSyncDone, Sync: stats})
			break
		}
		if ctx.Err() != nil {
			return
		}
		e.trouble(err)
		if !e.sleep(ctx, e.cfg.RetryEvery) {
			return
		}
	}
	e.setPhase(PhaseReplicating, "")
	drained := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.sendLoop(ctx, drained)
	}()
	e.captureLoop(ctx, drained)
	wg.Wait()
}

func (e *Engine) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// trouble records a replica or capture failure: the scenario shows Problem
// (or Not Authorized) until the next success.
func (e *Engine) trouble(err error) {
	kind, phase := NoticeError, PhaseProblem
	switch {
	case errors.Is(err, sdk.ErrNotAuthorized):
		kind, phase = NoticeNotAuthorized, PhaseNotAuthorized
	case errors.Is(err, apply.ErrNoSpace):
		kind = NoticeNoSpace
	case errors.Is(err, apply.ErrEscape):
		kind = NoticeEscape
	}
	e.mu.Lock()
	already := e.phase == phase && e.problem == err.Error()
	e.phase, e.problem = phase, err.Error()
	e.counters.Errors++
	e.mu.Unlock()
	if !already {
		e.cfg.Notify(Notice{Kind: kind, Err: err})
	}
}

func (e *Engine) recovered() {
	e.mu.Lock()
	was := e.phase == PhaseProblem || e.phase == PhaseNotAuthorized
	if was {
		e.phase, e.problem = PhaseReplicating, ""
		if e.suspended {
			e.phase = PhaseSuspended
		}
	}
	e.mu.Unlock()
	if was {
		e.cfg.Notify(Notice{Kind: NoticeRecovered})
	}
}

// takeSeq hands out the next sequence number.
func (e *Engine) takeSeq() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.nextSeq
	e.nextSeq++
	return s
}

// sortedKeys returns m's keys in order, for deterministic resync order.
func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
