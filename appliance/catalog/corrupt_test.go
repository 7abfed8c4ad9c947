package catalog

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// TestCorruptStoredValue damages one stored value per record kind directly in
// Pebble, then checks that reading it fails with ErrCorrupt naming the key,
// and that its neighbours still read fine.
func TestCorruptStoredValue(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir, Options{Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"one", "two"} {
		if _, err := c.CreateScenario(Scenario{Name: name}, []Entity{{Name: "e1"}, {Name: "e2"}}); err != nil {
			t.Fatal(err)
		}
		if err := c.PutHost(Host{Name: name}); err != nil {
			t.Fatal(err)
		}
		j, err := c.CreateJob(Job{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateSession(Session{JobID: j.ID}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateMedia(Media{Label: name}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.AppendActivity(ActivityEntry{Message: name, JobID: j.ID}); err != nil {
			t.Fatal(err)
		}
	}
	w := c.NewFileVersionWriter()
	for _, p := range []string{"/d/one", "/d/two"} {
		if err := w.Add(FileVersion{Host: "h", Path: p, SessionID: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(true); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		key     []byte
		read    func(c *Catalog) error // reads the damaged record
		healthy func(c *Catalog) error // reads a neighbour
	}{
		{"scenario", scenarioKey(1),
			func(c *Catalog) error { _, err := c.ScenarioByID(1); return err },
			func(c *Catalog) error { _, err := c.Scenario("two"); return err }},
		{"scenario via name", scenarioKey(1),
			func(c *Catalog) error { _, err := c.Scenario("one"); return err },
			func(c *Catalog) error { _, err := c.Entities(2); return err }},
		{"scenario list", scenarioKey(1),
			func(c *Catalog) error { _, err := c.Scenarios(); return err },
			func(c *Catalog) error {
				// The list still holds every scenario that can be read.
				l, _ := c.Scenarios()
				if len(l) != 1 || l[0].Name != "two" {
					return fmt.Errorf("list beside the damage = %+v, want only scenario two", l)
				}
				return nil
			}},
		{"name index", scenarioNameKey("one"),
			func(c *Catalog) error { _, err := c.Scenario("one"); return err },
			func(c *Catalog) error { _, err := c.ScenarioByID(1); return err }},
		{"entity", entityKey(1, "e2"),
			func(c *Catalog) error { _, err := c.Entities(1); return err },
			func(c *Catalog) error { _, err := c.Entities(2); return err }},
		{"host", hostKey("one"),
			func(c *Catalog) error { _, err := c.Host("one"); return err },
			func(c *Catalog) error { _, err := c.Host("two"); return err }},
		{"job", jobKey(1),
			func(c *Catalog) error { _, err := c.Job(1); return err },
			func(c *Catalog) error { _, err := c.Job(2); return err }},
		{"session", sessionKey(1),
			func(c *Catalog) error { _, err := c.SessionsOfJob(1); return err },
			func(c *Catalog) error { _, err := c.Session(2); return err }},
		{"session index", sessionJobKey(1, 1),
			func(c *Catalog) error { _, err := c.SessionsOfJob(1); return err },
			func(c *Catalog) error { _, err := c.SessionsOfJob(2); return err }},
		{"media", mediaKey(2),
			func(c *Catalog) error { _, err := c.Media(2); return err },
			func(c *Catalog) error { _, err := c.Media(1); return err }},
		{"activity", activityKey(1),
			func(c *Catalog) error { _, err := c.Activity(ActivityFilter{}); return err },
			func(c *Catalog) error { _, err := c.Activity(ActivityFilter{JobID: 2}); return err }},
		{"sequence", seqKey(seqJob),
			func(c *Catalog) error { _, err := c.CreateJob(Job{}); return err },
			func(c *Catalog) error { _, err := c.CreateMedia(Media{}); return err }},
		{"file version", fileKey("h", "/d/one", 1),
			func(c *Catalog) error { _, err := c.FileVersions("h", "/d/one"); return err },
			func(c *Catalog) error { _, err := c.FileVersions("h", "/d/two"); return err }},
		{"file tree", fileKey("h", "/d/one", 1),
			func(c *Catalog) error { _, err := c.FileTree("h", "/d"); return err },
			func(c *Catalog) error { _, err := c.FindByName("two", 0); return err }},
		{"file name index", fileNameKey("one", "h", "/d/one"),
			func(c *Catalog) error { _, err := c.FindByName("on*", 0); return err },
			func(c *Catalog) error { _, err := c.FindByName("t*", 0); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			orig := damage(t, dir, tc.key)
			defer restore(t, dir, tc.key, orig)
			c, err := Open(dir, Options{Logger: quietLogger})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := c.Close(); err != nil {
					t.Error(err)
				}
			}()
			err = tc.read(c)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("reading damaged record: %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), FormatKey(tc.key)) || !strings.Contains(err.Error(), "checksum mismatch") {
				t.Fatalf("error %q should name key %s and the checksum", err, FormatKey(tc.key))
			}
			t.Logf("%v", err)
			if err := tc.healthy(c); err != nil {
				t.Fatalf("reading an intact record: %v", err)
			}
		})
	}
}

// damage flips one payload byte of the value at key with raw Pebble writes
// and returns the original value.
func damage(t *testing.T, dir string, key []byte) []byte {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{quietLogger}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	orig, err := get(db, key)
	if err != nil {
		t.Fatalf("read %s: %v", FormatKey(key), err)
	}
	bad := append([]byte(nil), orig...)
	bad[len(bad)/2] ^= 0x01
	if err := db.Set(key, bad, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	return orig
}

func restore(t *testing.T, dir string, key, value []byte) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{quietLogger}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set(key, value, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}
