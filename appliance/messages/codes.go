package messages

import "github.com/holdfast/holdfast/appliance/catalog"

// Codes used across Holdfast. Add new ones here, in their area's range, and
// document them in docs/messages.md (a test keeps the two in step).
const (
	// 1xxx: daemon, configuration, API.
	DaemonStarted     Code = "HF-I1001"
	DaemonStopped     Code = "HF-I1002"
	AdminTokenCreated Code = "HF-I1003"
	NotAuthorized     Code = "HF-E1010"
	BadRequest        Code = "HF-E1011"
	ConfigInvalid     Code = "HF-E1020"
	DataDirUnusable   Code = "HF-E1021"
	InternalError     Code = "HF-E1099"

	// 2xxx: catalog.
	CatalogOpenFailed  Code = "HF-E2001"
	CatalogCorrupt     Code = "HF-E2002"
	CatalogWriteFailed Code = "HF-E2003"

	// 3xxx: plugins.
	PluginStarted         Code = "HF-I3001"
	PluginTampered        Code = "HF-E3002"
	PluginManifestInvalid Code = "HF-E3003"
	PluginStartFailed     Code = "HF-E3004"
	PluginCrashed         Code = "HF-W3005"
	PluginTimeout         Code = "HF-E3006"
	PluginBadReply        Code = "HF-E3007"
	PluginIncompatible    Code = "HF-E3008"
	ScenarioTypeUnknown   Code = "HF-E3009"
	PluginUnavailable     Code = "HF-E3010"
	PluginBinaryMissing   Code = "HF-E3011"
	PluginDuplicate       Code = "HF-W3012"
	PluginStopped         Code = "HF-I3013"
	TransportUnknown      Code = "HF-E3014"

	// 4xxx: scenarios and replication.
	ScenarioDataUnreadable   Code = "HF-E4001" // legacy E3370
	ScenarioNoConsistency    Code = "HF-E4002" // legacy AE0471
	ScenarioInvalid          Code = "HF-E4003"
	ScenarioExists           Code = "HF-E4004"
	ScenarioNotFound         Code = "HF-E4005"
	ScenarioCreated          Code = "HF-I4006"
	ScenarioDeleted          Code = "HF-I4007"
	EntitiesUnavailable      Code = "HF-E4008"
	SnapshotFailed           Code = "HF-E4020" // legacy AE0460
	SnapshotReleaseFailed    Code = "HF-E4021" // legacy AE0461
	ScenarioUnreachable      Code = "HF-E4030" // legacy AE0463
	ScenarioGeneralError     Code = "HF-E4099" // legacy AE0472
	ReplicationStarted       Code = "HF-I4040"
	SyncFinished             Code = "HF-I4041"
	ReplicationStopped       Code = "HF-I4042"
	ReplicationSuspended     Code = "HF-I4043"
	ReplicationResumed       Code = "HF-I4044"
	SpoolOverflow            Code = "HF-W4045"
	CaptureOverflow          Code = "HF-W4046"
	ReplicaNoSpace           Code = "HF-E4047"
	ReplicaPathRefused       Code = "HF-E4048"
	ReplicationRecovered     Code = "HF-I4049"
	ScenarioNotRunning       Code = "HF-E4050"
	ScenarioAlreadyRunning   Code = "HF-E4051"
	CaptureUnwatched         Code = "HF-W4052"
	ReplicationFailed        Code = "HF-E4053"
	SpoolRepaired            Code = "HF-W4054"
	ReplicationNotAuthorized Code = "HF-E4055"
	AgentEventsDropped       Code = "HF-W4056"
	ScenarioTopology         Code = "HF-E4057"
	ReplicaRoleFailed        Code = "HF-E4058"

	// 402x, 406x: replica data: snapshots, Assured Recovery, Data Rewind.
	SnapshotTaken          Code = "HF-I4022"
	SnapshotReleased       Code = "HF-I4023"
	RecoveryImpossible     Code = "HF-E4024" // the test's side of HF-E5001
	RecoveryNotReplicating Code = "HF-E4025" // the test's side of HF-E5004
	RecoveryTestPassed     Code = "HF-I4026"
	RecoveryTestFailed     Code = "HF-E4027"
	SnapshotNotFound       Code = "HF-E4028"
	RecoveryUnavailable    Code = "HF-E4029"
	RewindBookmarkSet      Code = "HF-I4060"
	RewindDone             Code = "HF-I4061"
	RewindFailed           Code = "HF-E4062"
	RewindPointDropped     Code = "HF-E4063"
	RewindJournalDamaged   Code = "HF-E4064"
	RewindNeedsStop        Code = "HF-E4065"
	RewindPointsDropped    Code = "HF-W4066"
	RewindNoPoint          Code = "HF-E4068"

	// 5xxx: backup.
	BackupNoConsistentImage Code = "HF-E5001" // legacy AE0457
	BackupImageFailed       Code = "HF-E5002" // legacy AE0458
	BackupCredentials       Code = "HF-E5003" // legacy AE0459
	BackupNotReplicating    Code = "HF-E5004" // legacy AE0465
	BackupHostsUnsupported  Code = "HF-E5005" // legacy AE0467
	BackupBadParameters     Code = "HF-E5006" // legacy AE0468
	BackupTimedOut          Code = "HF-E5007" // legacy AE0469
	BackupScenarioBusy      Code = "HF-E5008" // legacy AE0470
	JobStarted              Code = "HF-I5020"
	JobFinished             Code = "HF-I5021"
	JobFailed               Code = "HF-E5022"
	BackupScenarioFailed    Code = "HF-E5023"
	BackupFileUnreadable    Code = "HF-W5024"
	JobUnknown              Code = "HF-E5025"
	JobWrongState           Code = "HF-E5026"
	BackupSummary           Code = "HF-I5027"
	BackupChildren          Code = "HF-I5028"
	BackupSourceFailed      Code = "HF-E5029"
	BackupSourceUnreadable  Code = "HF-W5030"
	JobPasswordUnknown      Code = "HF-E5031"
	// Agent data tasks (appliance/agenttasks): restores to an agent and
	// reads of an agent's directory.
	TaskNotPickedUp     Code = "HF-E5050"
	TaskFailed          Code = "HF-E5051"
	TaskEntryRefused    Code = "HF-W5052"
	TaskEntryUnreadable Code = "HF-W5053"
	TaskAgentLost       Code = "HF-E5054"
	TaskEntryFailed     Code = "HF-W5055"

	// 6xxx: restore.
	RestoreSessionLocation Code = "HF-E6001" // legacy E3371
	RestoreCannotStop      Code = "HF-E6010" // legacy AE0464
	RestoreEntryFailed     Code = "HF-W6011"
	RestoreWholeOnly       Code = "HF-E6012"
	RestoreReplicaStopped  Code = "HF-I6013"
	RestoreReplicaRunning  Code = "HF-W6014"

	// 8xxx: appliance (agent enrollment and the agent listener).
	AgentListening      Code = "HF-I8001"
	AgentTokenCreated   Code = "HF-I8002"
	AgentEnrolled       Code = "HF-I8003"
	AgentRevoked        Code = "HF-I8004"
	ApplianceCertIssued Code = "HF-I8005"
	EnrollTokenUnknown  Code = "HF-E8010"
	EnrollTokenUsed     Code = "HF-E8011"
	EnrollTokenExpired  Code = "HF-E8012"
	EnrollHostMismatch  Code = "HF-E8013"
	EnrollBadRequest    Code = "HF-E8014"
	EnrollRateLimited   Code = "HF-W8015"
	AgentNotAuthorized  Code = "HF-E8016"
	AgentUnknown        Code = "HF-E8017"
	AgentsDisabled      Code = "HF-E8018"
	CAUnusable          Code = "HF-E8019"
	AgentTokenRefused   Code = "HF-E8020"
)

func init() {
	sev := catalog.Error
	register(
		Message{DaemonStarted, catalog.Info, "daemon", "holdfastd %s started; API on %s, data in %s", "", "", ""},
		Message{DaemonStopped, catalog.Info, "daemon", "holdfastd stopped cleanly", "", "", ""},
		Message{AdminTokenCreated, catalog.Info, "daemon", "administrator token created in %s (readable by its owner only)",
			"This is the first start on this data directory.",
			"Keep the file private; the CLI reads it with --data, or pass its content as HOLDFAST_TOKEN.", ""},
		Message{NotAuthorized, sev, "api", "request not authorized: %s",
			"The request carried no administrator token, or a token that does not match this appliance.",
			"Send the token from the data directory's admin.token file as 'Authorization: Bearer TOKEN' (the CLI does this with --data or HOLDFAST_TOKEN).", ""},
		Message{BadRequest, sev, "api", "bad request: %s",
			"The request body or its parameters could not be understood.",
			"Correct the field named in the message and send the request again.", ""},
		Message{ConfigInvalid, sev, "daemon", "configuration %s: %s",
			"The configuration file has a syntax error, an unknown key or a value out of range.",
			"Fix the line named in the message; holdfastd --print-config shows the effective configuration.", ""},
		Message{DataDirUnusable, sev, "daemon", "data directory %s cannot be used: %v",
			"The directory is missing and cannot be created, or is not writable by holdfastd.",
			"Create the directory or fix its ownership and permissions, or point --data elsewhere.", ""},
		Message{InternalError, sev, "daemon", "internal error: %v",
			"An unexpected condition inside holdfastd.",
			"Collect the daemon log and the activity log and report the problem.", ""},

		Message{CatalogOpenFailed, sev, "catalog", "catalog in %s cannot be opened: %v",
			"The catalog files are missing, locked by another holdfastd, or damaged.",
			"Make sure no other holdfastd uses this data directory; if the files are damaged, restore the catalog from a checkpoint or rebuild it from media.", ""},
		Message{CatalogCorrupt, sev, "catalog", "a catalog record is damaged: %v",
			"A stored record failed its checksum or could not be decoded; the rest of the catalog is unaffected.",
			"Delete and re-create the object named in the message, or rebuild the catalog from media.", ""},
		Message{CatalogWriteFailed, sev, "catalog", "catalog write failed: %v",
			"The data disk is full or failing, so the change was not recorded.",
			"Free space on the data disk or replace it, then repeat the action.", ""},

		Message{PluginStarted, catalog.Info, "plugins", "plugin %s %s started (pid %d, protocol %d)", "", "", ""},
		Message{PluginTampered, sev, "plugins", "plugin %s refused: binary %s does not match its manifest checksum",
			"The plugin binary was changed after its manifest was written: a damaged copy, an incomplete update or tampering.",
			"Reinstall the plugin from its vendor's package; never edit a manifest to match a binary you did not build.", ""},
		Message{PluginManifestInvalid, sev, "plugins", "plugin manifest %s is invalid: %v",
			"The manifest file has a syntax error or a missing or out-of-range field.",
			"Fix the field named in the message (docs/plugins.md lists them) or reinstall the plugin.", ""},
		Message{PluginStartFailed, sev, "plugins", "plugin %s could not be started: %v",
			"The binary would not run, or did not complete the plugin handshake (wrong program, missing libraries, garbage on its output).",
			"Run the binary by hand to see its error; check it was built for this appliance.", ""},
		Message{PluginCrashed, catalog.Warning, "plugins", "plugin %s exited unexpectedly; restart %d in %s",
			"The plugin process died (crash, kill or out of memory). holdfastd keeps running and restarts it with increasing delays.",
			"If this repeats, check the plugin's log lines in the daemon log and report it to the plugin's vendor.", ""},
		Message{PluginTimeout, sev, "plugins", "plugin %s did not answer %s within %s",
			"The plugin hangs or is overloaded.",
			"Check the host the plugin talks to; raise plugins.call_timeout in the configuration if its work is legitimately slow.", ""},
		Message{PluginBadReply, sev, "plugins", "plugin %s sent an invalid reply to %s: %v",
			"The plugin answered with data that breaks the plugin protocol's rules.",
			"Report the message to the plugin's vendor; update or remove the plugin.", ""},
		Message{PluginIncompatible, sev, "plugins", "plugin %s speaks protocol versions %v; this holdfastd speaks %v",
			"The plugin was built for another release of Holdfast.",
			"Install the plugin version made for this release.", ""},
		Message{ScenarioTypeUnknown, sev, "plugins", "no scenario handler for type %q (installed: %s)",
			"No running plugin handles this scenario type.",
			"Use one of the installed types ('holdfast plugins list') or install the plugin for this type.", ""},
		Message{PluginUnavailable, sev, "plugins", "plugin %s is not running (%s)",
			"The plugin crashed and is waiting to be restarted, or was refused at start.",
			"Wait a few seconds and retry; 'holdfast plugins list' shows its state and last error.", ""},
		Message{PluginBinaryMissing, sev, "plugins", "plugin %s: binary %s is missing",
			"The manifest names a file that is not in the plugin's folder.",
			"Copy the binary next to its manifest or remove the plugin's folder.", ""},
		Message{PluginDuplicate, catalog.Warning, "plugins", "plugin %s ignored: type %q is already served by %s",
			"Two installed plugins declare the same scenario type or transport name.",
			"Remove one of them.", ""},
		Message{PluginStopped, catalog.Info, "plugins", "plugin %s stopped", "", "", ""},
		Message{TransportUnknown, sev, "plugins", "no transport plugin named %q (installed: %s)",
			"No running plugin provides this replication transport.",
			"Use one of the installed transports ('holdfast plugins list') or install the plugin that provides it.", ""},

		Message{ScenarioDataUnreadable, sev, "backup", "the definition of scenario %s cannot be read: %v",
			"The scenario's stored definition could not be read or decoded, so no job can use it.",
			"Check the activity log for catalog errors; re-create the scenario if its record is damaged.", "E3370"},
		Message{ScenarioNoConsistency, sev, "scenarios", "scenario %s has neither Assured Recovery nor suspend configured",
			"A backup needs a consistent image, obtained either by an Assured Recovery test or by suspending replication for a snapshot.",
			"Enable Assured Recovery or suspend on the scenario, then run the backup again.", "AE0471"},
		Message{ScenarioInvalid, sev, "scenarios", "scenario definition is invalid: %s",
			"A field of the definition is missing, malformed or contradicts another.",
			"Correct the field named in the message and submit the definition again.", ""},
		Message{ScenarioExists, sev, "scenarios", "a scenario named %q already exists",
			"Scenario names are unique on an appliance.",
			"Choose another name, or delete the existing scenario first.", ""},
		Message{ScenarioNotFound, sev, "scenarios", "no scenario named %q",
			"The name is misspelt, or the scenario was deleted.",
			"List the scenarios with 'holdfast scenario list'.", ""},
		Message{ScenarioCreated, catalog.Info, "scenarios", "scenario %s (id %d, type %s) created with %d entities", "", "", ""},
		Message{ScenarioDeleted, catalog.Info, "scenarios", "scenario %s (id %d) removed from the catalog; its replicas and backups are untouched", "", "", ""},
		Message{EntitiesUnavailable, sev, "scenarios", "the entities of scenario %s cannot be listed: %v",
			"The scenario handler could not read the master's roots.",
			"Check that the roots exist on the master and are readable, then retry.", ""},
		Message{SnapshotFailed, sev, "replica", "snapshot of scenario %s (id %d) on replica %s failed: %v",
			"The replica could not create a point-in-time image, most often for lack of space.",
			"Free space on the replica's data volume and check the replica agent's log.", "AE0460"},
		Message{SnapshotReleaseFailed, sev, "replica", "some snapshots of scenario %s (id %d) on replica %s could not be released: %v",
			"After the backup, the replica could not discard a snapshot it no longer needs.",
			"Check the replica agent's log and free space; the snapshot list shows what is left.", "AE0461"},
		Message{ScenarioUnreachable, sev, "replica", "cannot reach the agents of scenario %s (id %d): %v",
			"The master or replica agent is not running, or the network between them is down.",
			"Check that holdfast-agent runs on both hosts and that they can reach each other.", "AE0463"},
		Message{ScenarioGeneralError, sev, "replica", "scenario %s (id %d) reported an error: %v",
			"The replication engine reported an error that has no more specific code.",
			"Read the scenario's events for details.", "AE0472"},

		Message{ReplicationStarted, catalog.Info, "replication", "scenario %s: replication of %s to %s started (change capture: %s)", "", "", ""},
		Message{SyncFinished, catalog.Info, "replication", "scenario %s: %s synchronized in %s: %s", "", "", ""},
		Message{ReplicationStopped, catalog.Info, "replication", "scenario %s stopped; changes captured until now are kept in the spool", "", "", ""},
		Message{ReplicationSuspended, catalog.Info, "replication", "scenario %s suspended: the replica stops applying, the master spools changes", "", "", ""},
		Message{ReplicationResumed, catalog.Info, "replication", "scenario %s resumed: the spool drains to the replica", "", "", ""},
		Message{SpoolOverflow, catalog.Warning, "replication", "scenario %s: the spool of %s is full; changed files are now recorded by path and will be resynchronized block-level",
			"The replica was suspended or unreachable for longer than the spool's size allows.",
			"Resume or reconnect the replica; raise the spool limit if this happens in normal operation. No change is lost.", ""},
		Message{CaptureOverflow, catalog.Warning, "replication", "scenario %s: change events were lost (%s); rescanning %s",
			"The kernel or the capture queue could not keep up with a burst of changes.",
			"Nothing to do: the rescan finds every difference. If it repeats, raise fs.inotify.max_queued_events.", ""},
		Message{ReplicaNoSpace, sev, "replication", "scenario %s: replica %s is out of space; replication waits, changes stay in the spool: %v",
			"The replica's filesystem is full.",
			"Free space on the replica; replication resumes by itself.", ""},
		Message{ReplicaPathRefused, sev, "replication", "scenario %s: change to %s refused by the replica: %v",
			"The change would have written outside the replica's target directory (a path with '..' or through a symlink).",
			"Check the master for unusual symlinks under the root; the refused change was skipped.", ""},
		Message{ReplicationRecovered, catalog.Info, "replication", "scenario %s: replication works again", "", "", ""},
		Message{ScenarioNotRunning, sev, "replication", "scenario %s is not running",
			"The operation needs a running scenario.",
			"Run it with 'holdfast scenario run'.", ""},
		Message{ScenarioAlreadyRunning, sev, "replication", "scenario %s is already running",
			"A scenario runs once.",
			"Stop it first if you want to restart it.", ""},
		Message{CaptureUnwatched, catalog.Warning, "replication", "scenario %s: %s cannot be watched (%s); it is rescanned instead",
			"The kernel refused more watches (fs.inotify.max_user_watches).",
			"Raise fs.inotify.max_user_watches; until then changes below that folder are found by rescans.", ""},
		Message{ReplicationFailed, sev, "replication", "scenario %s: %v",
			"Replication hit an error it retries by itself.",
			"Read the message; if it persists, check the master's root and the replica's target.", ""},
		Message{SpoolRepaired, catalog.Warning, "replication", "scenario %s: the spool of %s was repaired after an unclean stop: %s",
			"The agent was killed or the power failed while writing the spool; changes not yet acknowledged to capture are re-read by the next synchronization.",
			"Nothing to do.", ""},
		Message{ReplicationNotAuthorized, sev, "replication", "scenario %s: %s refused the connection: %v",
			"The two hosts do not trust each other's certificates: one of them was enrolled with another appliance, its certificate was revoked, or the replica's host name does not match its certificate.",
			"Enroll the host again with 'holdfast agent token HOST' and 'holdfast-agent enroll'; no data crosses until both sides trust each other.", ""},
		Message{AgentEventsDropped, catalog.Warning, "replication", "agent %s could not deliver %d events while the appliance was unreachable; they are missing from this log",
			"The agent keeps a bounded number of events in memory while it cannot reach the appliance.",
			"Nothing to do for replication, which kept running; read the agent's own log for the missing events.", ""},
		Message{ScenarioTopology, sev, "replication", "scenario %s: %s",
			"The appliance cannot run this combination of master and replica hosts.",
			"Make an enrolled agent the master, and the appliance or another enrolled agent the replica.", ""},
		Message{ReplicaRoleFailed, sev, "replication", "scenario %s: the replica role on %s could not start: %v",
			"The replica host could not open the target directory or its transport.",
			"Check that the target directory can be created on the replica host and that its transport plugin runs ('holdfast plugins list').", ""},

		Message{SnapshotTaken, catalog.Info, "replica", "snapshot %s of scenario %s on replica %s taken in %s: %d files, %d bytes, by %s, %s-consistent", "", "", ""},
		Message{SnapshotReleased, catalog.Info, "replica", "snapshot %s of scenario %s on replica %s released (%s)", "", "", ""},
		Message{RecoveryImpossible, sev, "replica", "Assured Recovery or suspend cannot be performed for scenario %s: %s",
			"The scenario is not configured for it, or its handler plugin cannot test the application.",
			"Enable Assured Recovery (with a handler that supports it) or suspend on the scenario, then try again.", ""},
		Message{RecoveryNotReplicating, sev, "replica", "scenario %s is not in replication state (it is %s)",
			"An Assured Recovery test needs a running scenario whose replicas are up to date.",
			"Run the scenario and wait until 'holdfast scenario status' shows running, then try again.", ""},
		Message{RecoveryTestPassed, catalog.Info, "replica", "Assured Recovery test of scenario %s passed on snapshot %s of replica %s: %d objects checked in %s", "", "", ""},
		Message{RecoveryTestFailed, sev, "replica", "Assured Recovery test of scenario %s failed on snapshot %s of replica %s after %s: %s",
			"The application could not be started or verified on a writable view of the replica's snapshot: the replica would not recover as it is.",
			"Read the problems listed; rewind the replica to a point before the damage or resynchronize, then test again.", ""},
		Message{SnapshotNotFound, sev, "replica", "scenario %s has no snapshot %s",
			"The snapshot was released, by an operator or by the retention of the scenario.",
			"List the snapshots with 'holdfast snapshot list NAME'.", ""},
		Message{RecoveryUnavailable, sev, "replica", "scenario %s: %s",
			"The operation needs the replica's data on this appliance, and this replica is elsewhere or has no journal.",
			"Run the operation on a scenario whose replica is the appliance, or see docs/rewind.md for what agents' replicas support.", ""},
		Message{RewindBookmarkSet, catalog.Info, "rewind", "bookmark %q set on scenario %s, replica %s, at point %d", "", "", ""},
		Message{RewindDone, catalog.Info, "rewind", "scenario %s, replica %s, rewound to %s: %d operations undone in %s; the rewind itself is points %d-%d", "", "", ""},
		Message{RewindFailed, sev, "rewind", "rewind of scenario %s, replica %s, failed: %v",
			"The replica's tree could not be changed back: a file could not be written, or the disk is full.",
			"Fix the cause named in the message and rewind again; a rewind interrupted by a crash is finished when the replica is next opened.", ""},
		Message{RewindPointDropped, sev, "rewind", "scenario %s, replica %s: %v",
			"The point is older than what the rewind journal keeps (its size and age limits); nothing was changed.",
			"Choose a later point ('holdfast rewind list NAME'), or raise the scenario's rewind retention for the future.", ""},
		Message{RewindJournalDamaged, sev, "rewind", "the rewind journal of scenario %s, replica %s, is damaged: %v",
			"A journal record or a preserved file failed its checksum. The rewind stopped before writing anything.",
			"Rewind to a later point that does not need the damaged record, and check the replica's disk.", ""},
		Message{RewindNeedsStop, sev, "rewind", "scenario %s is running; stop it before rewinding its replica",
			"Changes from the master would keep landing on the replica while it is rewound.",
			"Stop the scenario ('holdfast scenario stop NAME'), rewind, then copy what you need; running it again resynchronizes the replica with the master.", ""},
		Message{RewindPointsDropped, catalog.Warning, "rewind", "the rewind journal of scenario %s, replica %s, dropped %d oldest points (%d-%d, %s to %s): %s",
			"The journal reached its size or age limit; the oldest points go first so that the newest stay rewindable.",
			"Nothing to do if the remaining history is long enough; otherwise raise the scenario's rewind retention or give the replica more space.", ""},
		Message{RewindNoPoint, sev, "rewind", "scenario %s, replica %s: %v",
			"No rewind point, bookmark or time matches what was asked.",
			"List the points and bookmarks with 'holdfast rewind list NAME'.", ""},

		Message{JobStarted, catalog.Info, "jobs", "job %d (%s, %s) started", "", "", ""},
		Message{JobFinished, catalog.Info, "jobs", "job %d (%s) ended %s: %s", "", "", ""},
		Message{JobFailed, sev, "jobs", "job %d (%s) failed: %s",
			"The job could not do its work; the reason says why. A job cut short by a stop or crash of holdfastd is failed too.",
			"Fix the cause and rerun the job ('holdfast job rerun ID').", ""},
		Message{BackupScenarioFailed, sev, "backup", "backup of scenario %s in job %d failed: %v",
			"No consistent image of the scenario could be obtained, or it could not be written to the store.",
			"Read the message; make sure the scenario is running and its replica has room, then rerun the job.", ""},
		Message{BackupFileUnreadable, catalog.Warning, "backup", "backup of scenario %s in job %d: %s could not be read from the snapshot: %v",
			"A file of the replica's snapshot could not be read; the rest of the session was saved and the job ends incomplete.",
			"Check the replica's disk; run the difference report, then rerun the job.", ""},
		Message{BackupSummary, catalog.Info, "backup", "backup summary for job %d: %s", "", "", ""},
		Message{BackupChildren, catalog.Info, "backup", "job %d runs as %d child jobs, one per scenario or directory: %s", "", "", ""},
		Message{BackupSourceFailed, sev, "backup", "backup of %s in job %d failed: %v",
			"The folder could not be read: its agent is not running or not enrolled, or the folder does not exist.",
			"Check 'holdfast agent list' and the folder on that host, then rerun the job.", ""},
		Message{BackupSourceUnreadable, catalog.Warning, "backup", "backup of %s in job %d: %s could not be read: %v",
			"An entry of the folder could not be read (permissions, or it changed while it was read); the rest of the session was saved and the job ends incomplete.",
			"Check the entry on its host, then rerun the job.", ""},
		Message{JobPasswordUnknown, sev, "jobs", "job %d needs the session password given when it was submitted, and holdfastd no longer knows it",
			"Passwords are kept in memory only, never in the catalog; holdfastd restarted since the job was submitted.",
			"Submit the job again with its password (--password-file).", ""},
		Message{JobUnknown, sev, "jobs", "no job %s",
			"The job number is wrong, or the job was deleted.",
			"List the jobs with 'holdfast job list'.", ""},
		Message{JobWrongState, sev, "jobs", "%v",
			"The operation does not apply to a job in this state.",
			"Do what the message says, or wait until the job is in the state the operation needs.", ""},
		Message{TaskNotPickedUp, sev, "agenttasks", "agent %s did not pick up %s task %s within %s: is holdfast-agent running there? (see 'holdfast agent list')",
			"The agent fetches its tasks when it polls the appliance (every 2 s); it is not running, cannot reach the appliance's agent listener, or its certificate was revoked.",
			"Start holdfast-agent on the host (systemctl start holdfast-agent), check that it reaches the agent listener and is listed as valid by 'holdfast agent list', then run the job again.", ""},
		Message{TaskFailed, sev, "agenttasks", "agent %s could not carry out %s task %s: %s",
			"The agent reported the task failed as a whole: the directory cannot be opened or created, its deadline passed, the stream broke, or the agent restarted during the task.",
			"Read the agent's reason; fix the directory's permissions or space on the agent, then run the job again.", ""},
		Message{TaskEntryRefused, catalog.Warning, "agenttasks", "agent %s refused to restore %s: %s",
			"The entry's name would leave the restore folder (an absolute name or '..'), or a symlink or another object stands in its way on the agent; nothing was written through it and the other entries were restored.",
			"Inspect the folder on the agent: remove or move what is in the way and restore the entry again; a name that leaves the folder points at a damaged or forged session.", ""},
		Message{TaskEntryUnreadable, catalog.Warning, "agenttasks", "agent %s could not read %s: %s",
			"The entry could not be opened or read on the agent (permissions, I/O error, removed while read); the other entries were read.",
			"Run holdfast-agent with permission to read the directory (as root for system data), check the agent's disk, then run the job again.", ""},
		Message{TaskAgentLost, sev, "agenttasks", "agent %s was lost during %s task %s: %s",
			"The agent stopped polling the appliance or its connection broke while the task ran: it crashed, was stopped, or the network between them failed.",
			"Check that holdfast-agent runs on the host and reaches the appliance ('holdfast agent list'); a restarted agent reports the task failed. Run the job again.", ""},
		Message{TaskEntryFailed, catalog.Warning, "agenttasks", "agent %s could not write %s: %s",
			"Writing the entry on the agent failed (no space, no permission, an I/O error), or its content could not be read from the backup; the other entries were written.",
			"Free space or fix permissions on the agent, then restore the entry again.", ""},
		Message{RestoreEntryFailed, catalog.Warning, "restore", "%s was not restored (job %d): %v",
			"The entry's stored content is damaged, or the destination refused it (a symlink or a directory in the way, no space, no permission); the other entries were restored and the job ends incomplete.",
			"Read the cause; free space or move what is in the way, then restore the entry again, from an older session if its content is damaged.", ""},
		Message{BackupNoConsistentImage, sev, "backup", "neither Assured Recovery nor suspend could be performed for scenario %s (id %d) on replica %s",
			"Before the backup, the replica must prove the application (AR) or pause applying changes for a snapshot; neither succeeded.",
			"Check that the scenario is running and replicating, and read its events.", "AE0457"},
		Message{BackupImageFailed, sev, "backup", "the backup image of scenario %s (id %d) on replica %s could not be created: %v",
			"A general failure while preparing the image, often lack of resources on the replica.",
			"Check the replica's system log and free space, and the scenario's events.", "AE0458"},
		Message{BackupCredentials, sev, "backup", "the appliance is not authorized on master %s of scenario %s (id %d)",
			"The master agent rejected the appliance's certificate, or the agent is not enrolled.",
			"Enroll the master agent again with a fresh enrollment token.", "AE0459"},
		Message{BackupNotReplicating, sev, "backup", "scenario %s (id %d) is not replicating; retry when it is",
			"A backup reads the replica, which is only consistent while the scenario replicates.",
			"Run the scenario and wait until its state is running, then run the backup again.", "AE0465"},
		Message{BackupHostsUnsupported, sev, "backup", "backup not possible with master %s and replica %s",
			"The scenario names hosts that are not enrolled or whose names no longer resolve.",
			"Check the scenario's host names against 'holdfast hosts list' and name resolution on the replica.", "AE0467"},
		Message{BackupBadParameters, sev, "backup", "bad parameters for scenario %s (id %d): %v",
			"An internal inconsistency between the job and the replication engine.",
			"Collect the daemon and agent logs and report the problem.", "AE0468"},
		Message{BackupTimedOut, sev, "backup", "operation %s for scenario %s (id %d) timed out after %s",
			"The replica did not finish the step in time.",
			"Check the scenario's agents; raise the replica operation timeout in the configuration if the step is legitimately slow.", "AE0469"},
		Message{BackupScenarioBusy, sev, "backup", "scenario %s (id %d) is held by another operation; retry",
			"Another backup or a restore holds the scenario.",
			"Wait for the other job to finish and run the backup again.", "AE0470"},

		Message{RestoreSessionLocation, sev, "restore", "cannot find where session %d is stored (media %s, id %d): %v",
			"The catalog has no usable location for the session's data.",
			"Check the catalog for errors; merge or rebuild the catalog from the media that holds the session.", "E3371"},
		Message{RestoreWholeOnly, sev, "restore", "session %d holds %s entity %s, which restores whole only: %v",
			"A database or mail store is consistent only as a whole; restoring single files of it would leave it damaged.",
			"Restore the whole session (no paths), to its original place or to a folder.", ""},
		Message{RestoreReplicaStopped, catalog.Info, "restore", "scenario %s was stopped for the restore of session %d to its replica %s; it stays stopped",
			"", "Check the restored data on the replica; run the scenario again when you are done (its synchronization makes the replica match the master again).", ""},
		Message{RestoreReplicaRunning, catalog.Warning, "restore", "scenario %s could not be stopped (%v); the restore to its replica goes on as asked",
			"The option to continue even when the scenario cannot be stopped was set; replication may overwrite restored files.",
			"Check the restored files once the restore ends; stop the scenario and restore again if replication changed them.", ""},
		Message{RestoreCannotStop, sev, "restore", "scenario %s (id %d) could not be stopped before the restore",
			"Restoring to the replica needs the scenario stopped, so the master does not overwrite what is restored.",
			"Stop the scenario by hand and retry, or set the option to continue the restore even when the scenario cannot be stopped.", "AE0464"},

		Message{AgentListening, catalog.Info, "agents", "agent listener on %s (TLS 1.3; appliance certificate for %s; CA fingerprint %s)", "", "", ""},
		Message{AgentTokenCreated, catalog.Info, "agents", "enrollment token %s created for host %s, valid until %s", "", "", ""},
		Message{AgentEnrolled, catalog.Info, "agents", "host %s enrolled from %s with token %s (certificate serial %s, valid until %s)", "", "", ""},
		Message{AgentRevoked, catalog.Info, "agents", "host %s revoked: its certificates are refused from now on and its unused tokens discarded", "", "", ""},
		Message{ApplianceCertIssued, catalog.Info, "agents", "appliance certificate for %s issued (%s), valid until %s", "", "", ""},
		Message{EnrollTokenUnknown, sev, "agents", "enrollment from %s refused: token %s is unknown",
			"The token was mistyped, belongs to another appliance, or was discarded when its host was revoked.",
			"Create a new token with 'holdfast agent token HOST' and run the command it prints on the agent host.", ""},
		Message{EnrollTokenUsed, sev, "agents", "enrollment from %s refused: token %s was already used: %v",
			"Each token enrolls once. If the agent did not use it, someone else did.",
			"If the host did not enroll itself, revoke it ('holdfast agent revoke HOST'); then create a new token and enroll again.", ""},
		Message{EnrollTokenExpired, sev, "agents", "enrollment from %s refused: token %s expired: %v",
			"The token was not used within its lifetime.",
			"Create a new token ('holdfast agent token HOST --ttl 1h') and enroll within its lifetime.", ""},
		Message{EnrollHostMismatch, sev, "agents", "enrollment from %s refused: token %s is for another host: %v",
			"The agent asked for a certificate for a host name other than the one the token was created for.",
			"Run holdfast-agent enroll with --host set to the name the token was created for, or create a token for the agent's name.", ""},
		Message{EnrollBadRequest, sev, "agents", "enrollment from %s refused: %s",
			"The request is not a valid enrollment request (malformed body or certificate signing request).",
			"Use a holdfast-agent of the same release as the appliance.", ""},
		Message{EnrollRateLimited, catalog.Warning, "agents", "enrollment attempts from %s are arriving too fast; refused for now",
			"More enrollment attempts came from this address than the limit allows; tokens must not be guessable by trying many.",
			"Wait a minute before trying again; if you did not make these attempts, find out who is probing the agent listener.", ""},
		Message{AgentNotAuthorized, sev, "agents", "agent request from %s not authorized: %s",
			"Routes of the agent listener other than enrollment need an enrolled agent's client certificate.",
			"Enroll the agent ('holdfast agent token HOST' on the appliance, then holdfast-agent enroll on the host).", ""},
		Message{AgentUnknown, sev, "agents", "no enrolled agent or pending token for host %s",
			"The host name is misspelt, or the host never enrolled.",
			"List the agents with 'holdfast agent list'.", ""},
		Message{AgentsDisabled, sev, "agents", "the agent listener is disabled (agents.listen is empty)",
			"Agents cannot reach the appliance, so a token could not be used.",
			"Set agents.listen in the configuration (e.g. \"0.0.0.0:7421\") and restart holdfastd.", ""},
		Message{CAUnusable, sev, "agents", "the appliance CA in %s cannot be used: %v",
			"A CA file is missing, damaged or readable by others.",
			"Follow the instruction in the message; restore the pki directory from backup if files are lost (losing ca.key means re-enrolling every agent).", ""},
		Message{AgentTokenRefused, sev, "agents", "no enrollment token created: %s",
			"The host name or the lifetime is not acceptable.",
			"Give a plain host name or IP address and a lifetime up to 168h (--ttl).", ""},
	)
}
