package restorejob

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/appliance/activity/activitytest"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/diskstore"
	"github.com/holdfast/holdfast/appliance/jobs"
	"github.com/holdfast/holdfast/appliance/messages"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type progressSink struct{}

func (progressSink) Set(jobs.Counts, jobs.Counts) {}

// stopper is the scenario runner's Stop as a restore sees it.
type stopper struct {
	err     error
	stopped []string
}

func (s *stopper) Stop(_ context.Context, name string) error {
	s.stopped = append(s.stopped, name)
	return s.err
}

type fixture struct {
	cat   *catalog.Catalog
	store *diskstore.Store
	rec   *activitytest.Recorder
	sc    catalog.Scenario
	exec  *Executor
	job   catalog.Job
}

func newFixture(t *testing.T, scenarioType string, granular bool) *fixture {
	t.Helper()
	cat, err := catalog.Open(t.TempDir(), catalog.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cat.Close() })
	store, err := diskstore.Create(t.TempDir(), diskstore.WithApplianceKey(bytes.Repeat([]byte{9}, 32)), diskstore.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	sc, err := cat.CreateScenario(catalog.Scenario{Name: "fs", Type: scenarioType, MasterHost: "fs01", Roots: []string{"/srv"},
		Replicas: []catalog.Replica{{Host: "localhost", Target: t.TempDir()}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	job, err := cat.CreateJob(catalog.Job{Kind: "backup", Name: "nightly", State: catalog.JobDone})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{cat: cat, store: store, rec: &activitytest.Recorder{}, sc: sc, job: job}
	f.exec = &Executor{Store: store, Catalog: cat, Rec: f.rec, Local: func(h string) bool { return h == "localhost" },
		Granular: func(_ context.Context, typ string) (bool, error) {
			if typ != scenarioType {
				return false, fmt.Errorf("no handler for %s", typ)
			}
			return granular, nil
		}}
	return f
}

// session stores files (master path -> content) as one backup session of
// /srv finished at the given time, in the store and the catalog, as the
// backup executor does.
func (f *fixture) session(t *testing.T, finished time.Time, files map[string]string) catalog.Session {
	t.Helper()
	w := f.store.BeginSession(diskstore.SessionMeta{Scenario: "fs", Host: "fs01", Started: finished})
	mtime := finished.Add(-time.Hour)
	if err := w.AddDir(diskstore.FileHeader{Path: "/srv", Mode: 0o755 | os.ModeDir, ModTime: mtime}); err != nil {
		t.Fatal(err)
	}
	dirs := map[string]bool{}
	for p, content := range files {
		for d := filepath.Dir(p); d != "/srv" && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
			if err := w.AddDir(diskstore.FileHeader{Path: d, Mode: 0o750 | os.ModeDir, ModTime: mtime}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.AddFile(diskstore.FileHeader{Path: p, Mode: 0o640, ModTime: mtime}, strings.NewReader(content)); err != nil {
			t.Fatal(err)
		}
	}
	info, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.cat.CreateSession(catalog.Session{JobID: f.job.ID, ScenarioID: f.sc.ID, Entity: "/srv", MasterHost: "fs01",
		Started: finished, Finished: finished, Stored: info.ID})
	if err != nil {
		t.Fatal(err)
	}
	fw := f.cat.NewFileVersionWriter()
	for p, content := range files {
		if err := fw.Add(catalog.FileVersion{Host: "fs01", Path: p, SessionID: s.ID, Size: uint64(len(content)), MTime: mtime}); err != nil {
			t.Fatal(err)
		}
	}
	if err := fw.Commit(true); err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fixture) run(t *testing.T, spec Spec) (catalog.JobResult, error) {
	t.Helper()
	raw, _ := json.Marshal(spec)
	return f.exec.Run(context.Background(), catalog.Job{ID: 99, Kind: Kind, Name: "restore", Spec: raw}, progressSink{})
}

// tree reads every regular file below dir.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRestoreByTree assembles a tree from the sessions holding each
// file's newest version at the time asked for.
func TestRestoreByTree(t *testing.T) {
	f := newFixture(t, "fileserver", true)
	monday := time.Date(2026, 11, 23, 22, 0, 0, 0, time.UTC)
	tuesday := monday.Add(24 * time.Hour)
	f.session(t, monday, map[string]string{"/srv/a.txt": "a monday", "/srv/gone.txt": "deleted on tuesday", "/srv/d/e/deep.txt": "deep monday"})
	f.session(t, tuesday, map[string]string{"/srv/a.txt": "a tuesday", "/srv/d/e/deep.txt": "deep tuesday", "/srv/d/new.txt": "new"})

	tests := []struct {
		name string
		tree Tree
		want map[string]string
	}{
		{"latest", Tree{Host: "fs01", Path: "/srv"},
			map[string]string{"a.txt": "a tuesday", "gone.txt": "deleted on tuesday", "d/e/deep.txt": "deep tuesday", "d/new.txt": "new"}},
		{"as of monday night", Tree{Host: "fs01", Path: "/srv", AsOf: monday.Add(time.Hour)},
			map[string]string{"a.txt": "a monday", "gone.txt": "deleted on tuesday", "d/e/deep.txt": "deep monday"}},
		{"one directory", Tree{Host: "fs01", Path: "/srv/d/e"}, map[string]string{"d/e/deep.txt": "deep tuesday"}},
		{"one file", Tree{Host: "fs01", Path: "/srv/gone.txt"}, map[string]string{"gone.txt": "deleted on tuesday"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := t.TempDir()
			res, err := f.run(t, Spec{Tree: &tt.tree, Destination: dest})
			if err != nil || res != catalog.ResultCompleted {
				t.Fatalf("restore: %s, %v (%q)", res, err, f.rec.Lines())
			}
			if got := tree(t, dest); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("restored %v, want %v", got, tt.want)
			}
		})
	}
	// Directory metadata comes from the session: d/e was stored 0750.
	dest := t.TempDir()
	if _, err := f.run(t, Spec{Tree: &Tree{Host: "fs01", Path: "/srv"}, Destination: dest}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dest, "d", "e")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("d/e restored as %v, %v; want mode 0750", fi.Mode(), err)
	}
	if _, err := f.run(t, Spec{Tree: &Tree{Host: "fs01", Path: "/srv", AsOf: monday.Add(-time.Hour)}, Destination: t.TempDir()}); err == nil ||
		!strings.Contains(err.Error(), "no backup of fs01:/srv") {
		t.Errorf("a tree older than every backup: %v", err)
	}
}

// TestWholeSessionOnly refuses single paths of an entity whose handler
// restores whole only, and restores the whole session.
func TestWholeSessionOnly(t *testing.T) {
	f := newFixture(t, "sql", false)
	s := f.session(t, time.Now(), map[string]string{"/srv/db.mdf": "pages", "/srv/db.ldf": "log"})
	_, err := f.run(t, Spec{Session: s.ID, Paths: []string{"/srv/db.mdf"}, Destination: t.TempDir()})
	var me *messages.Error
	if !errors.As(err, &me) || me.Code != messages.RestoreWholeOnly {
		t.Fatalf("single file of a sql session: %v, want %s", err, messages.RestoreWholeOnly)
	}
	if _, err := f.run(t, Spec{Tree: &Tree{Host: "fs01", Path: "/srv"}, Destination: t.TempDir()}); !errors.As(err, &me) || me.Code != messages.RestoreWholeOnly {
		t.Fatalf("tree of a sql session: %v, want %s", err, messages.RestoreWholeOnly)
	}
	dest := t.TempDir()
	if res, err := f.run(t, Spec{Session: s.ID, Destination: dest}); err != nil || res != catalog.ResultCompleted {
		t.Fatalf("whole sql session: %s, %v", res, err)
	}
	if got := tree(t, dest); len(got) != 2 || got["db.mdf"] != "pages" {
		t.Errorf("restored %v", got)
	}
}

// TestRestoreToReplica stops the scenario first; when it cannot be
// stopped the restore fails unless told to go on.
func TestRestoreToReplica(t *testing.T) {
	f := newFixture(t, "fileserver", true)
	s := f.session(t, time.Now(), map[string]string{"/srv/a.txt": "good"})
	replica := f.sc.Replicas[0].Target
	if err := os.WriteFile(filepath.Join(replica, "a.txt"), []byte("encrypted by ransomware"), 0o644); err != nil {
		t.Fatal(err)
	}
	stuck := errors.New("replica host unreachable")
	tests := []struct {
		name      string
		stopErr   error
		continue_ bool
		wantErr   messages.Code
		wantCode  messages.Code
	}{
		{"cannot stop", stuck, false, messages.RestoreCannotStop, ""},
		{"cannot stop, continue", stuck, true, "", messages.RestoreReplicaRunning},
		{"already stopped", messages.New(messages.ScenarioNotRunning, "fs"), false, "", messages.RestoreReplicaStopped},
		{"stopped", nil, false, "", messages.RestoreReplicaStopped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &stopper{err: tt.stopErr}
			f.exec.Scenarios = st
			f.rec.Reset()
			res, err := f.run(t, Spec{Session: s.ID, Destination: Replica, ContinueIfRunning: tt.continue_})
			if len(st.stopped) != 1 || st.stopped[0] != "fs" {
				t.Errorf("stopped %v, want [fs]", st.stopped)
			}
			if tt.wantErr != "" {
				var me *messages.Error
				if !errors.As(err, &me) || me.Code != tt.wantErr {
					t.Fatalf("restore: %v, want %s", err, tt.wantErr)
				}
				if b, _ := os.ReadFile(filepath.Join(replica, "a.txt")); string(b) != "encrypted by ransomware" {
					t.Errorf("the replica was written though the restore was refused")
				}
				return
			}
			if err != nil || res != catalog.ResultCompleted {
				t.Fatalf("restore: %s, %v", res, err)
			}
			if b, _ := os.ReadFile(filepath.Join(replica, "a.txt")); string(b) != "good" {
				t.Errorf("replica a.txt = %q", b)
			}
			if !f.rec.Has(tt.wantCode) {
				t.Errorf("log lacks %s: %q", tt.wantCode, f.rec.Lines())
			}
			if err := os.WriteFile(filepath.Join(replica, "a.txt"), []byte("encrypted by ransomware"), 0o644); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRestoreToAgentNeedsAgents: a HOST: destination that is not this
// appliance needs the agent hub.
func TestRestoreToAgentNeedsAgents(t *testing.T) {
	f := newFixture(t, "fileserver", true)
	s := f.session(t, time.Now(), map[string]string{"/srv/a.txt": "x"})
	if _, err := f.run(t, Spec{Session: s.ID, Destination: "dr01:/restore"}); err == nil || !strings.Contains(err.Error(), "cannot reach agents") {
		t.Fatalf("restore to an agent without a hub: %v", err)
	}
	// A HOST: naming this appliance is a local folder.
	dest := t.TempDir()
	if res, err := f.run(t, Spec{Session: s.ID, Destination: "localhost:" + dest}); err != nil || res != catalog.ResultCompleted {
		t.Fatalf("restore to localhost:%s: %s, %v", dest, res, err)
	}
	if got := tree(t, dest); got["a.txt"] != "x" {
		t.Errorf("restored %v", got)
	}
}

// TestTargets: where each destination sends a session of /srv from fs01,
// whose scenario has a replica here and one on dr01.
func TestTargets(t *testing.T) {
	e := &Executor{Local: func(h string) bool { return h == "localhost" || h == "appliance1" }, Agents: agentsStub{}}
	sc := catalog.Scenario{ID: 1, Name: "fs", Roots: []string{"/srv", "/home"},
		Replicas: []catalog.Replica{{Host: "localhost", Target: "/replicas/fs"}, {Host: "dr01", Target: "/r/fs"}}}
	p := part{sess: catalog.Session{ID: 5, Entity: "/srv", MasterHost: "fs01"}, sc: sc}
	tests := []struct {
		dest string
		want string
	}{
		{Original, "[fs01:/srv]"},
		{Replica, "[/replicas/fs/srv dr01:/r/fs/srv]"},
		{"/restore/here", "[/restore/here]"},
		{"appliance1:/restore/here", "[/restore/here]"},
		{"branch7:/restore/here/", "[branch7:/restore/here]"},
	}
	for _, tt := range tests {
		got, err := e.targets(Spec{Destination: tt.dest}, p)
		if err != nil || fmt.Sprint(got) != tt.want {
			t.Errorf("targets(%q) = %v, %v; want %s", tt.dest, got, err, tt.want)
		}
	}
	local := p
	local.sess.MasterHost = "localhost"
	if got, err := e.targets(Spec{Destination: Original}, local); err != nil || fmt.Sprint(got) != "[/srv]" {
		t.Errorf("original of a local master = %v, %v", got, err)
	}
	orphan := p
	orphan.sc = catalog.Scenario{}
	if _, err := e.targets(Spec{Destination: Replica}, orphan); err == nil || !strings.Contains(err.Error(), "no longer exists") {
		t.Errorf("replica of a deleted scenario: %v", err)
	}
}

// agentsStub only marks that agents are reachable; TestTargets sends nothing.
type agentsStub struct{ Agents }
