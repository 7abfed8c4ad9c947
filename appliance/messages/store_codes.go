package messages

import "github.com/holdfast/holdfast/appliance/catalog"

// Store lifecycle codes (catalog rebuild, verify and prune jobs): a block
// of the 5xxx range of its own, from 5060, so that it does not collide
// with backup and job codes appended after HF-E5026.
const (
	RebuildSessionRecorded  Code = "HF-I5060"
	RebuildSkippedProtected Code = "HF-W5061"
	RebuildScenarioGone     Code = "HF-W5062"
	RebuildSessionFailed    Code = "HF-E5063"
	RebuildDone             Code = "HF-I5064"
	VerifyProblem           Code = "HF-E5065"
	VerifyChunkProblem      Code = "HF-E5066"
	VerifyUnreadable        Code = "HF-E5067"
	PruneSessionExpired     Code = "HF-I5068"
	PruneBusy               Code = "HF-W5069"
	PruneGaveUp             Code = "HF-E5070"
	PruneDone               Code = "HF-I5071"
	PruneStoreDeleteFailed  Code = "HF-W5072"
	RebuildBadPassword      Code = "HF-W5073"
)

func init() {
	sev := catalog.Error
	register(
		Message{RebuildSessionRecorded, catalog.Info, "store", "catalog rebuild: stored session %s (scenario %s, entity %s) recorded as session %d of job %d with %d file versions", "", "", ""},
		Message{RebuildSkippedProtected, catalog.Warning, "store", "catalog rebuild: stored session %s is protected by a password and was skipped",
			"Nothing of a protected session can be read without the password chosen when it was backed up, not even its scenario.",
			"Run the rebuild again with that password ('holdfast catalog rebuild --password P'); sessions already recorded are left as they are.", ""},
		Message{RebuildScenarioGone, catalog.Warning, "store", "catalog rebuild: stored session %s belongs to scenario %s, which no longer exists; recorded without a scenario",
			"The scenario was deleted after the backup; its sessions stay restorable.",
			"Nothing to do: find the files by name and restore them to a folder.", ""},
		Message{RebuildSessionFailed, sev, "store", "catalog rebuild: stored session %s could not be recorded: %v",
			"The session's root or manifest could not be read (damaged store data), or the catalog refused the write.",
			"Verify the store ('holdfast store verify --all'); if the session is damaged, restore from another session.", ""},
		Message{RebuildDone, catalog.Info, "store", "catalog rebuild: %d stored sessions, %d recorded now, %d already known, %d skipped (protected), %d failed", "", "", ""},
		Message{VerifyProblem, sev, "store", "verify job %d: session %d (stored %s), file %s, offset %d: %v",
			"The stored data of this file does not read back as written (damaged pack, disk fault).",
			"Check the store's disk; restore the file from another session, and run a new backup so that a good copy exists.", ""},
		Message{VerifyChunkProblem, sev, "store", "verify job %d: session %d (stored %s, protected), chunk %s: %v",
			"A chunk of a password-protected session does not read back as written; without the password the file it belongs to cannot be named.",
			"Check the store's disk and run a new backup; restore with the session's password to learn which file is damaged.", ""},
		Message{VerifyUnreadable, sev, "store", "verify job %d: session %d (stored %s) could not be checked: %v",
			"The session's root or manifest is missing or damaged, or the catalog session has no stored data.",
			"Rebuild the catalog from the store ('holdfast catalog rebuild') if the store has it; otherwise the session is lost: run a new backup.", ""},
		Message{PruneSessionExpired, catalog.Info, "store", "prune job %d: session %d (scenario %s, entity %s, finished %s) expired by the retention rules and deleted", "", "", ""},
		Message{PruneBusy, catalog.Warning, "store", "prune job %d: backups are writing to the store; garbage collection tried again in %s (attempt %d of %d)",
			"Chunks are reclaimed only while no backup session is open, since a backup may reuse chunks no committed session names yet.",
			"Nothing to do; if it keeps happening, schedule the prune job outside the backup window.", ""},
		Message{PruneGaveUp, sev, "store", "prune job %d: backups kept the store busy; no space reclaimed after %d attempts",
			"Expired sessions were deleted, but their chunks stay until a prune runs while no backup writes.",
			"Run 'holdfast store prune' again after the backups, or schedule it outside the backup window.", ""},
		Message{PruneDone, catalog.Info, "store", "prune job %d: %d sessions deleted, %d bytes reclaimed (%d packs deleted, %d rewritten)", "", "", ""},
		Message{PruneStoreDeleteFailed, catalog.Warning, "store", "prune job %d: session %d is out of the catalog but its stored session %s could not be deleted: %v",
			"The catalog goes first, so nothing it lists is ever missing; the stored session stays, unlisted, until deleted.",
			"Fix the cause (permissions, disk); a later prune does not see it, so delete it by rebuilding the catalog and pruning again.", ""},
		Message{RebuildBadPassword, catalog.Warning, "store", "catalog rebuild: stored session %s is protected and the password given does not open it; skipped",
			"Each protected session has its own password, chosen when it was backed up.",
			"Run the rebuild again with that session's password.", ""},
	)
}
