package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/holdfast/holdfast/agent/agentd"
	"github.com/holdfast/holdfast/agent/capture"
	"github.com/holdfast/holdfast/agent/remote"
	"github.com/holdfast/holdfast/agent/replication"
	"github.com/holdfast/holdfast/agent/rewind"
	"github.com/holdfast/holdfast/agent/roles"
	"github.com/holdfast/holdfast/agent/throttle"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// DefaultPluginDir is where packages install transport plugins.
const DefaultPluginDir = "/usr/lib/holdfast/plugins"

func init() {
	commands["run"] = command{summary: "run the roles the appliance assigns to this host (master and replica)", run: runAgent}
}

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("holdfast-agent run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg agentd.Config
	var plugins, backend, level string
	fs.StringVar(&cfg.StateDir, "state", DefaultStateDir, "directory holdfast-agent enroll wrote")
	fs.StringVar(&plugins, "plugins", DefaultPluginDir, "comma-separated directories holding the transport plugin")
	fs.StringVar(&cfg.Transport, "transport", "tcp", "transport plugin to use")
	fs.StringVar(&cfg.DataListen, "listen", "", "HOST:PORT where this host receives replication as a replica (empty: master only)")
	fs.StringVar(&cfg.DataAdvertise, "advertise", "", "HOST:PORT masters dial to reach --listen, when it differs")
	fs.DurationVar(&cfg.PollEvery, "poll", 2*time.Second, "how often to ask the appliance for roles and report")
	fs.StringVar(&cfg.Bandwidth, "bandwidth", "", `weekly limit on what this host sends, e.g. "mon-fri 08:00-18:00 2MiB/s; * unlimited" (default unlimited)`)
	fs.StringVar(&backend, "capture", "auto", "change capture: auto, fanotify or inotify")
	fs.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	rewindMiB := fs.Int64("rewind-max-mib", rewind.DefaultMaxBytes>>20, "size limit of each replica's Data Rewind journal, MiB (0 turns the journal off)")
	rewindKeep := fs.Duration("rewind-keep", rewind.DefaultMaxAge, "age limit of the rewind points each replica keeps")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: holdfast-agent run [--state DIR] [--plugins DIRS] [--listen HOST:PORT] [--advertise HOST:PORT]")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		fmt.Fprintf(stderr, "holdfast-agent run: --log-level %q: want debug, info, warn or error\n", level)
		return 2
	}
	b, err := capture.ParseBackend(backend)
	if err != nil {
		fmt.Fprintf(stderr, "holdfast-agent run: --capture: %v\n", err)
		return 2
	}
	cfg.Capture = b
	if cfg.Bandwidth != "" {
		if _, err := throttle.Parse(cfg.Bandwidth, nil); err != nil {
			fmt.Fprintf(stderr, "holdfast-agent run: --bandwidth: %v\n", err)
			return 2
		}
	}
	if *rewindMiB < 0 || *rewindMiB > 1<<30 || *rewindKeep < time.Minute {
		fmt.Fprintf(stderr, "holdfast-agent run: --rewind-max-mib must be 0 (off) to 2^30 and --rewind-keep at least 1m\n")
		return 2
	}
	local := replication.LocalOptions{}
	if *rewindMiB > 0 {
		local.Rewind = &rewind.Options{MaxBytes: *rewindMiB << 20, MaxAge: *rewindKeep}
	}
	cfg.PluginDirs = strings.Split(plugins, ",")
	cfg.Logger = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lv}))
	cfg.Links = func(tr sdk.Transport, self string) roles.Links {
		if local.Rewind != nil {
			local.Rewind.Log = cfg.Logger
		}
		return remote.Links{Transport: tr, Logger: cfg.Logger, Local: &local}
	}
	if err := agentd.Run(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "holdfast-agent run: %v\n", err)
		return 1
	}
	return 0
}
