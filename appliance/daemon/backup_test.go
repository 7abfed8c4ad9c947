package daemon

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/appliance/api"
	"github.com/holdfast/holdfast/appliance/diskstore"
)

// TestBackupJobThroughCLI backs a running scenario up from a replica
// snapshot to the disk store through the job queue, and finds the session
// and its files in the catalog under the master's names.
func TestBackupJobThroughCLI(t *testing.T) {
	data := t.TempDir()
	d := startDaemon(t, data, pluginsDir)
	root, replica := masterTree(t)
	if _, errOut, code := d.cli(t, "scenario", "create", "bk", "--type", "fileserver", "--root", root, "--replica", replica); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := d.cli(t, "job", "submit"); code == 0 || !strings.Contains(errOut, "HF-E1011") {
		t.Fatalf("submit without a scenario: exit %d %q", code, errOut)
	}
	if _, errOut, code := d.cli(t, "scenario", "run", "bk"); code != 0 {
		t.Fatal(errOut)
	}
	d.waitState(t, "bk", "running")
	d.waitIdentical(t, "bk")

	var j api.Job
	d.getJSON(t, &j, "job", "submit", "--scenario", "bk")
	id := strconv.FormatUint(j.ID, 10)
	deadline := time.Now().Add(60 * time.Second)
	for j.State != "done" {
		if time.Now().After(deadline) {
			t.Fatalf("job still %s after 60 s: %+v", j.State, j)
		}
		time.Sleep(100 * time.Millisecond)
		d.getJSON(t, &j, "job", "show", id)
	}
	if j.Result != "completed" || len(j.Sessions) != 1 {
		t.Fatalf("job = %+v", j)
	}
	s := j.Sessions[0]
	if s.Entity != root || s.MasterHost != "localhost" || s.Consistency != "crash" || s.Files != 1 || s.Bytes != 5 || s.Stored == "" {
		t.Fatalf("session = %+v", s)
	}
	if len(j.Runs) != 1 || j.Runs[0].Done.Files != 1 {
		t.Fatalf("runs = %+v", j.Runs)
	}
	for _, c := range []string{"HF-I5020", "HF-I5021"} {
		if !d.logHas(t, c) {
			t.Errorf("activity log lacks %s", c)
		}
	}
	if _, errOut, code := d.cli(t, "job", "delete", id); code == 0 || !strings.Contains(errOut, "sessions") {
		t.Fatalf("delete of a job with sessions: exit %d %q", code, errOut)
	}
	if _, errOut, code := d.cli(t, "job", "hold", "999"); code == 0 || !strings.Contains(errOut, "HF-E5025") {
		t.Fatalf("hold of an unknown job: exit %d %q", code, errOut)
	}

	// The session reads back from the store alone, under the master's
	// path, with the master's content.
	d.stop(t)
	key, err := os.ReadFile(filepath.Join(data, StoreKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	store, err := diskstore.Open(filepath.Join(data, StoreDir), diskstore.WithApplianceKey(key), diskstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	sess, err := store.OpenSession(s.Stored)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := sess.Open(filepath.Join(root, "docs", "a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, err := io.ReadAll(rc); err != nil || string(b) != "hello" {
		t.Fatalf("stored a.txt = %q, %v", b, err)
	}
	if problems, err := store.Verify(s.Stored); err != nil || len(problems) != 0 {
		t.Fatalf("Verify = %v, %v", problems, err)
	}
}
