package daemon

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/holdfast/holdfast/appliance/api"
	"github.com/holdfast/holdfast/appliance/config"
	"github.com/holdfast/holdfast/appliance/pluginhost"
	"github.com/holdfast/holdfast/plugins/sdk/manifest"
	"github.com/holdfast/holdfast/tools/cli"
)

// pluginsDir holds the real File Server plugin, built and sealed once for
// all tests of this package.
var pluginsDir string

// agentBin is holdfast-agent, built once.
var agentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "holdfast-daemon-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginsDir = filepath.Join(dir, "plugins")
	code := func() int {
		defer os.RemoveAll(dir)
		bin := filepath.Join(pluginsDir, "fileserver", "holdfast-fileserver")
		build := exec.Command("go", "build", "-o", bin, "github.com/holdfast/holdfast/plugins/scenario/fileserver/cmd/holdfast-fileserver")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build plugin: %v\n%s", err, out)
			return 1
		}
		if err := manifest.Seal(bin, manifest.Manifest{Name: "fileserver", Kind: "scenario", Type: "fileserver", Version: "test", Binary: "holdfast-fileserver", Protocols: []int{1}}); err != nil {
			fmt.Fprintln(os.Stderr, "seal plugin:", err)
			return 1
		}
		agentBin = filepath.Join(dir, "holdfast-agent")
		build = exec.Command("go", "build", "-o", agentBin, "github.com/holdfast/holdfast/agent/cmd/holdfast-agent")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build holdfast-agent: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

type testDaemon struct {
	data   string
	addr   string
	agents string // the agent listener's bound address
	token  string
	cancel context.CancelFunc
	done   chan error
}

// startDaemon runs holdfastd in-process on a fresh data directory (or the
// given one) with the given plugin folders.
func startDaemon(t *testing.T, data string, plugins ...string) *testDaemon {
	t.Helper()
	return startDaemonWith(t, data, Options{}, plugins...)
}

// testHostName is the appliance's name in daemon tests, so that its
// certificate does not depend on the machine's hostname.
const testHostName = "appliance.test"

func startDaemonWith(t *testing.T, data string, opts Options, plugins ...string) *testDaemon {
	t.Helper()
	if data == "" {
		data = t.TempDir()
	}
	t.Setenv("HOLDFAST_DATA", data)
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.API.Listen = "127.0.0.1:0"
	cfg.Agents.Listen = "127.0.0.1:0"
	cfg.HostName = testHostName
	cfg.Plugins.Dirs = plugins
	cfg.Plugins.CallTimeout = config.Duration(20 * time.Second)
	cfg.Plugins.RestartBackoffMin = config.Duration(100 * time.Millisecond)
	cfg.Plugins.RestartBackoffMax = config.Duration(time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	d := &testDaemon{data: data, cancel: cancel, done: make(chan error, 1)}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.Ready = func(a string) { ready <- a }
	go func() { d.done <- Run(ctx, cfg, opts, logger) }()
	select {
	case d.addr = <-ready:
	case err := <-d.done:
		t.Fatalf("daemon did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("daemon not ready after 30 s")
	}
	tok, err := os.ReadFile(filepath.Join(data, TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	d.token = strings.TrimSpace(string(tok))
	ag, err := os.ReadFile(filepath.Join(data, AgentsAddrFile))
	if err != nil {
		t.Fatal(err)
	}
	d.agents = strings.TrimSpace(string(ag))
	t.Cleanup(func() { d.stop(t) })
	return d
}

func (d *testDaemon) stop(t *testing.T) {
	t.Helper()
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("daemon stopped with error: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("daemon did not stop within 30 s")
	}
}

// cli runs the holdfast command line against the daemon.
func (d *testDaemon) cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = cli.Main(context.Background(), append([]string{"--data", d.data}, args...), &o, &e)
	return o.String(), e.String(), code
}

func (d *testDaemon) getJSON(t *testing.T, out any, args ...string) {
	t.Helper()
	stdout, stderr, code := d.cli(t, append([]string{"--json"}, args...)...)
	if code != 0 {
		t.Fatalf("holdfast --json %v: exit %d: %s", args, code, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), out); err != nil {
		t.Fatalf("decode %q: %v", stdout, err)
	}
}

func (d *testDaemon) plugin(t *testing.T, name string) pluginhost.PluginStatus {
	t.Helper()
	var list []pluginhost.PluginStatus
	d.getJSON(t, &list, "plugins", "list")
	for _, p := range list {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("plugin %s not listed: %+v", name, list)
	return pluginhost.PluginStatus{}
}

func (d *testDaemon) logHas(t *testing.T, code string) bool {
	t.Helper()
	var entries []api.LogEntry
	d.getJSON(t, &entries, "log", "--limit", "0", "--code", code)
	return len(entries) > 0
}

func masterTree(t *testing.T) (root, replica string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "master")
	replica = filepath.Join(base, "replica")
	for _, d := range []string{filepath.Join(root, "docs"), replica} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "docs", "a.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, replica
}

func TestAPIRequiresToken(t *testing.T) {
	d := startDaemon(t, "", pluginsDir)
	tests := []struct {
		name   string
		header string
	}{
		{"no header", ""},
		{"empty bearer", "Bearer "},
		{"wrong token", "Bearer " + strings.Repeat("0", 64)},
		{"token without scheme", d.token},
		{"token with a byte changed", "Bearer " + d.token[:len(d.token)-1] + "x"},
	}
	for _, tt := range tests {
		for _, path := range []string{"/api/v1/scenarios", "/api/v1/plugins", "/api/v1/log", "/api/v1/nowhere"} {
			t.Run(tt.name+path, func(t *testing.T) {
				req, _ := http.NewRequest("GET", "http://"+d.addr+path, nil)
				if tt.header != "" {
					req.Header.Set("Authorization", tt.header)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var body api.ErrorBody
				if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != http.StatusUnauthorized || body.Error.Code != "HF-E1010" {
					t.Errorf("status %d code %q, want 401 HF-E1010", resp.StatusCode, body.Error.Code)
				}
				if strings.Contains(body.Error.Message, d.token) {
					t.Error("the answer leaks the token")
				}
			})
		}
	}
	if !d.logHas(t, "HF-E1010") {
		t.Error("refused requests are not in the activity log")
	}
	st, err := os.Stat(filepath.Join(d.data, TokenFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
}

func TestScenarioLifecycleThroughCLI(t *testing.T) {
	d := startDaemon(t, "", pluginsDir)
	root, replica := masterTree(t)

	out, errOut, code := d.cli(t, "scenario", "create", "File Server - test", "--type", "fileserver", "--root", root, "--replica", "localhost:"+replica)
	if code != 0 {
		t.Fatalf("create: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "Entities (1)") || !strings.Contains(out, "volume") {
		t.Errorf("create output lacks the plugin's entity:\n%s", out)
	}

	var sc api.Scenario
	d.getJSON(t, &sc, "scenario", "show", "File Server - test")
	if sc.ID == 0 || sc.Type != "fileserver" || sc.State != "stopped" || !sc.Suspend || sc.SnapshotsKeep != 10 {
		t.Errorf("show = %+v", sc)
	}
	if len(sc.Entities) != 1 || len(sc.Entities[0].Paths) != 1 || sc.Entities[0].Paths[0] != root {
		t.Errorf("entities = %+v, want one volume entity covering %s", sc.Entities, root)
	}
	var list []api.Scenario
	d.getJSON(t, &list, "scenario", "list")
	if len(list) != 1 || list[0].Name != "File Server - test" {
		t.Errorf("list = %+v", list)
	}

	refusals := []struct {
		name string
		args []string
		code string
	}{
		{"duplicate name", []string{"scenario", "create", "File Server - test", "--type", "fileserver", "--root", root, "--replica", replica}, "HF-E4004"},
		{"unknown type", []string{"scenario", "create", "x", "--type", "oracle", "--root", root, "--replica", replica}, "HF-E3009"},
		{"relative root", []string{"scenario", "create", "x", "--type", "fileserver", "--root", "rel/dir", "--replica", replica}, "HF-E4003"},
		{"missing root directory", []string{"scenario", "create", "x", "--type", "fileserver", "--root", root + "/absent", "--replica", replica}, "HF-E4008"},
		{"replica inside root", []string{"scenario", "create", "x", "--type", "fileserver", "--root", root, "--replica", root + "/copy"}, "HF-E4003"},
		{"no consistency", []string{"scenario", "create", "x", "--type", "fileserver", "--root", root, "--replica", replica, "--no-suspend"}, "HF-E4002"},
		{"unknown remote master", []string{"scenario", "create", "x", "--type", "fileserver", "--master", "branch7", "--root", root, "--replica", replica}, "HF-E4003"},
		{"show missing", []string{"scenario", "show", "nope"}, "HF-E4005"},
		{"delete missing", []string{"scenario", "delete", "nope"}, "HF-E4005"},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			_, errOut, code := d.cli(t, r.args...)
			if code == 0 || !strings.Contains(errOut, r.code) || !strings.Contains(errOut, "action:") {
				t.Errorf("exit %d, stderr %q; want a failure with %s and its action", code, errOut, r.code)
			}
		})
	}
	d.getJSON(t, &list, "scenario", "list")
	if len(list) != 1 {
		t.Errorf("refused definitions changed the catalog: %+v", list)
	}
	if !d.logHas(t, "HF-E4004") || !d.logHas(t, "HF-I4006") {
		t.Error("creation and refusal are not in the activity log")
	}

	if _, errOut, code := d.cli(t, "scenario", "delete", "File Server - test"); code != 0 {
		t.Fatalf("delete: %s", errOut)
	}
	d.getJSON(t, &list, "scenario", "list")
	if len(list) != 0 {
		t.Errorf("after delete: %+v", list)
	}
	if _, err := os.Stat(filepath.Join(root, "docs", "a.txt")); err != nil {
		t.Errorf("delete touched the master's data: %v", err)
	}
}

func TestMalformedBodies(t *testing.T) {
	d := startDaemon(t, "", pluginsDir)
	tests := []struct {
		name, body string
		status     int
		code       string
	}{
		{"not json", "{", 400, "HF-E1011"},
		{"unknown field", `{"name":"x","tpye":"fileserver"}`, 400, "HF-E1011"},
		{"wrong type", `{"name":7}`, 400, "HF-E1011"},
		{"two values", `{"name":"x"}{"name":"y"}`, 400, "HF-E1011"},
		{"empty object", `{}`, 400, "HF-E4003"},
		{"huge", `{"name":"` + strings.Repeat("a", 2<<20) + `"}`, 400, "HF-E1011"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", "http://"+d.addr+"/api/v1/scenarios", strings.NewReader(tt.body))
			req.Header.Set("Authorization", "Bearer "+d.token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body api.ErrorBody
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status || body.Error.Code != tt.code {
				t.Errorf("got %d %s (%s), want %d %s", resp.StatusCode, body.Error.Code, body.Error.Message, tt.status, tt.code)
			}
		})
	}
}

func TestKilledPluginIsRestarted(t *testing.T) {
	d := startDaemon(t, "", pluginsDir)
	before := d.plugin(t, "fileserver")
	if before.State != "running" || before.PID <= 0 {
		t.Fatalf("plugin not running: %+v", before)
	}
	if before.PID == os.Getpid() {
		t.Fatal("plugin runs inside the daemon's process")
	}
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	var after pluginhost.PluginStatus
	for time.Now().Before(deadline) {
		after = d.plugin(t, "fileserver")
		if after.State == "running" && after.PID > 0 && after.PID != before.PID {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if after.State != "running" || after.PID == before.PID || after.Restarts < 1 {
		t.Fatalf("plugin not restarted: before %+v after %+v", before, after)
	}
	if !d.logHas(t, "HF-W3005") {
		t.Error("the crash is not in the activity log")
	}
	root, replica := masterTree(t)
	if _, errOut, code := d.cli(t, "scenario", "create", "after-crash", "--type", "fileserver", "--root", root, "--replica", replica); code != 0 {
		t.Errorf("restarted plugin does not serve: %s", errOut)
	}
}

func TestTamperedPluginRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plugins")
	copyTree(t, pluginsDir, dir)
	bin := filepath.Join(dir, "fileserver", "holdfast-fileserver")
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, "", dir)
	p := d.plugin(t, "fileserver")
	if p.State != "refused" || p.LastCode != "HF-E3002" || p.PID != 0 {
		t.Errorf("tampered plugin: %+v, want refused with HF-E3002 and no process", p)
	}
	if !d.logHas(t, "HF-E3002") {
		t.Error("refusal not in the activity log")
	}
	root, replica := masterTree(t)
	_, errOut, code := d.cli(t, "scenario", "create", "x", "--type", "fileserver", "--root", root, "--replica", replica)
	if code == 0 || !strings.Contains(errOut, "HF-E3009") && !strings.Contains(errOut, "HF-E3010") {
		t.Errorf("create with a refused plugin: exit %d %q", code, errOut)
	}
}

func TestRestartKeepsCatalogAndToken(t *testing.T) {
	data := t.TempDir()
	d := startDaemon(t, data, pluginsDir)
	root, replica := masterTree(t)
	if _, errOut, code := d.cli(t, "scenario", "create", "kept", "--type", "fileserver", "--root", root, "--replica", replica); code != 0 {
		t.Fatal(errOut)
	}
	token := d.token
	d.stop(t)
	if _, err := os.Stat(filepath.Join(data, AddrFile)); !os.IsNotExist(err) {
		t.Errorf("api.addr left behind after a clean stop: %v", err)
	}
	d2 := startDaemon(t, data, pluginsDir)
	if d2.token != token {
		t.Error("token changed across restarts")
	}
	var sc api.Scenario
	d2.getJSON(t, &sc, "scenario", "show", "kept")
	if sc.Name != "kept" || len(sc.Entities) != 1 {
		t.Errorf("after restart: %+v", sc)
	}
	if !d2.logHas(t, "HF-I1002") {
		t.Error("clean stop not logged")
	}
}

func TestExposedTokenRefused(t *testing.T) {
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, TokenFile), []byte(strings.Repeat("a", 64)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOLDFAST_DATA", data)
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.API.Listen = "127.0.0.1:0"
	cfg.Agents.Listen = "127.0.0.1:0"
	cfg.HostName = testHostName
	err = Run(context.Background(), cfg, Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "HF-E1021") || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("err = %v, want HF-E1021 telling to chmod 600", err)
	}
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if info.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDamagedScenarioRecord(t *testing.T) {
	data := t.TempDir()
	d := startDaemon(t, data, pluginsDir)
	root, replica := masterTree(t)
	for _, name := range []string{"first", "second"} {
		if _, errOut, code := d.cli(t, "scenario", "create", name, "--type", "fileserver", "--root", root, "--replica", replica+"-"+name); code != 0 {
			t.Fatal(errOut)
		}
	}
	d.stop(t)

	// Flip one byte of scenario 1's stored record behind the catalog's back.
	db, err := pebble.Open(filepath.Join(data, "catalog"), &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	key := binary.BigEndian.AppendUint64([]byte("s/"), 1)
	v, closer, err := db.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	damaged := append([]byte(nil), v...)
	closer.Close()
	damaged[len(damaged)/2] ^= 0x20
	if err := db.Set(key, damaged, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	d2 := startDaemon(t, data, pluginsDir)
	var list []api.Scenario
	d2.getJSON(t, &list, "scenario", "list")
	if len(list) != 1 || list[0].Name != "second" {
		t.Errorf("list = %+v, want the intact scenario only", list)
	}
	_, errOut, code := d2.cli(t, "scenario", "show", "first")
	if code == 0 || !strings.Contains(errOut, "HF-E4001") {
		t.Errorf("show damaged: exit %d %q, want HF-E4001", code, errOut)
	}
	if !d2.logHas(t, "HF-E2002") || !d2.logHas(t, "HF-E4001") {
		t.Error("the damage is not in the activity log")
	}
	var sc api.Scenario
	d2.getJSON(t, &sc, "scenario", "show", "second")
	if len(sc.Entities) != 1 {
		t.Errorf("intact scenario lost its entities: %+v", sc)
	}
}

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// waitState polls the scenario's status until it reaches state.
func (d *testDaemon) waitState(t *testing.T, name, state string) api.ScenarioStatus {
	t.Helper()
	var st api.ScenarioStatus
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		d.getJSON(t, &st, "scenario", "status", name)
		if st.State == state {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("scenario %s is %s, want %s: %+v", name, st.State, state, st)
	return st
}

func (d *testDaemon) waitIdentical(t *testing.T, name string) {
	t.Helper()
	var diffs []api.DifferenceEntry
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		d.getJSON(t, &diffs, "report", "difference", name)
		if len(diffs) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("master and replica still differ: %+v", diffs)
}

func TestScenarioReplicatesAndSurvivesRestart(t *testing.T) {
	data := t.TempDir()
	d := startDaemon(t, data, pluginsDir)
	root, replica := masterTree(t)
	if _, errOut, code := d.cli(t, "scenario", "create", "rep", "--type", "fileserver", "--root", root, "--replica", replica); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := d.cli(t, "scenario", "suspend", "rep"); code == 0 || !strings.Contains(errOut, "HF-E4050") {
		t.Errorf("suspend of a stopped scenario: exit %d %q, want HF-E4050", code, errOut)
	}
	if _, errOut, code := d.cli(t, "scenario", "run", "rep"); code != 0 {
		t.Fatal(errOut)
	}
	d.waitState(t, "rep", "running")
	d.waitIdentical(t, "rep")
	if b, err := os.ReadFile(filepath.Join(replica, "docs", "a.txt")); err != nil || string(b) != "hello" {
		t.Fatalf("replica content = %q, %v", b, err)
	}
	if _, errOut, code := d.cli(t, "scenario", "run", "rep"); code == 0 || !strings.Contains(errOut, "HF-E4051") {
		t.Errorf("second run: exit %d %q, want HF-E4051", code, errOut)
	}
	if _, errOut, code := d.cli(t, "scenario", "delete", "rep"); code == 0 || !strings.Contains(errOut, "HF-E4051") {
		t.Errorf("delete while running: exit %d %q, want a refusal", code, errOut)
	}

	// Live change, then a daemon restart: the scenario runs again by
	// itself and a change made while the daemon was down arrives.
	if err := os.WriteFile(filepath.Join(root, "docs", "live.txt"), []byte("live"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.waitIdentical(t, "rep")
	d.stop(t)
	if err := os.WriteFile(filepath.Join(root, "docs", "offline.txt"), []byte("written while down"), 0o644); err != nil {
		t.Fatal(err)
	}
	d2 := startDaemon(t, data, pluginsDir)
	d2.waitState(t, "rep", "running")
	d2.waitIdentical(t, "rep")
	var list []api.Scenario
	d2.getJSON(t, &list, "scenario", "list")
	if len(list) != 1 || list[0].State != "running" {
		t.Errorf("list after restart: %+v", list)
	}
	out, _, code := d2.cli(t, "report", "replication", "rep")
	if code != 0 || !strings.Contains(out, "LAG P99") {
		t.Errorf("replication report: %q", out)
	}
	if _, errOut, code := d2.cli(t, "scenario", "stop", "rep"); code != 0 {
		t.Fatal(errOut)
	}
	d2.waitState(t, "rep", "stopped")
	for _, c := range []string{"HF-I4040", "HF-I4041", "HF-I4042"} {
		if !d2.logHas(t, c) {
			t.Errorf("activity log lacks %s", c)
		}
	}
}

func TestScenarioThatCannotRestartShowsProblem(t *testing.T) {
	data := t.TempDir()
	d := startDaemon(t, data, pluginsDir)
	root, replica := masterTree(t)
	if _, errOut, code := d.cli(t, "scenario", "create", "gone", "--type", "fileserver", "--root", root, "--replica", replica); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := d.cli(t, "scenario", "run", "gone"); code != 0 {
		t.Fatal(errOut)
	}
	d.waitState(t, "gone", "running")
	d.stop(t)
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	d2 := startDaemon(t, data, pluginsDir)
	st := d2.waitState(t, "gone", "problem")
	if st.Problem == "" {
		t.Error("problem state without a reason")
	}
	if !d2.logHas(t, "HF-E4053") {
		t.Error("the failed restart is not in the activity log")
	}
	if _, errOut, code := d2.cli(t, "scenario", "stop", "gone"); code != 0 {
		t.Fatalf("stop of a scenario in problem: %s", errOut)
	}
	d2.waitState(t, "gone", "stopped")
}
