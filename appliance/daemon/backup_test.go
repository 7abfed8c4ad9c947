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
	for _, c := range []string{"HF-I5020", "HF-I5021", "HF-I5027"} {
		if !d.logHas(t, c) {
			t.Errorf("activity log lacks %s", c)
		}
	}
	if _, errOut, code := d.cli(t, "job", "delete", id); code == 0 || !strings.Contains(errOut, "sessions") {
		t.Fatalf("delete of a job with sessions: exit %d %q", code, errOut)
	}
	var mj api.Job
	d.getJSON(t, &mj, "job", "modify", id, "--name", "nightly bk", "--schedule", "every 6h")
	if mj.Name != "nightly bk" || mj.Schedule != "every 6h" {
		t.Fatalf("modified job = %+v", mj)
	}
	if _, errOut, code := d.cli(t, "job", "modify", id, "--scenario", "nope"); code == 0 || !strings.Contains(errOut, "HF-E4005") {
		t.Fatalf("modify to an unknown scenario: exit %d %q", code, errOut)
	}
	if _, errOut, code := d.cli(t, "job", "modify", id); code == 0 || !strings.Contains(errOut, "nothing to change") {
		t.Fatalf("modify without a change: exit %d %q", code, errOut)
	}
	if _, errOut, code := d.cli(t, "job", "hold", "999"); code == 0 || !strings.Contains(errOut, "HF-E5025") {
		t.Fatalf("hold of an unknown job: exit %d %q", code, errOut)
	}

	// A file deleted on the master is found by name and restored to its
	// original place; the whole session is restored to another folder.
	file := filepath.Join(root, "docs", "a.txt")
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	var found []api.FileFound
	d.getJSON(t, &found, "restore", "find", "a.*")
	if len(found) != 1 || found[0].Path != file || found[0].Session != s.ID {
		t.Fatalf("find a.* = %+v", found)
	}
	waitJob := func(id uint64) api.Job {
		t.Helper()
		var rj api.Job
		deadline := time.Now().Add(60 * time.Second)
		for rj.State != "done" {
			if time.Now().After(deadline) {
				t.Fatalf("job %d still %s after 60 s: %+v", id, rj.State, rj)
			}
			time.Sleep(100 * time.Millisecond)
			d.getJSON(t, &rj, "job", "show", strconv.FormatUint(id, 10))
		}
		return rj
	}
	var rj api.Job
	d.getJSON(t, &rj, "restore", "run", "--session", strconv.FormatUint(s.ID, 10), "--path", file, "--to", "original")
	if rj = waitJob(rj.ID); rj.Result != "completed" || rj.Restore == nil || rj.Restore.Destination != "original" || rj.Restore.Session != s.ID {
		t.Fatalf("restore to the original location = %+v", rj)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "hello" {
		t.Fatalf("a.txt back on the master = %q, %v", b, err)
	}
	alt := filepath.Join(t.TempDir(), "elsewhere")
	d.getJSON(t, &rj, "restore", "run", "--session", strconv.FormatUint(s.ID, 10), "--to", alt)
	if rj = waitJob(rj.ID); rj.Result != "completed" {
		t.Fatalf("restore to a folder = %+v", rj)
	}
	if b, err := os.ReadFile(filepath.Join(alt, "docs", "a.txt")); err != nil || string(b) != "hello" {
		t.Fatalf("a.txt in the alternate folder = %q, %v", b, err)
	}
	if _, errOut, code := d.cli(t, "restore", "run", "--session", "1", "--to", "relative/dir"); code == 0 || !strings.Contains(errOut, "absolute folder") {
		t.Fatalf("restore to a relative folder: exit %d %q", code, errOut)
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
