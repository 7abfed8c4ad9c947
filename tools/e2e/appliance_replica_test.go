package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/appliance/api"
)

// TestAgentReplicatesToTheAppliance is the branch-office set-up: a master
// agent replicates to the appliance itself, which receives through its own
// transport (replication.listen), so backups can be taken from it.
func TestAgentReplicatesToTheAppliance(t *testing.T) {
	base := t.TempDir()
	logs := logsDir(t, base, "holdfastd", "shop1")
	data := filepath.Join(base, "appliance")
	conf := filepath.Join(base, "holdfastd.toml")
	writeFile(t, conf, fmt.Sprintf("data_dir = %q\nhost_name = \"vault\"\n[plugins]\ndirs = [%q]\n", data, bins.plugins))
	startLocal(t, filepath.Join(logs, "holdfastd.log"), bins.holdfastd, "--config", conf,
		"--listen", "127.0.0.1:0", "--agents-listen", "127.0.0.1:0", "--replication-listen", "127.0.0.1:0")
	waitFor(t, "holdfastd to receive replication", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(data, "run", "data.addr"))
		return err == nil
	})
	cli := holdfastCLI(t, data, exec.Command)
	var tok api.AgentToken
	if err := json.Unmarshal(cli("--json", "agent", "token", "shop1"), &tok); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(base, "agent")
	if out, err := exec.Command(bins.agent, "enroll", "--appliance", tok.Appliance, "--server-name", tok.ServerName,
		"--token", tok.Token, "--fingerprint", tok.CAFingerprint, "--host", "shop1", "--state", state).CombinedOutput(); err != nil {
		t.Fatalf("enroll: %v\n%s", err, out)
	}
	startLocal(t, filepath.Join(logs, "shop1.log"), bins.agent, "run", "--state", state, "--plugins", bins.plugins, "--poll", "500ms")

	root := filepath.Join(base, "master")
	target := filepath.Join(base, "replica")
	seedTree(t, root)
	def := filepath.Join(base, "branch.json")
	writeFile(t, def, fmt.Sprintf(`{"name":"branch","type":"fileserver","master":{"host":"shop1","roots":[%q]},"replicas":[{"host":"localhost","target":%q}],"assured_recovery":true}`, root, target))
	cli("scenario", "create", "-f", def)
	cli("scenario", "run", "branch")
	identical := func() bool {
		a, errA := treeDigest(root)
		b, errB := treeDigest(target, ".holdfast")
		return errA == nil && errB == nil && slicesEqual(a, b)
	}
	status := func() api.ScenarioStatus {
		var st api.ScenarioStatus
		if err := json.Unmarshal(cli("--json", "scenario", "status", "branch"), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	waitFor(t, "the first synchronization to the appliance", 60*time.Second, func() bool {
		return status().State == "running" && identical()
	})
	// Live changes arrive too, and the appliance shows their lag.
	writeFile(t, filepath.Join(root, "dept0", "docs", "new.txt"), "written after the synchronization")
	if err := os.Rename(filepath.Join(root, "dept1", "docs", "file02.dat"), filepath.Join(root, "dept2", "moved.dat")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the live changes", 30*time.Second, identical)
	waitFor(t, "the master's report of the changes", 10*time.Second, func() bool {
		st := status()
		return len(st.Pairs) == 1 && st.Pairs[0].Changes >= 2 && st.Pairs[0].LagP99MS > 0
	})
	// The difference report is made by the master agent, which reads the
	// master and asks the replica: a file changed behind replication's
	// back on the appliance shows, and nothing else does.
	if out := string(cli("report", "difference", "branch")); strings.Contains(out, "new.txt") {
		t.Fatalf("difference report of identical trees lists new.txt:\n%s", out)
	}
	if err := os.WriteFile(filepath.Join(target, "dept0", "docs", "new.txt"), []byte("tampered on the replica"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := string(cli("report", "difference", "branch")); !strings.Contains(out, "dept0/docs/new.txt") {
		t.Fatalf("difference report does not show the tampered file:\n%s", out)
	}

	// While the agent replicates, the appliance's replica role holds the
	// replica: bookmarks, snapshots and Assured Recovery reach it there.
	cli("rewind", "bookmark", "branch", "before the late file")
	var tests []api.RecoveryTest
	if err := json.Unmarshal(cli("--json", "scenario", "test", "branch"), &tests); err != nil {
		t.Fatal(err)
	}
	if len(tests) != 1 || !tests[0].Passed || tests[0].Checked == 0 {
		t.Fatalf("Assured Recovery on the appliance's replica of an agent = %+v", tests)
	}
	late := filepath.Join(target, "dept0", "late.txt")
	writeFile(t, filepath.Join(root, "dept0", "late.txt"), "after the bookmark")
	waitFor(t, "the late file on the appliance", 30*time.Second, func() bool {
		_, err := os.Stat(late)
		return err == nil
	})
	cli("scenario", "stop", "branch")
	var lastRewind []byte
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last rewind attempt said: %s", lastRewind)
		}
	})
	// The role lets go of the directory at the appliance's next pass over
	// its assignments; until then the rewind is refused (HF-E4029).
	waitFor(t, "the replica role to let go of the replica, then the rewind", 30*time.Second, func() bool {
		var err error
		lastRewind, err = exec.Command(bins.holdfast, "--data", data, "rewind", "to", "branch", "--bookmark", "before the late file").CombinedOutput()
		return err == nil
	})
	if _, err := os.Stat(late); !os.IsNotExist(err) {
		t.Fatalf("late.txt after rewinding to the bookmark before it: %v", err)
	}
}
