package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/agent/snapshot"
	"github.com/holdfast/holdfast/appliance/activity/activitytest"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/diskstore"
	"github.com/holdfast/holdfast/appliance/jobs"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/recovery"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// snapshots gives consistent images the way the recovery service does for
// a running scenario: a real snapshot of the replica directory.
type snapshots struct {
	replicas map[string]string // scenario -> replica directory
	roots    map[string]string // scenario -> master root
}

func (s snapshots) ConsistentImage(ctx context.Context, name string) ([]recovery.Image, error) {
	dir := s.replicas[name]
	st, err := snapshot.OpenStore(recovery.SnapshotDir(dir))
	if err != nil {
		return nil, err
	}
	info, err := st.Create(ctx, dir, snapshot.Meta{Scenario: name}, nil)
	if err != nil {
		return nil, err
	}
	return []recovery.Image{{Root: s.roots[name], Dir: dir, Replica: "localhost", Snapshot: info.ID, Consistency: info.Consistency}}, nil
}

type fixture struct {
	cat    *catalog.Catalog
	store  *diskstore.Store
	images snapshots
	rec    *activitytest.Recorder
	exec   *Executor
}

func newFixture(t *testing.T, scenarios ...string) *fixture {
	t.Helper()
	cat, err := catalog.Open(t.TempDir(), catalog.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cat.Close() })
	store, err := diskstore.Create(t.TempDir(), diskstore.WithApplianceKey(bytes.Repeat([]byte{7}, 32)), diskstore.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	f := &fixture{cat: cat, store: store, images: snapshots{replicas: map[string]string{}, roots: map[string]string{}}, rec: &activitytest.Recorder{}}
	for _, name := range scenarios {
		root := "/srv/" + name
		replica := t.TempDir()
		if _, err := cat.CreateScenario(catalog.Scenario{Name: name, Type: "fileserver", MasterHost: "fs01", Roots: []string{root},
			Replicas: []catalog.Replica{{Host: "localhost", Target: replica}}}, nil); err != nil {
			t.Fatal(err)
		}
		f.images.replicas[name], f.images.roots[name] = replica, root
	}
	f.exec = &Executor{Images: f.images, Store: store, Catalog: cat, Rec: f.rec, Media: "disk store (test)"}
	return f
}

func write(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// progressSink drops progress.
type progressSink struct{}

func (progressSink) Set(jobs.Counts, jobs.Counts) {}

func (f *fixture) run(t *testing.T, spec Spec) (catalog.Job, catalog.JobResult) {
	t.Helper()
	raw, _ := json.Marshal(spec)
	job, err := f.cat.CreateJob(catalog.Job{Kind: Kind, Name: "nightly", State: catalog.JobActive, Spec: raw})
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.exec.Run(context.Background(), job, progressSink{})
	if err != nil {
		t.Fatalf("backup job: %v", err)
	}
	return job, res
}

// storedTree reads a job's one session back from the store.
func (f *fixture) storedTree(t *testing.T, job catalog.Job) (map[string]string, diskstore.SessionInfo) {
	t.Helper()
	ss, err := f.cat.SessionsOfJob(job.ID)
	if err != nil || len(ss) != 1 {
		t.Fatalf("sessions of job %d: %v, %v", job.ID, ss, err)
	}
	sess, err := f.store.OpenSession(ss[0].Stored)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, en := range sess.Entries() {
		if en.Type != diskstore.TypeFile {
			continue
		}
		rc, err := sess.Open(en.Path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("read %s back: %v", en.Path, err)
		}
		out[en.Path] = string(b)
	}
	return out, sess.Info()
}

// TestIncrementalTakesUnchangedFilesFromThePreviousSession: the second
// backup reads only what changed, yet its session holds every file, and
// a full backup reads everything again.
func TestIncrementalTakesUnchangedFilesFromThePreviousSession(t *testing.T) {
	f := newFixture(t, "fs")
	replica := f.images.replicas["fs"]
	then := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	want := map[string]string{}
	for i := range 20 {
		content := strings.Repeat(fmt.Sprintf("file %d ", i), 1000)
		write(t, filepath.Join(replica, "d", fmt.Sprintf("f%02d", i)), content, then)
		want[fmt.Sprintf("/srv/fs/d/f%02d", i)] = content
	}
	first, res := f.run(t, Spec{Scenarios: []string{"fs"}})
	if res != catalog.ResultCompleted {
		t.Fatalf("first backup %s: %v", res, f.rec.Lines())
	}
	got, _ := f.storedTree(t, first)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("first session differs from the replica")
	}

	// Same size, new mtime; new size; a new file. Everything else is unchanged.
	write(t, filepath.Join(replica, "d", "f03"), strings.Repeat("FILE 3 ", 1000), then.Add(time.Hour))
	write(t, filepath.Join(replica, "d", "f07"), "short now", then)
	write(t, filepath.Join(replica, "d", "new"), "brand new", then)
	want["/srv/fs/d/f03"] = strings.Repeat("FILE 3 ", 1000)
	want["/srv/fs/d/f07"] = "short now"
	want["/srv/fs/d/new"] = "brand new"

	second, res := f.run(t, Spec{Scenarios: []string{"fs"}})
	if res != catalog.ResultCompleted {
		t.Fatalf("second backup %s", res)
	}
	got, _ = f.storedTree(t, second)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("second session differs from the replica:\n got %v\nwant %v", got, want)
	}
	sums := f.rec.With(messages.BackupSummary)
	if len(sums) != 2 {
		t.Fatalf("summaries = %q", sums)
	}
	if !strings.Contains(sums[1], "files 21 (18 unchanged, taken from /srv/fs session 1)") {
		t.Errorf("second summary = %q, want 18 of 21 files unchanged from session 1", sums[1])
	}
	for _, part := range []string{"nodes 1", "volumes 1 (0 failed)", "sessions 1", "media: disk store (test)", "errors 0", "average throughput"} {
		if !strings.Contains(sums[1], part) {
			t.Errorf("summary %q lacks %q", sums[1], part)
		}
	}

	f.run(t, Spec{Scenarios: []string{"fs"}, Full: true})
	if sums := f.rec.With(messages.BackupSummary); strings.Contains(sums[2], "unchanged") {
		t.Errorf("a full backup took files unread: %q", sums[2])
	}
}

// TestMultistreamRunsOneChildJobPerScenario runs a job of two scenarios
// through a real queue: each scenario becomes a child job with its own
// session, and the parent ends with the children's result.
func TestMultistreamRunsOneChildJobPerScenario(t *testing.T) {
	f := newFixture(t, "alpha", "beta", "gamma")
	for name, dir := range f.images.replicas {
		write(t, filepath.Join(dir, "x"), name, time.Now())
	}
	q, err := jobs.Open(jobs.Config{Catalog: f.cat, Executors: map[string]jobs.Executor{Kind: f.exec}, MaxActive: 2, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	f.exec.Children = q
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = q.Run(ctx, 20*time.Millisecond) }()

	// gamma was deleted since the job was made: its child fails, the
	// parent is Incomplete.
	if _, err := f.cat.DeleteScenario("gamma"); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(Spec{Scenarios: []string{"alpha", "beta", "gamma"}, Multistream: true})
	parent, err := q.Submit(jobs.Submission{Kind: Kind, Name: "all", Spec: raw})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second) // a hang guard
	for {
		j, err := q.Get(parent.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.State == catalog.JobDone {
			if j.Result != catalog.ResultIncomplete {
				t.Fatalf("parent ended %s, want incomplete: %+v", j.Result, j.Runs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("parent job never ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	all, err := q.List()
	if err != nil {
		t.Fatal(err)
	}
	results := map[string]catalog.JobResult{}
	for _, j := range all {
		if j.ParentID != parent.ID {
			continue
		}
		results[j.Name] = j.Result
		ss, err := f.cat.SessionsOfJob(j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.Result == catalog.ResultCompleted && len(ss) != 1 {
			t.Errorf("child %s has %d sessions, want 1", j.Name, len(ss))
		}
	}
	want := map[string]catalog.JobResult{"all / alpha": catalog.ResultCompleted, "all / beta": catalog.ResultCompleted, "all / gamma": catalog.ResultFailed}
	if fmt.Sprint(results) != fmt.Sprint(want) {
		t.Fatalf("children = %v, want %v", results, want)
	}
	if ss, _ := f.cat.SessionsOfJob(parent.ID); len(ss) != 0 {
		t.Errorf("the parent itself has %d sessions", len(ss))
	}
	if len(f.rec.With(messages.BackupChildren)) != 1 {
		t.Errorf("no %s in the log: %q", messages.BackupChildren, f.rec.Lines())
	}
}

// TestLocalDirectorySource backs up a folder of this appliance outside
// any scenario: a live session under the folder's own path, with no
// scenario, and the job fails when the folder does not exist.
func TestLocalDirectorySource(t *testing.T) {
	f := newFixture(t)
	f.exec.Local = func(h string) bool { return h == "localhost" }
	dir := t.TempDir()
	write(t, filepath.Join(dir, "etc", "holdfast.toml"), "listen = 1", time.Now())
	if err := os.Symlink("etc/holdfast.toml", filepath.Join(dir, "current")); err != nil {
		t.Fatal(err)
	}
	job, res := f.run(t, Spec{Directories: []Directory{{Host: "localhost", Path: dir}}})
	if res != catalog.ResultCompleted {
		t.Fatalf("backup of %s: %s %q", dir, res, f.rec.Lines())
	}
	ss, err := f.cat.SessionsOfJob(job.ID)
	if err != nil || len(ss) != 1 {
		t.Fatalf("sessions = %+v, %v", ss, err)
	}
	if s := ss[0]; s.ScenarioID != 0 || s.Entity != dir || s.MasterHost != "localhost" || s.Consistency != Live || s.Files != 1 {
		t.Fatalf("session = %+v", s)
	}
	got, info := f.storedTree(t, job)
	if got[filepath.Join(dir, "etc", "holdfast.toml")] != "listen = 1" || info.Symlinks != 1 || info.Meta.SourceKind != "directory" {
		t.Fatalf("stored %v, %+v", got, info)
	}

	raw, _ := json.Marshal(Spec{Directories: []Directory{{Host: "localhost", Path: filepath.Join(dir, "missing")}}})
	missing, err := f.cat.CreateJob(catalog.Job{Kind: Kind, Name: "missing", Spec: raw})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := f.exec.Run(context.Background(), missing, progressSink{}); res != catalog.ResultFailed || err == nil {
		t.Fatalf("backup of a missing folder: %s, %v", res, err)
	}
	if len(f.rec.With(messages.BackupSourceFailed)) != 1 {
		t.Errorf("no %s: %q", messages.BackupSourceFailed, f.rec.Lines())
	}
	// Without an agent hub, another host's folder cannot be read.
	raw, _ = json.Marshal(Spec{Directories: []Directory{{Host: "branch9", Path: "/srv"}}})
	remote, _ := f.cat.CreateJob(catalog.Job{Kind: Kind, Name: "remote", Spec: raw})
	if _, err := f.exec.Run(context.Background(), remote, progressSink{}); err == nil || !strings.Contains(err.Error(), "0 of 1 sources") {
		t.Fatalf("backup of an agent's folder without a hub: %v", err)
	}
	if l := f.rec.With(messages.BackupSourceFailed); len(l) != 2 || !strings.Contains(l[1], "cannot reach agents") {
		t.Errorf("the failure does not say why: %q", l)
	}
}

func TestParseDirectory(t *testing.T) {
	for _, tt := range []struct {
		in, want string
	}{
		{"branch1:/srv/share", "branch1:/srv/share"},
		{"branch1:/srv/share/../x/", "branch1:/srv/x"},
		{"branch1:srv", ""},
		{":/srv", ""},
		{"/srv", ""},
		{"a b:/srv", ""},
	} {
		d, err := ParseDirectory(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("ParseDirectory(%q) = %v, want an error", tt.in, d)
			}
			continue
		}
		if err != nil || d.String() != tt.want {
			t.Errorf("ParseDirectory(%q) = %v, %v; want %s", tt.in, d, err, tt.want)
		}
	}
}
