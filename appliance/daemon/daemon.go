// Package daemon wires holdfastd together: data directory, catalog, activity
// log, appliance CA and agent listener, plugin host and API, started in
// order and stopped in reverse.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/holdfast/holdfast/agent/capture"
	"github.com/holdfast/holdfast/agent/replication"
	"github.com/holdfast/holdfast/agent/rewind"
	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/agenttasks"
	"github.com/holdfast/holdfast/appliance/api"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/catalogrebuild"
	"github.com/holdfast/holdfast/appliance/config"
	"github.com/holdfast/holdfast/appliance/jobsecrets"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/pki"
	"github.com/holdfast/holdfast/appliance/pluginhost"
	"github.com/holdfast/holdfast/appliance/recovery"
	"github.com/holdfast/holdfast/appliance/retention"
	"github.com/holdfast/holdfast/appliance/runner"
	"github.com/holdfast/holdfast/appliance/scenarios"
	"github.com/holdfast/holdfast/appliance/version"
	"github.com/holdfast/holdfast/internal/atomicfile"
)

// AddrFile, below the data directory, holds the address the API listens on,
// so the CLI finds a daemon started on port 0.
const AddrFile = "run/api.addr"

// Options are what the command line adds to the configuration.
type Options struct {
	// BundledPlugins is the folder of plugins shipped with the binary.
	BundledPlugins string
	// Ready, if set, receives the API address once the daemon serves.
	Ready func(addr string)
	// AgentRoutes, if set, registers routes for enrolled agents on the
	// agent listener (with (*api.AgentListener).HandleAgent) before it
	// serves.
	AgentRoutes func(*api.AgentListener)
	// AgentTasks, if set, receives the hub of agent data tasks once it
	// exists (tests drive restores to agents through it).
	AgentTasks func(*agenttasks.Hub)
}

// Run starts holdfastd and serves until ctx is cancelled, then shuts down
// gracefully. Errors that stop the start carry a message code.
func Run(ctx context.Context, cfg config.Config, opts Options, logger *slog.Logger) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return messages.New(messages.DataDirUnusable, cfg.DataDir, err)
	}
	for _, sub := range []string{"run", "plugins", "store", "spool"} {
		if err := os.MkdirAll(filepath.Join(cfg.DataDir, sub), 0o700); err != nil {
			return messages.New(messages.DataDirUnusable, cfg.DataDir, err)
		}
	}
	catDir := filepath.Join(cfg.DataDir, "catalog")
	cat, err := catalog.Open(catDir, catalog.Options{Logger: logger})
	if err != nil {
		return messages.New(messages.CatalogOpenFailed, catDir, err)
	}
	defer func() {
		if err := cat.Close(); err != nil {
			logger.Error("close catalog", "err", err)
		}
	}()
	log := activity.New(cat, cfg.HostName, logger)

	token, created, err := loadOrCreateToken(cfg.DataDir)
	if err != nil {
		e := messages.New(messages.DataDirUnusable, cfg.DataDir, err)
		log.RecordError(ctx, e)
		return e
	}
	if created {
		log.Record(ctx, messages.AdminTokenCreated, filepath.Join(cfg.DataDir, TokenFile))
	}

	caDir := filepath.Join(cfg.DataDir, CADir)
	ca, err := pki.OpenCA(caDir)
	if err != nil {
		e := messages.New(messages.CAUnusable, caDir, err)
		log.RecordError(ctx, e)
		return e
	}
	backend, err := capture.ParseBackend(cfg.Replication.Capture)
	if err != nil {
		return messages.New(messages.ConfigInvalid, "replication.capture", err)
	}
	self, err := pki.NormalizeHost(cfg.HostName)
	if err != nil {
		self = cfg.HostName // only agents need a certificate name
	}
	dataAddr := &addressCell{}
	var journal *rewind.Options
	if cfg.Rewind.Enabled {
		journal = &rewind.Options{MaxBytes: int64(cfg.Rewind.MaxSize), MaxAge: time.Duration(cfg.Rewind.Keep), Log: logger}
	}
	held := &replication.Held{}
	runs := runner.New(cat, log, filepath.Join(cfg.DataDir, "spool"), runner.Options{
		SpoolMaxBytes: int64(cfg.Replication.SpoolMax), Capture: backend, Rewind: journal, Held: held,
		Remote: runner.Remote{LocalHosts: []string{"localhost", cfg.HostName, self}, Self: self, DataAddress: dataAddr.get},
	})
	tasks := newTaskHub(ca, logger)
	if opts.AgentTasks != nil {
		opts.AgentTasks(tasks)
	}
	register := func(l *api.AgentListener) {
		controlRoutes(ctx, l, withTasks{runs, tasks}, log)
		taskRoutes(l, tasks)
		if opts.AgentRoutes != nil {
			opts.AgentRoutes(l)
		}
	}
	agents, agentsAddr, err := startAgents(ctx, cfg, ca, register, log, logger)
	if err != nil {
		log.RecordError(ctx, err)
		return err
	}
	var serverName string
	if agents != nil {
		serverName, _ = pki.NormalizeHost(cfg.HostName)
	}
	defer func() {
		shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		agents.shutdown(shutCtx, cfg.DataDir, logger)
	}()

	plugins := pluginhost.New(pluginhost.Config{
		Dirs:          cfg.PluginDirs(opts.BundledPlugins),
		CallTimeout:   time.Duration(cfg.Plugins.CallTimeout),
		VerifyTimeout: time.Duration(cfg.Plugins.VerifyTimeout),
		StartTimeout:  time.Duration(cfg.Plugins.StartTimeout),
		BackoffMin:    time.Duration(cfg.Plugins.RestartBackoffMin),
		BackoffMax:    time.Duration(cfg.Plugins.RestartBackoffMax),
	}, log, logger)
	plugins.Start(ctx)
	defer plugins.Stop()

	runs.Restart(ctx)
	own, err := startApplianceRoles(ctx, cfg, plugins, runs, self, dataAddr, held, replication.LocalOptions{Rewind: journal}, logger)
	if err != nil {
		log.RecordError(ctx, err)
		return err
	}
	defer own.stop()
	defer func() {
		if err := runs.Close(); err != nil {
			logger.Error("stop replication", "err", err)
		}
	}()

	srv := api.New(token)
	srv.Replication = runs
	recoveryOpts := recovery.Options{}
	if journal != nil {
		recoveryOpts.Rewind = *journal
	}
	rec := recovery.New(runs, plugins, cat, log, recoveryOpts)
	srv.Recovery = rec
	store, err := openStore(cfg.DataDir, logger.With("component", "diskstore"))
	if err != nil {
		e := messages.New(messages.DataDirUnusable, cfg.DataDir, err)
		log.RecordError(ctx, e)
		return e
	}
	defer store.Close()
	localHost := func(h string) bool { return slices.Contains([]string{"localhost", cfg.HostName, self}, h) }
	secrets := &jobsecrets.Secrets{}
	queue, stopJobs, err := startJobs(ctx, jobDeps{cat: cat, images: rec, store: store, storePath: filepath.Join(cfg.DataDir, StoreDir),
		local: localHost, agents: tasks, readers: tasks, scenarios: runs, handlers: plugins, log: log, secrets: secrets,
		rules: retention.Rules{KeepLast: cfg.Store.KeepLast, KeepDays: cfg.Store.KeepDays}}, logger)
	if err != nil {
		e := messages.New(messages.DataDirUnusable, cfg.DataDir, err)
		log.RecordError(ctx, e)
		return e
	}
	defer stopJobs()
	srv.Jobs = queue
	srv.Secrets = secrets
	srv.Sessions = cat
	srv.Rebuild = &catalogrebuild.Rebuilder{Store: store, Catalog: cat, Rec: log}
	ensurePruneJob(queue, cfg.Store.PruneSchedule, logger)
	srv.Scenarios = scenarios.New(cat, plugins, log, []string{"localhost", cfg.HostName})
	srv.Scenarios.Enrolled = func(host string) bool { return enrolled(ca, host) }
	srv.Plugins = plugins
	srv.Activity = cat
	srv.Recorder = log
	srv.Logger = logger
	srv.Agents = &api.AgentAdmin{CA: ca, Address: agentsAddr, ServerName: serverName}
	if agents != nil {
		srv.Agents.Listener = agents.routes
	}

	ln, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		e := messages.New(messages.ConfigInvalid, "api.listen", fmt.Sprintf("cannot listen on %s: %v", cfg.API.Listen, err))
		log.RecordError(ctx, e)
		return e
	}
	addr := ln.Addr().String()
	if err := atomicfile.Write(filepath.Join(cfg.DataDir, AddrFile), []byte(addr+"\n"), 0o600); err != nil {
		ln.Close()
		return messages.New(messages.DataDirUnusable, cfg.DataDir, err)
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	log.Record(ctx, messages.DaemonStarted, version.Version, addr, cfg.DataDir)
	if opts.Ready != nil {
		opts.Ready(addr)
	}

	var agentsErr chan error // nil, so never ready, when the listener is off
	if agents != nil {
		agentsErr = agents.errc
	}
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			log.RecordError(context.Background(), messages.New(messages.InternalError, fmt.Errorf("API server: %w", err)))
			return fmt.Errorf("API server: %w", err)
		}
	case err := <-agentsErr:
		if !errors.Is(err, http.ErrServerClosed) {
			log.RecordError(context.Background(), messages.New(messages.InternalError, fmt.Errorf("agent listener: %w", err)))
			return fmt.Errorf("agent listener: %w", err)
		}
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutCtx); err != nil {
		logger.Warn("API shutdown cut short", "err", err)
	}
	os.Remove(filepath.Join(cfg.DataDir, AddrFile))
	agents.shutdown(shutCtx, cfg.DataDir, logger)
	agents = nil // the deferred shutdown is for early returns
	own.stop()
	if err := runs.Close(); err != nil {
		logger.Error("stop replication", "err", err)
	}
	plugins.Stop()
	log.Record(context.Background(), messages.DaemonStopped)
	return nil
}
