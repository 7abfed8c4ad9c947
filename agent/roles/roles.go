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
	closed   bool
}

type masterRun struct {
	role    control.MasterRole
	engine  *replication.Engine // nil while it could not start
	replica replication.Replica
	failure string // why it could not start, reported once
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
		kind := n.Kind
		r.opts.Logger.Info("replication notice", "session", session, "kind", kind, "path", n.Path, "text", n.Text, "err", n.Err)
		r.event(control.EventFromNotice(session, n, time.Now()))
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
		m := r.master(s)
		if m == nil || m.engine == nil {
			m = r.startMaster(ctx, wantM[s], m)
		}
		if m.engine != nil && m.role.Suspended != wantM[s].Suspended {
			if wantM[s].Suspended {
				m.engine.Suspend()
			} else {
				m.engine.Resume()
			}
		}
		m.role = wantM[s]
	}
}

// sameMaster: a change of suspension does not restart an engine.
func sameMaster(a, b control.MasterRole) bool {
	a.Suspended, b.Suspended = false, false
	return a == b
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

// startMaster starts role's engine; prev is an earlier attempt that
// failed, whose failure is not reported twice.
func (r *Runner) startMaster(ctx context.Context, role control.MasterRole, prev *masterRun) *masterRun {
	m := &masterRun{role: role}
	if prev != nil {
		m.failure = prev.failure
	}
	fail := func(err error) *masterRun {
		if err.Error() != m.failure {
			m.failure = err.Error()
			r.opts.Logger.Error("master role cannot start", "session", role.Session, "err", err)
			r.event(control.Event{Time: time.Now(), Session: role.Session, Kind: control.EventRoleFailed, Error: err.Error()})
		}
		r.mu.Lock()
		r.masters[role.Session] = m
		r.mu.Unlock()
		return m
	}
	replica, err := r.links.Replica(ctx, role)
	if err != nil {
		return fail(fmt.Errorf("open the link to %s: %w", role.Peer, err))
	}
	spoolMax := role.SpoolMaxBytes
	if spoolMax == 0 {
		spoolMax = r.opts.SpoolMaxBytes
	}
	eng, err := replication.Start(replication.Config{
		Root: role.Root, Replica: replica, SpoolDir: filepath.Join(r.opts.SpoolDir, role.Session),
		SpoolMaxBytes: spoolMax, Backend: r.opts.Capture, Notify: r.notifier(role.Session),
	})
	if err != nil {
		replica.Close()
		return fail(fmt.Errorf("start replicating %s: %w", role.Root, err))
	}
	if role.Suspended {
		eng.Suspend()
	}
	m.engine, m.replica, m.failure = eng, replica, ""
	r.opts.Logger.Info("master role started", "session", role.Session, "root", role.Root, "peer", role.Peer)
	r.mu.Lock()
	r.masters[role.Session] = m
	r.mu.Unlock()
	return m
}

func (r *Runner) stopMaster(session string, m *masterRun) {
	r.mu.Lock()
	delete(r.masters, session)
	r.mu.Unlock()
	if m.engine == nil {
		return
	}
	err := errors.Join(m.engine.Stop(), m.replica.Close())
	if err != nil {
		r.event(control.Event{Time: time.Now(), Session: session, Kind: control.EventError, Error: "stop: " + err.Error()})
	}
	r.opts.Logger.Info("master role stopped", "session", session, "err", err)
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
				r.event(control.Event{Time: time.Now(), Session: role.Session, Kind: control.EventRoleFailed, Error: err.Error()})
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
	rep := control.Report{Roles: []control.RoleStatus{}, Events: r.events, EventsDropped: r.dropped}
	r.events, r.dropped = nil, 0
	r.mu.Unlock()

	for _, s := range sortedKeys(masters) {
		m := masters[s]
		st := replication.Status{Phase: replication.PhaseProblem, Problem: m.failure}
		if m.engine != nil {
			st = m.engine.Status()
		}
		rep.Roles = append(rep.Roles, control.RoleStatus{Session: s, Role: "master", Status: st})
	}
	for _, s := range sortedKeys(replicas) {
		rr := replicas[s]
		rr.mu.Lock()
		st := replication.Status{Phase: replication.PhaseReplicating}
		if !rr.serving {
			st = replication.Status{Phase: replication.PhaseProblem, Problem: rr.problem}
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
