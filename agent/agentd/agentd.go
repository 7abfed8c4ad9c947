// Package agentd is holdfast-agent's daemon: it loads the identity the
// agent enrolled with, starts the transport plugin, asks the appliance for
// its roles every few seconds, runs them, and reports how they stand. It
// also carries out the data tasks the assignments list (a restore into a
// directory here, a read of a directory here), each once.
//
// The last assignments received are kept on disk, so an agent restarted
// while the appliance is unreachable goes on replicating what it was
// told; the appliance is needed to change roles, not to keep them.
package agentd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/holdfast/holdfast/agent/capture"
	"github.com/holdfast/holdfast/agent/control"
	"github.com/holdfast/holdfast/agent/enroll"
	"github.com/holdfast/holdfast/agent/roles"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/pki"
	"github.com/holdfast/holdfast/appliance/pluginhost"
	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// Files in the state directory besides the identity and appliance.json.
const (
	AssignmentsFile = "assignments.json"
	DataAddrFile    = "run/data.addr"
	SpoolDir        = "spool"
)

// Config is what holdfast-agent run is given.
type Config struct {
	StateDir   string   // written by holdfast-agent enroll
	PluginDirs []string // where the transport plugin is installed
	Transport  string   // its name; "" means tcp
	// DataListen is where this host receives replication (HOST:PORT), ""
	// for a host that is only ever a master. DataAdvertise is the address
	// masters are told to dial, when it differs (NAT, 0.0.0.0).
	DataListen    string
	DataAdvertise string
	PollEvery     time.Duration // 0: 2 s
	// Bandwidth is the weekly schedule limiting what this host sends
	// (agent/throttle's syntax, e.g. "mon-fri 08:00-18:00 2MiB/s; * unlimited");
	// "" is unlimited.
	Bandwidth string
	Capture   capture.Backend
	Logger    *slog.Logger
	// Links builds the connections roles use from the configured
	// transport; self is this host's enrolled name.
	Links func(tr sdk.Transport, self string) roles.Links
}

// Run runs the agent until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Transport == "" {
		cfg.Transport = "tcp"
	}
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger
	app, err := enroll.LoadAppliance(cfg.StateDir)
	if err != nil {
		return err
	}
	cert, pool, err := pki.LoadIdentity(cfg.StateDir)
	if err != nil {
		return fmt.Errorf("load this agent's identity from %s (enroll again if it is lost): %w", cfg.StateDir, err)
	}
	self, err := pki.CertHost(cert.Leaf)
	if err != nil {
		return fmt.Errorf("this agent's certificate: %w", err)
	}
	log = log.With("host", self)

	plugins := pluginhost.New(pluginhost.Config{Dirs: cfg.PluginDirs}, logRecorder{log}, log)
	plugins.Start(ctx)
	defer plugins.Stop()
	tr, err := plugins.Transport(cfg.Transport)
	if err != nil {
		return fmt.Errorf("transport %s: %w", cfg.Transport, err)
	}
	settings := map[string]string{"identity_dir": cfg.StateDir}
	if cfg.Bandwidth != "" {
		settings["bandwidth"] = cfg.Bandwidth
	}
	addrFile := filepath.Join(cfg.StateDir, DataAddrFile)
	if cfg.DataListen != "" {
		if err := os.MkdirAll(filepath.Dir(addrFile), 0o700); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(addrFile), err)
		}
		os.Remove(addrFile)
		settings["listen"] = cfg.DataListen
		settings["listen_addr_file"] = addrFile
	}
	if err := tr.Configure(ctx, settings); err != nil {
		return fmt.Errorf("configure transport %s: %w", cfg.Transport, err)
	}

	run := roles.New(cfg.Links(tr, self), roles.Options{
		SpoolDir: filepath.Join(cfg.StateDir, SpoolDir), Capture: cfg.Capture, Logger: log,
	})
	defer run.Close()
	last, err := loadAssignments(cfg.StateDir)
	if err != nil {
		log.Warn("last assignments unreadable; waiting for the appliance", "err", err)
	} else {
		run.Apply(ctx, last)
	}

	client := control.NewClient(app.Address, pki.ClientTLS(cert, pool, app.HostName, nil))
	defer client.Close()
	work := newTasks(client, cfg.StateDir, log)
	defer work.stop()
	log.Info("agent running", "appliance", app.Address, "transport", cfg.Transport, "data_listen", cfg.DataListen)
	reachable := true
	tick := time.NewTicker(cfg.PollEvery)
	defer tick.Stop()
	for {
		err := poll(ctx, client, run, work, cfg, addrFile, &last)
		switch {
		case err != nil && reachable:
			log.Warn("appliance unreachable; roles keep running as last assigned", "err", err)
			reachable = false
		case err == nil && !reachable:
			log.Info("appliance reachable again")
			reachable = true
		}
		select {
		case <-ctx.Done():
			log.Info("agent stopping")
			return nil
		case <-tick.C:
		}
	}
}

// poll is one exchange with the appliance: fetch the roles, apply them,
// report. Events of a report that did not arrive go back in the queue.
func poll(ctx context.Context, client *control.Client, run *roles.Runner, work *tasks, cfg Config, addrFile string, last *control.Assignments) error {
	var errs []error
	a, err := client.Assignments(ctx)
	if err != nil {
		errs = append(errs, err)
	} else {
		// Tasks are kept in their own state, not with the roles: a
		// restarted agent must not run a task again from this file.
		work.apply(ctx, a.Tasks)
		a.Tasks = nil
		if !reflect.DeepEqual(a, *last) {
			if err := saveAssignments(cfg.StateDir, a); err != nil {
				errs = append(errs, err)
			}
			*last = a
		}
		run.Apply(ctx, a)
	}
	rep := run.Report()
	rep.DataAddress = control.DataAddress(cfg.DataListen, cfg.DataAdvertise, addrFile)
	if err := client.Report(ctx, rep); err != nil {
		var refused *control.RefusedError
		if errors.As(err, &refused) {
			// Sending it again would be refused again and block every
			// later report: its events stay in this agent's log only.
			cfg.Logger.Error("appliance refused a report; its events are dropped", "err", err, "events", len(rep.Events))
		} else {
			run.Requeue(rep)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func loadAssignments(dir string) (control.Assignments, error) {
	f, err := os.Open(filepath.Join(dir, AssignmentsFile))
	if errors.Is(err, os.ErrNotExist) {
		return control.Assignments{}, nil
	}
	if err != nil {
		return control.Assignments{}, err
	}
	defer f.Close()
	return control.DecodeAssignments(f)
}

func saveAssignments(dir string, a control.Assignments) error {
	b, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return fmt.Errorf("encode assignments: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, AssignmentsFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save assignments: %w", err)
	}
	return nil
}

// logRecorder puts the plugin host's activity entries in the agent's log;
// an agent has no catalog of its own.
type logRecorder struct{ log *slog.Logger }

func (r logRecorder) Record(_ context.Context, code messages.Code, args ...any) {
	m := messages.New(code, args...)
	r.log.Info(m.Error(), "code", string(code))
}
