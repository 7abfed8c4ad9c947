// Package runner runs scenarios on the appliance: for each running scenario
// it keeps one replication engine per master root and replica, turns their
// notices into activity-log entries, and answers run, stop, suspend, resume
// and status. The scenario's wanted state (running or stopped) is kept in
// the catalog, so scenarios that ran before a restart or a power cut run
// again when holdfastd starts.
package runner

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/holdfast/holdfast/agent/capture"
	"github.com/holdfast/holdfast/agent/control"
	"github.com/holdfast/holdfast/agent/replication"
	"github.com/holdfast/holdfast/agent/rewind"
	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/messages"
)

// Store is the part of the catalog the runner needs.
type Store interface {
	Scenario(name string) (catalog.Scenario, error)
	Scenarios() ([]catalog.Scenario, error)
	UpdateScenario(s catalog.Scenario) error
}

// Runner owns the running scenarios.
type Runner struct {
	store  Store
	rec    activity.Recorder
	spools string // where spools live: one folder per scenario
	opts   Options

	mu      sync.Mutex
	running map[uint64]*scenarioRun
	// failed holds scenarios the catalog says should run but that could
	// not be started again after a restart, with why: they show Problem
	// until an operator runs or stops them.
	failed map[uint64]string
	// hosts holds the last report of every host that has roles.
	hosts map[string]*hostReport
}

type scenarioRun struct {
	sc    catalog.Scenario
	pairs []*pair
	// remote scenarios have no engine here: agents run them, and
	// suspended is what their assignments say.
	remote    bool
	suspended bool
	// diffReq is the difference report asked of the master agent (0:
	// none), diffs its answers by session.
	diffReq uint64
	diffs   map[string]control.DifferenceReport
}

// pair is one master root replicated to one replica directory.
type pair struct {
	root, replicaDir string
	replica          *replication.LocalReplica
	engine           *replication.Engine
}

// Options tune every engine the runner starts.
type Options struct {
	SpoolMaxBytes int64           // per replicated root; 0: the spool's default
	Capture       capture.Backend // capture.Auto picks fanotify where it can
	Remote        Remote          // how scenarios with other hosts run
	// Rewind, when set, gives every replica this appliance applies to a
	// rewind journal with these limits; nil turns Data Rewind off.
	Rewind *rewind.Options
	// Held lists the replicas the appliance's replica roles hold open, so
	// that rewind, snapshots and tests reach them while they run.
	Held *replication.Held
}

// New returns a Runner keeping spools below spoolDir.
func New(store Store, rec activity.Recorder, spoolDir string, opts Options) *Runner {
	return &Runner{store: store, rec: rec, spools: spoolDir, opts: opts,
		running: map[uint64]*scenarioRun{}, failed: map[uint64]string{}, hosts: map[string]*hostReport{}}
}

// ReplicaDir is where root is mirrored under target: the target itself for
// a scenario with one root, and target plus the root's full path when there
// are several, so roots never collide.
func ReplicaDir(target string, roots []string, root string) string {
	if len(roots) == 1 {
		return target
	}
	return filepath.Join(target, root)
}

func (r *Runner) lookup(name string) (catalog.Scenario, error) {
	sc, err := r.store.Scenario(name)
	if errors.Is(err, catalog.ErrNotFound) {
		return sc, messages.New(messages.ScenarioNotFound, name)
	}
	if err != nil {
		return sc, messages.Wrap(err, messages.ScenarioDataUnreadable, name, err)
	}
	return sc, nil
}

// Run starts replicating the scenario and records that it should run.
func (r *Runner) Run(ctx context.Context, name string) error {
	sc, err := r.lookup(name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	_, already := r.running[sc.ID]
	r.mu.Unlock()
	if already {
		return messages.New(messages.ScenarioAlreadyRunning, name)
	}
	if err := r.start(ctx, sc); err != nil {
		return err
	}
	sc.State = catalog.StateRunning
	if err := r.store.UpdateScenario(sc); err != nil {
		return messages.Wrap(err, messages.CatalogWriteFailed, err)
	}
	return nil
}

func (r *Runner) start(ctx context.Context, sc catalog.Scenario) error {
	run := &scenarioRun{sc: sc}
	remote, err := r.remote(sc)
	if err != nil {
		return err
	}
	if remote {
		// The agents pick their roles up at their next poll.
		run.remote = true
		r.mu.Lock()
		r.running[sc.ID] = run
		delete(r.failed, sc.ID)
		r.mu.Unlock()
		return nil
	}
	for ri, rep := range sc.Replicas {
		for oi, root := range sc.Roots {
			p := &pair{root: root, replicaDir: ReplicaDir(rep.Target, sc.Roots, root)}
			local, err := replication.OpenLocalWith(p.replicaDir, replication.LocalOptions{Rewind: r.journal(sc.Name, rep.Host, p.replicaDir)})
			if err != nil {
				r.stopPairs(run.pairs)
				return messages.Wrap(err, messages.ReplicationFailed, sc.Name, err)
			}
			p.replica = local
			spoolDir := filepath.Join(r.spools, strconv.FormatUint(sc.ID, 10), fmt.Sprintf("r%d-%d", ri, oi))
			eng, err := replication.Start(replication.Config{
				Root: root, Replica: local, SpoolDir: spoolDir, Backend: r.opts.Capture, SpoolMaxBytes: r.opts.SpoolMaxBytes,
				Notify: r.notifier(sc.Name, root, p.replicaDir), SyncMode: sc.SyncMode,
			})
			if err != nil {
				local.Close()
				r.stopPairs(run.pairs)
				return messages.Wrap(err, messages.ReplicationFailed, sc.Name, err)
			}
			p.engine = eng
			run.pairs = append(run.pairs, p)
		}
	}
	r.mu.Lock()
	r.running[sc.ID] = run
	delete(r.failed, sc.ID)
	r.mu.Unlock()
	return nil
}

// journal returns the rewind journal options of one replica directory:
// the configured limits, with dropped points reported in the activity log.
func (r *Runner) journal(name, host, dir string) *rewind.Options {
	if r.opts.Rewind == nil {
		return nil
	}
	o := *r.opts.Rewind
	o.OnDrop = func(d rewind.Dropped) {
		r.rec.Record(context.Background(), messages.RewindPointsDropped, name, host+":"+dir, d.Points, d.FirstID, d.LastID,
			d.Oldest.Local().Format(time.DateTime), d.Newest.Local().Format(time.DateTime), d.Why)
	}
	return &o
}

func (r *Runner) notifier(name, root, replicaDir string) func(replication.Notice) {
	return r.notifierIn(context.Background(), name, root, replicaDir)
}

// notifierIn records notices with ctx (the host they happened on).
func (r *Runner) notifierIn(ctx context.Context, name, root, replicaDir string) func(replication.Notice) {
	return func(n replication.Notice) {
		switch n.Kind {
		case replication.NoticeStarted:
			r.rec.Record(ctx, messages.ReplicationStarted, name, root, replicaDir, n.Text)
		case replication.NoticeSyncDone:
			r.rec.Record(ctx, messages.SyncFinished, name, root, n.Sync.Elapsed.Round(time.Millisecond), n.Sync.String())
		case replication.NoticeSpoolOverflow:
			r.rec.Record(ctx, messages.SpoolOverflow, name, root)
		case replication.NoticeCaptureOverflow:
			r.rec.Record(ctx, messages.CaptureOverflow, name, n.Text, pathOrRoot(root, n.Path))
		case replication.NoticeUnwatched:
			r.rec.Record(ctx, messages.CaptureUnwatched, name, pathOrRoot(root, n.Path), n.Text)
		case replication.NoticeNoSpace:
			r.rec.Record(ctx, messages.ReplicaNoSpace, name, replicaDir, n.Err)
		case replication.NoticeEscape:
			r.rec.Record(ctx, messages.ReplicaPathRefused, name, n.Path, n.Err)
		case replication.NoticeNotAuthorized:
			r.rec.Record(ctx, messages.ReplicationNotAuthorized, name, replicaDir, n.Err)
		case replication.NoticeRecovered:
			r.rec.Record(ctx, messages.ReplicationRecovered, name)
		case replication.NoticeSpoolRecovered:
			r.rec.Record(ctx, messages.SpoolRepaired, name, root, n.Text)
		default:
			r.rec.Record(ctx, messages.ReplicationFailed, name, n.Err)
		}
	}
}

func pathOrRoot(root, p string) string {
	if p == "" {
		return root
	}
	return filepath.Join(root, p)
}

func (r *Runner) stopPairs(pairs []*pair) error {
	var errs []error
	for _, p := range pairs {
		if p.engine != nil {
			errs = append(errs, p.engine.Stop())
		}
		errs = append(errs, p.replica.Close())
	}
	return errors.Join(errs...)
}

// Stop stops the scenario and records that it should stay stopped.
func (r *Runner) Stop(ctx context.Context, name string) error {
	sc, err := r.lookup(name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	run, ok := r.running[sc.ID]
	delete(r.running, sc.ID)
	_, failed := r.failed[sc.ID]
	delete(r.failed, sc.ID)
	r.mu.Unlock()
	if !ok && !failed {
		return messages.New(messages.ScenarioNotRunning, name)
	}
	var stopErr error
	if ok {
		stopErr = r.stopPairs(run.pairs)
	}
	sc.State = catalog.StateStopped
	if err := r.store.UpdateScenario(sc); err != nil {
		return messages.Wrap(err, messages.CatalogWriteFailed, err)
	}
	r.rec.Record(ctx, messages.ReplicationStopped, name)
	if stopErr != nil {
		return messages.Wrap(stopErr, messages.ReplicationFailed, name, stopErr)
	}
	return nil
}

// Suspend stops applying on the replicas; the master keeps spooling.
func (r *Runner) Suspend(ctx context.Context, name string) error {
	return r.each(ctx, name, messages.ReplicationSuspended, (*replication.Engine).Suspend)
}

// Resume drains the spools to the replicas again.
func (r *Runner) Resume(ctx context.Context, name string) error {
	return r.each(ctx, name, messages.ReplicationResumed, (*replication.Engine).Resume)
}

func (r *Runner) each(ctx context.Context, name string, code messages.Code, f func(*replication.Engine)) error {
	sc, err := r.lookup(name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	run, ok := r.running[sc.ID]
	r.mu.Unlock()
	if !ok {
		return messages.New(messages.ScenarioNotRunning, name)
	}
	if run.remote {
		r.mu.Lock()
		run.suspended = code == messages.ReplicationSuspended
		r.mu.Unlock()
	}
	for _, p := range run.pairs {
		f(p.engine)
	}
	r.rec.Record(ctx, code, name)
	return nil
}

// PairStatus is one root's replication to one replica.
type PairStatus struct {
	Root       string
	ReplicaDir string
	replication.Status
}

// Status says how a scenario's replication stands. State is what operators
// see in lists: stopped, synchronizing, running, suspended or problem.
type Status struct {
	Name    string
	State   string
	Problem string // why a scenario that should run is not running
	Pairs   []PairStatus
}

// Status returns the scenario's replication status.
func (r *Runner) Status(name string) (Status, error) {
	sc, err := r.lookup(name)
	if err != nil {
		return Status{}, err
	}
	return r.status(sc), nil
}

func (r *Runner) status(sc catalog.Scenario) Status {
	st := Status{Name: sc.Name, State: string(catalog.StateStopped)}
	r.mu.Lock()
	run, ok := r.running[sc.ID]
	why, failed := r.failed[sc.ID]
	r.mu.Unlock()
	if failed {
		st.State = string(catalog.StateProblem)
		st.Problem = why
		return st
	}
	if !ok {
		return st
	}
	rank := map[replication.Phase]int{replication.PhaseReplicating: 1, replication.PhaseSuspended: 2,
		replication.PhaseStarting: 3, replication.PhaseSynchronizing: 3, replication.PhaseProblem: 4, replication.PhaseNotAuthorized: 5}
	worst := replication.PhaseReplicating
	if run.remote {
		st.Pairs = r.remoteStatus(run)
	}
	for _, p := range run.pairs {
		st.Pairs = append(st.Pairs, PairStatus{Root: p.root, ReplicaDir: p.replicaDir, Status: p.engine.Status()})
	}
	for _, ps := range st.Pairs {
		if rank[ps.Phase] > rank[worst] {
			worst = ps.Phase
		}
	}
	switch worst {
	case replication.PhaseReplicating:
		st.State = string(catalog.StateRunning)
	case replication.PhaseStarting, replication.PhaseSynchronizing:
		st.State = string(catalog.StateSynchronizing)
	case replication.PhaseProblem:
		st.State = string(catalog.StateProblem)
	case replication.PhaseNotAuthorized:
		st.State = string(catalog.StateNotAuthorized)
	default:
		st.State = string(worst)
	}
	return st
}

// State returns the state to show for a scenario in lists.
func (r *Runner) State(sc catalog.Scenario) string { return r.status(sc).State }

// Restart runs again every scenario the catalog says was running, after a
// restart of holdfastd. Failures are recorded; the others still start.
func (r *Runner) Restart(ctx context.Context) {
	list, err := r.store.Scenarios()
	if err != nil && list == nil {
		r.rec.Record(ctx, messages.ReplicationFailed, "(all)", err)
		return
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	for _, sc := range list {
		if sc.State == catalog.StateStopped {
			continue
		}
		if err := r.start(ctx, sc); err != nil {
			r.rec.Record(ctx, messages.ReplicationFailed, sc.Name, err)
			r.mu.Lock()
			r.failed[sc.ID] = err.Error()
			r.mu.Unlock()
		}
	}
}

// Close stops every engine without changing what the catalog says should
// run: a daemon shutdown is not an operator's stop.
func (r *Runner) Close() error {
	r.mu.Lock()
	runs := r.running
	r.running = map[uint64]*scenarioRun{}
	r.mu.Unlock()
	var errs []error
	for _, run := range runs {
		errs = append(errs, r.stopPairs(run.pairs))
	}
	return errors.Join(errs...)
}
