package catalog

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func makeSession(t testing.TB, c *Catalog, jobID uint64, stored string) Session {
	t.Helper()
	s, err := c.CreateSession(Session{JobID: jobID, ScenarioID: 1, Entity: "/srv", MasterHost: "fs01", Stored: stored, Files: 1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func addSessionVersions(t testing.TB, c *Catalog, sessionID uint64, paths ...string) {
	t.Helper()
	w := c.NewFileVersionWriter()
	for _, p := range paths {
		if err := w.Add(FileVersion{Host: "fs01", Path: p, SessionID: sessionID, Size: 1, MTime: sampleTime}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(true); err != nil {
		t.Fatal(err)
	}
}

// Deleting a session removes its versions, keeps other sessions' versions
// of the same files findable by name, and drops the name of a file no
// version is left of.
func TestDeleteSession(t *testing.T) {
	c := openTest(t, t.TempDir())
	job, err := c.CreateJob(Job{Kind: "backup", Name: "b", State: JobDone})
	if err != nil {
		t.Fatal(err)
	}
	s1 := makeSession(t, c, job.ID, "st-1")
	s2 := makeSession(t, c, job.ID, "st-2")
	addSessionVersions(t, c, s1.ID, "/srv/shared.txt", "/srv/only-one.txt")
	addSessionVersions(t, c, s2.ID, "/srv/shared.txt")

	if got, err := c.SessionByStored("st-2"); err != nil || got.ID != s2.ID {
		t.Fatalf("SessionByStored = %+v, %v", got, err)
	}
	if _, err := c.SessionByStored("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SessionByStored of an unknown id: %v", err)
	}
	if err := c.DeleteSession(s1.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Session(s1.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted session still readable: %v", err)
	}
	if list, err := c.Sessions(); err != nil || len(list) != 1 || list[0].ID != s2.ID {
		t.Fatalf("Sessions = %+v, %v", list, err)
	}
	if list, err := c.SessionsOfJob(job.ID); err != nil || len(list) != 1 {
		t.Fatalf("SessionsOfJob = %+v, %v", list, err)
	}
	if v, err := c.FileVersions("fs01", "/srv/shared.txt"); err != nil || len(v) != 1 || v[0].SessionID != s2.ID {
		t.Fatalf("versions of shared.txt = %+v, %v", v, err)
	}
	if found, err := c.FindByName("*.txt", 0); err != nil || len(found) != 1 || found[0].Path != "/srv/shared.txt" {
		t.Fatalf("FindByName = %+v, %v", found, err)
	}
	if err := c.DeleteSession(s1.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	// The job has no session left, so it may go now.
	if err := c.DeleteSession(s2.ID); err != nil {
		t.Fatal(err)
	}
	if found, err := c.FindByName("*", 0); err != nil || len(found) != 0 {
		t.Fatalf("FindByName after deleting every session = %+v, %v", found, err)
	}
	if err := c.DeleteJob(job.ID); err != nil {
		t.Fatal(err)
	}
}

// Versions recorded without the files-by-session index (catalogs written
// before it) are found by a scan.
func TestDeleteSessionWithoutIndex(t *testing.T) {
	c := openTest(t, t.TempDir())
	job, _ := c.CreateJob(Job{Kind: "backup", Name: "b"})
	s := makeSession(t, c, job.ID, "st")
	addSessionVersions(t, c, s.ID, "/srv/a", "/srv/b")
	w := c.newBatch()
	w.del(sessionFileKey(s.ID, "fs01", "/srv/a"))
	w.del(sessionFileKey(s.ID, "fs01", "/srv/b"))
	if err := w.commit(c, true); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSession(s.ID); err != nil {
		t.Fatal(err)
	}
	if v, err := c.FileVersions("fs01", "/srv/a"); err != nil || len(v) != 0 {
		t.Fatalf("versions left: %+v, %v", v, err)
	}
}

// TestDeleteSession100k measures deleting one session of 100,000 versions
// next to another of 100,000: it reads only its own index entries.
func TestDeleteSession100k(t *testing.T) {
	if testing.Short() {
		t.Skip("large")
	}
	c := openTest(t, t.TempDir())
	job, _ := c.CreateJob(Job{Kind: "backup", Name: "b"})
	const n = 100_000
	var ids []uint64
	for range 2 {
		s := makeSession(t, c, job.ID, fmt.Sprint(time.Now().UnixNano()))
		w := c.NewFileVersionWriter()
		for i := range n {
			if err := w.Add(FileVersion{Host: "fs01", Path: fmt.Sprintf("/srv/d%03d/f%06d-%d", i%500, i, s.ID), SessionID: s.ID}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Commit(true); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID)
	}
	start := time.Now()
	if err := c.DeleteSession(ids[0]); err != nil {
		t.Fatal(err)
	}
	t.Logf("deleted a session of %d versions (another of %d kept) in %s", n, n, time.Since(start).Round(time.Millisecond))
	found, err := c.FindByName("f000001-*", 0)
	if err != nil || len(found) != 1 || found[0].SessionID != ids[1] {
		t.Fatalf("FindByName = %+v, %v", found, err)
	}
}
