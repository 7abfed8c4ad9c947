package agentd

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast/agent/control"
)

func TestAssignmentsSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	if a, err := loadAssignments(dir); err != nil || len(a.Masters)+len(a.Replicas) != 0 {
		t.Fatalf("no file yet: %+v, %v; want nothing to run", a, err)
	}
	want := control.Assignments{
		Masters:  []control.MasterRole{{Scenario: "s", Session: "s1-0-0", Root: "/srv", Peer: "vault@10.0.0.1:7431", Suspended: true}},
		Replicas: []control.ReplicaRole{},
	}
	if err := saveAssignments(dir, want); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, AssignmentsFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("assignments file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	got, err := loadAssignments(dir)
	if err != nil || len(got.Masters) != 1 || got.Masters[0] != want.Masters[0] {
		t.Fatalf("loaded %+v, %v", got, err)
	}
	// A damaged file is an error, not an empty set of roles that would
	// stop replication silently.
	if err := os.WriteFile(filepath.Join(dir, AssignmentsFile), []byte(`{"masters":[{"root":"relative"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadAssignments(dir); err == nil {
		t.Fatal("a damaged assignments file loaded")
	}
}
