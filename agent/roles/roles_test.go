package roles

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/agent/capture"
	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/control"
	"github.com/holdfast/holdfast/agent/replication"
)

// localLinks replicates master roles into local directories (named by the
// peer) and serves replica roles with a function the test controls.
type localLinks struct {
	dir string

	mu     sync.Mutex
	dials  int
	serves map[string]int // session -> Serve calls
	serve  func(ctx context.Context, role control.ReplicaRole, applied func(uint64)) error
}

func (l *localLinks) Replica(ctx context.Context, role control.MasterRole) (replication.Replica, error) {
	l.mu.Lock()
	l.dials++
	l.mu.Unlock()
	if role.Peer == "slow@nowhere:1" {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if role.Peer == "unreachable@nowhere:1" {
		return nil, errors.New("connection refused")
	}
	return replication.OpenLocal(filepath.Join(l.dir, role.Session))
}

func (l *localLinks) Serve(ctx context.Context, role control.ReplicaRole, applied func(uint64)) error {
	l.mu.Lock()
	l.serves[role.Session]++
	l.mu.Unlock()
	return l.serve(ctx, role, applied)
}

func (l *localLinks) attempts() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dials
}

func (l *localLinks) calls(session string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.serves[session]
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMasterRolesFollowAssignments(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "before"), []byte("old data"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := &localLinks{dir: filepath.Join(dir, "replicas"), serves: map[string]int{}}
	r := New(links, Options{SpoolDir: filepath.Join(dir, "spool"), Capture: capture.Inotify, RetryEvery: 10 * time.Millisecond})
	defer r.Close()
	ctx := context.Background()
	role := control.MasterRole{Scenario: "sc", Session: "s1-0-0", Root: root, Peer: "vault@127.0.0.1:1"}
	replicaFile := func(name string) []byte {
		b, _ := os.ReadFile(filepath.Join(links.dir, "s1-0-0", name))
		return b
	}

	r.Apply(ctx, control.Assignments{Masters: []control.MasterRole{role}})
	waitFor(t, "the initial synchronization", func() bool { return bytes.Equal(replicaFile("before"), []byte("old data")) })
	if err := os.WriteFile(filepath.Join(root, "live"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the live change", func() bool { return bytes.Equal(replicaFile("live"), []byte("new")) })

	// Suspension follows the assignment without a restart.
	role.Suspended = true
	r.Apply(ctx, control.Assignments{Masters: []control.MasterRole{role}})
	waitFor(t, "suspension", func() bool { return phaseOf(r, "s1-0-0") == replication.PhaseSuspended })
	if err := os.WriteFile(filepath.Join(root, "held"), []byte("spooled"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the change to be spooled", func() bool { return statusOf(r, "s1-0-0").SpoolPending > 0 })
	if replicaFile("held") != nil {
		t.Fatal("a suspended role applied a change")
	}
	role.Suspended = false
	r.Apply(ctx, control.Assignments{Masters: []control.MasterRole{role}})
	waitFor(t, "the spool to drain on resume", func() bool { return bytes.Equal(replicaFile("held"), []byte("spooled")) })

	rep := r.Report()
	if len(rep.Roles) != 1 || rep.Roles[0].Role != "master" {
		t.Fatalf("report roles = %+v", rep.Roles)
	}
	if !hasEvent(rep, control.EventStarted) || !hasEvent(rep, control.EventSyncDone) {
		t.Fatalf("report lacks the start and sync events: %+v", rep.Events)
	}
	if again := r.Report(); len(again.Events) != 0 {
		t.Fatalf("events were handed over twice: %+v", again.Events)
	}

	// No longer assigned: the engine stops.
	r.Apply(ctx, control.Assignments{})
	if rep := r.Report(); len(rep.Roles) != 0 {
		t.Fatalf("after the role was withdrawn: %+v", rep.Roles)
	}
}

func TestMasterRoleThatCannotStartIsRetriedAndReportedOnce(t *testing.T) {
	dir := t.TempDir()
	links := &localLinks{dir: filepath.Join(dir, "replicas"), serves: map[string]int{}}
	r := New(links, Options{SpoolDir: filepath.Join(dir, "spool")})
	defer r.Close()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	role := control.MasterRole{Scenario: "sc", Session: "s2-0-0", Root: root, Peer: "unreachable@nowhere:1"}
	var events []control.Event
	var rep control.Report
	// Several Applies and attempts (the pause before a retry grows from
	// 2 s); one lasting failure is reported once.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r.Apply(context.Background(), control.Assignments{Masters: []control.MasterRole{role}})
		rep = r.Report()
		events = append(events, rep.Events...)
		time.Sleep(100 * time.Millisecond)
	}
	n := 0
	for _, e := range events {
		if e.Kind == control.EventRoleFailed {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d role-failed events for one lasting failure, want 1: %+v", n, events)
	}
	if links.attempts() < 2 {
		t.Fatalf("%d attempts in 5 s, want the role retried", links.attempts())
	}
	if len(rep.Roles) != 1 || rep.Roles[0].Status.Phase != replication.PhaseProblem || rep.Roles[0].Status.Problem == "" {
		t.Fatalf("a role that cannot start shows %+v", rep.Roles)
	}
	// Once the peer is reachable the same role starts.
	role.Peer = "vault@127.0.0.1:1"
	r.Apply(context.Background(), control.Assignments{Masters: []control.MasterRole{role}})
	waitFor(t, "the role to start", func() bool { return phaseOf(r, "s2-0-0") != replication.PhaseProblem })
}

func TestReplicaRoleServedAgainAfterFailure(t *testing.T) {
	links := &localLinks{serves: map[string]int{}}
	links.serve = func(ctx context.Context, role control.ReplicaRole, applied func(uint64)) error {
		if links.calls(role.Session) < 3 {
			return errors.New("listener broke")
		}
		applied(42)
		<-ctx.Done()
		return nil
	}
	r := New(links, Options{RetryEvery: 10 * time.Millisecond})
	role := control.ReplicaRole{Scenario: "sc", Session: "s3-0-0", Master: "shop1", Target: "/replica"}
	r.Apply(context.Background(), control.Assignments{Replicas: []control.ReplicaRole{role}})
	waitFor(t, "the third Serve", func() bool { return links.calls("s3-0-0") >= 3 })
	waitFor(t, "the applied mark", func() bool {
		rep := r.Report()
		return len(rep.Roles) == 1 && rep.Roles[0].LastApplied == 42 && rep.Roles[0].Status.Phase == replication.PhaseReplicating
	})
	r.Close()
	// Close waited for Serve to return.
	if n := links.calls("s3-0-0"); n != 3 {
		t.Fatalf("Serve called %d times, want 3", n)
	}
}

func TestEventsAreBoundedAndRequeued(t *testing.T) {
	r := New(&localLinks{}, Options{MaxEvents: 3})
	for i := 0; i < 5; i++ {
		r.event(control.Event{Session: "s1", Kind: control.EventError, Text: string(rune('a' + i))})
	}
	rep := r.Report()
	if len(rep.Events) != 3 || rep.EventsDropped != 2 || rep.Events[0].Text != "c" {
		t.Fatalf("report = %+v", rep)
	}
	// The appliance did not get it: the events go back, before newer ones.
	r.event(control.Event{Session: "s1", Kind: control.EventError, Text: "f"})
	r.Requeue(rep)
	again := r.Report()
	if len(again.Events) != 3 || again.Events[2].Text != "f" || again.EventsDropped != 3 {
		t.Fatalf("after requeue: %+v", again)
	}
}

func statusOf(r *Runner, session string) replication.Status {
	r.mu.Lock()
	m := r.masters[session]
	var eng *replication.Engine
	if m != nil {
		eng = m.engine
	}
	r.mu.Unlock()
	if eng == nil {
		return replication.Status{Phase: replication.PhaseProblem}
	}
	return eng.Status()
}

func phaseOf(r *Runner, session string) replication.Phase { return statusOf(r, session).Phase }

func hasEvent(rep control.Report, kind control.EventKind) bool {
	for _, e := range rep.Events {
		if e.Kind == kind {
			return true
		}
	}
	return false
}

// TestSlowReplicaHoldsUpNothing: a master role whose replica does not
// answer starts in the background; other roles and reports go on, and
// withdrawing it ends the attempt.
func TestSlowReplicaHoldsUpNothing(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	links := &localLinks{dir: filepath.Join(dir, "replicas"), serves: map[string]int{}}
	r := New(links, Options{SpoolDir: filepath.Join(dir, "spool"), Capture: capture.Inotify})
	defer r.Close()
	slow := control.MasterRole{Scenario: "sc", Session: "s1-0-0", Root: root, Peer: "slow@nowhere:1"}
	fine := control.MasterRole{Scenario: "sc", Session: "s1-1-0", Root: root, Peer: "vault@127.0.0.1:1"}
	done := make(chan struct{})
	go func() {
		r.Apply(context.Background(), control.Assignments{Masters: []control.MasterRole{slow, fine}})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Apply waited for a replica that does not answer")
	}
	waitFor(t, "the other role to run", func() bool { return phaseOf(r, "s1-1-0") == replication.PhaseReplicating })
	rep := r.Report()
	if len(rep.Roles) != 2 || rep.Roles[0].Status.Phase != replication.PhaseStarting {
		t.Fatalf("report while one role starts = %+v", rep.Roles)
	}
	r.Apply(context.Background(), control.Assignments{Masters: []control.MasterRole{fine}})
	if rep := r.Report(); len(rep.Roles) != 1 || rep.Roles[0].Session != "s1-1-0" {
		t.Fatalf("after withdrawing the slow role: %+v", rep.Roles)
	}
}

// stuckReplica never finishes a batch until it is closed, as a replica
// behind a dead link.
type stuckReplica struct {
	*replication.LocalReplica
	once   sync.Once
	closed chan struct{}
}

func (s *stuckReplica) ApplyBatch([]change.Change) error {
	<-s.closed
	return errors.New("link closed")
}

func (s *stuckReplica) Close() error {
	s.once.Do(func() { close(s.closed) })
	return s.LocalReplica.Close()
}

func TestStopDoesNotWaitForAStuckReplica(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	local, err := replication.OpenLocal(filepath.Join(dir, "replica"))
	if err != nil {
		t.Fatal(err)
	}
	rep := &stuckReplica{LocalReplica: local, closed: make(chan struct{})}
	eng, err := replication.Start(replication.Config{Root: root, Replica: rep, SpoolDir: filepath.Join(dir, "spool"), Backend: capture.Inotify})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the engine to be sending", func() bool { return eng.Status().Phase == replication.PhaseSynchronizing })
	done := make(chan error, 1)
	go func() { done <- stopEngine(eng, rep, 100*time.Millisecond) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("stopping an engine stuck on its replica did not finish")
	}
	if eng.Status().Phase != replication.PhaseStopped {
		t.Fatalf("engine phase after stop: %s", eng.Status().Phase)
	}
}

func TestDifferenceReportIsAnsweredOnce(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(root, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "d", "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := &localLinks{dir: filepath.Join(dir, "replicas"), serves: map[string]int{}}
	r := New(links, Options{SpoolDir: filepath.Join(dir, "spool"), Capture: capture.Inotify})
	defer r.Close()
	role := control.MasterRole{Scenario: "sc", Session: "s1-0-0", Root: root, Peer: "vault@127.0.0.1:1"}
	ctx := context.Background()
	r.Apply(ctx, control.Assignments{Masters: []control.MasterRole{role}})
	replicaFile := filepath.Join(links.dir, "s1-0-0", "d", "a")
	waitFor(t, "the first synchronization", func() bool { _, err := os.Stat(replicaFile); return err == nil })
	// Someone removes a file on the replica behind replication's back.
	if err := os.Remove(replicaFile); err != nil {
		t.Fatal(err)
	}
	role.Difference = 7
	var got []control.DifferenceReport
	for i := 0; i < 3; i++ {
		r.Apply(ctx, control.Assignments{Masters: []control.MasterRole{role}})
	}
	waitFor(t, "the difference report", func() bool {
		got = append(got, r.Report().Differences...)
		return len(got) > 0
	})
	if len(got) != 1 || got[0].Request != 7 || got[0].Error != "" {
		t.Fatalf("difference reports = %+v", got)
	}
	found := false
	for _, e := range got[0].Entries {
		if e.Path == "d/a" && e.Kind == "missing on replica" {
			found = true
		}
	}
	if !found {
		t.Fatalf("the removed file is not in the report: %+v", got[0].Entries)
	}
	// The request did not restart the engine, and is not answered twice.
	r.Apply(ctx, control.Assignments{Masters: []control.MasterRole{role}})
	time.Sleep(200 * time.Millisecond)
	if again := r.Report().Differences; len(again) != 0 {
		t.Fatalf("answered again: %+v", again)
	}
}
