// Package config reads holdfastd's configuration: an embedded default that
// makes the daemon start with no file at all, overridden key by key by an
// optional TOML file. Unknown keys and bad values are errors that name the
// key, because a silently ignored typo in a backup appliance's configuration
// is found only on the day of the restore.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

//go:embed default.toml
var defaultTOML string

// Default returns the embedded default file's text.
func Default() string { return defaultTOML }

// Duration is a time.Duration written as "30s" in the file.
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (write e.g. \"30s\" or \"2m\")", string(b))
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Config is holdfastd's whole configuration.
type Config struct {
	DataDir  string `toml:"data_dir"`
	HostName string `toml:"host_name"`
	API      struct {
		Listen string `toml:"listen"`
	} `toml:"api"`
	Agents struct {
		Listen    string `toml:"listen"`
		Advertise string `toml:"advertise"`
	} `toml:"agents"`
	Plugins struct {
		Dirs              []string `toml:"dirs"`
		CallTimeout       Duration `toml:"call_timeout"`
		VerifyTimeout     Duration `toml:"verify_timeout"`
		StartTimeout      Duration `toml:"start_timeout"`
		RestartBackoffMin Duration `toml:"restart_backoff_min"`
		RestartBackoffMax Duration `toml:"restart_backoff_max"`
	} `toml:"plugins"`
	Replication struct {
		SpoolMax Size   `toml:"spool_max"`
		Capture  string `toml:"capture"`
		// Listen is where the appliance receives replication from master
		// agents when it is their replica; "" receives nothing.
		Listen    string `toml:"listen"`
		Advertise string `toml:"advertise"`
		Transport string `toml:"transport"`
	} `toml:"replication"`
	Rewind struct {
		Enabled bool     `toml:"enabled"`
		MaxSize Size     `toml:"max_size"`
		Keep    Duration `toml:"keep"`
	} `toml:"rewind"`
	Store struct {
		// Retention of backup sessions, applied by prune jobs: keep_last
		// sessions per scenario and entity, keep_days days after each
		// finished; 0 turns a rule off.
		KeepLast int `toml:"keep_last"`
		KeepDays int `toml:"keep_days"`
		// PruneSchedule is the schedule of the prune job submitted at
		// start when none is queued; "" submits none.
		PruneSchedule string `toml:"prune_schedule"`
	} `toml:"store"`
	Log struct {
		Level string `toml:"level"`
	} `toml:"log"`
}

// Size is a byte count written as "512MiB" or "1GiB" in the file.
type Size int64

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(text, u.suffix); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
			if err != nil || n < 0 || n > (1<<62)/u.mult {
				break
			}
			*s = Size(n * u.mult)
			return nil
		}
	}
	return fmt.Errorf("%q is not a size (write e.g. \"512MiB\" or \"1GiB\")", text)
}

// Load returns the default configuration overridden by the file at path
// (none when path is empty), with data_dir and host_name resolved.
func Load(path string) (Config, error) {
	var c Config
	if err := decode(&c, "embedded default", defaultTOML); err != nil {
		return Config{}, fmt.Errorf("embedded default configuration: %w", err)
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("read configuration: %w", err)
		}
		if err := decode(&c, path, string(b)); err != nil {
			return Config{}, err
		}
	}
	if err := c.resolve(); err != nil {
		return Config{}, fmt.Errorf("configuration %s: %w", nameOr(path), err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("configuration %s: %w", nameOr(path), err)
	}
	return c, nil
}

func nameOr(path string) string {
	if path == "" {
		return "(embedded default)"
	}
	return path
}

func decode(c *Config, name, text string) error {
	md, err := toml.Decode(text, c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return fmt.Errorf("%s line %d: %s", name, pe.Position.Line, pe.Message)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		keys := make([]string, len(u))
		for i, k := range u {
			keys[i] = k.String()
		}
		return fmt.Errorf("%s: unknown key %s (see the default with holdfastd --print-default-config)", name, strings.Join(keys, ", "))
	}
	return nil
}

func (c *Config) resolve() error {
	if c.DataDir == "" {
		c.DataDir = os.Getenv("HOLDFAST_DATA")
	}
	if c.DataDir == "" {
		if os.Geteuid() == 0 {
			c.DataDir = "/var/lib/holdfast"
		} else {
			home, err := os.UserHomeDir()
			if err != nil {
				return fmt.Errorf("data_dir is empty and there is no home directory: %w", err)
			}
			c.DataDir = filepath.Join(home, ".local", "share", "holdfast")
		}
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("data_dir %q: %w", c.DataDir, err)
	}
	c.DataDir = abs
	if c.HostName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("host_name is empty and the hostname is unknown: %w", err)
		}
		c.HostName = h
	}
	return nil
}

// Validate checks values that decode but make no sense.
func (c *Config) Validate() error {
	host, _, err := net.SplitHostPort(c.API.Listen)
	if err != nil {
		return fmt.Errorf("api.listen %q: want HOST:PORT, e.g. 127.0.0.1:7420", c.API.Listen)
	}
	if ip := net.ParseIP(host); host != "localhost" && ip == nil {
		return fmt.Errorf("api.listen %q: HOST must be an IP address or localhost", c.API.Listen)
	}
	if err := c.validateAgents(); err != nil {
		return err
	}
	for name, d := range map[string]Duration{
		"plugins.call_timeout":        c.Plugins.CallTimeout,
		"plugins.verify_timeout":      c.Plugins.VerifyTimeout,
		"plugins.start_timeout":       c.Plugins.StartTimeout,
		"plugins.restart_backoff_min": c.Plugins.RestartBackoffMin,
		"plugins.restart_backoff_max": c.Plugins.RestartBackoffMax,
	} {
		if d <= 0 {
			return fmt.Errorf("%s must be positive, got %s", name, time.Duration(d))
		}
	}
	if c.Plugins.RestartBackoffMax < c.Plugins.RestartBackoffMin {
		return fmt.Errorf("plugins.restart_backoff_max (%s) is less than restart_backoff_min (%s)",
			time.Duration(c.Plugins.RestartBackoffMax), time.Duration(c.Plugins.RestartBackoffMin))
	}
	if c.Rewind.MaxSize < 1<<20 {
		return fmt.Errorf("rewind.max_size must be at least 1MiB, got %d bytes", c.Rewind.MaxSize)
	}
	if c.Rewind.Keep < Duration(time.Minute) {
		return fmt.Errorf("rewind.keep must be at least 1m, got %s", time.Duration(c.Rewind.Keep))
	}
	if c.Store.KeepLast < 0 || c.Store.KeepDays < 0 {
		return fmt.Errorf("store.keep_last and store.keep_days must be 0 (off) or more, got %d and %d", c.Store.KeepLast, c.Store.KeepDays)
	}
	if c.Replication.SpoolMax < 1<<20 {
		return fmt.Errorf("replication.spool_max must be at least 1MiB, got %d bytes", c.Replication.SpoolMax)
	}
	for _, k := range []struct{ key, v string }{{"replication.listen", c.Replication.Listen}, {"replication.advertise", c.Replication.Advertise}} {
		if k.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(k.v); err != nil {
			return fmt.Errorf("%s %q: want HOST:PORT: %v", k.key, k.v, err)
		}
	}
	if c.Replication.Transport == "" {
		return fmt.Errorf("replication.transport is empty: name the transport plugin, e.g. \"tcp\"")
	}
	switch c.Replication.Capture {
	case "auto", "fanotify", "inotify":
	default:
		return fmt.Errorf("replication.capture %q: use auto, fanotify or inotify", c.Replication.Capture)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level %q: use debug, info, warn or error", c.Log.Level)
	}
	return nil
}

func (c *Config) validateAgents() error {
	if c.Agents.Listen != "" {
		host, _, err := net.SplitHostPort(c.Agents.Listen)
		if err != nil {
			return fmt.Errorf("agents.listen %q: want HOST:PORT, e.g. 0.0.0.0:7421, or \"\" to disable", c.Agents.Listen)
		}
		if host != "" && host != "localhost" && net.ParseIP(host) == nil {
			return fmt.Errorf("agents.listen %q: HOST must be an IP address or localhost", c.Agents.Listen)
		}
	}
	if c.Agents.Advertise != "" {
		host, port, err := net.SplitHostPort(c.Agents.Advertise)
		if err != nil || host == "" || port == "" || port == "0" {
			return fmt.Errorf("agents.advertise %q: want the HOST:PORT agents dial, e.g. backup1.example.com:7421", c.Agents.Advertise)
		}
	}
	return nil
}

// PluginDirs returns the plugin folders to search, absolute, in order:
// the configured ones (relative to the data directory), then bundled.
func (c *Config) PluginDirs(bundled string) []string {
	var out []string
	for _, d := range c.Plugins.Dirs {
		if !filepath.IsAbs(d) {
			d = filepath.Join(c.DataDir, d)
		}
		out = append(out, d)
	}
	if bundled != "" {
		out = append(out, bundled)
	}
	return out
}
