package recovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/agent/capture"
	"github.com/holdfast/holdfast/agent/rewind"
	"github.com/holdfast/holdfast/agent/snapshot"
	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/runner"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// dbHandler is a scenario handler for a toy database whose application test
// is real: the data file must start with its magic and end with its
// checksum line, and the test writes its own recovery marker into the view,
// as a database's crash recovery writes its files.
type dbHandler struct {
	// during runs inside Verify, after the checks: tests make changes on
	// the master there to see replication go on meanwhile.
	during func(root string)
	mu     sync.Mutex
	roots  []string
}

func (h *dbHandler) Describe(context.Context) (sdk.ScenarioInfo, error) {
	return sdk.ScenarioInfo{Type: "toydb", Capabilities: []string{sdk.CapabilityAssuredRecovery}}, nil
}

func (h *dbHandler) ListEntities(_ context.Context, cfg sdk.ScenarioConfig) ([]sdk.Entity, error) {
	return []sdk.Entity{{Name: "db", Kind: "database", Paths: cfg.Roots}}, nil
}

func (h *dbHandler) PrepareBackup(context.Context, sdk.ScenarioConfig, string) (sdk.PrepareResult, error) {
	return sdk.PrepareResult{}, errors.New("not used here")
}
func (h *dbHandler) ReleaseBackup(context.Context, string) error { return nil }
func (h *dbHandler) BeforeRestore(context.Context, sdk.RestoreRequest) error {
	return nil
}
func (h *dbHandler) AfterRestore(context.Context, sdk.RestoreRequest) error { return nil }

func (h *dbHandler) Verify(_ context.Context, req sdk.VerifyRequest) (sdk.VerifyResult, error) {
	h.mu.Lock()
	h.roots = append(h.roots, req.Root)
	h.mu.Unlock()
	b, err := os.ReadFile(filepath.Join(req.Root, "data.db"))
	if err != nil {
		return sdk.VerifyResult{}, fmt.Errorf("open database: %w", err)
	}
	var problems []string
	if !bytes.HasPrefix(b, []byte("TOYDB1\n")) {
		problems = append(problems, "data.db: bad header")
	}
	if err := os.WriteFile(filepath.Join(req.Root, "recovered.log"), []byte("recovered\n"), 0o600); err != nil {
		return sdk.VerifyResult{}, fmt.Errorf("write recovery log: %w", err)
	}
	if h.during != nil {
		h.during(req.Root)
	}
	return sdk.VerifyResult{Passed: len(problems) == 0, Checked: 1, Problems: problems}, nil
}

type handlers struct{ h sdk.ScenarioHandler }

func (hs handlers) ScenarioHandler(typ string) (sdk.ScenarioHandler, error) {
	if typ != "toydb" {
		return nil, messages.New(messages.ScenarioTypeUnknown, typ, "toydb")
	}
	return hs.h, nil
}

type rig struct {
	t        *testing.T
	cat      *catalog.Catalog
	runs     *runner.Runner
	svc      *Service
	handler  *dbHandler
	master   string
	replica  string
	scenario catalog.Scenario
}

func newRig(t *testing.T, keep uint32, ar bool) *rig {
	t.Helper()
	dir := t.TempDir()
	cat, err := catalog.Open(filepath.Join(dir, "catalog"), catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	log := activity.New(cat, "appliance", logger)
	journal := &rewind.Options{Log: logger}
	runs := runner.New(cat, log, filepath.Join(dir, "spool"), runner.Options{Capture: capture.Auto, Rewind: journal,
		Remote: runner.Remote{LocalHosts: []string{"localhost"}}})
	t.Cleanup(func() { runs.Close() })
	r := &rig{t: t, cat: cat, runs: runs, handler: &dbHandler{},
		master: filepath.Join(dir, "master"), replica: filepath.Join(dir, "replica")}
	r.svc = New(runs, handlers{r.handler}, cat, log, Options{Rewind: *journal})
	for _, d := range []string{r.master, r.replica} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r.write("data.db", "TOYDB1\nrow 1\n")
	sc, err := cat.CreateScenario(catalog.Scenario{Name: "db", Type: "toydb", MasterHost: "localhost", Roots: []string{r.master},
		Replicas: []catalog.Replica{{Host: "localhost", Target: r.replica}}, AssuredRecovery: ar, Suspend: true,
		SnapshotsKeep: keep, State: catalog.StateStopped}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.scenario = sc
	return r
}

func (r *rig) write(rel, content string) {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.master, rel), []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) run() {
	r.t.Helper()
	if err := r.runs.Run(context.Background(), "db"); err != nil {
		r.t.Fatal(err)
	}
	r.waitState("running")
}

func (r *rig) stop() {
	r.t.Helper()
	if err := r.runs.Stop(context.Background(), "db"); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) waitState(want string) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := r.runs.Status("db")
		if err != nil {
			r.t.Fatal(err)
		}
		if st.State == want {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("scenario state %q, want %q (%+v)", st.State, want, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitReplica waits until the replica's copy of rel holds content.
func (r *rig) waitReplica(rel, content string) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(r.replica, rel))
		if err == nil && string(b) == content {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("replica %s = %q (%v), want %q", rel, b, err, content)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *rig) replicaFile(rel string) string {
	r.t.Helper()
	b, err := os.ReadFile(filepath.Join(r.replica, rel))
	if err != nil {
		r.t.Fatal(err)
	}
	return string(b)
}

// logged returns the activity entries with code.
func (r *rig) logged(code messages.Code) []catalog.ActivityEntry {
	r.t.Helper()
	list, err := r.cat.Activity(catalog.ActivityFilter{Code: string(code)})
	if err != nil {
		r.t.Fatal(err)
	}
	return list
}

func wantCode(t *testing.T, err error, code messages.Code) {
	t.Helper()
	if got := messages.CodeOf(err); got != code {
		t.Fatalf("error %v has code %q, want %q", err, got, code)
	}
}

func TestRewindToBookmarkUndoesTheCorruption(t *testing.T) {
	r := newRig(t, 10, true)
	ctx := context.Background()
	r.run()
	r.write("report.txt", "the good numbers\n")
	r.waitReplica("report.txt", "the good numbers\n")

	marks, err := r.svc.Bookmark(ctx, "db", "before the virus")
	if err != nil || len(marks) != 1 {
		t.Fatalf("Bookmark = %+v, %v", marks, err)
	}
	r.write("report.txt", "ENCRYPTED BY VIRUS\n")
	r.write("ransom.txt", "pay up\n")
	r.waitReplica("ransom.txt", "pay up\n")
	r.waitReplica("report.txt", "ENCRYPTED BY VIRUS\n")

	_, err = r.svc.Rewind(ctx, "db", RewindRequest{Bookmark: "before the virus"}, nil)
	wantCode(t, err, messages.RewindNeedsStop)
	if got := r.replicaFile("report.txt"); got != "ENCRYPTED BY VIRUS\n" {
		t.Fatalf("a refused rewind changed the replica: %q", got)
	}

	r.stop()
	lists, err := r.svc.Points(ctx, "db", PointQuery{Path: "report.txt"})
	if err != nil || len(lists) != 1 || len(lists[0].Points) == 0 {
		t.Fatalf("Points = %+v, %v", lists, err)
	}
	for _, p := range lists[0].Points {
		if p.Kind != rewind.KindBookmark && p.Path != "report.txt" {
			t.Fatalf("point %+v listed for path report.txt", p)
		}
	}

	_, err = r.svc.Rewind(ctx, "db", RewindRequest{Bookmark: "no such mark"}, nil)
	wantCode(t, err, messages.RewindNoPoint)

	var progressed bool
	res, err := r.svc.Rewind(ctx, "db", RewindRequest{Bookmark: "before the virus"}, func(string, int, int) { progressed = true })
	if err != nil || len(res) != 1 || res[0].Undone == 0 {
		t.Fatalf("Rewind = %+v, %v", res, err)
	}
	if !progressed {
		t.Error("no progress reported")
	}
	if got := r.replicaFile("report.txt"); got != "the good numbers\n" {
		t.Fatalf("after rewind report.txt = %q", got)
	}
	if _, err := os.Stat(filepath.Join(r.replica, "ransom.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ransom.txt after rewind: %v", err)
	}
	if len(r.logged(messages.RewindDone)) != 1 || len(r.logged(messages.RewindBookmarkSet)) != 1 {
		t.Fatal("rewind or bookmark missing from the activity log")
	}

	// The rewind is recorded: going back to the point before it restores
	// the corrupted state, which is what undoing a rewind means.
	_, err = r.svc.Rewind(ctx, "db", RewindRequest{Point: res[0].FirstNew - 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.replicaFile("report.txt"); got != "ENCRYPTED BY VIRUS\n" {
		t.Fatalf("after undoing the rewind report.txt = %q", got)
	}
}

func TestRewindRequestsAreChecked(t *testing.T) {
	r := newRig(t, 10, true)
	ctx := context.Background()
	tests := []struct {
		name string
		req  RewindRequest
		code messages.Code
		text string
	}{
		{"nothing", RewindRequest{}, messages.BadRequest, "exactly one"},
		{"two targets", RewindRequest{Point: 3, Bookmark: "x"}, messages.BadRequest, "exactly one"},
		{"path outside", RewindRequest{Bookmark: "x", Path: "/etc/passwd"}, messages.BadRequest, "not below the scenario's roots"},
		{"path climbing", RewindRequest{Bookmark: "x", Path: "../x"}, messages.BadRequest, "leaves"},
		{"unknown replica", RewindRequest{Bookmark: "x", Replica: "/nowhere"}, messages.BadRequest, "no replica directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.svc.Rewind(ctx, "db", tt.req, nil)
			wantCode(t, err, tt.code)
			if !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("error %q does not say %q", err, tt.text)
			}
		})
	}
	_, err := r.svc.Rewind(ctx, "nope", RewindRequest{Bookmark: "x"}, nil)
	wantCode(t, err, messages.ScenarioNotFound)
	_, err = r.svc.Bookmark(ctx, "db", " ")
	wantCode(t, err, messages.BadRequest)
}

func TestSnapshotsArePointInTimeAndRetained(t *testing.T) {
	r := newRig(t, 2, false)
	ctx := context.Background()
	r.run()
	var ids []string
	for i := 1; i <= 3; i++ {
		content := fmt.Sprintf("TOYDB1\nrow %d\n", i)
		r.write("data.db", content)
		r.waitReplica("data.db", content)
		snaps, err := r.svc.TakeSnapshot(ctx, "db", fmt.Sprintf("s%d", i))
		if err != nil || len(snaps) != 1 {
			t.Fatalf("TakeSnapshot = %+v, %v", snaps, err)
		}
		if snaps[0].Consistency != ConsistencyCrash {
			t.Fatalf("snapshot consistency %q, want crash", snaps[0].Consistency)
		}
		ids = append(ids, snaps[0].ID)
	}
	list, err := r.svc.Snapshots("db")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != ids[1] || list[1].ID != ids[2] {
		t.Fatalf("snapshots %+v, want the newest two of %v", list, ids)
	}
	if len(r.logged(messages.SnapshotReleased)) != 1 || len(r.logged(messages.SnapshotTaken)) != 3 {
		t.Fatal("snapshot taken/released entries missing from the activity log")
	}
	// The second snapshot still holds row 2 although the replica moved on.
	b, err := os.ReadFile(filepath.Join(SnapshotDir(r.replica), ids[1], "tree", "data.db"))
	if err != nil || string(b) != "TOYDB1\nrow 2\n" {
		t.Fatalf("snapshot %s data.db = %q, %v", ids[1], b, err)
	}
	if err := r.svc.ReleaseSnapshot(ctx, "db", ids[1]); err != nil {
		t.Fatal(err)
	}
	wantCode(t, r.svc.ReleaseSnapshot(ctx, "db", ids[1]), messages.SnapshotNotFound)
}

func TestAssuredRecoveryRunsOnAViewWhileReplicationGoesOn(t *testing.T) {
	for _, clone := range []bool{false, true} {
		t.Run(fmt.Sprintf("clone=%v", clone), func(t *testing.T) {
			r := newRig(t, 10, true)
			r.svc.opts.ForceClone = clone
			ctx := context.Background()

			_, err := r.svc.Test(ctx, "db")
			wantCode(t, err, messages.RecoveryNotReplicating)

			r.run()
			r.waitReplica("data.db", "TOYDB1\nrow 1\n")
			// While the application is tested, the master keeps changing
			// and the replica keeps up.
			r.handler.during = func(string) {
				r.write("during.txt", "written while testing\n")
				r.waitReplica("during.txt", "written while testing\n")
			}
			tests, err := r.svc.Test(ctx, "db")
			if err != nil || len(tests) != 1 {
				t.Fatalf("Test = %+v, %v", tests, err)
			}
			pass := tests[0]
			if !pass.Passed || pass.ID == 0 || pass.Snapshot == "" || pass.View == "" {
				t.Fatalf("test = %+v, want a stored pass", pass)
			}
			if want := map[bool]string{false: "overlay", true: "clone"}[clone]; pass.View != want && (clone || os.Geteuid() == 0) {
				t.Fatalf("view made by %q, want %q", pass.View, want)
			}
			if _, err := os.Stat(filepath.Join(r.replica, "recovered.log")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the test's writes reached the replica: %v", err)
			}
			if _, err := os.Stat(r.handler.roots[0]); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("writable view %s still there after the test: %v", r.handler.roots[0], err)
			}
			snaps, err := r.svc.Snapshots("db")
			if err != nil || len(snaps) != 1 || snaps[0].Consistency != ConsistencyApplication {
				t.Fatalf("snapshots after a passed test = %+v, %v", snaps, err)
			}
			if _, err := os.Stat(filepath.Join(SnapshotDir(r.replica), snaps[0].ID, "tree", "recovered.log")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the test's writes reached the snapshot: %v", err)
			}

			// A damaged database fails the test: a result, logged, stored.
			r.handler.during = nil
			r.write("data.db", "garbage\n")
			r.waitReplica("data.db", "garbage\n")
			tests, err = r.svc.Test(ctx, "db")
			if err != nil || len(tests) != 1 || tests[0].Passed || len(tests[0].Problems) != 1 {
				t.Fatalf("Test of a damaged database = %+v, %v", tests, err)
			}
			stored, err := r.svc.Tests("db", 0)
			if err != nil || len(stored) != 2 || stored[0].Passed || !stored[1].Passed {
				t.Fatalf("stored tests = %+v, %v", stored, err)
			}
			if len(r.logged(messages.RecoveryTestFailed)) != 1 || len(r.logged(messages.RecoveryTestPassed)) != 1 {
				t.Fatal("test results missing from the activity log")
			}
		})
	}
}

func TestAssuredRecoveryNeedsItsConfiguration(t *testing.T) {
	r := newRig(t, 10, false)
	r.run()
	_, err := r.svc.Test(context.Background(), "db")
	wantCode(t, err, messages.RecoveryImpossible)
}

// TestAssuredRecoveryCleansACrashedView: a view left by a test holdfastd
// did not finish (an overlay stays mounted) is removed by the next test.
func TestAssuredRecoveryCleansACrashedView(t *testing.T) {
	r := newRig(t, 10, true)
	ctx := context.Background()
	r.run()
	r.waitReplica("data.db", "TOYDB1\nrow 1\n")
	snaps, err := r.svc.TakeSnapshot(ctx, "db", "")
	if err != nil {
		t.Fatal(err)
	}
	store, err := snapshot.OpenStore(SnapshotDir(r.replica))
	if err != nil {
		t.Fatal(err)
	}
	left := filepath.Join(scratchDir(r.replica), snaps[0].ID)
	w, err := store.Writable(ctx, snaps[0].ID, left)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.Dir(), "half.log"), []byte("crashed here"), 0o600); err != nil {
		t.Fatal(err)
	}
	// No Discard: as if holdfastd had died here.
	if _, err := r.svc.Test(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("crashed view %s still there: %v", left, err)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mounts), left) {
		t.Fatalf("crashed view still mounted at %s", left)
	}
}
