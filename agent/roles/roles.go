// Package roles runs the replication roles a host was assigned: a
// replication engine for each master role, a receiving server for each
// replica role. Apply brings what runs in line with the latest assignments
// (starting, stopping, suspending and resuming); Report says how each role
// stands and hands over the events since the last report. The same runner
// serves holdfast-agent and the appliance's own replica roles.
package roles

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/holdfast/holdfast/agent/capture"
	"github.com/holdfast/holdfast/agent/control"
	"github.com/holdfast/holdfast/agent/replication"
	"github.com/holdfast/holdfast/agent/treesync"
)

// Links opens the connections roles need. They are the transport's
// business; the runner only decides when.
type Links interface {
	// Replica opens the master's side of role: the replica the engine
	// sends to.
	Replica(ctx context.Context, role control.MasterRole) (replication.Replica, error)
	// Serve receives and applies role's session until ctx ends or it
	// fails; applied reports the last change made durable.
	Serve(ctx context.Context, role control.ReplicaRole, applied func(seq uint64)) error
}

// Options tune a Runner.
type Options struct {
	SpoolDir      string          // one folder per master session below it
	Capture       capture.Backend // capture.Auto picks fanotify where it can
	SpoolMaxBytes int64           // default for roles that give none
	MaxEvents     int             // events kept between reports; 0: 1000
	RetryEvery    time.Duration   // wait before serving a failed replica role again; 0: 2 s
	Logger        *slog.Logger
}

// Runner runs roles. Its methods are safe for concurrent use.
type Runner struct {
	links Links
	opts  Options

	mu       sync.Mutex
	masters  map[string]*masterRun
	replicas map[string]*replicaRun
	events   []control.Event
	dropped  int
	diffs    []control.DifferenceReport // answered, not yet reported
	closed   bool
}

// masterRun is one master role. Its engine starts in the background:
// reaching the replica may take long, and one unreachable replica must not
// hold up the other roles or the reports.
type masterRun struct {
	role   control.MasterRole // fields below are guarded by Runner.mu
	cancel context.CancelFunc // ends a start in progress
	// done is closed when the start attempt ended (engine set, or failure).
	done     chan struct{}
	engine   *replication.Engine // nil until started
	replica  replication.Replica
	failure  string // why the last attempt failed, reported once
	retryAt  time.Time
	suspend  bool // the suspension last applied to the engine
	attempts int
	diffSeen uint64 // the last difference report asked for and taken on
}

type replicaRun struct {
	role    control.ReplicaRole
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	serving bool
	problem string
	applied uint64
}

// New returns a Runner with nothing to run.
func New(links Links, opts Options) *Runner {
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = 1000
	}
	if opts.RetryEvery <= 0 {
		opts.RetryEvery = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Runner{links: links, opts: opts, masters: map[string]*masterRun{}, replicas: map[string]*replicaRun{}}
}

// event queues e for the next report; the oldest go first when the queue
// is full, and the report says how many.
func (r *Runner) event(e control.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) >= r.opts.MaxEvents {
		r.events = r.events[1:]
		r.dropped++
	}
	r.events = append(r.events, e)
}

func (r *Runner) notifier(session string) func(replication.Notice) {
	return func(n replication.Notice) {
		e := control.EventFromNotice(session, n, time.Now())
		r.opts.Logger.Info("replication notice", "session", session, "kind", e.Kind, "path", e.Path, "text", e.Text, "err", e.Error)
		r.event(e)
	}
}

// Apply makes what runs match a: roles no longer assigned stop, new ones
// start, changed ones restart, and suspension follows the assignment.
// Roles that fail to start are retried at the next Apply.
func (r *Runner) Apply(ctx context.Context, a control.Assignments) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	wantM := map[string]control.MasterRole{}
	for _, m := range a.Masters {
		wantM[m.Session] = m
	}
	wantR := map[string]control.ReplicaRole{}
	for _, rr := range a.Replicas {
		wantR[rr.Session] = rr
	}

	// Stop first, so a session that moved between roles is free again.
	for _, s := range r.masterSessions() {
		m := r.master(s)
		if want, ok := wantM[s]; !ok || !sameMaster(want, m.role) {
			r.stopMaster(s, m)
		}
	}
	for _, s := range r.replicaSessions() {
		rr := r.replica(s)
		if want, ok := wantR[s]; !ok || want != rr.role {
			r.stopReplica(s, rr)
		}
	}
	for _, s := range sortedKeys(wantR) {
		if r.replica(s) == nil {
			r.startReplica(wantR[s])
		}
	}
	for _, s := range sortedKeys(wantM) {
		want := wantM[s]
		r.mu.Lock()
		m := r.masters[s]
		if m == nil {
			m = &masterRun{role: want}
			r.masters[s] = m
		}
		m.role.Suspended = want.Suspended
		startNow := m.engine == nil && m.cancel == nil && !time.Now().Before(m.retryAt)
		if startNow {
			sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			m.cancel, m.done = cancel, make(chan struct{})
			go r.startMaster(sctx, m)
		}
		eng, suspendNow := m.engine, m.suspend != want.Suspended
		if eng != nil {
			m.suspend = want.Suspended
		}
		if want.Difference != 0 && want.Difference != m.diffSeen {
			m.diffSeen = want.Difference
			go r.difference(want, m.replica, eng != nil, m.failure)
		}
		r.mu.Unlock()
		if eng != nil && suspendNow {
			if want.Suspended {
				eng.Suspend()
			} else {
				eng.Resume()
			}
		}
	}
}

// sameMaster: a change of suspension, or a request for a difference
// report, does not restart an engine.
func sameMaster(a, b control.MasterRole) bool {
	a.Suspended, b.Suspended = false, false
	a.Difference, b.Difference = 0, 0
	return a == b
}

// difference compares role's root with its replica, as it is right now,
// changing nothing, and queues the answer for the next report.
func (r *Runner) difference(role control.MasterRole, replica replication.Replica, running bool, failure string) {
	rep := control.DifferenceReport{Session: role.Session, Request: role.Difference, Entries: []control.DifferenceEntry{}}
	defer func() {
		r.mu.Lock()
		r.diffs = append(r.diffs, rep)
		r.mu.Unlock()
	}()
	if !running {
		rep.Error = control.Printable("the master role is not running: " + failure)
		return
	}
	master, mp, err := treesync.Scan(role.Root, treesync.ScanOptions{})
	if err != nil {
		rep.Error = control.Printable(fmt.Sprintf("scan master %s: %v", role.Root, err))
		return
	}
	theirs, rp, err := replica.Scan()
	if err != nil {
		rep.Error = control.Printable(fmt.Sprintf("scan replica: %v", err))
		return
	}
	add := func(e control.DifferenceEntry) {
		if len(rep.Entries) >= control.MaxDifferences {
			rep.LeftOut++
			return
		}
		rep.Entries = append(rep.Entries, e)
	}
	for _, p := range append(mp, rp...) {
		add(control.DifferenceEntry{Path: control.Printable(p.Path), Kind: "unreadable", Detail: control.Printable(p.Err.Error())})
	}
	for _, d := range treesync.Compare(master, theirs) {
		add(control.DifferenceEntry{Path: control.Printable(d.Path), Kind: d.Kind.String(), Detail: control.Printable(d.String())})
	}
}

func (r *Runner) master(s string) *masterRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.masters[s]
}

func (r *Runner) replica(s string) *replicaRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.replicas[s]
}

func (r *Runner) masterSessions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return sortedKeys(r.masters)
}

func (r *Runner) replicaSessions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return sortedKeys(r.replicas)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// startMaster opens m's link and starts its engine, unless m was
// withdrawn meanwhile. A failure is reported when it differs from the last
// one, and retried at an Apply after a pause that grows to a minute.
func (r *Runner) startMaster(ctx context.Context, m *masterRun) {
	r.mu.Lock()
	role := m.role
	done := m.done
	r.mu.Unlock()
	defer close(done)
	eng, replica, err := r.openMaster(ctx, role)

	r.mu.Lock()
	current := r.masters[role.Session] == m && ctx.Err() == nil
	m.cancel = nil
	if err == nil && current {
		m.engine, m.replica, m.failure, m.attempts = eng, replica, "", 0
		// The engine started as role said; the assignment may have moved
		// on while it started.
		want := m.role.Suspended
		m.suspend = want
		r.mu.Unlock()
		if want != role.Suspended {
			if want {
				eng.Suspend()
			} else {
				eng.Resume()
			}
		}
		r.opts.Logger.Info("master role started", "session", role.Session, "root", role.Root, "peer", role.Peer)
		return
	}
	report := false
	if err != nil && current {
		m.attempts++
		m.retryAt = time.Now().Add(min(time.Duration(m.attempts)*2*time.Second, time.Minute))
		report = err.Error() != m.failure
		m.failure = err.Error()
	}
	r.mu.Unlock()
	if err == nil {
		// Withdrawn while it started.
		_ = errors.Join(eng.Stop(), replica.Close())
		return
	}
	if report {
		r.opts.Logger.Error("master role cannot start", "session", role.Session, "err", err)
		r.event(control.Event{Time: time.Now(), Session: role.Session, Kind: control.EventRoleFailed, Error: control.Printable(err.Error())})
	}
}

func (r *Runner) openMaster(ctx context.Context, role control.MasterRole) (*replication.Engine, replication.Replica, error) {
	replica, err := r.links.Replica(ctx, role)
	if err != nil {
		return nil, nil, fmt.Errorf("open the link to %s: %w", role.Peer, err)
	}
	spoolMax := role.SpoolMaxBytes
	if spoolMax == 0 {
		spoolMax = r.opts.SpoolMaxBytes
	}
	eng, err := replication.Start(replication.Config{
		Root: role.Root, Replica: replica, SpoolDir: filepath.Join(r.opts.SpoolDir, role.Session),
		SpoolMaxBytes: spoolMax, Backend: r.opts.Capture, Notify: r.notifier(role.Session), SyncMode: role.Sync,
	})
	if err != nil {
		replica.Close()
		return nil, nil, fmt.Errorf("start replicating %s: %w", role.Root, err)
	}
	if role.Suspended {
		eng.Suspend()
	}
	return eng, replica, nil
}

func (r *Runner) stopMaster(session string, m *masterRun) {
	r.mu.Lock()
	delete(r.masters, session)
	cancel, done := m.cancel, m.done
	eng, replica := m.engine, m.replica
	r.mu.Unlock()
	if cancel != nil {
		// A start in progress notices it was withdrawn and undoes itself.
		cancel()
		<-done
	}
	if eng == nil {
		return
	}
	err := stopEngine(eng, replica, stopGrace)
	if err != nil {
		r.event(control.Event{Time: time.Now(), Session: session, Kind: control.EventError, Error: control.Printable("stop: " + err.Error())})
	}
	r.opts.Logger.Info("master role stopped", "session", session, "err", err)
}

// stopGrace is how long a stopping engine may finish the batch it is
// sending before the link is closed under it.
const stopGrace = 2 * time.Second

// stopEngine stops eng, closing its replica link if the engine does not
// stop within grace: a batch waiting on an unreachable replica must not
// hold up a stop (while the engine is stopped nothing captures), and the
// changes of an interrupted batch stay in the spool.
func stopEngine(eng *replication.Engine, replica replication.Replica, grace time.Duration) error {
	stopped := make(chan error, 1)
	go func() { stopped <- eng.Stop() }()
	select {
	case err := <-stopped:
		return errors.Join(err, replica.Close())
	case <-time.After(grace):
	}
	cerr := replica.Close()
	return errors.Join(<-stopped, cerr)
}

// startReplica serves role until it is stopped, serving again after a
// failure.
func (r *Runner) startReplica(role control.ReplicaRole) {
	ctx, cancel := context.WithCancel(context.Background())
	rr := &replicaRun{role: role, cancel: cancel, done: make(chan struct{})}
	r.mu.Lock()
	r.replicas[role.Session] = rr
	r.mu.Unlock()
	go func() {
		defer close(rr.done)
		last := ""
		for ctx.Err() == nil {
			rr.mu.Lock()
			rr.serving, rr.problem = true, ""
			rr.mu.Unlock()
			err := r.links.Serve(ctx, role, func(seq uint64) {
				rr.mu.Lock()
				rr.applied = seq
				rr.mu.Unlock()
			})
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				err = errors.New("the session ended")
			}
			rr.mu.Lock()
			rr.serving, rr.problem = false, err.Error()
			rr.mu.Unlock()
			if err.Error() != last {
				last = err.Error()
				r.opts.Logger.Error("replica role failed", "session", role.Session, "err", err)
				r.event(control.Event{Time: time.Now(), Session: role.Session, Kind: control.EventRoleFailed, Error: control.Printable(err.Error())})
			}
			select {
			case <-ctx.Done():
			case <-time.After(r.opts.RetryEvery):
			}
		}
	}()
	r.opts.Logger.Info("replica role started", "session", role.Session, "target", role.Target, "master", role.Master)
}

func (r *Runner) stopReplica(session string, rr *replicaRun) {
	r.mu.Lock()
	delete(r.replicas, session)
	r.mu.Unlock()
	rr.cancel()
	<-rr.done
	r.opts.Logger.Info("replica role stopped", "session", session)
}

// Report says how every role stands and hands over the queued events.
func (r *Runner) Report() control.Report {
	r.mu.Lock()
	masters := make(map[string]*masterRun, len(r.masters))
	for k, v := range r.masters {
		masters[k] = v
	}
	replicas := make(map[string]*replicaRun, len(r.replicas))
	for k, v := range r.replicas {
		replicas[k] = v
	}
	rep := control.Report{Roles: []control.RoleStatus{}, Events: r.events, EventsDropped: r.dropped, Differences: r.diffs}
	r.events, r.dropped, r.diffs = nil, 0, nil
	r.mu.Unlock()

	for _, s := range sortedKeys(masters) {
		m := masters[s]
		r.mu.Lock()
		eng, failure := m.engine, m.failure
		r.mu.Unlock()
		st := replication.Status{Phase: replication.PhaseStarting}
		switch {
		case eng != nil:
			st = eng.Status()
		case failure != "":
			st = replication.Status{Phase: replication.PhaseProblem, Problem: failure}
		}
		st.Problem = control.Printable(st.Problem)
		rep.Roles = append(rep.Roles, control.RoleStatus{Session: s, Role: "master", Status: st})
	}
	for _, s := range sortedKeys(replicas) {
		rr := replicas[s]
		rr.mu.Lock()
		st := replication.Status{Phase: replication.PhaseReplicating}
		if !rr.serving {
			st = replication.Status{Phase: replication.PhaseProblem, Problem: control.Printable(rr.problem)}
		}
		rep.Roles = append(rep.Roles, control.RoleStatus{Session: s, Role: "replica", Status: st, LastApplied: rr.applied})
		rr.mu.Unlock()
	}
	return rep
}

// Requeue puts back the events of a report the appliance never got, ahead
// of newer ones.
func (r *Runner) Requeue(rep control.Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.diffs = append(append([]control.DifferenceReport{}, rep.Differences...), r.diffs...)
	r.events = append(append([]control.Event{}, rep.Events...), r.events...)
	r.dropped += rep.EventsDropped
	if over := len(r.events) - r.opts.MaxEvents; over > 0 {
		r.events = r.events[over:]
		r.dropped += over
	}
}

// Close stops every role.
func (r *Runner) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	for _, s := range r.masterSessions() {
		if m := r.master(s); m != nil {
			r.stopMaster(s, m)
		}
	}
	for _, s := range r.replicaSessions() {
		if rr := r.replica(s); rr != nil {
			r.stopReplica(s, rr)
		}
	}
}
