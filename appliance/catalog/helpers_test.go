package catalog

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

// quietLogger keeps Pebble's messages out of test output.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

func openTest(t *testing.T, dir string) *Catalog {
	t.Helper()
	c, err := Open(dir, Options{Logger: quietLogger})
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

var sampleTime = time.Date(2025, 11, 24, 14, 30, 15, 123456789, time.UTC)

// Samples of every record kind with every field set, used by the round-trip
// and golden tests and as fuzz seeds.
func sampleScenario() Scenario {
	return Scenario{
		ID:              7,
		Name:            "payroll",
		Type:            "fileserver",
		MasterHost:      "fs01",
		Roots:           []string{"/srv/payroll", "/srv/hr"},
		Replicas:        []Replica{{Host: "localhost", Target: "/replicas/payroll"}, {Host: "dr01", Target: "/r/payroll"}},
		AssuredRecovery: true,
		Suspend:         true,
		SnapshotsKeep:   5,
		SyncMode:        "block",
		State:           StateRunning,
		Created:         sampleTime,
		Updated:         sampleTime.Add(time.Hour),
	}
}

func sampleEntity() Entity {
	return Entity{
		ScenarioID: 7,
		Name:       "vol-srv",
		Kind:       "volume",
		Paths:      []string{"/srv/payroll", "/srv/hr"},
		Detail:     map[string]string{"fs": "xfs", "device": "/dev/sdb1", "": "empty key"},
	}
}

func sampleHost() Host {
	return Host{Name: "fs01", Address: "10.0.0.5:7443", Roles: []string{"master", "replica"}, Enrolled: sampleTime}
}

func sampleRecoveryTest() RecoveryTest {
	return RecoveryTest{
		ID: 5, ScenarioID: 7, Replica: "dr01:/srv/replica", Snapshot: "20261125T110405.123Z-1",
		Started: sampleTime, Duration: 93 * time.Second, Passed: false, Checked: 1200,
		Problems: []string{"mail/db.edb: unreadable", "mail/log: checksum"}, Error: "", View: "overlay",
	}
}

func sampleJob() Job {
	return Job{
		ID: 42, ParentID: 41, Kind: "backup", Name: "nightly payroll", State: JobDone,
		Result: ResultCompleted, Owner: "admin", ScenarioIDs: []uint64{7, 8, 300},
		Created: sampleTime, Started: sampleTime.Add(time.Minute), Finished: sampleTime.Add(time.Hour),
		Spec: []byte{0, 1, 2, 0xFF},
	}
}

func sampleSession() Session {
	return Session{
		ID: 9, JobID: 42, ScenarioID: 7, Entity: "vol-srv", MasterHost: "fs01", MediaID: 3,
		Consistency: "application", Started: sampleTime, Finished: sampleTime.Add(time.Hour),
		Files: 123456, Bytes: 1 << 40, Stored: "20261125T110405Z-3f2a",
	}
}

func sampleMedia() Media {
	return Media{
		ID: 3, Kind: "tape", Label: "HF0003", Barcode: "HF0003L8", Pool: "weekly",
		CapacityBytes: 12 << 40, UsedBytes: 1 << 40, Created: sampleTime,
	}
}

func sampleFileVersion() FileVersion {
	return FileVersion{
		Host: "fs01", Path: "/srv/payroll/2025/november.xlsx", SessionID: 9, Size: 98765,
		Mode: 0o100644, MTime: sampleTime, MediaID: 3, Offset: 1 << 33,
	}
}

func sampleActivity() ActivityEntry {
	return ActivityEntry{
		Seq: 1000, Time: sampleTime, JobID: 42, Severity: Warning, Code: "HF-W3005",
		Host: "appliance", Message: "plugin fileserver exited unexpectedly; restart 1 in 2s",
	}
}

func mustNotFound(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("got error %v, want ErrNotFound", err)
	}
}
