package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/appliance/api"
)

// TestRewindSnapshotAndTestThroughCLI drives Data Rewind, snapshots and an
// Assured Recovery test through the CLI, the API and the real File Server
// plugin process.
func TestRewindSnapshotAndTestThroughCLI(t *testing.T) {
	d := startDaemon(t, t.TempDir(), pluginsDir)
	root, replica := masterTree(t)
	run := func(args ...string) string {
		t.Helper()
		out, errOut, code := d.cli(t, args...)
		if code != 0 {
			t.Fatalf("holdfast %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	refused := func(code string, args ...string) {
		t.Helper()
		_, errOut, exit := d.cli(t, args...)
		if exit == 0 || !strings.Contains(errOut, code) {
			t.Fatalf("holdfast %s: exit %d %q, want %s", strings.Join(args, " "), exit, errOut, code)
		}
	}
	run("scenario", "create", "ar", "--type", "fileserver", "--root", root, "--replica", replica, "--assured-recovery")
	refused("HF-E4025", "scenario", "test", "ar")
	run("scenario", "run", "ar")
	d.waitState(t, "ar", "running")
	d.waitIdentical(t, "ar")

	var tests []api.RecoveryTest
	d.getJSON(t, &tests, "scenario", "test", "ar")
	if len(tests) != 1 || !tests[0].Passed || tests[0].Checked == 0 {
		t.Fatalf("Assured Recovery test = %+v", tests)
	}
	var snaps []api.Snapshot
	d.getJSON(t, &snaps, "snapshot", "list", "ar")
	if len(snaps) != 1 || snaps[0].Consistency != "application" || snaps[0].ID != tests[0].Snapshot {
		t.Fatalf("snapshots after the test = %+v", snaps)
	}
	run("snapshot", "take", "ar", "--label", "by hand")
	d.getJSON(t, &snaps, "snapshot", "list", "ar")
	if len(snaps) != 2 || snaps[1].Consistency != "crash" || snaps[1].Label != "by hand" {
		t.Fatalf("snapshots after a manual one = %+v", snaps)
	}

	run("rewind", "bookmark", "ar", "before the mistake")
	file := filepath.Join(root, "docs", "a.txt")
	if err := os.WriteFile(file, []byte("overwritten by mistake"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.waitIdentical(t, "ar")
	refused("HF-E4065", "rewind", "to", "ar", "--bookmark", "before the mistake")
	run("scenario", "stop", "ar")
	d.waitState(t, "ar", "stopped")

	var points []api.ReplicaPoints
	d.getJSON(t, &points, "rewind", "list", "ar", "--path", file)
	if len(points) != 1 || len(points[0].Points) == 0 {
		t.Fatalf("points of %s = %+v", file, points)
	}
	out := run("rewind", "to", "ar", "--bookmark", "before the mistake")
	if !strings.Contains(out, "operations undone") {
		t.Fatalf("rewind said %q", out)
	}
	if b, err := os.ReadFile(filepath.Join(replica, "docs", "a.txt")); err != nil || string(b) != "hello" {
		t.Fatalf("replica a.txt after the rewind = %q, %v", b, err)
	}
	refused("HF-E4068", "rewind", "to", "ar", "--bookmark", "never set")
	for _, c := range []string{"HF-I4026", "HF-I4022", "HF-I4060", "HF-I4061", "HF-E4065"} {
		if !d.logHas(t, c) {
			t.Errorf("activity log lacks %s", c)
		}
	}
}
