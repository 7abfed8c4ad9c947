package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadDefault(t *testing.T) {
	t.Setenv("HOLDFAST_DATA", t.TempDir())
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.API.Listen != "127.0.0.1:7420" {
		t.Errorf("default listen = %q, want loopback", c.API.Listen)
	}
	if c.Agents.Listen != "127.0.0.1:7421" {
		t.Errorf("default agents.listen = %q, want loopback", c.Agents.Listen)
	}
	if time.Duration(c.Plugins.CallTimeout) != 30*time.Second {
		t.Errorf("call_timeout = %v", time.Duration(c.Plugins.CallTimeout))
	}
	if !filepath.IsAbs(c.DataDir) || c.HostName == "" {
		t.Errorf("unresolved: data_dir %q host %q", c.DataDir, c.HostName)
	}
}

func TestLoadFile(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		wantErr string // empty: must load
		check   func(t *testing.T, c Config)
	}{
		{name: "override one key", text: "[api]\nlisten = \"127.0.0.1:0\"\n", check: func(t *testing.T, c Config) {
			if c.API.Listen != "127.0.0.1:0" || c.Log.Level != "info" {
				t.Errorf("got listen %q level %q", c.API.Listen, c.Log.Level)
			}
		}},
		{name: "unknown key named", text: "[api]\nlistn = \"x\"\n", wantErr: "unknown key api.listn"},
		{name: "syntax error with line", text: "data_dir = \"/x\"\nlisten = = 1\n", wantErr: "line 2"},
		{name: "bad duration", text: "[plugins]\ncall_timeout = \"soon\"\n", wantErr: "not a duration"},
		{name: "zero duration", text: "[plugins]\ncall_timeout = \"0s\"\n", wantErr: "plugins.call_timeout must be positive"},
		{name: "backoff order", text: "[plugins]\nrestart_backoff_min = \"1m\"\nrestart_backoff_max = \"1s\"\n", wantErr: "restart_backoff_max"},
		{name: "bad listen", text: "[api]\nlisten = \"7420\"\n", wantErr: "api.listen"},
		{name: "host name listen", text: "[api]\nlisten = \"example:80\"\n", wantErr: "IP address"},
		{name: "bad level", text: "[log]\nlevel = \"loud\"\n", wantErr: "log.level"},
		{name: "spool size", text: "[replication]\nspool_max = \"256MiB\"\n", check: func(t *testing.T, c Config) {
			if c.Replication.SpoolMax != 256<<20 || c.Replication.Capture != "auto" {
				t.Errorf("replication = %+v", c.Replication)
			}
		}},
		{name: "bad size", text: "[replication]\nspool_max = \"lots\"\n", wantErr: "not a size"},
		{name: "rewind retention", text: "[rewind]\nmax_size = \"64MiB\"\nkeep = \"2h\"\n", check: func(t *testing.T, c Config) {
			if !c.Rewind.Enabled || c.Rewind.MaxSize != 64<<20 || time.Duration(c.Rewind.Keep) != 2*time.Hour {
				t.Fatalf("rewind = %+v", c.Rewind)
			}
		}},
		{name: "rewind off", text: "[rewind]\nenabled = false\n", check: func(t *testing.T, c Config) {
			if c.Rewind.Enabled || c.Rewind.MaxSize != 1<<30 {
				t.Fatalf("rewind = %+v", c.Rewind)
			}
		}},
		{name: "tiny rewind journal", text: "[rewind]\nmax_size = \"10KiB\"\n", wantErr: "at least 1MiB"},
		{name: "short rewind keep", text: "[rewind]\nkeep = \"10s\"\n", wantErr: "at least 1m"},
		{name: "tiny spool", text: "[replication]\nspool_max = \"1KiB\"\n", wantErr: "at least 1MiB"},
		{name: "agents disabled", text: "[agents]\nlisten = \"\"\n", check: func(t *testing.T, c Config) {
			if c.Agents.Listen != "" {
				t.Errorf("agents.listen = %q", c.Agents.Listen)
			}
		}},
		{name: "agents on all addresses", text: "[agents]\nlisten = \":7421\"\nadvertise = \"backup1.example:7421\"\n", check: func(t *testing.T, c Config) {
			if c.Agents.Listen != ":7421" || c.Agents.Advertise != "backup1.example:7421" {
				t.Errorf("agents = %+v", c.Agents)
			}
		}},
		{name: "bad agents listen", text: "[agents]\nlisten = \"7421\"\n", wantErr: "agents.listen"},
		{name: "agents listen on a name", text: "[agents]\nlisten = \"example:7421\"\n", wantErr: "agents.listen"},
		{name: "advertise without port", text: "[agents]\nadvertise = \"backup1\"\n", wantErr: "agents.advertise"},
		{name: "bad capture", text: "[replication]\ncapture = \"poll\"\n", wantErr: "replication.capture"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("HOLDFAST_DATA", t.TempDir())
			p := filepath.Join(t.TempDir(), "holdfastd.toml")
			if err := os.WriteFile(p, []byte(tt.text), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestPluginDirs(t *testing.T) {
	c := Config{DataDir: "/data"}
	c.Plugins.Dirs = []string{"plugins", "/opt/p"}
	got := c.PluginDirs("/usr/lib/holdfast/plugins")
	want := []string{"/data/plugins", "/opt/p", "/usr/lib/holdfast/plugins"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("got %v want %v", got, want)
	}
}
