package catalog

import (
	"errors"
	"testing"
)

func TestLatestSession(t *testing.T) {
	c := openTest(t, t.TempDir())
	j, err := c.CreateJob(Job{Kind: "backup", Name: "nightly"})
	if err != nil {
		t.Fatal(err)
	}
	add := func(scenario uint64, entity, stored string) Session {
		s, err := c.CreateSession(Session{JobID: j.ID, ScenarioID: scenario, Entity: entity, Stored: stored})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	add(1, "/srv", "s1")
	want := add(1, "/srv", "s2")
	add(1, "/home", "s3")
	add(2, "/srv", "s4")
	add(1, "/srv", "") // a session with no disk copy (tape) is no base for an incremental

	tests := []struct {
		scenario uint64
		entity   string
		want     uint64
	}{
		{1, "/srv", want.ID},
		{1, "/home", want.ID + 1},
		{2, "/srv", want.ID + 2},
		{3, "/srv", 0},
		{1, "/var", 0},
	}
	for _, tt := range tests {
		got, err := c.LatestSession(tt.scenario, tt.entity)
		if tt.want == 0 {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("LatestSession(%d, %s) = %+v, %v; want ErrNotFound", tt.scenario, tt.entity, got, err)
			}
			continue
		}
		if err != nil || got.ID != tt.want {
			t.Errorf("LatestSession(%d, %s) = %d, %v; want %d", tt.scenario, tt.entity, got.ID, err, tt.want)
		}
	}
}
