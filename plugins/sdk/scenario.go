package sdk

import (
	"context"
	"time"
)

// Capabilities a scenario handler may declare in ScenarioInfo.Capabilities.
// Unknown capabilities are allowed (a newer plugin on an older appliance) and
// ignored by holdfastd.
const (
	// CapabilityGranularRestore: single files or items of an entity can be
	// restored, not only the whole entity.
	CapabilityGranularRestore = "granular-restore"
	// CapabilityAssuredRecovery: Verify can test a snapshot of an entity.
	CapabilityAssuredRecovery = "assured-recovery"
)

// Values of PrepareResult.Consistency.
const (
	// ConsistencyApplication: the application was quiesced; the backup is
	// what the application itself would recover from cleanly.
	ConsistencyApplication = "application"
	// ConsistencyCrash: the data is as after a power cut; the application
	// (or file system) must recover from it as from a crash.
	ConsistencyCrash = "crash"
)

// ScenarioInfo describes a scenario handler. Type must equal the type in the
// plugin's manifest.
type ScenarioInfo struct {
	Type         string   // scenario type, e.g. "fileserver"
	DisplayName  string   // shown to operators, e.g. "File Server"
	Version      string   // the plugin's own version
	EntityKind   string   // what one entity is, e.g. "volume", "database"
	Capabilities []string // e.g. CapabilityGranularRestore
}

// ScenarioConfig is the part of a scenario's definition a handler needs.
type ScenarioConfig struct {
	ID         uint64
	Name       string
	MasterHost string
	Roots      []string          // absolute paths on the master the scenario protects
	Options    map[string]string // handler-specific settings
}

// Entity is one independently protectable unit of a scenario: a volume, a
// database, a mailbox store. Every path must be inside one of the scenario's
// roots.
type Entity struct {
	Name   string            // unique within the scenario
	Kind   string            // usually ScenarioInfo.EntityKind
	Paths  []string          // absolute, clean, inside a root
	Detail map[string]string // shown to operators; not interpreted
}

// PrepareResult is the answer to PrepareBackup.
type PrepareResult struct {
	HoldID      string // passed back to ReleaseBackup
	Consistency string // ConsistencyApplication or ConsistencyCrash
}

// VerifyRequest asks a handler to test a snapshot of an entity.
type VerifyRequest struct {
	Scenario ScenarioConfig
	Entity   string
	Root     string // a writable view of the snapshot to test; changes are discarded
}

// VerifyResult is the outcome of Verify. Passed is true exactly when
// Problems is empty.
type VerifyResult struct {
	Passed   bool
	Checked  uint64   // items checked (files, tables, ...)
	Problems []string // one line each
	Duration time.Duration
}

// RestoreRequest names an entity being restored and where to.
type RestoreRequest struct {
	Scenario    ScenarioConfig
	Entity      string
	Destination string // absolute path the data is restored under
	Overwrite   string // the restore job's overwrite policy, as the operator chose it
}

// ScenarioHandler is what a scenario plugin implements. holdfastd calls it
// concurrently and gives every call a deadline (plugins.call_timeout, 30 s by
// default): a handler must honour ctx and return when it is done. Errors a
// handler returns are shown to the operator, so say what failed and where.
type ScenarioHandler interface {
	// Describe returns the handler's identity. It is called once after each
	// start and must be quick.
	Describe(ctx context.Context) (ScenarioInfo, error)
	// ListEntities lists the entities under cfg's roots. A root that is
	// missing or unreadable is an error naming it.
	ListEntities(ctx context.Context, cfg ScenarioConfig) ([]Entity, error)
	// PrepareBackup brings entity into the most consistent state available
	// and keeps it so until ReleaseBackup is called with the returned HoldID.
	PrepareBackup(ctx context.Context, cfg ScenarioConfig, entity string) (PrepareResult, error)
	// ReleaseBackup ends a hold. An unknown holdID is an error.
	ReleaseBackup(ctx context.Context, holdID string) error
	// Verify tests the snapshot at req.Root and reports what it found.
	// Problems found in the data are reported in the result, not as an
	// error; an error means the test itself could not run.
	Verify(ctx context.Context, req VerifyRequest) (VerifyResult, error)
	// BeforeRestore checks that req.Destination can take the restore and
	// prepares the application for it.
	BeforeRestore(ctx context.Context, req RestoreRequest) error
	// AfterRestore makes the restored data usable by its application.
	AfterRestore(ctx context.Context, req RestoreRequest) error
}
