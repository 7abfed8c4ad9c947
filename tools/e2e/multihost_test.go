// Package e2e holds tests that run Holdfast's real programs together:
// holdfastd, holdfast-agent, the CLI and the plugins, built from this tree,
// each host in a network namespace of its own.
package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/appliance/api"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/plugins/sdk/manifest"
)

// bins holds the programs TestMain built.
var bins struct {
	holdfastd, holdfast, agent, plugins string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "holdfast-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		bins.holdfastd = filepath.Join(dir, "holdfastd")
		bins.holdfast = filepath.Join(dir, "holdfast")
		bins.agent = filepath.Join(dir, "holdfast-agent")
		bins.plugins = filepath.Join(dir, "plugins")
		builds := []struct{ out, pkg string }{
			{bins.holdfastd, "./appliance/cmd/holdfastd"},
			{bins.holdfast, "./tools/cmd/holdfast"},
			{bins.agent, "./agent/cmd/holdfast-agent"},
			{filepath.Join(bins.plugins, "fileserver", "holdfast-fileserver"), "./plugins/scenario/fileserver/cmd/holdfast-fileserver"},
			{filepath.Join(bins.plugins, "tcp", "holdfast-tcp"), "./plugins/transport/tcp/cmd/holdfast-tcp"},
		}
		for _, b := range builds {
			cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
			cmd.Dir = "../.."
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b.pkg, err, out)
				return 1
			}
		}
		seals := []manifest.Manifest{
			{Name: "fileserver", Kind: "scenario", Type: "fileserver", Version: "test", Binary: "holdfast-fileserver", Protocols: []int{1}},
			{Name: "tcp", Kind: "transport", Type: "tcp", Version: "test", Binary: "holdfast-tcp", Protocols: []int{1}},
		}
		for _, s := range seals {
			if err := manifest.Seal(filepath.Join(bins.plugins, s.Name, s.Binary), s); err != nil {
				fmt.Fprintln(os.Stderr, "seal plugin:", err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

func waitFor(t *testing.T, what string, limit time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestThreeHostsSurviveKillsAndOutages is the replication proof: master,
// replica and appliance each in a network namespace, a steady write load
// on the master, then the replica agent killed with SIGKILL, the replica's
// link down for 30 s, and the master agent restarted. Afterwards the
// replica tree must be byte-identical to the master's, metadata included,
// and no synchronization after the first may have sent the tree again.
func TestThreeHostsSurviveKillsAndOutages(t *testing.T) {
	if testing.Short() {
		t.Skip("the multi-host proof takes about two minutes; run without -short")
	}
	lab := newNetLab(t, "vault", "shop1", "dc2")
	base := t.TempDir()
	logs := logsDir(t, base, "holdfastd", "shop1", "dc2")

	// The appliance.
	data := filepath.Join(base, "appliance")
	conf := filepath.Join(base, "holdfastd.toml")
	writeFile(t, conf, fmt.Sprintf("data_dir = %q\nhost_name = \"vault\"\n[agents]\nlisten = \"%s:7421\"\n[plugins]\ndirs = [%q]\n",
		data, lab.addr("vault"), bins.plugins))
	lab.start(t, "vault", filepath.Join(logs, "holdfastd.log"), bins.holdfastd, "--config", conf, "--listen", "127.0.0.1:0")
	waitFor(t, "holdfastd to listen", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(data, "run", "agents.addr"))
		return err == nil
	})
	cli := holdfastCLI(t, data, func(name string, args ...string) *exec.Cmd { return lab.command("vault", name, args...) })
	waitFor(t, "the API", 30*time.Second, func() bool {
		cmd := lab.command("vault", bins.holdfast, "--data", data, "plugins", "list")
		return cmd.Run() == nil
	})

	// Enroll both agents over the lab network, as an operator would.
	state := map[string]string{}
	for _, host := range []string{"shop1", "dc2"} {
		var tok api.AgentToken
		if err := json.Unmarshal(cli("--json", "agent", "token", host), &tok); err != nil {
			t.Fatal(err)
		}
		state[host] = filepath.Join(base, "agent-"+host)
		out, err := lab.command(host, bins.agent, "enroll", "--appliance", tok.Appliance, "--server-name", tok.ServerName,
			"--token", tok.Token, "--fingerprint", tok.CAFingerprint, "--host", host, "--state", state[host]).CombinedOutput()
		if err != nil {
			t.Fatalf("enroll %s: %v\n%s", host, err, out)
		}
	}
	runAgent := func(host string, extra ...string) *proc {
		args := append([]string{"run", "--state", state[host], "--plugins", bins.plugins, "--poll", "500ms"}, extra...)
		return lab.start(t, host, filepath.Join(logs, host+".log"), bins.agent, args...)
	}
	replicaArgs := []string{"--listen", lab.addr("dc2") + ":7431"}
	master := runAgent("shop1")
	replicaAgent := runAgent("dc2", replicaArgs...)

	// A master tree with every kind of entry.
	root := filepath.Join(base, "master")
	target := filepath.Join(base, "replica")
	seedTree(t, root)
	def := filepath.Join(base, "branch.json")
	writeFile(t, def, fmt.Sprintf(`{"name":"branch","type":"fileserver","master":{"host":"shop1","roots":[%q]},"replicas":[{"host":"dc2","target":%q}]}`, root, target))
	cli("scenario", "create", "-f", def)
	cli("scenario", "run", "branch")
	status := func() api.ScenarioStatus {
		var st api.ScenarioStatus
		if err := json.Unmarshal(cli("--json", "scenario", "status", "branch"), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	identical := func() bool {
		a, errA := treeDigest(root)
		b, errB := treeDigest(target, ".holdfast")
		return errA == nil && errB == nil && slicesEqual(a, b)
	}
	waitFor(t, "the scenario to run and the first synchronization", 60*time.Second, func() bool {
		return status().State == "running" && identical()
	})

	// Steady writes on the master from here on.
	load := startLoad(t, root)

	time.Sleep(3 * time.Second)
	t.Log("SIGKILL the replica agent")
	replicaAgent.kill(syscall.SIGKILL)
	time.Sleep(2 * time.Second)
	runAgent("dc2", replicaArgs...) // stopped by the test's cleanup
	time.Sleep(3 * time.Second)

	t.Log("replica link down for 30 s")
	lab.linkDown("dc2")
	time.Sleep(30 * time.Second)
	lab.linkUp("dc2")
	time.Sleep(3 * time.Second)

	t.Log("restart the master agent")
	master.kill(syscall.SIGTERM)
	runAgent("shop1")
	time.Sleep(3 * time.Second)
	ops := load.stop()
	t.Logf("load: %d operations on the master", ops)

	deadline := time.Now().Add(120 * time.Second)
	for !identical() && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
	}
	a, _ := treeDigest(root)
	b, _ := treeDigest(target, ".holdfast")
	if !slicesEqual(a, b) {
		t.Fatalf("after 2 minutes the trees still differ:\n%s\nstatus: %s\nlog: %s", diffLines(a, b),
			cli("--json", "scenario", "status", "branch"), cli("log", "--limit", "30"))
	}
	t.Logf("replica identical to the master: %d entries, metadata and contents", len(a))
	if st := status(); st.State != "running" {
		t.Errorf("after catching up the scenario is %s: %+v", st.State, st)
	}

	// No full resynchronization: every synchronization after the first
	// sent a small part of the tree (what changed while the master agent
	// was down), not the tree again.
	var entries []api.LogEntry
	if err := json.Unmarshal(cli("--json", "log", "--code", string(messages.SyncFinished)), &entries); err != nil {
		t.Fatal(err)
	}
	if len(entries) < 2 {
		t.Fatalf("%d synchronizations logged, want the first and the one after the master agent restarted: %+v", len(entries), entries)
	}
	total := len(a)
	for i, e := range entries {
		sent := filesSent(t, e.Message)
		t.Logf("synchronization %d: %s", i+1, e.Message)
		if i > 0 && sent*5 > total {
			t.Errorf("synchronization %d sent %d files of %d: a full resynchronization", i+1, sent, total)
		}
	}
}

var syncFigures = regexp.MustCompile(`(\d+) differences; (\d+) files whole \(\d+ bytes\), (\d+) block-level`)

// filesSent reads how many files a synchronization's log line says it sent.
func filesSent(t *testing.T, msg string) int {
	t.Helper()
	if strings.Contains(msg, "already identical") {
		return 0
	}
	m := syncFigures.FindStringSubmatch(msg)
	if m == nil {
		t.Fatalf("cannot read the figures of %q", msg)
	}
	whole, _ := strconv.Atoi(m[2])
	block, _ := strconv.Atoi(m[3])
	return whole + block
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// seedTree makes files of several sizes, directories, a symlink, a hard
// link, unusual modes, an owner, extended attributes and old times.
func seedTree(t *testing.T, root string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	for d := 0; d < 8; d++ {
		dir := filepath.Join(root, fmt.Sprintf("dept%d", d), "docs")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := 0; f < 40; f++ {
			size := 100 + rng.IntN(20000)
			if f == 0 {
				size = 3 << 20 // large enough for block-level synchronization
			}
			buf := make([]byte, size)
			for i := range buf {
				buf[i] = byte(rng.IntN(256))
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file%02d.dat", f)), buf, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("dept0/docs/file01.dat", filepath.Join(root, "shortcut")))
	must(os.Link(filepath.Join(root, "dept1/docs/file01.dat"), filepath.Join(root, "dept1/hardlink.dat")))
	must(os.Chmod(filepath.Join(root, "dept2/docs/file03.dat"), 0o600))
	must(os.Chown(filepath.Join(root, "dept2/docs/file04.dat"), 1234, 5678))
	must(unix.Setxattr(filepath.Join(root, "dept3/docs/file05.dat"), "user.owner", []byte("finance"), 0))
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	must(os.Chtimes(filepath.Join(root, "dept4/docs/file06.dat"), old, old))
}

// load writes on the master until stopped: creates, appends, overwrites,
// renames across directories, deletes, mode changes and new directories,
// about 50 operations a second.
type load struct {
	stopc chan struct{}
	done  sync.WaitGroup
	ops   int
}

func startLoad(t *testing.T, root string) *load {
	l := &load{stopc: make(chan struct{})}
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		rng := rand.New(rand.NewPCG(3, 4))
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-l.stopc:
				return
			case <-tick.C:
			}
			dir := filepath.Join(root, fmt.Sprintf("dept%d", rng.IntN(8)), "docs")
			name := filepath.Join(dir, fmt.Sprintf("live%03d.txt", rng.IntN(200)))
			var err error
			switch rng.IntN(7) {
			case 0, 1:
				err = os.WriteFile(name, []byte(strings.Repeat(fmt.Sprintf("write %d\n", i), 1+rng.IntN(200))), 0o644)
			case 2:
				var f *os.File
				if f, err = os.OpenFile(name, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
					_, err = fmt.Fprintf(f, "appended %d\n", i)
					err = joinClose(err, f)
				}
			case 3:
				to := filepath.Join(root, fmt.Sprintf("dept%d", rng.IntN(8)), "docs", fmt.Sprintf("moved%03d.txt", i%300))
				err = os.Rename(name, to)
			case 4:
				err = os.Remove(name)
			case 5:
				err = os.Chmod(name, os.FileMode(0o600|rng.IntN(0o100)))
			case 6:
				err = os.MkdirAll(filepath.Join(dir, fmt.Sprintf("sub%d", rng.IntN(20))), 0o755)
			}
			if err != nil && !os.IsNotExist(err) {
				t.Errorf("load: %v", err)
				return
			}
			l.ops++
		}
	}()
	return l
}

func joinClose(err error, f *os.File) error {
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (l *load) stop() int {
	close(l.stopc)
	l.done.Wait()
	return l.ops
}
