package daemon

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/appliance/api"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/diskstore"
)

// childDaemon is holdfastd run as a child process, so that a test can
// SIGKILL it; the holdfast CLI finds it through the data directory, as
// for the in-process daemon.
type childDaemon struct {
	*testDaemon
	bin    string
	config string
	log    *os.File
	cmd    *exec.Cmd
	exited chan error // the result of cmd.Wait
}

// buildHoldfastd builds holdfastd into a temporary folder (fast after the
// first time: the build cache keeps the compiled packages).
func buildHoldfastd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "holdfastd")
	build := exec.Command("go", "build", "-o", bin, "github.com/holdfast/holdfast/appliance/cmd/holdfastd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build holdfastd: %v\n%s", err, out)
	}
	return bin
}

// startChildDaemon writes a configuration like startDaemonWith's (loopback
// port 0, test host name, the test plugins, quick plugin restarts; no
// agent listener and no rewind journal, which these tests do not need) and
// starts holdfastd on data.
func startChildDaemon(t *testing.T, bin, data string) *childDaemon {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "holdfastd.toml")
	text := fmt.Sprintf(`data_dir = %q
host_name = %q
[api]
listen = "127.0.0.1:0"
[agents]
listen = ""
[plugins]
dirs = [%q]
call_timeout = "20s"
restart_backoff_min = "100ms"
restart_backoff_max = "1s"
[rewind]
enabled = false
`, data, testHostName, pluginsDir)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "holdfastd.log"))
	if err != nil {
		t.Fatal(err)
	}
	d := &childDaemon{testDaemon: &testDaemon{data: data}, bin: bin, config: conf, log: logf}
	t.Cleanup(func() {
		d.kill(t)
		logf.Close()
	})
	d.start(t)
	return d
}

// start runs holdfastd and waits until its API answers.
func (d *childDaemon) start(t *testing.T) {
	t.Helper()
	addrFile := filepath.Join(d.data, "run", "api.addr")
	if err := os.Remove(addrFile); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	d.cmd = exec.Command(d.bin, "--config", d.config)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	// The daemon dies with the test binary, whatever happens to the test.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, _, code := d.cli(t, "job", "list"); code == 0 {
			break
		}
		select {
		case err := <-exited:
			d.cmd = nil
			t.Fatalf("holdfastd exited at start: %v; log:\n%s", err, d.logText(t))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("holdfastd not answering after 30 s; log:\n%s", d.logText(t))
		}
	}
	d.exited = exited
}

// kill sends SIGKILL and waits for the process to be gone.
func (d *childDaemon) kill(t *testing.T) {
	t.Helper()
	d.signal(t, syscall.SIGKILL)
}

// stop asks holdfastd to stop as an operator would (SIGTERM).
func (d *childDaemon) stop(t *testing.T) {
	t.Helper()
	d.signal(t, syscall.SIGTERM)
}

func (d *childDaemon) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if d.cmd == nil {
		return
	}
	if err := syscall.Kill(d.cmd.Process.Pid, sig); err != nil {
		t.Errorf("signal holdfastd: %v", err)
	}
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Errorf("holdfastd still running 30 s after %v", sig)
	}
	d.cmd = nil
}

func (d *childDaemon) logText(t *testing.T) string {
	t.Helper()
	b, _ := os.ReadFile(d.log.Name())
	return string(b)
}

// job shows a job. (Decoding into a fresh value matters: fields the
// answer omits, like sessions or progress, must not keep older values.)
func (d *testDaemon) job(t *testing.T, id uint64) api.Job {
	t.Helper()
	var j api.Job
	d.getJSON(t, &j, "job", "show", strconv.FormatUint(id, 10))
	return j
}

// waitJob polls a job until it is Done, for at most 90 s (a hang guard).
func (d *testDaemon) waitJob(t *testing.T, id uint64) api.Job {
	t.Helper()
	return d.waitJobWithin(t, id, 90*time.Second)
}

// waitJobWithin polls a job until it is Done.
func (d *testDaemon) waitJobWithin(t *testing.T, id uint64, within time.Duration) api.Job {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		j := d.job(t, id)
		if j.State == "done" {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d still %s after %v: %+v", id, j.State, within, j)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logEntries returns the activity log's entries with the given code.
func (d *testDaemon) logEntries(t *testing.T, code string) []api.LogEntry {
	t.Helper()
	var entries []api.LogEntry
	d.getJSON(t, &entries, "log", "--limit", "0", "--code", code)
	return entries
}

// randomFile writes n pseudo-random (incompressible) bytes from seed and
// returns their SHA-256.
func randomFile(t *testing.T, p string, n int, seed uint64) [32]byte {
	t.Helper()
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	rng := rand.NewChaCha8(key)
	b := make([]byte, n)
	rng.Read(b)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// checkTree fails the test unless dir holds exactly the files of want
// (relative path -> SHA-256), besides directories.
func checkTree(t *testing.T, dir string, want map[string][32]byte) {
	t.Helper()
	got := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if !de.Type().IsRegular() {
			t.Errorf("%s: unexpected %v", rel, de.Type())
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		got[rel] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for rel, h := range want {
		if g, ok := got[rel]; !ok {
			t.Errorf("%s missing from %s", rel, dir)
		} else if !bytes.Equal(g[:], h[:]) {
			t.Errorf("%s in %s differs from the backed-up content", rel, dir)
		}
	}
	for rel := range got {
		if _, ok := want[rel]; !ok {
			t.Errorf("%s in %s was not expected", rel, dir)
		}
	}
}

// openStoreOf opens the disk store of a stopped daemon's data directory.
func openStoreOf(t *testing.T, data string) *diskstore.Store {
	t.Helper()
	key, err := os.ReadFile(filepath.Join(data, StoreKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	store, err := diskstore.Open(filepath.Join(data, StoreDir), diskstore.WithApplianceKey(key), diskstore.Options{})
	if err != nil {
		t.Fatalf("open the store after the daemon stopped: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// catalogSessions lists every session record of a stopped daemon's
// catalog (IDs are given out in order from 1).
func catalogSessions(t *testing.T, data string) []catalog.Session {
	t.Helper()
	cat, err := catalog.Open(filepath.Join(data, "catalog"), catalog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	var out []catalog.Session
	for id := uint64(1); ; id++ {
		s, err := cat.Session(id)
		if err != nil {
			if !errors.Is(err, catalog.ErrNotFound) {
				t.Fatalf("catalog session %d: %v", id, err)
			}
			return out
		}
		out = append(out, s)
	}
}

func sha256Of(s string) [32]byte { return sha256.Sum256([]byte(s)) }
