// Package treesync compares a master's tree with a replica's and plans the
// changes that make the replica equal the master. It is the resynchronization
// path of continuous replication, for when the change stream cannot tell
// what differs: the first synchronization of a new replica, recovery after
// the spool overflowed or a replica was restored from an old backup, and
// the periodic verify scan that catches what file events missed (events are
// hints, not truth).
//
// Three steps, each usable alone:
//
//   - Scan walks a tree without following symlinks and describes every
//     entry: type, size, mode, owner, mtime, symlink target, inode and
//     user.* extended attributes. Entries it cannot read are listed as
//     problems, never silently dropped, and never abort the scan.
//   - Compare lines up a master scan and a replica scan and lists the
//     differences, sorted by path. This is also the difference report that
//     shows what differs right now, changing nothing; Difference.String
//     says it for people.
//   - Planner.Sync turns differences into an ordered stream of changes
//     (package change) for the replica's applier (package apply): whole
//     files for small or new ones, blocksync deltas (OpPatch) for large
//     files the replica already holds a version of.
//
// The planner runs on the master and reads the master's files itself; it
// never reads the replica's tree. What it needs from the replica comes from
// the difference list (the replica's metadata at compare time) and from
// Planner.Signature (a block signature of the replica's copy of a file).
//
// Both trees may change while they are compared and synchronized: the
// master keeps running. Nothing here pretends otherwise. A file that
// changes while the planner reads it is reported (ErrChanged) so that the
// caller queues it again; whatever was compared before the change is
// caught by the next compare. A clean compare right after a Sync, with
// nothing writing either tree, is what proves the replica equal.
package treesync
