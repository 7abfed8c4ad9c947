package catalogrebuild

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/appliance/activity/activitytest"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/diskstore"
	"github.com/holdfast/holdfast/appliance/diskstore/chunker"
	"github.com/holdfast/holdfast/appliance/jobs"
	"github.com/holdfast/holdfast/appliance/messages"
)

var storeOptions = diskstore.Options{Chunker: chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}, PasswordIterations: 1000,
	Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}

func writeSession(t *testing.T, s *diskstore.Store, meta diskstore.SessionMeta, password string, files ...string) string {
	t.Helper()
	var opts []diskstore.SessionOption
	if password != "" {
		opts = append(opts, diskstore.WithSessionPassword(password))
	}
	w := s.BeginSession(meta, opts...)
	if err := w.AddDir(diskstore.FileHeader{Path: meta.Entity, Mode: 0o755 | 1<<31}); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := w.AddFile(diskstore.FileHeader{Path: meta.Entity + "/" + f, Mode: 0o644, ModTime: time.Unix(1700000000, 0)}, strings.NewReader("content of "+f)); err != nil {
			t.Fatal(err)
		}
	}
	info, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return info.ID
}

// Store sessions of an existing scenario, of a deleted one, and a
// protected one are recorded from the store alone; a second run finds
// them known; the protected one needs its password.
func TestRebuild(t *testing.T) {
	store, err := diskstore.Create(t.TempDir(), diskstore.WithApplianceKey(make([]byte, 32)), storeOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cat, err := catalog.Open(t.TempDir(), catalog.Options{Logger: storeOptions.Logger})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	sc, err := cat.CreateScenario(catalog.Scenario{Name: "files", Type: "fileserver", MasterHost: "fs01", Roots: []string{"/srv"},
		Replicas: []catalog.Replica{{Host: "localhost", Target: "/r"}}, Suspend: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Date(2026, 11, 20, 1, 0, 0, 0, time.UTC)
	kept := writeSession(t, store, diskstore.SessionMeta{Scenario: "files", Host: "fs01", Entity: "/srv", Consistency: "crash", JobID: 99,
		JobName: "nightly", ScenarioType: "fileserver", SourceKind: "scenario", Started: started}, "", "report.doc", "b.txt")
	gone := writeSession(t, store, diskstore.SessionMeta{Scenario: "old", Host: "fs02", Entity: "/data", JobName: "old job", Started: started}, "", "x.txt")
	prot := writeSession(t, store, diskstore.SessionMeta{Scenario: "files", Host: "fs01", Entity: "/srv", JobName: "secret", Started: started}, "pw", "hidden.txt")

	rec := &activitytest.Recorder{}
	r := &Rebuilder{Store: store, Catalog: cat, Rec: rec}
	var calls int
	res, err := r.Run(context.Background(), "", func(done, total int) { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	if want := (Result{Stored: 3, Recorded: 2, Skipped: 1, Versions: 3}); res != want {
		t.Fatalf("first run = %+v, want %+v", res, want)
	}
	if calls != 4 {
		t.Errorf("progress called %d times, want 4", calls)
	}
	for _, c := range []messages.Code{messages.RebuildSkippedProtected, messages.RebuildScenarioGone, messages.RebuildSessionRecorded, messages.RebuildDone} {
		if !rec.Has(c) {
			t.Errorf("%s not logged", c)
		}
	}
	s, err := cat.SessionByStored(kept)
	if err != nil {
		t.Fatal(err)
	}
	if s.ScenarioID != sc.ID || s.Entity != "/srv" || s.MasterHost != "fs01" || s.Consistency != "crash" || s.Files != 2 || s.Finished.IsZero() {
		t.Fatalf("rebuilt session %+v", s)
	}
	found, err := cat.FindByName("report.doc", 0)
	if err != nil || len(found) != 1 || found[0].Host != "fs01" || found[0].Path != "/srv/report.doc" || found[0].SessionID != s.ID {
		t.Fatalf("find report.doc = %+v, %v", found, err)
	}
	if g, err := cat.SessionByStored(gone); err != nil || g.ScenarioID != 0 || g.Entity != "/data" {
		t.Fatalf("session of a deleted scenario = %+v, %v", g, err)
	}
	// The made-up job reads back through the job queue as a done backup.
	q, err := jobs.Open(jobs.Config{Catalog: cat, Executors: map[string]jobs.Executor{}, Logger: storeOptions.Logger})
	if err != nil {
		t.Fatal(err)
	}
	j, err := q.Get(s.JobID)
	q.Close()
	if err != nil || j.Kind != "backup" || j.State != catalog.JobDone || j.Result != catalog.ResultCompleted || !strings.HasPrefix(j.Name, "rebuilt: ") || len(j.Runs) != 1 {
		t.Fatalf("rebuilt job = %+v, %v", j, err)
	}

	// Again: nothing new; with a wrong password the protected one is
	// still skipped; with the right one it is recorded.
	res, err = r.Run(context.Background(), "", nil)
	if err != nil || res != (Result{Stored: 3, Known: 2, Skipped: 1}) {
		t.Fatalf("second run = %+v, %v", res, err)
	}
	res, err = r.Run(context.Background(), "nope", nil)
	if err != nil || res.Skipped != 1 || !rec.Has(messages.RebuildBadPassword) {
		t.Fatalf("wrong password run = %+v, %v", res, err)
	}
	res, err = r.Run(context.Background(), "pw", nil)
	if err != nil || res != (Result{Stored: 3, Known: 2, Recorded: 1, Versions: 1}) {
		t.Fatalf("password run = %+v, %v", res, err)
	}
	if p, err := cat.SessionByStored(prot); err != nil || p.ScenarioID != sc.ID {
		t.Fatalf("protected session = %+v, %v", p, err)
	}
}

func TestCommonRoot(t *testing.T) {
	e := func(typ diskstore.EntryType, p string) diskstore.Entry {
		return diskstore.Entry{Type: typ, FileHeader: diskstore.FileHeader{Path: p}}
	}
	for i, tc := range []struct {
		entries []diskstore.Entry
		want    string
	}{
		{nil, "/"},
		{[]diskstore.Entry{e(diskstore.TypeDir, "/srv"), e(diskstore.TypeFile, "/srv/a/b")}, "/srv"},
		{[]diskstore.Entry{e(diskstore.TypeFile, "/srv/a/b"), e(diskstore.TypeFile, "/srv/a/c")}, "/srv/a"},
		{[]diskstore.Entry{e(diskstore.TypeFile, "/srv/a"), e(diskstore.TypeFile, "/opt/b")}, "/"},
		{[]diskstore.Entry{e(diskstore.TypeFile, "/srv/ab/x"), e(diskstore.TypeFile, "/srv/a/y")}, "/srv"},
	} {
		if got := commonRoot(tc.entries); got != tc.want {
			t.Errorf("%d: commonRoot = %q, want %q", i, got, tc.want)
		}
	}
}
