package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/control"
	"github.com/holdfast/holdfast/agent/datastream"
	"github.com/holdfast/holdfast/agent/enroll"
	"github.com/holdfast/holdfast/appliance/agenttasks"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/pki"
	"github.com/holdfast/holdfast/plugins/sdk/manifest"
)

// tcpPlugins is a plugin folder with the TCP transport, which
// holdfast-agent run needs; built once, on first use.
var tcpPlugins = sync.OnceValues(func() (string, error) {
	dir := filepath.Join(filepath.Dir(pluginsDir), "agent-plugins")
	bin := filepath.Join(dir, "tcp", "holdfast-tcp")
	build := exec.Command("go", "build", "-o", bin, "github.com/holdfast/holdfast/plugins/transport/tcp/cmd/holdfast-tcp")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build holdfast-tcp: %v\n%s", err, out)
	}
	err := manifest.Seal(bin, manifest.Manifest{Name: "tcp", Kind: "transport", Type: "tcp", Version: "test", Binary: "holdfast-tcp", Protocols: []int{1}})
	return dir, err
})

// taskAgent is a holdfast-agent process enrolled with a test daemon.
type taskAgent struct {
	host, state, log string
	cmd              *exec.Cmd
}

func startTaskDaemon(t *testing.T) (*testDaemon, *agenttasks.Hub) {
	t.Helper()
	var hub *agenttasks.Hub
	d := startDaemonWith(t, "", Options{AgentTasks: func(h *agenttasks.Hub) { hub = h }})
	if hub == nil {
		t.Fatal("the daemon did not hand out its task hub")
	}
	return d, hub
}

// enrollAgent enrolls host into a fresh state directory.
func (d *testDaemon) enrollAgent(t *testing.T, host string) *taskAgent {
	t.Helper()
	state := filepath.Join(t.TempDir(), "agent-"+host)
	if _, err := enroll.Enroll(context.Background(), enrollOpts(d.newToken(t, host, ""), host, state)); err != nil {
		t.Fatalf("enroll %s: %v", host, err)
	}
	return &taskAgent{host: host, state: state, log: filepath.Join(t.TempDir(), host+".log")}
}

// run starts the agent's process, polling every 200 ms; the test's end
// kills it.
func (a *taskAgent) run(t *testing.T) {
	t.Helper()
	plugins, err := tcpPlugins()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(a.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a.cmd = exec.Command(agentBin, "run", "--state", a.state, "--plugins", plugins, "--poll", "200ms")
	a.cmd.Stdout, a.cmd.Stderr = f, f
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := a.cmd
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			b, _ := os.ReadFile(a.log)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("--- end of the agent's log:\n%s", b)
		}
	})
}

func (a *taskAgent) kill() {
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	_ = a.cmd.Wait()
}

// memEntry is an entry with its content, as a test keeps it.
type memEntry struct {
	h       datastream.Header
	content []byte
}

func source(es []memEntry) func(put func(datastream.Header, io.Reader) error) error {
	return func(put func(datastream.Header, io.Reader) error) error {
		for _, e := range es {
			if err := put(e.h, bytes.NewReader(e.content)); err != nil {
				return err
			}
		}
		return nil
	}
}

func fileEntry(p, content string) memEntry {
	return memEntry{h: datastream.Header{Type: datastream.File, Path: p, Mode: 0o640, MTime: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC).UnixNano(), Size: int64(len(content))}, content: []byte(content)}
}

func mustNotExist(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s exists (or cannot be checked: %v): the restore wrote outside its folder", p, err)
	}
}

// A hostile stream, through a real agent: nothing lands outside the
// destination, each refused entry is named, the rest is written whole.
func TestAgentTaskHostileRestore(t *testing.T) {
	d, hub := startTaskDaemon(t)
	agent := d.enrollAgent(t, "web1.example")
	agent.run(t)

	base := t.TempDir()
	dest := filepath.Join(base, "dest")
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(t.TempDir(), "abs-target") // "/abs" made to point somewhere checkable
	es := []memEntry{
		{h: datastream.Header{Type: datastream.Dir, Path: "good", Mode: 0o750}},
		fileEntry("good/one.txt", "first good file"),
		fileEntry("../escape", "climbed out"),
		fileEntry(abs, "absolute"),
		fileEntry("a/../../b", "climbed out through a"),
		{h: datastream.Header{Type: datastream.Symlink, Path: "link", Mode: 0o777, Target: outside}},
		fileEntry("link/file", "through the planted link"),
		fileEntry("z-last.txt", "the rest goes on"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last agenttasks.Progress
	res, err := hub.Restore(ctx, agent.host, dest, "overwrite", source(es), func(p agenttasks.Progress) { last = p })
	if err != nil {
		t.Fatalf("restore: %v", err)
	}

	mustNotExist(t, filepath.Join(base, "escape"))
	mustNotExist(t, filepath.Join(base, "b"))
	mustNotExist(t, abs)
	mustNotExist(t, filepath.Join(outside, "file"))
	for _, e := range []memEntry{es[1], es[7]} {
		got, err := os.ReadFile(filepath.Join(dest, e.h.Path))
		if err != nil || !bytes.Equal(got, e.content) {
			t.Errorf("%s: %q, %v; want %q", e.h.Path, got, err, e.content)
		}
		if st, err := os.Stat(filepath.Join(dest, e.h.Path)); err != nil || st.Mode().Perm() != 0o640 || !st.ModTime().Equal(time.Unix(0, e.h.MTime)) {
			t.Errorf("%s: mode or time not restored: %v", e.h.Path, st)
		}
	}
	if target, err := os.Readlink(filepath.Join(dest, "link")); err != nil || target != outside {
		t.Errorf("link: %q, %v; want the symlink restored as it was", target, err)
	}

	refused := map[string]bool{}
	for _, p := range res.TaskResult.Problems {
		if p.Kind != control.ProblemRefused {
			t.Errorf("problem %+v, want kind refused", p)
		}
		refused[p.Path] = true
	}
	for _, p := range []string{"../escape", abs, "a/../../b", "link/file"} {
		if !refused[p] {
			t.Errorf("%s not listed as refused in %+v", p, res.TaskResult.Problems)
		}
	}
	wantBytes := int64(len(es[1].content) + len(es[7].content))
	if res.Written != 4 || res.Failed != 4 || res.Skipped != 0 || res.Bytes != wantBytes || res.Error != "" {
		t.Errorf("result %+v; want 4 written (good, good/one.txt, link, z-last.txt), 4 failed, %d bytes", res.TaskResult, wantBytes)
	}
	if last.Entries != int64(len(es)) {
		t.Errorf("last progress %+v, want %d entries", last, len(es))
	}
	msgs := res.Problems()
	if len(msgs) != 4 || msgs[0].Code != messages.TaskEntryRefused || !strings.Contains(msgs[0].Error(), "web1.example") {
		t.Errorf("problem messages %v", msgs)
	}
	if ts := hub.Tasks(agent.host); len(ts) != 0 {
		t.Errorf("finished task still assigned: %+v", ts)
	}
}

// makeTree fills dir with a small tree: directories, files (one over
// several stream chunks), a symlink, odd modes.
func makeTree(t *testing.T, dir string) {
	t.Helper()
	big := make([]byte, 3<<20+17)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"a.txt":             []byte("alpha"),
		"empty":             nil,
		"sub/b.txt":         []byte("bravo"),
		"sub/deeper/c.bin":  big,
		"sub/other/d.txt":   []byte("delta"),
		"exec/run.sh":       []byte("#!/bin/sh\necho hi\n"),
		"sub/deeper/é ü.md": []byte("unicode names"),
	}
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, c, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must(t, os.Chmod(filepath.Join(dir, "exec/run.sh"), 0o4755))
	must(t, os.Chmod(filepath.Join(dir, "sub/other"), 0o2750))
	must(t, os.Symlink("../a.txt", filepath.Join(dir, "sub/link")))
	when := time.Date(2023, 1, 2, 3, 4, 5, 600, time.UTC)
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && p != dir {
			_ = os.Chtimes(p, when, when)
			if e.Type()&fs.ModeSymlink != 0 {
				_ = lutimes(p, when)
			}
		}
		return nil
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func lutimes(p string, when time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(when.UnixNano()), unix.NsecToTimespec(when.UnixNano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// treeOf describes dir: per relative path, type, mode, time and content.
func treeOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d", st.Mode(), st.ModTime().UnixNano())
		switch {
		case st.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", b)
		case st.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Read a directory from an agent, restore it to another folder on the
// agent with each policy, and compare.
func TestAgentTaskReadAndRestoreRoundTrip(t *testing.T) {
	d, hub := startTaskDaemon(t)
	agent := d.enrollAgent(t, "web1.example")
	agent.run(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	var got []memEntry
	sink := func(h datastream.Header, content io.Reader) error {
		e := memEntry{h: h}
		if content != nil {
			b, err := io.ReadAll(content)
			if err != nil {
				return err
			}
			e.content = b
		}
		got = append(got, e)
		return nil
	}
	res, err := hub.Read(ctx, agent.host, src, nil, sink, nil)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if res.Written != int64(len(got)) || res.Failed != 0 || len(got) != len(treeOf(t, src)) || res.Streamed.Entries != int64(len(got)) {
		t.Fatalf("read result %+v, %d entries received; want all %d entries of the tree", res.TaskResult, len(got), len(treeOf(t, src)))
	}
	if res.Bytes != res.Streamed.Bytes || res.Bytes < 3<<20 {
		t.Errorf("agent counted %d bytes, appliance received %d", res.Bytes, res.Streamed.Bytes)
	}

	// Restored elsewhere, the tree is the same, byte for byte, with
	// modes, times and the symlink.
	dest := filepath.Join(t.TempDir(), "dest")
	res, err = hub.Restore(ctx, agent.host, dest, "overwrite", source(got), nil)
	if err != nil || res.Written != int64(len(got)) || res.Failed != 0 {
		t.Fatalf("restore: %+v, %v", res.TaskResult, err)
	}
	want := treeOf(t, src)
	compareTrees(t, want, treeOf(t, dest))

	// skip keeps what is there, overwrite replaces it.
	changed := filepath.Join(dest, "sub/b.txt")
	must(t, os.WriteFile(changed, []byte("changed on the agent"), 0o600))
	res, err = hub.Restore(ctx, agent.host, dest, "skip", source(got), nil)
	if err != nil {
		t.Fatal(err)
	}
	dirs := 0
	for _, e := range got {
		if e.h.Type == datastream.Dir {
			dirs++
		}
	}
	if res.Skipped != int64(len(got)-dirs) || res.Written != int64(dirs) {
		t.Errorf("skip: %+v; want %d skipped (all but the %d directories, which merge)", res.TaskResult, len(got)-dirs, dirs)
	}
	if b, _ := os.ReadFile(changed); string(b) != "changed on the agent" {
		t.Errorf("skip overwrote %s: %q", changed, b)
	}
	if _, err := hub.Restore(ctx, agent.host, dest, "overwrite", source(got), nil); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, want, treeOf(t, dest))

	// A read of some paths brings them with their parents only; a FIFO
	// is skipped, a missing path is a problem, not a failure.
	must(t, unix.Mkfifo(filepath.Join(src, "sub/other/pipe"), 0o600))
	got = nil
	res, err = hub.Read(ctx, agent.host, src, []string{"sub/deeper/é ü.md", "sub/other", "nope/x"}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped != 1 || res.Failed != 1 || len(res.TaskResult.Problems) != 1 || res.TaskResult.Problems[0].Path != "nope" {
		t.Errorf("read of paths: %+v; want the FIFO skipped and nope unreadable", res.TaskResult)
	}
	if msgs := res.Problems(); len(msgs) != 1 || msgs[0].Code != messages.TaskEntryUnreadable {
		t.Errorf("problem messages %v, want one %s", msgs, messages.TaskEntryUnreadable)
	}
	var paths []string
	for _, e := range got {
		paths = append(paths, e.h.Path)
	}
	if strings.Join(paths, ",") != "sub,sub/deeper,sub/deeper/é ü.md,sub/other,sub/other/d.txt" {
		t.Errorf("read of two paths streamed %q", paths)
	}
}

func compareTrees(t *testing.T, want, got map[string]string) {
	t.Helper()
	for p, w := range want {
		if got[p] != w {
			g := got[p]
			t.Errorf("%s: got %.80s, want %.80s", p, g, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s restored but not in the source", p)
		}
	}
}

// An agent killed in the middle of a restore: the call ends with an
// error well before its deadline; the restarted agent does not redo the
// task.
func TestAgentTaskAgentKilled(t *testing.T) {
	d, hub := startTaskDaemon(t)
	agent := d.enrollAgent(t, "web1.example")
	agent.run(t)
	dest := filepath.Join(t.TempDir(), "dest")
	killed := make(chan struct{})
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	src := func(put func(datastream.Header, io.Reader) error) error {
		if err := put(fileEntry("first.txt", "before the kill").h, strings.NewReader("before the kill")); err != nil {
			return err
		}
		<-killed
		for i := 0; i < 1024; i++ {
			h := datastream.Header{Type: datastream.File, Path: fmt.Sprintf("after-%d", i), Mode: 0o600, Size: int64(len(chunk))}
			if err := put(h, bytes.NewReader(chunk)); err != nil {
				return err
			}
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type outcome struct {
		res agenttasks.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := hub.Restore(ctx, agent.host, dest, "overwrite", src, nil)
		done <- outcome{res, err}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dest, "first.txt")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			close(killed)
			t.Fatal("the agent did not restore the first file within 20 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	agent.kill()
	close(killed)
	var o outcome
	select {
	case o = <-done:
	case <-time.After(50 * time.Second):
		t.Fatal("Restore still waits 50 s after the agent was killed")
	}
	if o.err == nil || ctx.Err() != nil {
		t.Fatalf("restore after the kill: %+v, %v (context: %v); want an error before the deadline", o.res.TaskResult, o.err, ctx.Err())
	}
	if c := messages.CodeOf(o.err); c != messages.TaskAgentLost && c != messages.TaskFailed {
		t.Errorf("err = %v, want %s or %s", o.err, messages.TaskAgentLost, messages.TaskFailed)
	}
	t.Logf("restore ended: %v", o.err)

	// The restarted agent finds the task it was running unfinished and
	// reports it, once; it does not restore it again.
	agent.run(t)
	deadline = time.Now().Add(20 * time.Second)
	for {
		var st struct{ Started, Finished map[string]time.Time }
		b, _ := os.ReadFile(filepath.Join(agent.state, "tasks.json"))
		_ = json.Unmarshal(b, &st)
		_, started := st.Started[o.res.Task]
		_, finished := st.Finished[o.res.Task]
		if !started && finished {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted agent did not settle the interrupted task %s: %s", o.res.Task, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(dest, "after-0")); err == nil {
		t.Error("the restarted agent ran the interrupted restore again")
	}
}

// Another agent cannot fetch a task that is not its own: for it, the
// task does not exist.
func TestAgentTaskOtherHostRefused(t *testing.T) {
	d, hub := startTaskDaemon(t)
	d.enrollAgent(t, "web1.example") // enrolled, not running
	other := d.enrollAgent(t, "db1.example")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := hub.Restore(ctx, "web1.example", "/srv/x", "overwrite", source(nil), nil)
		done <- err
	}()
	var id string
	for deadline := time.Now().Add(10 * time.Second); id == ""; {
		if ts := hub.Tasks("web1.example"); len(ts) == 1 {
			id = ts[0].ID
		} else if time.Now().After(deadline) {
			t.Fatal("task not registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cert, pool, err := pki.LoadIdentity(other.state)
	if err != nil {
		t.Fatal(err)
	}
	client := control.NewClient(d.agents, pki.ClientTLS(cert, pool, testHostName, nil))
	defer client.Close()
	var refused *control.RefusedError
	if _, err := client.TaskStream(ctx, id); !errors.As(err, &refused) || !strings.Contains(refused.Status, "404") {
		t.Errorf("other host fetching the stream: %v, want 404", err)
	}
	if err := client.TaskResult(ctx, id, control.TaskResult{Error: "forged"}); !errors.As(err, &refused) || !strings.Contains(refused.Status, "404") {
		t.Errorf("other host posting a result: %v, want 404", err)
	}
	if a, err := client.Assignments(ctx); err != nil || len(a.Tasks) != 0 {
		t.Errorf("other host's assignments: %+v, %v; want no tasks", a, err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("restore after cancel: %v", err)
	}
}

// An enrolled host that uploads a forged stream gets it refused, and
// the read fails naming where the stream went wrong.
func TestAgentTaskForgedReadStream(t *testing.T) {
	d, hub := startTaskDaemon(t)
	forger := d.enrollAgent(t, "web1.example") // its identity, not its program
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	stored := 0
	go func() {
		_, err := hub.Read(ctx, forger.host, "/srv", nil, func(datastream.Header, io.Reader) error { stored++; return nil }, nil)
		done <- err
	}()
	var id string
	for deadline := time.Now().Add(10 * time.Second); id == ""; {
		if ts := hub.Tasks(forger.host); len(ts) == 1 {
			id = ts[0].ID
		} else if time.Now().After(deadline) {
			t.Fatal("task not registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var good bytes.Buffer
	w := datastream.NewWriter(&good)
	must(t, w.Put(fileEntry("ok.txt", "fine").h, strings.NewReader("fine")))
	forged := append(good.Bytes(), 'h', 0xff, 0xff, 0xff, 0xff) // a header frame of 4 GiB
	cert, pool, err := pki.LoadIdentity(forger.state)
	if err != nil {
		t.Fatal(err)
	}
	client := control.NewClient(d.agents, pki.ClientTLS(cert, pool, testHostName, nil))
	defer client.Close()
	var refused *control.RefusedError
	if err := client.SendTaskStream(ctx, id, bytes.NewReader(forged)); !errors.As(err, &refused) || !strings.Contains(refused.Status, "400") {
		t.Errorf("forged upload: %v, want 400", err)
	}
	// A second upload on the same task is refused too.
	if err := client.SendTaskStream(ctx, id, bytes.NewReader(good.Bytes())); !errors.As(err, &refused) {
		t.Errorf("second upload: %v, want a refusal", err)
	}
	err = <-done
	if err == nil || !strings.Contains(err.Error(), `entry 1 ("ok.txt")`) || !strings.Contains(err.Error(), "frame of 4294967295 bytes") {
		t.Fatalf("read of a forged stream: %v; want the malformed frame named", err)
	}
	if stored != 1 {
		t.Errorf("%d entries stored before the bad frame, want 1", stored)
	}
}
