package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/agent/control"
	"github.com/holdfast/holdfast/agent/replication"
	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/messages"
)

// recorded keeps what the runner put in the activity log.
type recorded struct {
	mu      sync.Mutex
	entries []string // "CODE text"
}

func (r *recorded) Record(_ context.Context, code messages.Code, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, string(code)+" "+fmt.Sprint(args...))
}

func (r *recorded) has(code messages.Code, text string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.entries {
		if strings.HasPrefix(e, string(code)+" ") && strings.Contains(e, text) {
			return true
		}
	}
	return false
}

func newRemoteRunner(t *testing.T, dataAddr string) (*Runner, *catalog.Catalog, *recorded) {
	t.Helper()
	cat, err := catalog.Open(t.TempDir(), catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	rec := &recorded{}
	r := New(cat, rec, t.TempDir(), Options{Remote: Remote{
		LocalHosts:  []string{"localhost", "vault"},
		Self:        "vault",
		DataAddress: func() string { return dataAddr },
		StaleAfter:  time.Hour,
	}})
	t.Cleanup(func() { r.Close() })
	return r, cat, rec
}

func createScenario(t *testing.T, cat *catalog.Catalog, name, master string, roots []string, replicas ...catalog.Replica) catalog.Scenario {
	t.Helper()
	sc, err := cat.CreateScenario(catalog.Scenario{Name: name, Type: "fileserver", MasterHost: master, Roots: roots,
		Replicas: replicas, Suspend: true, State: catalog.StateStopped}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func TestAssignmentsFollowRunningScenarios(t *testing.T) {
	ctx := context.Background()
	r, cat, _ := newRemoteRunner(t, "10.0.0.1:7431")
	sc := createScenario(t, cat, "branch", "shop1", []string{"/srv/a", "/srv/b"},
		catalog.Replica{Host: "localhost", Target: "/replicas/shop1"},
		catalog.Replica{Host: "dc2", Target: "/mirror"})

	if a := r.Assignments("shop1"); len(a.Masters)+len(a.Replicas) != 0 {
		t.Fatalf("a stopped scenario assigns %+v", a)
	}
	if err := r.Run(ctx, "branch"); err != nil {
		t.Fatal(err)
	}
	// dc2 has not said where it receives: the master gets only the roles
	// towards the appliance, which knows its own address.
	a := r.Assignments("shop1")
	want := []control.MasterRole{
		{Scenario: "branch", Session: sessionName(sc.ID, 0, 0), Root: "/srv/a", Peer: "vault@10.0.0.1:7431"},
		{Scenario: "branch", Session: sessionName(sc.ID, 0, 1), Root: "/srv/b", Peer: "vault@10.0.0.1:7431"},
	}
	if fmt.Sprint(a.Masters) != fmt.Sprint(want) || len(a.Replicas) != 0 {
		t.Fatalf("shop1 assignments = %+v, want masters %+v", a, want)
	}
	if err := a.Check(); err != nil {
		t.Fatalf("assignments do not pass the agent's check: %v", err)
	}
	// The appliance, under any of its names, receives both roots, each in
	// its own folder below the target.
	for _, self := range []string{"vault", "localhost"} {
		got := r.Assignments(self)
		if len(got.Replicas) != 2 || got.Replicas[1].Target != "/replicas/shop1/srv/b" || got.Replicas[0].Master != "shop1" {
			t.Fatalf("%s assignments = %+v", self, got)
		}
	}
	r.Report(ctx, "dc2", control.Report{DataAddress: "10.0.0.2:7431"})
	if n := len(r.Assignments("shop1").Masters); n != 4 {
		t.Fatalf("after dc2 reported, shop1 has %d master roles, want 4", n)
	}
	if got := r.Assignments("dc2").Replicas; len(got) != 2 || got[0].Target != "/mirror/srv/a" {
		t.Fatalf("dc2 replica roles = %+v", got)
	}

	if err := r.Suspend(ctx, "branch"); err != nil {
		t.Fatal(err)
	}
	for _, m := range r.Assignments("shop1").Masters {
		if !m.Suspended {
			t.Fatalf("after suspend, role %+v is not suspended", m)
		}
	}
	if err := r.Resume(ctx, "branch"); err != nil {
		t.Fatal(err)
	}
	if m := r.Assignments("shop1").Masters[0]; m.Suspended {
		t.Fatalf("after resume, role %+v is still suspended", m)
	}
	if err := r.Stop(ctx, "branch"); err != nil {
		t.Fatal(err)
	}
	if a := r.Assignments("shop1"); len(a.Masters) != 0 {
		t.Fatalf("after stop, shop1 still has %+v", a.Masters)
	}
}

func TestRemoteStatusComesFromTheMastersReport(t *testing.T) {
	ctx := context.Background()
	r, cat, rec := newRemoteRunner(t, "10.0.0.1:7431")
	sc := createScenario(t, cat, "branch", "shop1", []string{"/srv/a"}, catalog.Replica{Host: "localhost", Target: "/r"})
	if err := r.Run(ctx, "branch"); err != nil {
		t.Fatal(err)
	}
	st, err := r.Status("branch")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != string(catalog.StateProblem) || !strings.Contains(st.Pairs[0].Problem, "has not reported") {
		t.Fatalf("before any report: %+v", st)
	}
	session := sessionName(sc.ID, 0, 0)
	r.Report(ctx, "shop1", control.Report{
		Roles: []control.RoleStatus{{Session: session, Role: "master", Status: replication.Status{Phase: replication.PhaseReplicating, LagP99: 7 * time.Millisecond}}},
		Events: []control.Event{
			{Session: session, Kind: control.EventSyncDone, Sync: &replication.SyncStats{Differences: 3, FilesWhole: 3}},
			{Session: session, Kind: control.EventNoSpace, Error: "no space left on device"},
			{Session: session, Kind: control.EventNotAuthorized, Error: "bad certificate"},
			{Session: session, Kind: "from-the-future"},
		},
		EventsDropped: 5,
	})
	st, err = r.Status("branch")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != string(catalog.StateRunning) || st.Pairs[0].LagP99 != 7*time.Millisecond || st.Pairs[0].ReplicaDir != "localhost:/r" {
		t.Fatalf("after the master's report: %+v", st)
	}
	for _, c := range []struct {
		code messages.Code
		text string
	}{
		{messages.SyncFinished, "3 differences"},
		{messages.ReplicaNoSpace, "no space left"},
		{messages.ReplicationNotAuthorized, "bad certificate"},
		{messages.ReplicationFailed, "from-the-future"},
		{messages.AgentEventsDropped, "shop1"},
	} {
		if !rec.has(c.code, c.text) {
			t.Errorf("activity log lacks %s with %q; it has %q", c.code, c.text, rec.entries)
		}
	}
	// An event for a session nobody knows is still recorded, not dropped.
	r.Report(ctx, "shop1", control.Report{Events: []control.Event{{Session: "s999-0-0", Kind: control.EventError, Error: "stray"}}})
	if !rec.has(messages.ReplicationFailed, "stray") {
		t.Fatalf("stray event lost: %q", rec.entries)
	}
}

func TestApplianceCannotMasterToAnAgent(t *testing.T) {
	r, cat, _ := newRemoteRunner(t, "")
	createScenario(t, cat, "outward", "localhost", []string{"/srv"}, catalog.Replica{Host: "dc2", Target: "/m"})
	err := r.Run(context.Background(), "outward")
	if messages.CodeOf(err) != messages.ScenarioTopology {
		t.Fatalf("Run = %v, want %s", err, messages.ScenarioTopology)
	}
}

func TestParseSession(t *testing.T) {
	for _, c := range []struct {
		in     string
		id     uint64
		ri, oi int
		ok     bool
	}{
		{sessionName(42, 1, 7), 42, 1, 7, true},
		{"s1-0-0", 1, 0, 0, true},
		{"s1-0", 0, 0, 0, false},
		{"x1-0-0", 0, 0, 0, false},
		{"s99999999999999999999-0-0", 0, 0, 0, false},
	} {
		id, ri, oi, ok := parseSession(c.in)
		if ok != c.ok || ok && (id != c.id || ri != c.ri || oi != c.oi) {
			t.Errorf("parseSession(%q) = %d %d %d %v", c.in, id, ri, oi, ok)
		}
	}
}

func TestRemoteDifferenceAsksTheMaster(t *testing.T) {
	ctx := context.Background()
	r, cat, _ := newRemoteRunner(t, "10.0.0.1:7431")
	sc := createScenario(t, cat, "branch", "shop1", []string{"/srv/a"}, catalog.Replica{Host: "localhost", Target: "/r"})
	if _, err := r.Difference("branch"); messages.CodeOf(err) != messages.ScenarioNotRunning {
		t.Fatalf("difference of a stopped remote scenario = %v, want %s", err, messages.ScenarioNotRunning)
	}
	if err := r.Run(ctx, "branch"); err != nil {
		t.Fatal(err)
	}
	session := sessionName(sc.ID, 0, 0)
	// Play the master agent: answer the request its assignment carries.
	go func() {
		for i := 0; i < 100; i++ {
			a := r.Assignments("shop1")
			if len(a.Masters) == 1 && a.Masters[0].Difference != 0 {
				r.Report(ctx, "shop1", control.Report{Differences: []control.DifferenceReport{
					{Session: session, Request: a.Masters[0].Difference - 1, Entries: []control.DifferenceEntry{{Path: "stale", Kind: "x"}}},
					{Session: session, Request: a.Masters[0].Difference, Entries: []control.DifferenceEntry{{Path: "docs/a", Kind: "missing on replica"}}, LeftOut: 3},
				}})
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	d, err := r.Difference("branch")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Entries) != 2 || d.Entries[0].Path != "docs/a" || d.Entries[0].ReplicaDir != "localhost:/r" || d.Entries[1].Kind != "left out" {
		t.Fatalf("difference = %+v", d.Entries)
	}
	if a := r.Assignments("shop1"); a.Masters[0].Difference != 0 {
		t.Fatalf("the request stays in the assignment after it was answered: %+v", a.Masters[0])
	}
	// A master that does not answer makes a clear error, not a hang.
	start := time.Now()
	r.mu.Lock()
	run := r.running[sc.ID]
	r.mu.Unlock()
	if _, err := r.remoteDifference(run, 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "answered 0 of 1") {
		t.Fatalf("unanswered difference = %v", err)
	}
	if time.Since(start) > 20*time.Second {
		t.Fatal("unanswered difference did not give up")
	}
}

// TestAgentEventsNameTheAgent: what an agent reports is recorded as
// having happened on the agent, not on the appliance.
func TestAgentEventsNameTheAgent(t *testing.T) {
	ctx := context.Background()
	cat, err := catalog.Open(t.TempDir(), catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	log := activity.New(cat, "vault", slog.New(slog.NewTextHandler(io.Discard, nil)))
	r := New(cat, log, t.TempDir(), Options{Remote: Remote{LocalHosts: []string{"localhost", "vault"}, Self: "vault"}})
	defer r.Close()
	sc := createScenario(t, cat, "branch", "shop1", []string{"/srv/a"}, catalog.Replica{Host: "localhost", Target: "/r"})
	if err := r.Run(ctx, "branch"); err != nil {
		t.Fatal(err)
	}
	r.Report(ctx, "shop1", control.Report{Events: []control.Event{{Session: sessionName(sc.ID, 0, 0), Kind: control.EventCaptureOverflow, Text: "queue overflow"}}})
	entries, err := cat.Activity(catalog.ActivityFilter{Code: string(messages.CaptureOverflow)})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Host != "shop1" {
		t.Fatalf("entries = %+v, want one on shop1", entries)
	}
	// The appliance's own entries stay its own.
	if err := r.Suspend(ctx, "branch"); err != nil {
		t.Fatal(err)
	}
	entries, err = cat.Activity(catalog.ActivityFilter{Code: string(messages.ReplicationSuspended)})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Host != "vault" {
		t.Fatalf("operator's suspend recorded as %+v, want one entry on vault", entries)
	}
}
