package pluginhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/plugins/sdk"
	"github.com/holdfast/holdfast/plugins/sdk/manifest"
)

// The tests run real plugin processes: the fileserver plugin and the small
// misbehaving plugins under testdata/plugins, built once for the package.

var bins string // folder holding the built plugin binaries

var testPlugins = []string{"hang", "crash", "garbage", "badreply", "proto99", "echo"}

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperHostEnv); dir != "" {
		runHelperHost(dir) // a child of TestPluginDiesWithItsHost; never returns
	}
	dir, err := os.MkdirTemp("", "pluginhost-bins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins = dir
	code := func() int {
		defer os.RemoveAll(dir)
		// go test puts its own go command first in PATH.
		goTool, err := exec.LookPath("go")
		if err != nil {
			fmt.Fprintln(os.Stderr, "building test plugins:", err)
			return 1
		}
		// Without symbol tables the seven links take half the time.
		args := []string{"build", "-ldflags=-s -w", "-o", dir + string(os.PathSeparator)}
		for _, p := range testPlugins {
			args = append(args, "./testdata/plugins/"+p)
		}
		args = append(args, "github.com/holdfast/holdfast/plugins/scenario/fileserver/cmd/holdfast-fileserver")
		cmd := exec.Command(goTool, args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building test plugins:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// recorder is an activity.Recorder that keeps entries for inspection.
type recorder struct {
	mu      sync.Mutex
	entries []entry
}

type entry struct {
	code messages.Code
	text string
}

func (r *recorder) Record(_ context.Context, code messages.Code, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, entry{code, messages.Format(code, args...)})
}

func (r *recorder) find(code messages.Code, substr string) (entry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.entries {
		if e.code == code && strings.Contains(e.text, substr) {
			return e, true
		}
	}
	return entry{}, false
}

func (r *recorder) count(code messages.Code) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.entries {
		if e.code == code {
			n++
		}
	}
	return n
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, e := range r.entries {
		fmt.Fprintf(&b, "\n  %s %s", e.code, e.text)
	}
	return b.String()
}

func (r *recorder) mustHave(t *testing.T, code messages.Code, substr string) entry {
	t.Helper()
	e, ok := r.find(code, substr)
	if !ok {
		t.Fatalf("no %s entry containing %q; recorded:%s", code, substr, r)
	}
	return e
}

// install copies binary bin into <root>/<folder>/ and seals it with m.
func install(t *testing.T, root, folder, bin string, m manifest.Manifest) string {
	t.Helper()
	dir := filepath.Join(root, folder)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(bins, bin))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, bin)
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if m.Name == "" {
		m.Name = folder
	}
	if m.Kind == "" {
		m.Kind = manifest.KindScenario
	}
	if m.Version == "" {
		m.Version = "1.0.0"
	}
	if err := manifest.Seal(path, m); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testLogger collects the daemon log, to check what plugins' output became.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixture struct {
	host *Host
	rec  *recorder
	log  *syncBuffer
}

func startHost(t *testing.T, cfg Config) fixture {
	t.Helper()
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = 100 * time.Millisecond
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 400 * time.Millisecond
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	f := fixture{rec: &recorder{}, log: &syncBuffer{}}
	logger := slog.New(slog.NewJSONHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.host = New(cfg, f.rec, logger)
	f.host.Start(context.Background())
	t.Cleanup(f.host.Stop)
	return f
}

func statusOf(t *testing.T, h *Host, name string) PluginStatus {
	t.Helper()
	for _, s := range h.List() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("plugin %s not listed: %+v", name, h.List())
	return PluginStatus{}
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func wantCode(t *testing.T, err error, code messages.Code) {
	t.Helper()
	if got := messages.CodeOf(err); got != code {
		t.Fatalf("error %v has code %q, want %s", err, got, code)
	}
}

func processGone(pid int) bool {
	// Signal 0 checks existence; a zombie would still answer, but go-plugin
	// reaps its children.
	return syscall.Kill(pid, 0) != nil
}

func TestFileserverOutOfProcess(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	install(t, root, "fileserver", "holdfast-fileserver", manifest.Manifest{Type: "fileserver"})
	f := startHost(t, Config{Dirs: []string{root}})

	st := statusOf(t, f.host, "fileserver")
	if st.State != StateRunning || st.PID <= 0 || st.Protocol != 1 || st.Kind != "scenario" || st.Started.IsZero() {
		t.Fatalf("status %+v", st)
	}
	if st.PID == os.Getpid() {
		t.Fatal("plugin runs in the test's own process")
	}
	f.rec.mustHave(t, messages.PluginStarted, fmt.Sprintf("plugin fileserver 1.0.0 started (pid %d, protocol 1)", st.PID))
	if got := f.host.ScenarioTypes(); !slices.Equal(got, []string{"fileserver"}) {
		t.Fatalf("ScenarioTypes = %v", got)
	}

	h, err := f.host.ScenarioHandler("fileserver")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	info, err := h.Describe(ctx)
	if err != nil || info.Type != "fileserver" || info.DisplayName != "File Server" {
		t.Fatalf("Describe = %+v, %v", info, err)
	}
	data := t.TempDir()
	a, b := filepath.Join(data, "a"), filepath.Join(data, "b")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := sdk.ScenarioConfig{ID: 1, Name: "files", Roots: []string{a, b}}
	ents, err := h.ListEntities(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Kind != "volume" || !slices.Equal(ents[0].Paths, []string{a, b}) {
		t.Fatalf("ListEntities = %+v", ents)
	}
	// The plugin's own error comes back as its answer, not as a plugin fault.
	_, err = h.ListEntities(ctx, sdk.ScenarioConfig{Roots: []string{filepath.Join(data, "missing")}})
	if !sdk.IsHandlerError(err) || messages.CodeOf(err) != "" || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("ListEntities of a missing root = %v", err)
	}

	_, err = f.host.ScenarioHandler("oracle")
	wantCode(t, err, messages.ScenarioTypeUnknown)
	if !strings.Contains(err.Error(), "installed: fileserver") {
		t.Fatalf("error %q does not list the installed types", err)
	}

	f.host.Stop()
	f.host.Stop() // idempotent
	st2 := statusOf(t, f.host, "fileserver")
	if st2.State != StateStopped || st2.PID != 0 {
		t.Fatalf("after Stop: %+v", st2)
	}
	f.rec.mustHave(t, messages.PluginStopped, "plugin fileserver stopped")
	waitFor(t, "the plugin process to end", func() bool { return processGone(st.PID) })
	_, err = h.Describe(ctx)
	wantCode(t, err, messages.PluginUnavailable)
}

func TestKillNineRestarts(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	install(t, root, "fileserver", "holdfast-fileserver", manifest.Manifest{Type: "fileserver"})
	f := startHost(t, Config{Dirs: []string{root}})
	h, err := f.host.ScenarioHandler("fileserver")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for round := 1; round <= 2; round++ {
		before := statusOf(t, f.host, "fileserver")
		if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the plugin to be restarted", func() bool {
			st := statusOf(t, f.host, "fileserver")
			return st.State == StateRunning && st.PID != before.PID && st.Restarts == round
		})
		// The crash is recorded with the attempt number and the delay;
		// the second crash follows the first quickly, so the delay doubles.
		want := map[int]string{1: "restart 1 in 100ms", 2: "restart 2 in 200ms"}[round]
		f.rec.mustHave(t, messages.PluginCrashed, "plugin fileserver exited unexpectedly; "+want)
		// The handler taken before the crash works again.
		if _, err := h.Describe(ctx); err != nil {
			t.Fatalf("after restart %d: %v", round, err)
		}
	}
	if n := f.rec.count(messages.PluginStarted); n != 3 {
		t.Fatalf("%d PluginStarted entries, want 3:%s", n, f.rec)
	}
	if st := statusOf(t, f.host, "fileserver"); st.LastCode != string(messages.PluginCrashed) {
		t.Fatalf("last code %q, want the crash", st.LastCode)
	}
}

func TestCrashDuringCall(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	install(t, root, "crash", "crash", manifest.Manifest{Type: "crash"})
	f := startHost(t, Config{Dirs: []string{root}})
	h, err := f.host.ScenarioHandler("crash")
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.ListEntities(context.Background(), sdk.ScenarioConfig{Roots: []string{"/"}})
	wantCode(t, err, messages.PluginUnavailable)
	waitFor(t, "the crash to be recorded", func() bool {
		_, ok := f.rec.find(messages.PluginCrashed, "plugin crash exited unexpectedly; restart 1 in 100ms")
		return ok
	})
	waitFor(t, "the plugin to be restarted", func() bool {
		st := statusOf(t, f.host, "crash")
		return st.State == StateRunning && st.Restarts == 1
	})
	if _, err := h.Describe(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The plugin's dying words reached the daemon log at error level.
	if !strings.Contains(f.log.String(), `"level":"ERROR","msg":"panic: simulated crash in ListEntities"`) {
		t.Fatal("the plugin's stderr is not in the daemon log")
	}
}

func TestTamperedBinaryIsRefused(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir := install(t, root, "fileserver", "holdfast-fileserver", manifest.Manifest{Type: "fileserver"})
	bin := filepath.Join(dir, "holdfast-fileserver")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01 // one byte, one bit
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	f := startHost(t, Config{Dirs: []string{root}})
	st := statusOf(t, f.host, "fileserver")
	if st.State != StateRefused || st.PID != 0 || st.LastCode != string(messages.PluginTampered) {
		t.Fatalf("status %+v", st)
	}
	f.rec.mustHave(t, messages.PluginTampered, "plugin fileserver refused: binary "+bin+" does not match its manifest checksum")
	if n := f.rec.count(messages.PluginStarted); n != 0 {
		t.Fatalf("a tampered plugin was started:%s", f.rec)
	}
	_, err = f.host.ScenarioHandler("fileserver")
	wantCode(t, err, messages.PluginUnavailable)
	if len(f.host.ScenarioTypes()) != 0 {
		t.Fatalf("ScenarioTypes = %v", f.host.ScenarioTypes())
	}
}

func TestReplacedWhileRunningIsRefusedAtRestart(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir := install(t, root, "fileserver", "holdfast-fileserver", manifest.Manifest{Type: "fileserver"})
	f := startHost(t, Config{Dirs: []string{root}})
	st := statusOf(t, f.host, "fileserver")
	// Replace the binary the way an installer would: a new file renamed
	// over the old one (writing into a running executable is refused).
	bin := filepath.Join(dir, "holdfast-fileserver")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	tmp := bin + ".new"
	if err := os.WriteFile(tmp, append(data, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restart to be refused", func() bool { return statusOf(t, f.host, "fileserver").State == StateRefused })
	f.rec.mustHave(t, messages.PluginTampered, "plugin fileserver refused")
	if n := f.rec.count(messages.PluginStarted); n != 1 {
		t.Fatalf("the replaced binary was started:%s", f.rec)
	}
	// No more attempts.
	time.Sleep(time.Second)
	if n := f.rec.count(messages.PluginTampered); n != 1 {
		t.Fatalf("%d PluginTampered entries, want 1:%s", n, f.rec)
	}
}

func TestHangingPluginTimesOut(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	install(t, root, "hang", "hang", manifest.Manifest{Type: "hang"})
	install(t, root, "fileserver", "holdfast-fileserver", manifest.Manifest{Type: "fileserver"})
	f := startHost(t, Config{Dirs: []string{root}, CallTimeout: time.Second, VerifyTimeout: 2 * time.Second})
	hang, err := f.host.ScenarioHandler("hang")
	if err != nil {
		t.Fatal(err)
	}
	fs, err := f.host.ScenarioHandler("fileserver")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	took := make([]time.Duration, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			switch i {
			case 0:
				_, errs[i] = hang.ListEntities(context.Background(), sdk.ScenarioConfig{Roots: []string{"/"}})
			case 1:
				_, errs[i] = hang.Verify(context.Background(), sdk.VerifyRequest{Root: "/"})
			case 2:
				// Meanwhile the other plugin answers as usual.
				_, errs[i] = fs.Describe(context.Background())
			}
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	for i, want := range []string{"ListEntities within 1s", "Verify within 2s"} {
		method := strings.Fields(want)[0]
		wantCode(t, errs[i], messages.PluginTimeout)
		if !strings.Contains(errs[i].Error(), "plugin hang did not answer "+want) {
			t.Fatalf("error %q", errs[i])
		}
		if took[i] > 10*time.Second {
			t.Fatalf("%s took %s with a 1s timeout", method, took[i])
		}
	}
	if errs[2] != nil {
		t.Fatalf("fileserver Describe during the hang: %v", errs[2])
	}
	// A hang is not a crash: the plugin keeps running and still answers
	// what it can.
	if st := statusOf(t, f.host, "hang"); st.State != StateRunning || st.LastCode != string(messages.PluginTimeout) {
		t.Fatalf("status %+v", st)
	}
	if err := hang.ReleaseBackup(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
	// The caller's own deadline is the caller's error, not a plugin timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = hang.ListEntities(ctx, sdk.ScenarioConfig{Roots: []string{"/"}})
	if !errors.Is(err, context.DeadlineExceeded) || messages.CodeOf(err) != "" {
		t.Fatalf("ListEntities past the caller's deadline = %v", err)
	}
}

func TestStartFailures(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	install(t, root, "garbage", "garbage", manifest.Manifest{Type: "garbage"})
	install(t, root, "future-declared", "proto99", manifest.Manifest{Type: "future", Protocols: []int{99}})
	install(t, root, "future-lying", "proto99", manifest.Manifest{Type: "future2"})
	install(t, root, "liar", "badreply", manifest.Manifest{Type: "notbadreply"})
	install(t, root, "fileserver", "holdfast-fileserver", manifest.Manifest{Type: "fileserver"})
	f := startHost(t, Config{Dirs: []string{root}, StartTimeout: 5 * time.Second})

	tests := []struct {
		plugin string
		state  string
		code   messages.Code
		text   string
	}{
		// Junk instead of a handshake (and a log line that would panic
		// go-plugin's own parser).
		{"garbage", StateFailed, messages.PluginStartFailed, "plugin garbage could not be started"},
		// The manifest already says there is no common version: not started.
		{"future-declared", StateRefused, messages.PluginIncompatible, "plugin future-declared speaks protocol versions [99]; this holdfastd speaks [1]"},
		// The manifest claims version 1; the handshake shows otherwise.
		{"future-lying", StateRefused, messages.PluginIncompatible, "plugin future-lying speaks protocol versions [99]; this holdfastd speaks [1]"},
		// Describe names another type than the manifest.
		{"liar", StateFailed, messages.PluginBadReply, `plugin liar sent an invalid reply to Describe: it serves "badreply", its manifest says "notbadreply"`},
	}
	for _, tt := range tests {
		t.Run(tt.plugin, func(t *testing.T) {
			st := statusOf(t, f.host, tt.plugin)
			if st.State != tt.state || st.LastCode != string(tt.code) || st.PID != 0 {
				t.Fatalf("status %+v", st)
			}
			f.rec.mustHave(t, tt.code, tt.text)
		})
	}
	if e, _ := f.rec.find(messages.PluginStartFailed, "garbage"); !strings.Contains(e.text, "Unrecognized remote plugin message: Hello!") || strings.ContainsAny(e.text, "\x00\x01") {
		t.Fatalf("garbage start failure %q should quote the junk, sanitized", e.text)
	}
	// The garbage plugin's stderr reached the log, defused.
	if logs := f.log.String(); !strings.Contains(logs, "not a log line") || strings.Contains(logs, "\x1b") {
		t.Fatalf("garbage stderr missing or not sanitized in the log")
	}
	// The others are unaffected.
	if st := statusOf(t, f.host, "fileserver"); st.State != StateRunning {
		t.Fatalf("fileserver: %+v", st)
	}
	if got := f.host.ScenarioTypes(); !slices.Equal(got, []string{"fileserver"}) {
		t.Fatalf("ScenarioTypes = %v", got)
	}
}

func TestBadReplies(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	install(t, root, "badreply", "badreply", manifest.Manifest{Type: "badreply"})
	f := startHost(t, Config{Dirs: []string{root}})
	h, err := f.host.ScenarioHandler("badreply")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg := sdk.ScenarioConfig{Roots: []string{"/srv/data"}}
	calls := []struct {
		method string
		call   func() error
		want   string
	}{
		{"ListEntities", func() error { _, err := h.ListEntities(ctx, cfg); return err }, "not clean"},
		{"PrepareBackup", func() error { _, err := h.PrepareBackup(ctx, cfg, "escape"); return err }, "control character"},
		{"Verify", func() error { _, err := h.Verify(ctx, sdk.VerifyRequest{Scenario: cfg, Root: "/snap"}); return err }, "passed, yet 1 problems"},
	}
	for _, c := range calls {
		t.Run(c.method, func(t *testing.T) {
			err := c.call()
			wantCode(t, err, messages.PluginBadReply)
			if !strings.Contains(err.Error(), "plugin badreply sent an invalid reply to "+c.method) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q", err)
			}
		})
	}
	if st := statusOf(t, f.host, "badreply"); st.State != StateRunning || st.LastCode != string(messages.PluginBadReply) {
		t.Fatalf("status %+v", st)
	}
}

func TestManifestProblems(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write := func(folder, text string) {
		dir := filepath.Join(root, folder)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if text != "" {
			if err := os.WriteFile(filepath.Join(dir, manifest.FileName), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	const sum = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	write("colour", `name = "colour"
kind = "scenario"
type = "colour"
version = "1"
binary = "colour"
sha256 = "`+sum+`"
protocols = [1]
colour = "blue"
`)
	write("badkind", `name = "badkind"
kind = "driver"
type = "badkind"
version = "1"
binary = "badkind"
sha256 = "`+sum+`"
protocols = [1]
`)
	write("nomanifest", "")
	write("nobinary", `name = "nobinary"
kind = "scenario"
type = "nobinary"
version = "1"
binary = "holdfast-nobinary"
sha256 = "`+sum+`"
protocols = [1]
`)
	if err := os.WriteFile(filepath.Join(root, "README"), []byte("not a plugin"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := startHost(t, Config{Dirs: []string{root, filepath.Join(root, "does-not-exist")}})

	tests := []struct {
		plugin string
		code   messages.Code
		text   string
	}{
		{"colour", messages.PluginManifestInvalid, "colour: unknown key"},
		{"badkind", messages.PluginManifestInvalid, `kind: "driver"`},
		{"nomanifest", messages.PluginManifestInvalid, "no such file"},
		{"nobinary", messages.PluginBinaryMissing, "plugin nobinary: binary " + filepath.Join(root, "nobinary", "holdfast-nobinary") + " is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.plugin, func(t *testing.T) {
			st := statusOf(t, f.host, tt.plugin)
			if st.State != StateRefused || st.LastCode != string(tt.code) || !strings.Contains(st.LastError, tt.text) {
				t.Fatalf("status %+v", st)
			}
			f.rec.mustHave(t, tt.code, tt.text)
		})
	}
	if got := len(f.host.List()); got != 4 {
		t.Fatalf("List has %d plugins, want 4 (loose files are not plugins): %+v", got, f.host.List())
	}
	if e := f.rec.mustHave(t, messages.PluginManifestInvalid, "colour"); !strings.Contains(e.text, filepath.Join(root, "colour", "manifest.toml")) {
		t.Fatalf("entry %q does not name the manifest file", e.text)
	}
}

func TestDuplicateTypes(t *testing.T) {
	t.Parallel()
	first, second := t.TempDir(), t.TempDir()
	install(t, second, "aaa-files", "holdfast-fileserver", manifest.Manifest{Type: "fileserver"})
	install(t, first, "zzz-files", "holdfast-fileserver", manifest.Manifest{Type: "fileserver"})
	f := startHost(t, Config{Dirs: []string{first, second}})
	// The first directory wins, whatever the names.
	if st := statusOf(t, f.host, "zzz-files"); st.State != StateRunning {
		t.Fatalf("zzz-files: %+v", st)
	}
	if st := statusOf(t, f.host, "aaa-files"); st.State != StateRefused || st.LastCode != string(messages.PluginDuplicate) {
		t.Fatalf("aaa-files: %+v", st)
	}
	f.rec.mustHave(t, messages.PluginDuplicate, `plugin aaa-files ignored: type "fileserver" is already served by zzz-files`)
	if names := []string{f.host.List()[0].Name, f.host.List()[1].Name}; !slices.Equal(names, []string{"aaa-files", "zzz-files"}) {
		t.Fatalf("List is not ordered by name: %v", names)
	}
}

func TestEchoTransport(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	install(t, root, "echo", "echo", manifest.Manifest{Kind: manifest.KindTransport, Type: "echo"})
	f := startHost(t, Config{Dirs: []string{root}})
	if got := f.host.TransportNames(); !slices.Equal(got, []string{"echo"}) {
		t.Fatalf("TransportNames = %v", got)
	}
	if len(f.host.ScenarioTypes()) != 0 {
		t.Fatal("a transport is listed as a scenario type")
	}
	tr, err := f.host.Transport("echo")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	info, err := tr.Describe(ctx)
	if err != nil || info.Name != "echo" || !slices.Equal(info.Features, []string{"loopback"}) {
		t.Fatalf("Describe = %+v, %v", info, err)
	}

	rx, err := tr.Receive(ctx, "session-1", "")
	if err != nil {
		t.Fatal(err)
	}
	tx, err := tr.Send(ctx, "loopback", "session-1")
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	payload := func(seq uint64) []byte { return bytes.Repeat([]byte{byte(seq)}, int(seq)*1000) }
	sendErr := make(chan error, 1)
	go func() {
		for seq := uint64(1); seq <= n; seq++ {
			if err := tx.Send(sdk.Frame{Seq: seq, Payload: payload(seq)}); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- tx.CloseSend()
	}()
	for seq := uint64(1); seq <= n; seq++ {
		fr, err := rx.Recv()
		if err != nil || fr.Seq != seq || !bytes.Equal(fr.Payload, payload(seq)) {
			t.Fatalf("frame %d: seq %d, %d bytes, %v", seq, fr.Seq, len(fr.Payload), err)
		}
		if err := rx.Ack(sdk.Ack{Seq: fr.Seq}); err != nil {
			t.Fatal(err)
		}
		a, err := tx.Recv()
		if err != nil || a.Seq != seq {
			t.Fatalf("ack %d = %+v, %v", seq, a, err)
		}
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Recv(); err != io.EOF {
		t.Fatalf("Recv after the last ack = %v, want io.EOF", err)
	}
	if err := rx.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := rx.Recv(); err != io.EOF {
		t.Fatalf("Recv after Close = %v, want io.EOF", err)
	}

	// The host refuses to send frames out of order, and the plugin's own
	// errors come back as its answer.
	tx2, err := tr.Send(ctx, "loopback", "session-2")
	if err != nil {
		t.Fatal(err)
	}
	if err := tx2.Send(sdk.Frame{Seq: 5}); err != nil {
		t.Fatal(err)
	}
	if err := tx2.Send(sdk.Frame{Seq: 5}); err == nil {
		t.Fatal("a repeated sequence number was sent")
	}
	bad, err := tr.Send(ctx, "mars", "session-3")
	if err == nil {
		_, err = bad.Recv()
	}
	if !sdk.IsHandlerError(err) || !strings.Contains(err.Error(), `unknown peer "mars"`) {
		t.Fatalf("Send to an unknown peer = %v", err)
	}

	_, err = f.host.Transport("carrier-pigeon")
	if messages.CodeOf(err) != messages.TransportUnknown || !strings.Contains(err.Error(), "installed: echo") {
		t.Fatalf("Transport of an unknown name = %v", err)
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{1, 500 * time.Millisecond},
		{2, time.Second},
		{3, 2 * time.Second},
		{7, 30 * time.Second},
		{100, 30 * time.Second},
	}
	for _, tt := range tests {
		if got := backoff(500*time.Millisecond, 30*time.Second, tt.attempt); got != tt.want {
			t.Errorf("backoff(attempt %d) = %s, want %s", tt.attempt, got, tt.want)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{BackoffMin: time.Minute}.withDefaults()
	if c.CallTimeout != 30*time.Second || c.StartTimeout != 10*time.Second || c.StableAfter != time.Minute || c.BackoffMax != time.Minute {
		t.Fatalf("defaults %+v", c)
	}
}

func TestLineLogger(t *testing.T) {
	var buf syncBuffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug - 4}))
	w := newLineLogger(l, "stderr")
	lines := []string{
		`{"@message": 5, "@level": []}`, // would panic go-plugin's parser
		`{"@message": "hello", "@level": "warn", "@timestamp": "x", "k": "v\u001b"}`,
		"[ERROR] plain error",
		"panic: boom",
		"goroutine 1 [running]:",
		strings.Repeat("x", maxLogLine+100),
	}
	for _, line := range lines {
		// Written in pieces, as pipes deliver them.
		half := len(line) / 2
		_, _ = w.Write([]byte(line[:half]))
		_, _ = w.Write([]byte(line[half:] + "\n"))
	}
	out := buf.String()
	for _, want := range []string{
		`"level":"INFO","msg":"{\"@message\": 5, \"@level\": []}"`,
		`"level":"WARN","msg":"hello"`,
		`"plugin.k":"v�"`,
		`"level":"ERROR","msg":"[ERROR] plain error"`,
		`"level":"ERROR","msg":"goroutine 1 [running]:"`,
		`"truncated":true`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

// TestTransportConfiguredAgainAfterRestart: settings given once survive a
// crash of the transport, and refused settings are not remembered.
func TestTransportConfiguredAgainAfterRestart(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	install(t, root, "echo", "echo", manifest.Manifest{Kind: manifest.KindTransport, Type: "echo"})
	f := startHost(t, Config{Dirs: []string{root}})
	tr, err := f.host.Transport("echo")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := tr.Configure(ctx, map[string]string{"mark": "blue"}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Configure(ctx, map[string]string{"colour": "red"}); !sdk.IsHandlerError(err) || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("Configure with an unknown key = %v, want the plugin's refusal naming it", err)
	}
	before := statusOf(t, f.host, "echo")
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the transport to be restarted", func() bool {
		st := statusOf(t, f.host, "echo")
		return st.State == StateRunning && st.PID != before.PID
	})
	info, err := tr.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(info.Features, "mark-blue") {
		t.Fatalf("after the restart the transport shows %v: it was not configured again with the last accepted settings", info.Features)
	}
}

// helperHostEnv makes the test binary a plugin host serving the plugins
// below the folder it names, for TestPluginDiesWithItsHost.
const helperHostEnv = "HOLDFAST_TEST_HELPER_HOST"

func runHelperHost(dir string) {
	h := New(Config{Dirs: []string{dir}}, nil, nil)
	h.Start(context.Background())
	for _, st := range h.List() {
		fmt.Printf("pid %d\n", st.PID)
	}
	select {}
}

// TestPluginDiesWithItsHost: a host killed with SIGKILL cannot stop its
// plugins, so the kernel must; else a transport would keep its port.
func TestPluginDiesWithItsHost(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	install(t, root, "echo", "echo", manifest.Manifest{Kind: manifest.KindTransport, Type: "echo"})
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), helperHostEnv+"="+root)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	var pid int
	if _, err := fmt.Fscanf(out, "pid %d\n", &pid); err != nil || pid <= 0 {
		t.Fatalf("helper host did not report its plugin: pid %d, %v", pid, err)
	}
	if !processAlive(pid) {
		t.Fatalf("plugin %d is not running under its host", pid)
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	waitFor(t, fmt.Sprintf("plugin %d to die with its host", pid), func() bool { return !processAlive(pid) })
}

// processAlive is false for a process that is gone or a zombie nobody
// reaped yet (an orphan's reaper may be slow in a container).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}
