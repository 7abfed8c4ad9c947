// Package pluginhost is holdfastd's side of the plugin system: it finds the
// installed plugins, checks each one (manifest, binary checksum, protocol
// version), starts it as a separate process through hashicorp/go-plugin,
// restarts it when it dies, and hands the rest of the daemon plain
// sdk.ScenarioHandler and sdk.Transport values whose every call is bounded
// in time and whose every reply is validated.
//
// A plugin is a separate program, possibly from a partner, so nothing it
// does may take the daemon down: a plugin that will not start, hangs,
// crashes, prints garbage or answers nonsense is recorded in the activity
// log with a 3xxx message code, shown by List, and otherwise contained.
package pluginhost

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/plugins/sdk"
	"github.com/holdfast/holdfast/plugins/sdk/manifest"
)

// Config configures a Host. Zero durations take the defaults below, which
// match the [plugins] section of holdfastd's default configuration.
type Config struct {
	// Dirs are searched in order; each holds one folder per plugin with its
	// manifest.toml. When two plugins serve the same type, the one found
	// first wins.
	Dirs []string
	// CallTimeout bounds every call into a plugin but Verify (default 30s).
	CallTimeout time.Duration
	// VerifyTimeout bounds Verify, which tests an application on a whole
	// snapshot and so takes as long as the data is large (default 4h).
	VerifyTimeout time.Duration
	// StartTimeout bounds a plugin's start-up handshake (default 10s).
	StartTimeout time.Duration
	// BackoffMin and BackoffMax bound the delay before restarting a crashed
	// plugin: it starts at BackoffMin and doubles up to BackoffMax
	// (defaults 500ms and 30s).
	BackoffMin, BackoffMax time.Duration
	// StableAfter is how long a plugin must run before a crash counts as a
	// new incident and the delay starts again at BackoffMin (default 60s).
	StableAfter time.Duration
}

// Defaults for Config's zero values.
const (
	DefaultCallTimeout   = 30 * time.Second
	DefaultVerifyTimeout = 4 * time.Hour
	DefaultStartTimeout  = 10 * time.Second
	DefaultBackoffMin    = 500 * time.Millisecond
	DefaultBackoffMax    = 30 * time.Second
	DefaultStableAfter   = 60 * time.Second
)

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.CallTimeout, DefaultCallTimeout)
	def(&c.VerifyTimeout, DefaultVerifyTimeout)
	def(&c.StartTimeout, DefaultStartTimeout)
	def(&c.BackoffMin, DefaultBackoffMin)
	def(&c.BackoffMax, DefaultBackoffMax)
	def(&c.StableAfter, DefaultStableAfter)
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = c.BackoffMin
	}
	return c
}

// Plugin states shown in PluginStatus.State.
const (
	StateStarting   = "starting"   // being checked and started by Host.Start
	StateRunning    = "running"    // serving calls
	StateRestarting = "restarting" // crashed; waiting to be, or being, restarted
	StateRefused    = "refused"    // not started: manifest, checksum, protocol or duplicate problem
	StateFailed     = "failed"     // started but could not be brought up; not retried
	StateStopped    = "stopped"    // ended by Host.Stop
)

// PluginStatus is what List reports about one plugin.
type PluginStatus struct {
	Name, Kind, Type, Version string
	Dir                       string // the plugin's folder
	Binary                    string // full path of the executable
	SHA256                    string // from the manifest
	State                     string // one of the State constants
	PID                       int    // 0 unless running
	Protocol                  int    // negotiated protocol version, 0 until started
	Restarts                  int    // successful restarts after crashes
	LastError                 string // the most recent problem, if any
	LastCode                  string // its message code
	Started                   time.Time
}

// Host finds, starts and supervises plugins. Its methods are safe for
// concurrent use.
type Host struct {
	cfg    Config
	rec    activity.Recorder
	logger *slog.Logger

	life    sync.Mutex // serializes Start and Stop
	started bool
	stopped bool
	stop    chan struct{}
	wg      sync.WaitGroup // supervisors

	mu         sync.Mutex
	plugins    []*instance
	scenarios  map[string]*instance // scenario type -> plugin serving it
	transports map[string]*instance // transport name -> plugin serving it
}

// New returns a Host. rec receives the activity-log entries; logger the
// plugins' own log lines and go-plugin's. Nil values are allowed (nothing is
// recorded; slog.Default is used).
func New(cfg Config, rec activity.Recorder, logger *slog.Logger) *Host {
	if rec == nil {
		rec = nopRecorder{}
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Host{
		cfg:        cfg.withDefaults(),
		rec:        rec,
		logger:     logger.With("component", "pluginhost"),
		stop:       make(chan struct{}),
		scenarios:  map[string]*instance{},
		transports: map[string]*instance{},
	}
}

type nopRecorder struct{}

func (nopRecorder) Record(context.Context, messages.Code, ...any) {}

// Start discovers every <dir>/<name>/manifest.toml, checks each plugin and
// starts those that pass, in parallel; it returns once each has started or
// failed. Problems are recorded and shown by List; none is fatal. Start does
// nothing after the first call or after Stop.
func (h *Host) Start(ctx context.Context) {
	h.life.Lock()
	defer h.life.Unlock()
	if h.started || h.stopped {
		return
	}
	h.started = true

	found := h.discover(ctx)
	var candidates, launch []*instance
	for _, in := range found {
		if in.state() == StateStarting && in.precheck(ctx) {
			candidates = append(candidates, in)
		}
	}
	h.mu.Lock()
	h.plugins = found
	for _, in := range candidates {
		served := h.scenarios
		if in.man.Kind == manifest.KindTransport {
			served = h.transports
		}
		if winner := served[in.man.Type]; winner != nil {
			by := winner.man.Name
			if by == in.man.Name {
				by += " in " + winner.dir
			}
			in.refuse(ctx, newProblem(nil, messages.PluginDuplicate, in.man.Name, in.man.Type, by))
			continue
		}
		served[in.man.Type] = in
		launch = append(launch, in)
	}
	// A type whose only plugins were refused is still known: asking for it
	// then says why it is unavailable rather than that it does not exist.
	for _, in := range found {
		served := h.scenarios
		if in.man.Kind == manifest.KindTransport {
			served = h.transports
		}
		if in.man.Type != "" && served[in.man.Type] == nil {
			served[in.man.Type] = in
		}
	}
	h.mu.Unlock()

	var wg sync.WaitGroup
	for _, in := range launch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if in.launch(ctx) == nil {
				h.wg.Add(1)
				go in.supervise(h.stop)
			}
		}()
	}
	wg.Wait()
}

// discover lists the plugin folders of every configured directory, in
// directory order and by folder name within one. Folders whose manifest
// cannot be read are returned refused.
func (h *Host) discover(ctx context.Context) []*instance {
	var found []*instance
	for _, dir := range h.cfg.Dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			if os.IsNotExist(err) {
				h.logger.Debug("plugin directory does not exist", "dir", dir)
			} else {
				h.logger.Error("plugin directory cannot be read", "dir", dir, "err", err)
			}
			continue
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				continue // editors' and installers' temporary folders
			}
			pdir := filepath.Join(dir, e.Name())
			if fi, err := os.Stat(pdir); err != nil || !fi.IsDir() {
				continue // loose files are not plugins
			}
			in := &instance{host: h, dir: pdir, kick: make(chan struct{}, 1)}
			in.status.Name = e.Name()
			in.status.Dir = pdir
			in.status.State = StateStarting
			m, err := manifest.Load(pdir)
			if err != nil {
				var le *manifest.LoadError
				cause := err
				if errors.As(err, &le) {
					cause = le.Err
				}
				in.refuse(ctx, newProblem(nil, messages.PluginManifestInvalid, filepath.Join(pdir, manifest.FileName), cause))
			} else {
				in.setManifest(m)
			}
			found = append(found, in)
		}
	}
	return found
}

// Stop ends every plugin process and stops supervision. Calls in flight fail;
// later calls fail with PluginUnavailable. Stop is idempotent.
func (h *Host) Stop() {
	h.life.Lock()
	defer h.life.Unlock()
	if h.stopped {
		return
	}
	h.stopped = true
	close(h.stop)
	h.wg.Wait()
}

// List reports every discovered plugin, refused ones included, ordered by
// name (then folder).
func (h *Host) List() []PluginStatus {
	h.mu.Lock()
	plugins := append([]*instance(nil), h.plugins...)
	h.mu.Unlock()
	out := make([]PluginStatus, 0, len(plugins))
	for _, in := range plugins {
		out = append(out, in.snapshot())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Dir < out[j].Dir
	})
	return out
}

// ScenarioTypes lists the scenario types a plugin serves or will serve again
// shortly (running or restarting), sorted.
func (h *Host) ScenarioTypes() []string { return h.types(h.scenarios) }

// TransportNames lists the transports available, like ScenarioTypes.
func (h *Host) TransportNames() []string { return h.types(h.transports) }

func (h *Host) types(m map[string]*instance) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for t, in := range m {
		if st := in.state(); st == StateRunning || st == StateRestarting {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// ScenarioHandler returns the handler for scenario type typ. The handler
// stays valid across plugin restarts; while its plugin is down, calls fail
// fast with PluginUnavailable. Errors: ScenarioTypeUnknown when no plugin
// declares typ; PluginUnavailable when its plugin was refused, failed or
// stopped.
func (h *Host) ScenarioHandler(typ string) (sdk.ScenarioHandler, error) {
	h.mu.Lock()
	in := h.scenarios[typ]
	h.mu.Unlock()
	if in == nil {
		return nil, messages.New(messages.ScenarioTypeUnknown, typ, installed(h.ScenarioTypes()))
	}
	if err := in.usable(); err != nil {
		return nil, err
	}
	return &scenarioHandle{in: in}, nil
}

// Transport returns the transport plugin serving name, like ScenarioHandler.
// Errors: TransportUnknown when no plugin serves name, PluginUnavailable
// while it is down.
func (h *Host) Transport(name string) (sdk.Transport, error) {
	h.mu.Lock()
	in := h.transports[name]
	h.mu.Unlock()
	if in == nil {
		return nil, messages.New(messages.TransportUnknown, name, installed(h.TransportNames()))
	}
	if err := in.usable(); err != nil {
		return nil, err
	}
	return &transportHandle{in: in}, nil
}

func installed(types []string) string {
	if len(types) == 0 {
		return "none"
	}
	return strings.Join(types, ", ")
}

// timeoutFor is how long a call of method may take.
func (c Config) timeoutFor(method string) time.Duration {
	if method == "Verify" {
		return c.VerifyTimeout
	}
	return c.CallTimeout
}
