package daemon

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/appliance/agenttasks"
	"github.com/holdfast/holdfast/appliance/api"
)

// TestRestoreDestinationsThroughCLI backs a scenario up twice and restores
// by tree as it stood after the first backup, lists a file's versions,
// restores a session into a folder on an enrolled agent (a real
// holdfast-agent process), and restores to the replica, which stops the
// scenario first.
func TestRestoreDestinationsThroughCLI(t *testing.T) {
	d := startDaemonWith(t, "", Options{AgentTasks: func(*agenttasks.Hub) {}}, pluginsDir)
	root, replica := masterTree(t)
	if _, errOut, code := d.cli(t, "scenario", "create", "rs", "--type", "fileserver", "--root", root, "--replica", replica); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := d.cli(t, "scenario", "run", "rs"); code != 0 {
		t.Fatal(errOut)
	}
	d.waitState(t, "rs", "running")
	d.waitIdentical(t, "rs")
	backup := func() api.JobSession {
		t.Helper()
		var j api.Job
		d.getJSON(t, &j, "job", "submit", "--scenario", "rs")
		j = d.waitJob(t, j.ID)
		if j.Result != "completed" || len(j.Sessions) != 1 {
			t.Fatalf("backup = %+v", j)
		}
		return j.Sessions[0]
	}
	first := backup()
	file := filepath.Join(root, "docs", "a.txt")
	if err := os.WriteFile(file, []byte("hello, second version"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.waitIdentical(t, "rs")
	second := backup()

	var sessions []api.JobSession
	d.getJSON(t, &sessions, "restore", "sessions", "--scenario", "rs")
	if len(sessions) != 2 || sessions[0].ID != second.ID || sessions[1].ID != first.ID || sessions[0].Scenario != "rs" || sessions[0].Job == 0 {
		t.Fatalf("sessions of rs = %+v", sessions)
	}
	d.getJSON(t, &sessions, "restore", "sessions", "--host", "elsewhere")
	if len(sessions) != 0 {
		t.Fatalf("sessions of another host = %+v", sessions)
	}
	var versions []api.FileVersion
	d.getJSON(t, &versions, "restore", "versions", "localhost:"+file)
	if len(versions) != 2 || versions[0].Session != second.ID || versions[1].Session != first.ID || versions[1].Size != 5 {
		t.Fatalf("versions of a.txt = %+v", versions)
	}
	var listing []api.FileVersion
	d.getJSON(t, &listing, "restore", "tree", "localhost:"+root)
	if len(listing) != 1 || listing[0].Path != filepath.Join(root, "docs") || listing[0].Session != 0 {
		t.Fatalf("tree of the root = %+v", listing)
	}

	// By tree, as it stood after the first backup.
	asOf := first.Finished.Add(time.Millisecond).Format(time.RFC3339Nano)
	alt := filepath.Join(t.TempDir(), "monday")
	var rj api.Job
	d.getJSON(t, &rj, "restore", "run", "--tree", "localhost:"+root, "--as-of", asOf, "--to", alt)
	if rj = d.waitJob(t, rj.ID); rj.Result != "completed" || rj.Restore == nil || rj.Restore.Tree == nil {
		t.Fatalf("tree restore = %+v", rj)
	}
	if b, err := os.ReadFile(filepath.Join(alt, "docs", "a.txt")); err != nil || string(b) != "hello" {
		t.Fatalf("a.txt as of the first backup = %q, %v", b, err)
	}

	// Into a folder on an enrolled agent.
	agent := d.enrollAgent(t, "branch1")
	agent.run(t)
	onAgent := filepath.Join(t.TempDir(), "from-appliance")
	d.getJSON(t, &rj, "restore", "run", "--session", strconv.FormatUint(second.ID, 10), "--to", "branch1:"+onAgent)
	if rj = d.waitJob(t, rj.ID); rj.Result != "completed" {
		out, _, _ := d.cli(t, "log", "--limit", "5")
		t.Fatalf("restore to an agent = %+v\n%s", rj, out)
	}
	if b, err := os.ReadFile(filepath.Join(onAgent, "docs", "a.txt")); err != nil || string(b) != "hello, second version" {
		t.Fatalf("a.txt on the agent = %q, %v", b, err)
	}

	// A folder of the agent, outside any scenario, is backed up beside the
	// scenario, and a file deleted there is restored to its original place
	// on that host.
	share := filepath.Join(t.TempDir(), "share")
	if err := os.MkdirAll(filepath.Join(share, "reports"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(share, "reports", "q3.txt"), []byte("quarter three"), 0o640); err != nil {
		t.Fatal(err)
	}
	var dj api.Job
	d.getJSON(t, &dj, "job", "submit", "--dir", "branch1:"+share, "--scenario", "rs", "--multistream")
	if dj = d.waitJob(t, dj.ID); dj.Result != "completed" {
		out, _, _ := d.cli(t, "log", "--limit", "8")
		t.Fatalf("backup of a scenario and an agent's folder = %+v\n%s", dj, out)
	}
	var found []api.FileFound
	d.getJSON(t, &found, "restore", "find", "q3.txt")
	if len(found) != 1 || found[0].Host != "branch1" || found[0].Path != filepath.Join(share, "reports", "q3.txt") {
		t.Fatalf("find q3.txt = %+v", found)
	}
	if err := os.Remove(filepath.Join(share, "reports", "q3.txt")); err != nil {
		t.Fatal(err)
	}
	d.getJSON(t, &rj, "restore", "run", "--session", strconv.FormatUint(found[0].Session, 10), "--to", "original")
	if rj = d.waitJob(t, rj.ID); rj.Result != "completed" {
		t.Fatalf("restore to the agent's original location = %+v", rj)
	}
	if b, err := os.ReadFile(filepath.Join(share, "reports", "q3.txt")); err != nil || string(b) != "quarter three" {
		t.Fatalf("q3.txt back on the agent = %q, %v", b, err)
	}
	if !d.logHas(t, "HF-I5028") {
		t.Error("the multistream job did not log its child jobs")
	}

	// To the replica: the scenario is stopped first and stays stopped.
	if err := os.WriteFile(filepath.Join(root, "docs", "a.txt"), []byte("ransomware was here"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.waitIdentical(t, "rs")
	d.getJSON(t, &rj, "restore", "run", "--session", strconv.FormatUint(first.ID, 10), "--to", "replica")
	if rj = d.waitJob(t, rj.ID); rj.Result != "completed" {
		t.Fatalf("restore to the replica = %+v", rj)
	}
	if b, err := os.ReadFile(filepath.Join(replica, "docs", "a.txt")); err != nil || string(b) != "hello" {
		t.Fatalf("a.txt on the replica = %q, %v", b, err)
	}
	d.waitState(t, "rs", "stopped")
	for _, c := range []string{"HF-I6013"} {
		if !d.logHas(t, c) {
			t.Errorf("activity log lacks %s", c)
		}
	}
	if _, errOut, code := d.cli(t, "restore", "run", "--tree", "localhost:"+root, "--as-of", "2001-01-01 00:00", "--to", alt); code != 0 {
		t.Fatalf("queue a restore of a tree older than every backup: %s", errOut)
	}
	if _, errOut, code := d.cli(t, "restore", "run", "--tree", "nohost", "--to", alt); code == 0 || !strings.Contains(errOut, "HOST:/PATH") {
		t.Fatalf("--tree without a host: exit %d %q", code, errOut)
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := d.cli(t, "scenario", "run", "rs"); code != 0 {
		t.Fatal(errOut)
	}
	d.waitState(t, "rs", "running")
	d.waitIdentical(t, "rs")
	// A backup protected with a password: its session is protected, and the
	// next incremental backup with the same password reads from it.
	var bj api.Job
	d.getJSON(t, &bj, "job", "submit", "--scenario", "rs", "--password-file", pwFile)
	if bj = d.waitJob(t, bj.ID); bj.Result != "completed" || len(bj.Sessions) != 1 {
		t.Fatalf("protected backup = %+v", bj)
	}
	d.getJSON(t, &rj, "restore", "run", "--session", strconv.FormatUint(bj.Sessions[0].ID, 10), "--to", t.TempDir())
	if rj = d.waitJob(t, rj.ID); rj.Result != "failed" {
		t.Fatalf("restore of the protected backup without its password = %+v", rj)
	}
	// After a restart holdfastd no longer knows the password: a rerun
	// fails saying so.
	d.stop(t)
	d = startDaemonWith(t, d.data, Options{AgentTasks: func(*agenttasks.Hub) {}}, pluginsDir)
	if _, errOut, code := d.cli(t, "job", "rerun", strconv.FormatUint(bj.ID, 10)); code != 0 {
		t.Fatal(errOut)
	}
	if bj = d.waitJob(t, bj.ID); bj.Result != "failed" || !strings.Contains(bj.Runs[len(bj.Runs)-1].Reason, "HF-E5031") {
		t.Fatalf("rerun of a protected backup after a restart = %+v", bj.Runs)
	}
}
