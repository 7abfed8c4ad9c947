package catalog

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

func TestOpenCreatesAndValidatesSchema(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "catalog")
	c, err := Open(dir, Options{Logger: quietLogger})
	if err != nil {
		t.Fatalf("Open new: %v", err)
	}
	if got := c.db.FormatMajorVersion(); got != formatVersion {
		t.Errorf("format major version %d, want %d", got, formatVersion)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Scenarios(); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after Close: %v, want ErrClosed", err)
	}

	// Read-only reopen works and refuses writes.
	ro, err := Open(dir, Options{ReadOnly: true, Logger: quietLogger})
	if err != nil {
		t.Fatalf("Open read-only: %v", err)
	}
	if _, err := ro.AppendActivity(ActivityEntry{Message: "x"}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("write to read-only catalog: %v, want ErrReadOnly", err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}

	// A schema from the future is refused.
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{quietLogger}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte(keySchema), encodeMeta(schemaVersion+1), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{Logger: quietLogger}); err == nil || !strings.Contains(err.Error(), "newer than this build") {
		t.Fatalf("Open with future schema: %v", err)
	}
}

func TestOpenRefusesForeignStore(t *testing.T) {
	dir := t.TempDir()
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{quietLogger}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("something"), []byte("else"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{Logger: quietLogger}); err == nil || !strings.Contains(err.Error(), "not a Holdfast catalog") {
		t.Fatalf("Open foreign store: %v", err)
	}
}

func TestScenarioLifecycle(t *testing.T) {
	c := openTest(t, t.TempDir())
	in := sampleScenario()
	in.ID, in.Created, in.Updated = 999, time.Time{}, time.Time{}
	ents := []Entity{{Name: "b", Kind: "volume"}, {Name: "a", Kind: "volume", Paths: []string{"/x"}}}
	s, err := c.CreateScenario(in, ents)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != 1 || s.Created.IsZero() || s.Updated.IsZero() {
		t.Fatalf("created scenario %+v: want ID 1 and timestamps set", s)
	}
	for name, get := range map[string]func() (Scenario, error){
		"by name": func() (Scenario, error) { return c.Scenario("payroll") },
		"by id":   func() (Scenario, error) { return c.ScenarioByID(1) },
	} {
		got, err := get()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, s) {
			t.Fatalf("%s: got %+v, want %+v", name, got, s)
		}
	}
	got, err := c.Entities(1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" || got[0].ScenarioID != 1 || got[0].Paths[0] != "/x" {
		t.Fatalf("entities %+v: want a, b of scenario 1", got)
	}

	if _, err := c.CreateScenario(Scenario{Name: "payroll"}, nil); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate name: %v, want ErrExists", err)
	}
	for _, bad := range [][]Entity{{{Name: ""}}, {{Name: "x"}, {Name: "x"}}} {
		if _, err := c.CreateScenario(Scenario{Name: "other"}, bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("bad entities %+v: %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := c.CreateScenario(Scenario{}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty name: %v, want ErrInvalid", err)
	}
	s2, err := c.CreateScenario(Scenario{Name: "alpha"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s2.ID != 2 {
		t.Fatalf("second scenario ID %d, want 2", s2.ID)
	}
	list, err := c.Scenarios()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "alpha" || list[1].Name != "payroll" {
		t.Fatalf("Scenarios() = %+v, want alpha, payroll", list)
	}

	// Rename: the index follows, the old name is free, the new one unique.
	s.Name = "alpha"
	if err := c.UpdateScenario(s); !errors.Is(err, ErrExists) {
		t.Fatalf("rename onto taken name: %v, want ErrExists", err)
	}
	created := s.Created
	s.Name, s.State, s.Created = "payroll-2025", StateStopped, time.Time{}
	if err := c.UpdateScenario(s); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Scenario("payroll"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old name after rename: %v, want ErrNotFound", err)
	}
	renamed, err := c.Scenario("payroll-2025")
	if err != nil {
		t.Fatal(err)
	}
	if renamed.ID != 1 || renamed.State != StateStopped || !renamed.Created.Equal(created) || renamed.Updated.Before(created) {
		t.Fatalf("renamed scenario %+v", renamed)
	}
	if err := c.UpdateScenario(Scenario{ID: 77, Name: "x"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update missing: %v, want ErrNotFound", err)
	}

	if err := c.ReplaceEntities(1, []Entity{{Name: "c", Kind: "database"}, {Name: "a", Kind: "database"}}); err != nil {
		t.Fatal(err)
	}
	got, err = c.Entities(1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "a" || got[0].Kind != "database" || got[1].Name != "c" {
		t.Fatalf("entities after replace %+v", got)
	}
	mustNotFound(t, c.ReplaceEntities(55, nil))

	del, err := c.DeleteScenario("payroll-2025")
	if err != nil {
		t.Fatal(err)
	}
	if del.ID != 1 {
		t.Fatalf("deleted %+v", del)
	}
	_, err = c.Scenario("payroll-2025")
	mustNotFound(t, err)
	_, err = c.ScenarioByID(1)
	mustNotFound(t, err)
	_, err = c.Entities(1)
	mustNotFound(t, err)
	_, err = c.DeleteScenario("payroll-2025")
	mustNotFound(t, err)
	if n := countPrefix(t, c, entityPrefix(1)); n != 0 {
		t.Fatalf("%d entity keys left after delete", n)
	}

	// The deleted scenario's ID is not handed out again.
	s3, err := c.CreateScenario(Scenario{Name: "payroll"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s3.ID != 3 {
		t.Fatalf("ID after delete %d, want 3", s3.ID)
	}
}

func TestSequencesSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir, Options{Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := c.CreateJob(Job{Kind: "backup"}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := c.CreateScenario(Scenario{Name: "x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteScenario("x"); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = openTest(t, dir)
	j, err := c.CreateJob(Job{})
	if err != nil {
		t.Fatal(err)
	}
	if j.ID != 4 {
		t.Fatalf("job ID after reopen %d, want 4", j.ID)
	}
	s2, err := c.CreateScenario(Scenario{Name: "x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s2.ID <= s.ID {
		t.Fatalf("scenario ID %d reused after delete and reopen (had %d)", s2.ID, s.ID)
	}
}

func TestHostsJobsSessionsMedia(t *testing.T) {
	c := openTest(t, t.TempDir())

	// Hosts.
	h := sampleHost()
	if err := c.PutHost(h); err != nil {
		t.Fatal(err)
	}
	if err := c.PutHost(Host{Name: "appliance", Roles: []string{"appliance"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.PutHost(Host{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("PutHost without name: %v", err)
	}
	got, err := c.Host("fs01")
	if err != nil || !reflect.DeepEqual(got, h) {
		t.Fatalf("Host = %+v, %v; want %+v", got, err, h)
	}
	hosts, err := c.Hosts()
	if err != nil || len(hosts) != 2 || hosts[0].Name != "appliance" || hosts[1].Name != "fs01" {
		t.Fatalf("Hosts = %+v, %v", hosts, err)
	}
	if err := c.DeleteHost("fs01"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Host("fs01")
	mustNotFound(t, err)
	mustNotFound(t, c.DeleteHost("fs01"))

	// Jobs.
	j := sampleJob()
	j.ID = 0
	j, err = c.CreateJob(j)
	if err != nil {
		t.Fatal(err)
	}
	if j.ID != 1 {
		t.Fatalf("job ID %d", j.ID)
	}
	j.State, j.Result = JobDone, ResultFailed
	if err := c.PutJob(j); err != nil {
		t.Fatal(err)
	}
	gotJob, err := c.Job(1)
	if err != nil || !reflect.DeepEqual(gotJob, j) {
		t.Fatalf("Job = %+v, %v; want %+v", gotJob, err, j)
	}
	mustNotFound(t, c.PutJob(Job{ID: 50}))
	_, err = c.Job(50)
	mustNotFound(t, err)
	j2, err := c.CreateJob(Job{Kind: "restore", ParentID: 1})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := c.Jobs()
	if err != nil || len(jobs) != 2 || jobs[0].ID != 1 || jobs[1].ID != j2.ID || j2.Created.IsZero() {
		t.Fatalf("Jobs = %+v, %v", jobs, err)
	}

	// Sessions.
	ss := sampleSession()
	ss.ID, ss.JobID = 0, j.ID
	s1, err := c.CreateSession(ss)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := c.CreateSession(Session{JobID: j2.ID})
	if err != nil {
		t.Fatal(err)
	}
	s3, err := c.CreateSession(Session{JobID: j.ID, Entity: "second"})
	if err != nil {
		t.Fatal(err)
	}
	if s1.ID != 1 || s2.ID != 2 || s3.ID != 3 {
		t.Fatalf("session IDs %d %d %d", s1.ID, s2.ID, s3.ID)
	}
	if _, err := c.CreateSession(Session{JobID: 99}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("session of missing job: %v", err)
	}
	gotS, err := c.Session(1)
	if err != nil || !reflect.DeepEqual(gotS, s1) {
		t.Fatalf("Session = %+v, %v; want %+v", gotS, err, s1)
	}
	ofJob, err := c.SessionsOfJob(j.ID)
	if err != nil || len(ofJob) != 2 || ofJob[0].ID != 1 || ofJob[1].ID != 3 {
		t.Fatalf("SessionsOfJob = %+v, %v", ofJob, err)
	}
	none, err := c.SessionsOfJob(1234)
	if err != nil || len(none) != 0 {
		t.Fatalf("SessionsOfJob(unknown) = %+v, %v", none, err)
	}

	// Media.
	m := sampleMedia()
	m.ID = 0
	m, err = c.CreateMedia(m)
	if err != nil {
		t.Fatal(err)
	}
	m.UsedBytes += 100
	if err := c.PutMedia(m); err != nil {
		t.Fatal(err)
	}
	gotM, err := c.Media(m.ID)
	if err != nil || !reflect.DeepEqual(gotM, m) {
		t.Fatalf("Media = %+v, %v; want %+v", gotM, err, m)
	}
	mustNotFound(t, c.PutMedia(Media{ID: 9}))
	if _, err := c.CreateMedia(Media{Kind: "disk"}); err != nil {
		t.Fatal(err)
	}
	ml, err := c.MediaList()
	if err != nil || len(ml) != 2 || ml[0].ID != 1 || ml[1].ID != 2 {
		t.Fatalf("MediaList = %+v, %v", ml, err)
	}
}

// countPrefix counts raw keys under prefix.
func countPrefix(t *testing.T, c *Catalog, prefix []byte) int {
	t.Helper()
	n := 0
	if err := scanPrefix(c.db, prefix, false, func(_, _ []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}
