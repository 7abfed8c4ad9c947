package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/appliance/scenarios"
)

func TestParseReplica(t *testing.T) {
	tests := []struct {
		in      string
		want    scenarios.Replica
		wantErr bool
	}{
		{in: "/replica/data", want: scenarios.Replica{Host: "localhost", Target: "/replica/data"}},
		{in: "cdc1:/replica/data", want: scenarios.Replica{Host: "cdc1", Target: "/replica/data"}},
		{in: "cdc1:relative", wantErr: true},
		{in: ":/x", wantErr: true},
		{in: "relative", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseReplica(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("parseReplica(%q) = %+v, %v", tt.in, got, err)
		}
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{in: "2h", want: now.Add(-2 * time.Hour)},
		{in: "2026-11-25T08:00:00Z", want: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)},
		{in: "-1h", wantErr: true},
		{in: "yesterday", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseSince(tt.in, now)
		if (err != nil) != tt.wantErr || (!tt.wantErr && !got.Equal(tt.want)) {
			t.Errorf("parseSince(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func TestReadDefinition(t *testing.T) {
	tests := []struct {
		file, text string
		wantErr    string
		wantRoot   string
	}{
		{file: "d.toml", text: "name = \"docs\"\ntype = \"fileserver\"\n[master]\nhost = \"localhost\"\nroots = [\"/srv/docs\"]\n[[replicas]]\nhost = \"localhost\"\ntarget = \"/r\"\n", wantRoot: "/srv/docs"},
		{file: "d.json", text: `{"name":"docs","type":"fileserver","master":{"host":"localhost","roots":["/srv/a"]}}`, wantRoot: "/srv/a"},
		{file: "d.toml", text: "name = \"docs\"\nrooots = 1\n", wantErr: "unknown key rooots"},
		{file: "d.json", text: `{"nam":"x"}`, wantErr: "unknown field"},
		{file: "d.yaml", text: "name: x", wantErr: ".toml or .json"},
	}
	for _, tt := range tests {
		p := filepath.Join(t.TempDir(), tt.file)
		if err := os.WriteFile(p, []byte(tt.text), 0o600); err != nil {
			t.Fatal(err)
		}
		def, err := readDefinition(p)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s %q: err = %v, want %q", tt.file, tt.text, err, tt.wantErr)
			}
			continue
		}
		if err != nil || len(def.Master.Roots) != 1 || def.Master.Roots[0] != tt.wantRoot {
			t.Errorf("%s: %+v, %v", tt.file, def, err)
		}
	}
}

func TestDialWithoutDaemon(t *testing.T) {
	t.Setenv("HOLDFAST_API", "")
	t.Setenv("HOLDFAST_TOKEN", "")
	_, err := Connection{DataDir: t.TempDir()}.Dial()
	if err == nil || !strings.Contains(err.Error(), "is holdfastd running") {
		t.Errorf("err = %v, want a hint that the daemon is not running", err)
	}
}
