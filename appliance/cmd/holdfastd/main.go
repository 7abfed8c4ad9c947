// Command holdfastd is the Holdfast appliance daemon.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/holdfast/holdfast/appliance/config"
	"github.com/holdfast/holdfast/appliance/daemon"
)

func main() {
	cfgPath := flag.String("config", "", "configuration file (TOML); the embedded default when empty")
	dataDir := flag.String("data", "", "data directory; overrides data_dir of the configuration")
	listen := flag.String("listen", "", "API address HOST:PORT; overrides api.listen")
	agentsListen := flag.String("agents-listen", "", "agent listener HOST:PORT; overrides agents.listen (\"off\" disables it)")
	dataListen := flag.String("replication-listen", "", "where to receive replication from master agents, HOST:PORT; overrides replication.listen")
	printDefault := flag.Bool("print-default-config", false, "print the embedded default configuration and exit")
	flag.Parse()
	if *printDefault {
		fmt.Print(config.Default())
		return
	}
	if *dataDir != "" {
		os.Setenv("HOLDFAST_DATA", *dataDir)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "holdfastd:", err)
		os.Exit(2)
	}
	if *dataDir != "" {
		cfg.DataDir, _ = filepath.Abs(*dataDir)
	}
	if *listen != "" {
		cfg.API.Listen = *listen
	}
	switch *agentsListen {
	case "":
	case "off":
		cfg.Agents.Listen = ""
	default:
		cfg.Agents.Listen = *agentsListen
	}
	if *dataListen != "" {
		cfg.Replication.Listen = *dataListen
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "holdfastd: command line:", err)
		os.Exit(2)
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level)) // validated by config.Load
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := daemon.Run(ctx, cfg, daemon.Options{BundledPlugins: bundledPlugins()}, logger); err != nil {
		fmt.Fprintln(os.Stderr, "holdfastd:", err)
		os.Exit(1)
	}
}

// bundledPlugins is the plugins folder shipped beside the binary.
func bundledPlugins() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return ""
	}
	return filepath.Join(filepath.Dir(exe), "plugins")
}
