package scenarios

import (
	"strings"
	"testing"
)

func validDef() Definition {
	return Definition{
		Name:     "File Server - test",
		Type:     "fileserver",
		Master:   Master{Host: "localhost", Roots: []string{"/srv/data", "/srv/mail"}},
		Replicas: []Replica{{Host: "localhost", Target: "/replica/data"}},
	}
}

func TestNormalize(t *testing.T) {
	local := []string{"localhost", "cdc-appliance"}
	tests := []struct {
		name    string
		mutate  func(d *Definition)
		field   string // expected FieldError.Field; empty means valid
		problem string
	}{
		{name: "valid", mutate: func(d *Definition) {}},
		{name: "appliance host name", mutate: func(d *Definition) { d.Master.Host = "cdc-appliance" }},
		{name: "missing name", mutate: func(d *Definition) { d.Name = "  " }, field: "name"},
		{name: "name with slash", mutate: func(d *Definition) { d.Name = "a/b" }, field: "name", problem: "'/'"},
		{name: "name starting with dash", mutate: func(d *Definition) { d.Name = "-x" }, field: "name"},
		{name: "name too long", mutate: func(d *Definition) { d.Name = strings.Repeat("n", 65) }, field: "name"},
		{name: "missing type", mutate: func(d *Definition) { d.Type = "" }, field: "type"},
		{name: "unknown master", mutate: func(d *Definition) { d.Master.Host = "branch7" }, field: "master.host", problem: "not enrolled"},
		{name: "no roots", mutate: func(d *Definition) { d.Master.Roots = nil }, field: "master.roots"},
		{name: "relative root", mutate: func(d *Definition) { d.Master.Roots[0] = "srv/data" }, field: "master.roots[0]", problem: "absolute"},
		{name: "unclean root", mutate: func(d *Definition) { d.Master.Roots[1] = "/srv/../etc" }, field: "master.roots[1]", problem: "clean"},
		{name: "whole filesystem", mutate: func(d *Definition) { d.Master.Roots[0] = "/" }, field: "master.roots[0]"},
		{name: "nested roots", mutate: func(d *Definition) { d.Master.Roots[1] = "/srv/data/sub" }, field: "master.roots[1]", problem: "inside"},
		{name: "duplicate roots", mutate: func(d *Definition) { d.Master.Roots[1] = "/srv/data" }, field: "master.roots[1]", problem: "twice"},
		{name: "NUL in root", mutate: func(d *Definition) { d.Master.Roots[0] = "/srv/\x00" }, field: "master.roots[0]"},
		{name: "no replicas", mutate: func(d *Definition) { d.Replicas = nil }, field: "replicas"},
		{name: "replica inside master root", mutate: func(d *Definition) { d.Replicas[0].Target = "/srv/data/copy" }, field: "replicas[0].target", problem: "own source"},
		{name: "replica containing master root", mutate: func(d *Definition) { d.Replicas[0].Target = "/srv" }, field: "replicas[0].target"},
		{name: "duplicate replica", mutate: func(d *Definition) { d.Replicas = append(d.Replicas, d.Replicas[0]) }, field: "replicas[1]"},
		{name: "too many snapshots", mutate: func(d *Definition) { d.SnapshotsKeep = 5000 }, field: "snapshots_keep"},
		{name: "unknown sync mode", mutate: func(d *Definition) { d.Sync = "rsync" }, field: "sync", problem: "auto"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := validDef()
			tt.mutate(&d)
			err := d.Normalize(local)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			fe, ok := err.(*FieldError)
			if !ok {
				t.Fatalf("err = %v (%T), want *FieldError for %s", err, err, tt.field)
			}
			if fe.Field != tt.field {
				t.Errorf("field = %q, want %q (%v)", fe.Field, tt.field, fe)
			}
			if !strings.Contains(fe.Problem, tt.problem) {
				t.Errorf("problem %q lacks %q", fe.Problem, tt.problem)
			}
		})
	}
}

func TestNormalizeDefaults(t *testing.T) {
	d := validDef()
	if err := d.Normalize([]string{"localhost"}); err != nil {
		t.Fatal(err)
	}
	if d.Suspend == nil || !*d.Suspend {
		t.Error("suspend must default to on without Assured Recovery")
	}
	if d.SnapshotsKeep != DefaultSnapshotsKeep {
		t.Errorf("snapshots_keep = %d", d.SnapshotsKeep)
	}
	if d.Sync != "auto" || d.Record().SyncMode != "auto" {
		t.Errorf("sync = %q, want auto by default", d.Sync)
	}
	ar := validDef()
	ar.AssuredRecovery = true
	if err := ar.Normalize([]string{"localhost"}); err != nil {
		t.Fatal(err)
	}
	if *ar.Suspend {
		t.Error("suspend must default to off with Assured Recovery")
	}
	rec := d.Record()
	if rec.Name != d.Name || len(rec.Roots) != 2 || rec.Replicas[0].Target != "/replica/data" || !rec.Suspend || rec.State != "stopped" {
		t.Errorf("record = %+v", rec)
	}
}
