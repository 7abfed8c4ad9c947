package catalog

import (
	"fmt"
	"time"
)

// Severity ranks an activity-log entry.
type Severity uint8

const (
	Info Severity = iota + 1
	Warning
	Error
)

func (s Severity) String() string {
	switch s {
	case Info:
		return "info"
	case Warning:
		return "warning"
	case Error:
		return "error"
	}
	return fmt.Sprintf("severity(%d)", uint8(s))
}

// ParseSeverity accepts the names String returns, and their first letters.
func ParseSeverity(s string) (Severity, error) {
	switch s {
	case "info", "i", "I", "information":
		return Info, nil
	case "warning", "w", "W", "warn":
		return Warning, nil
	case "error", "e", "E":
		return Error, nil
	}
	return 0, fmt.Errorf("unknown severity %q: use info, warning or error", s)
}

// ScenarioState is a scenario's replication state as operators see it.
type ScenarioState string

const (
	StateStopped       ScenarioState = "stopped"
	StateSynchronizing ScenarioState = "synchronizing"
	StateRunning       ScenarioState = "running"
	StateProblem       ScenarioState = "problem"
	StateNotAuthorized ScenarioState = "not-authorized"
)

// Replica is one replication target of a scenario.
type Replica struct {
	Host   string // enrolled host name; "localhost" for the appliance itself
	Target string // absolute directory on that host that mirrors the master roots
}

// Scenario is a protected data set: where it lives (master host and roots),
// where it is replicated to, and how backups get a consistent image of it.
type Scenario struct {
	ID              uint64 // assigned by the catalog on create; never reused
	Name            string // unique, operator-chosen
	Type            string // scenario handler type served by a plugin, e.g. "fileserver"
	MasterHost      string
	Roots           []string // absolute directories on the master
	Replicas        []Replica
	AssuredRecovery bool   // prove the application on a snapshot before backup
	Suspend         bool   // suspend replication for the snapshot when AR is off
	SnapshotsKeep   uint32 // replica snapshots kept; oldest replaced
	// SyncMode chooses how synchronization sends files: "" or "auto"
	// (whole below a size, block-level above), "file" or "block".
	SyncMode string
	State    ScenarioState
	Created  time.Time
	Updated  time.Time
}

// Entity is the unit of backup and restore inside a scenario, as its handler
// plugin reports it (a volume for File Server, a database for SQL).
type Entity struct {
	ScenarioID uint64
	Name       string
	Kind       string   // handler-defined, e.g. "volume", "database"
	Paths      []string // master paths the entity covers
	Detail     map[string]string
}

// Host is a machine Holdfast talks to: a master, a replica, or the appliance.
type Host struct {
	Name     string
	Address  string
	Roles    []string
	Enrolled time.Time
}

// JobState is where a job stands in the queue.
type JobState string

const (
	JobReady  JobState = "ready"
	JobActive JobState = "active"
	JobHold   JobState = "hold"
	JobDone   JobState = "done"
)

// JobResult is how a finished job ended.
type JobResult string

const (
	ResultNone       JobResult = ""
	ResultCompleted  JobResult = "completed"
	ResultIncomplete JobResult = "incomplete"
	ResultFailed     JobResult = "failed"
	ResultCanceled   JobResult = "canceled"
)

// Job is a unit of work in the queue (backup, restore, verify...).
type Job struct {
	ID          uint64
	ParentID    uint64 // multistreaming child jobs point to their master job
	Kind        string
	Name        string
	State       JobState
	Result      JobResult
	Owner       string
	ScenarioIDs []uint64
	Created     time.Time
	Started     time.Time
	Finished    time.Time
	Spec        []byte // kind-specific, opaque to the catalog
}

// Session is one entity's data in one backup.
type Session struct {
	ID          uint64
	JobID       uint64
	ScenarioID  uint64
	Entity      string
	MasterHost  string // sessions are recorded as if taken from the master
	MediaID     uint64
	Consistency string // "application" or "crash"
	Started     time.Time
	Finished    time.Time
	Files       uint64
	Bytes       uint64
	// Stored names the session in its media: the disk store's session ID.
	Stored string
}

// Media is a disk store volume or a tape.
type Media struct {
	ID            uint64
	Kind          string // "disk" or "tape"
	Label         string
	Barcode       string
	Pool          string
	CapacityBytes uint64
	UsedBytes     uint64
	Created       time.Time
}

// FileVersion is one backed-up version of one file, as seen on the master.
type FileVersion struct {
	Host      string // master host name
	Path      string // absolute master path
	SessionID uint64
	Size      uint64
	Mode      uint32
	MTime     time.Time
	MediaID   uint64
	Offset    uint64 // position of the file's data within its session's stream
}

// ActivityEntry is one line of the activity log.
type ActivityEntry struct {
	Seq      uint64 // assigned by the catalog; increases with every entry
	Time     time.Time
	JobID    uint64 // 0 when not tied to a job
	Severity Severity
	Code     string // message code, e.g. "HF-E4001"; empty for plain information
	Host     string
	Message  string
}

// ActivityFilter selects activity entries; zero fields match everything.
type ActivityFilter struct {
	JobID       uint64
	Code        string
	MinSeverity Severity
	Since       time.Time
	Limit       int // newest Limit entries after filtering; 0 means all
}

// RecoveryTest is one Assured Recovery test: the scenario's application
// started on a writable view of a replica snapshot while replication went on.
type RecoveryTest struct {
	ID         uint64
	ScenarioID uint64
	Replica    string // host:directory of the replica tested
	Snapshot   string // the snapshot the writable view was made from
	Started    time.Time
	Duration   time.Duration
	Passed     bool
	Checked    uint64   // objects the handler examined
	Problems   []string // what the handler found wrong
	Error      string   // why the test could not run or finish
	View       string   // how the writable view was made: overlay or clone
}
