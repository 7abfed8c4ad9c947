package pluginhost

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/plugins/sdk"
	"github.com/holdfast/holdfast/plugins/sdk/manifest"
)

// pollInterval is how often a supervisor checks that its plugin still runs.
const pollInterval = 200 * time.Millisecond

// killGrace is how long go-plugin's graceful shutdown may take before the
// process is killed outright (go-plugin's own Kill can block forever on a
// stopped process).
const killGrace = 5 * time.Second

// pingTimeout bounds the health check made after a call fails for transport
// reasons while the process still runs.
const pingTimeout = 5 * time.Second

// maxErrorText bounds error texts taken from go-plugin and plugins.
const maxErrorText = 2048

// instance is one discovered plugin and, while it runs, its process.
type instance struct {
	host *Host
	dir  string
	man  manifest.Manifest
	bin  string
	kick chan struct{} // asks the supervisor to check the process now

	mu           sync.Mutex
	status       PluginStatus
	proc         *proc // nil unless a process was started and not yet ended
	rpc          goplugin.ClientProtocol
	scenario     sdk.ScenarioHandler
	transport    sdk.Transport
	runningSince time.Time
	// settings are what the daemon last gave a transport with Configure;
	// a restarted transport gets them again before it serves anything.
	settings map[string]string
}

func (in *instance) name() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.status.Name
}

func (in *instance) state() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.status.State
}

func (in *instance) snapshot() PluginStatus {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.status
}

func (in *instance) setManifest(m manifest.Manifest) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.man = m
	in.bin = in.dir + string(os.PathSeparator) + m.Binary
	in.status.Name = m.Name
	in.status.Kind = m.Kind
	in.status.Type = m.Type
	in.status.Version = m.Version
	in.status.Binary = in.bin
	in.status.SHA256 = m.SHA256
}

// problem is a coded event about a plugin: what goes to the activity log
// (code and arguments) and what callers and List see (the *messages.Error).
type problem struct {
	code  messages.Code
	args  []any
	cause error
}

func newProblem(cause error, code messages.Code, args ...any) problem {
	return problem{code: code, args: args, cause: cause}
}

func (p problem) err() *messages.Error {
	if p.cause != nil {
		return messages.Wrap(p.cause, p.code, p.args...)
	}
	return messages.New(p.code, p.args...)
}

// note keeps p as the plugin's last problem, without changing its state.
func (in *instance) note(p problem) {
	e := p.err()
	in.mu.Lock()
	defer in.mu.Unlock()
	in.status.LastError = sdk.SanitizeText(e.Msg, maxErrorText)
	in.status.LastCode = string(e.Code)
}

// fail moves the plugin to state, records p in the activity log and the
// daemon log, and keeps it as the last problem.
func (in *instance) fail(ctx context.Context, state string, p problem) {
	in.mu.Lock()
	in.status.State = state
	in.status.PID = 0
	in.mu.Unlock()
	in.note(p)
	in.host.rec.Record(ctx, p.code, p.args...)
	in.host.logger.Warn("plugin problem", "plugin", in.name(), "dir", in.dir, "state", state, "code", p.code, "err", p.err().Msg)
}

func (in *instance) refuse(ctx context.Context, p problem) {
	in.fail(ctx, StateRefused, p)
}

// precheck runs the checks that need no process: binary present, checksum,
// a protocol version in common. It reports whether the plugin may start.
func (in *instance) precheck(ctx context.Context) bool {
	if p := in.verifyBinary(); p != nil {
		in.refuse(ctx, *p)
		return false
	}
	common := false
	for _, v := range in.man.Protocols {
		if slices.Contains(sdk.ProtocolVersions, v) {
			common = true
		}
	}
	if !common {
		in.refuse(ctx, newProblem(nil, messages.PluginIncompatible, in.man.Name, in.man.Protocols, sdk.ProtocolVersions))
		return false
	}
	return true
}

// verifyBinary checks that the binary exists and matches the manifest's
// SHA-256. It runs before every start, restarts included, so a binary
// replaced while the plugin ran is refused at its next start.
func (in *instance) verifyBinary() *problem {
	fi, err := os.Stat(in.bin)
	if errors.Is(err, fs.ErrNotExist) {
		return ptr(newProblem(nil, messages.PluginBinaryMissing, in.man.Name, in.bin))
	}
	if err != nil {
		return ptr(newProblem(err, messages.PluginStartFailed, in.man.Name, err))
	}
	if !fi.Mode().IsRegular() {
		err := fmt.Errorf("binary %s is not a regular file", in.bin)
		return ptr(newProblem(err, messages.PluginStartFailed, in.man.Name, err))
	}
	sum, err := manifest.HashFile(in.bin)
	if err != nil {
		return ptr(newProblem(err, messages.PluginStartFailed, in.man.Name, err))
	}
	if sum != in.man.SHA256 {
		return ptr(newProblem(nil, messages.PluginTampered, in.man.Name, in.bin))
	}
	return nil
}

// launchError is a failed start. final means retrying cannot help (the
// binary is missing, changed or speaks another protocol).
type launchError struct {
	p     problem
	final bool
}

func ptr(p problem) *problem { return &p }

// launch verifies and starts the plugin process, dispenses its handler and
// checks its Describe reply. On success the plugin is running; on failure
// it is refused or failed (first start) and the problem is recorded.
func (in *instance) launch(ctx context.Context) *launchError {
	le := in.start(ctx)
	if le == nil {
		return nil
	}
	state := StateFailed
	if le.final {
		state = StateRefused
	}
	in.fail(ctx, state, le.p)
	return le
}

// start does the work of launch without recording failures, so the
// supervisor can decide how to report a failed restart. ctx only carries
// the activity-log context for the PluginStarted entry.
func (in *instance) start(ctx context.Context) *launchError {
	h := in.host
	name := in.man.Name
	if p := in.verifyBinary(); p != nil {
		return &launchError{p: *p, final: p.code != messages.PluginStartFailed}
	}
	sum, err := in.man.Checksum()
	if err != nil { // Parse validated it; kept for safety
		return &launchError{p: newProblem(err, messages.PluginManifestInvalid, in.dir, err), final: true}
	}
	var dispense string
	var impl goplugin.Plugin
	switch in.man.Kind {
	case manifest.KindScenario:
		dispense, impl = sdk.ScenarioPluginName, &sdk.ScenarioPlugin{}
	default:
		dispense, impl = sdk.TransportPluginName, &sdk.TransportPlugin{}
	}
	plog := h.logger.With("plugin", name)
	sockDir, err := os.MkdirTemp("", "holdfast-plugin-")
	if err != nil {
		return &launchError{p: newProblem(err, messages.PluginStartFailed, name, err)}
	}
	cmd := exec.Command(in.bin)
	cmd.Dir = in.dir
	// A plugin must not outlive a host killed with SIGKILL: an orphaned
	// transport would keep its listening port, and the restarted host could
	// not bind it. (The signal follows the OS thread that started the
	// plugin; Go keeps its threads, except those of goroutines that exit
	// locked, which this is not.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(pluginEnv(), goplugin.EnvUnixSocketDir+"="+sockDir)
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.PluginSets(dispense, impl, sdk.ProtocolVersions),
		Cmd:              cmd,
		// go-plugin hashes the binary again right before exec; a fresh
		// hash.Hash each time, since one cannot be reused.
		SecureConfig:     &goplugin.SecureConfig{Checksum: sum, Hash: sha256.New()},
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     h.cfg.StartTimeout,
		Logger:           newHCLogger(plog),
		Stderr:           newLineLogger(plog, "stderr"),
		SyncStdout:       newLineLogger(plog, "stdout"),
		SyncStderr:       newLineLogger(plog, "stderr"),
		// The daemon's environment may hold secrets (HOLDFAST_TOKEN); a
		// plugin gets only the basics.
		SkipHostEnv:     true,
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(sdk.MaxReplyBytes))},
	})
	p := &proc{client: client, cmd: cmd, sockDir: sockDir}
	rpc, err := client.Client()
	if err != nil {
		p.end()
		return classifyStartError(name, in.bin, in.man.Protocols, err)
	}
	raw, err := rpc.Dispense(dispense)
	if err != nil {
		p.end()
		return &launchError{p: newProblem(err, messages.PluginStartFailed, name, err)}
	}
	var scen sdk.ScenarioHandler
	var trans sdk.Transport
	var describe func(context.Context) (string, error)
	switch v := raw.(type) {
	case sdk.ScenarioHandler:
		scen = v
		describe = func(ctx context.Context) (string, error) {
			info, err := v.Describe(ctx)
			if err != nil {
				return "", err
			}
			return info.Type, validated(sdk.ValidateInfo(info))
		}
	case sdk.Transport:
		trans = v
		describe = func(ctx context.Context) (string, error) {
			info, err := v.Describe(ctx)
			if err != nil {
				return "", err
			}
			return info.Name, validated(sdk.ValidateTransportInfo(info))
		}
	default:
		p.end()
		err := fmt.Errorf("dispensed %T", raw)
		return &launchError{p: newProblem(err, messages.PluginStartFailed, name, err)}
	}

	// Describe proves the plugin answers, and that it serves what its
	// manifest says.
	dctx, cancel := context.WithTimeout(context.Background(), h.cfg.CallTimeout)
	typ, err := describe(dctx)
	// gRPC may report the deadline a moment before dctx's timer fires.
	timedOut := dctx.Err() != nil || status.Code(err) == codes.DeadlineExceeded
	cancel()
	if err == nil && typ != in.man.Type {
		err = &badReplyError{fmt.Errorf("it serves %q, its manifest says %q", typ, in.man.Type)}
	}
	if err != nil {
		p.end()
		var bad *badReplyError
		switch {
		case errors.As(err, &bad):
			return &launchError{p: newProblem(bad.err, messages.PluginBadReply, name, "Describe", bad.err)}
		case timedOut:
			return &launchError{p: newProblem(err, messages.PluginTimeout, name, "Describe", h.cfg.CallTimeout)}
		default:
			err = errors.New(sdk.SanitizeText(err.Error(), maxErrorText))
			return &launchError{p: newProblem(err, messages.PluginStartFailed, name, err)}
		}
	}

	in.mu.Lock()
	settings := in.settings
	in.mu.Unlock()
	if trans != nil && settings != nil {
		cctx, cancel := context.WithTimeout(context.Background(), h.cfg.CallTimeout)
		err := trans.Configure(cctx, settings)
		cancel()
		if err != nil {
			p.end()
			err = fmt.Errorf("configure again after a restart: %s", sdk.SanitizeText(err.Error(), maxErrorText))
			return &launchError{p: newProblem(err, messages.PluginStartFailed, name, err)}
		}
	}

	pid, _ := strconv.Atoi(client.ID())
	in.mu.Lock()
	in.proc, in.rpc = p, rpc
	in.scenario, in.transport = scen, trans
	in.runningSince = time.Now()
	in.status.State = StateRunning
	in.status.PID = pid
	in.status.Protocol = client.NegotiatedVersion()
	in.status.Started = in.runningSince
	in.mu.Unlock()
	h.rec.Record(ctx, messages.PluginStarted, name, in.man.Version, pid, client.NegotiatedVersion())
	h.logger.Info("plugin started", "plugin", name, "pid", pid, "protocol", client.NegotiatedVersion(), "binary", in.bin)
	return nil
}

// classifyStartError maps go-plugin's start errors to message codes.
func classifyStartError(name, bin string, declared []int, err error) *launchError {
	msg := err.Error()
	switch {
	case errors.Is(err, goplugin.ErrChecksumsDoNotMatch):
		// The binary changed between our check and go-plugin's.
		return &launchError{p: newProblem(err, messages.PluginTampered, name, bin), final: true}
	case strings.Contains(msg, "incompatible API version with plugin"):
		// go-plugin has no typed error for this; the text is stable across
		// its releases, and the tests pin it.
		speaks := declared
		if i := strings.Index(msg, "Plugin version: "); i >= 0 {
			rest := msg[i+len("Plugin version: "):]
			if j := strings.IndexAny(rest, ", "); j >= 0 {
				rest = rest[:j]
			}
			if v, perr := strconv.Atoi(rest); perr == nil {
				speaks = []int{v}
			}
		}
		return &launchError{p: newProblem(err, messages.PluginIncompatible, name, speaks, sdk.ProtocolVersions), final: true}
	}
	// Garbage instead of a handshake ends up in the error text: sanitize.
	clean := errors.New(sdk.SanitizeText(msg, maxErrorText))
	return &launchError{p: newProblem(clean, messages.PluginStartFailed, name, clean)}
}

// badReplyError marks a reply that failed validation.
type badReplyError struct{ err error }

func (e *badReplyError) Error() string { return e.err.Error() }
func (e *badReplyError) Unwrap() error { return e.err }

func validated(err error) error {
	if err != nil {
		return &badReplyError{err}
	}
	return nil
}

// pluginEnv is the environment a plugin runs with: enough to behave like a
// normal program, none of the daemon's own settings or secrets.
func pluginEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// proc is one plugin process and what must be cleaned up after it.
type proc struct {
	client *goplugin.Client
	cmd    *exec.Cmd
	// sockDir is a private folder for the plugin's Unix socket, so that a
	// killed plugin does not leave its socket behind in /tmp.
	sockDir string
}

// end stops the process: go-plugin's graceful shutdown first, then SIGKILL
// through the os.Process (which, unlike a PID, cannot hit a recycled
// process) if that does not finish in time. Then the socket folder goes.
func (p *proc) end() {
	done := make(chan struct{})
	go func() {
		p.client.Kill()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(killGrace):
		if p.cmd.Process != nil {
			_ = p.cmd.Process.Kill() // it may be gone already; Kill returns below either way
		}
		<-done
	}
	_ = os.RemoveAll(p.sockDir) // best effort: a leftover empty folder in the temp dir is harmless
}

// supervise watches a running plugin until stop is closed, restarting it
// after a crash with exponential backoff.
func (in *instance) supervise(stop <-chan struct{}) {
	defer in.host.wg.Done()
	h := in.host
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	attempt := 0
	for {
		kicked := false
		select {
		case <-stop:
			in.shutdown()
			return
		case <-tick.C:
		case <-in.kick:
			kicked = true
		}
		in.mu.Lock()
		p, rpc, since := in.proc, in.rpc, in.runningSince
		in.mu.Unlock()
		if p == nil {
			continue
		}
		if !p.client.Exited() {
			if kicked && !healthy(rpc) {
				// The process runs but does not answer on its connection:
				// kill it, and the next check restarts it.
				h.logger.Warn("plugin does not answer health checks; killing it", "plugin", in.man.Name)
				if p.cmd.Process != nil {
					_ = p.cmd.Process.Kill()
				}
			}
			continue
		}

		// The plugin died. Clean up what is left of the old process.
		p.end()
		in.mu.Lock()
		in.proc, in.rpc, in.scenario, in.transport = nil, nil, nil, nil
		in.status.PID = 0
		in.mu.Unlock()
		if time.Since(since) >= h.cfg.StableAfter {
			attempt = 0
		}
		first := true
		for {
			attempt++
			delay := backoff(h.cfg.BackoffMin, h.cfg.BackoffMax, attempt)
			if first {
				in.fail(context.Background(), StateRestarting, newProblem(nil, messages.PluginCrashed, in.man.Name, attempt, delay))
				first = false
			} else {
				h.logger.Warn("plugin restart failed; trying again", "plugin", in.man.Name, "attempt", attempt, "delay", delay)
			}
			select {
			case <-stop:
				in.shutdown()
				return
			case <-time.After(delay):
			}
			le := in.start(context.Background())
			if le == nil {
				in.mu.Lock()
				in.status.Restarts++
				in.mu.Unlock()
				break
			}
			if le.final {
				in.fail(context.Background(), StateRefused, le.p)
				return
			}
			in.fail(context.Background(), StateRestarting, le.p)
		}
	}
}

// backoff is min doubled attempt-1 times, at most max.
func backoff(min, max time.Duration, attempt int) time.Duration {
	d := min
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}

// healthy pings the plugin's gRPC server, bounded in time.
func healthy(rpc goplugin.ClientProtocol) bool {
	if rpc == nil {
		return false
	}
	res := make(chan error, 1)
	go func() { res <- rpc.Ping() }()
	select {
	case err := <-res:
		return err == nil
	case <-time.After(pingTimeout):
		return false
	}
}

// shutdown ends the plugin for Host.Stop.
func (in *instance) shutdown() {
	in.mu.Lock()
	p := in.proc
	wasUp := in.status.State == StateRunning || in.status.State == StateRestarting
	in.proc, in.rpc, in.scenario, in.transport = nil, nil, nil, nil
	in.status.State = StateStopped
	in.status.PID = 0
	in.mu.Unlock()
	if p != nil {
		p.end()
	}
	if wasUp {
		in.host.rec.Record(context.Background(), messages.PluginStopped, in.man.Name)
	}
}

// usable returns nil if the plugin is running or restarting (its handler
// may be handed out), else the PluginUnavailable error to return.
func (in *instance) usable() error {
	st := in.snapshot()
	if st.State == StateRunning || st.State == StateRestarting {
		return nil
	}
	return unavailable(st)
}

func unavailable(st PluginStatus) *messages.Error {
	reason := st.State
	if st.LastError != "" {
		reason += ": " + st.LastError
	}
	return messages.New(messages.PluginUnavailable, st.Name, reason)
}

// current returns the live handler of a running plugin, or PluginUnavailable.
func (in *instance) current() (sdk.ScenarioHandler, sdk.Transport, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.status.State != StateRunning || (in.scenario == nil && in.transport == nil) {
		return nil, nil, unavailable(in.status)
	}
	return in.scenario, in.transport, nil
}

// poke asks the supervisor to check the process now (after a call failed
// for a transport reason).
func (in *instance) poke() {
	select {
	case in.kick <- struct{}{}:
	default:
	}
}
