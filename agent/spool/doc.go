// Package spool is the master agent's durable, capped queue of replication
// changes. While a replica is suspended or unreachable, capture appends every
// change.Change here; when the replica is back, the sender drains them in Seq
// order, so an outage costs a catch-up instead of a full resynchronization.
// When the queue reaches its cap it stops storing changes and records only
// which paths they touched (a dirty-path set, DRBD's quick-sync bitmap at
// path granularity), so recovery is a resync of those files, never a silent
// loss and never a full resync.
//
// # On disk
//
// A spool is a directory that one Open holds at a time (flock on "lock"):
//
//	00000000000000000001.seg  segments, oldest first: magic, then frames
//	ack                       highest acknowledged Seq, replaced atomically
//	dirty                     dirty-path set: magic, then one frame per path
//	clean                     exists only between Close and the next Open
//
// A frame is a 24-byte header (record length u32, Seq u64, Captured i64,
// CRC-32C of those 20 bytes), the record (change.Change.Marshal, which has
// its own CRC) and a CRC-32C of header and record, all little-endian. Seq
// and Captured are copied into the header so that recovery, Ack and Stats
// never decode records; the header CRC means a damaged length is
// recognised as damage instead of being followed. Segments roll at
// Options.SegmentSize and each is fsynced before the next is created, so
// only the last segment can end in a torn write.
//
// # Durability contract
//
//   - Append buffers. A change is durable, and only then visible to the
//     reader, once a later Sync has returned nil (AppendSync does both).
//     Group commit is many Appends and one Sync. Because the reader only
//     delivers durable changes, a replica never holds a change the master
//     could lose in a crash, so Seqs the caller reuses after a crash were
//     never sent anywhere.
//   - Sync fsyncs the dirty-path file before the segment, so a change stored
//     after a dropped one is never durable without the dropped one's dirty
//     mark. Creating a segment fsyncs the directory too.
//   - An error from Append (other than ErrOverflow) or Sync is final: what
//     was appended since the last successful Sync may be lost, and the
//     spool refuses further writes. Close it and Open it again; Open
//     recovers what reached the disk.
//   - Ack(seq) is durable when it returns (temporary file, fsync, rename,
//     directory fsync); segments entirely at or below seq are deleted
//     after that, never before.
//   - Delivery is at least once. After a restart, or Rewind, reading resumes
//     after the last persisted Ack, so changes delivered but not
//     acknowledged are delivered again; the replica deduplicates by Seq
//     (agent/apply skips Seq <= its last applied). The replica must also
//     accept gaps in Seq: dropped changes leave them.
//
// # Crash recovery
//
// Open checks every frame (checksums only). In the last segment, damage with
// no intact frame anywhere after it is a torn tail: the bytes of a write no
// successful Sync covered. Open truncates it, fsyncs, and reports it in
// Recovery().Truncated. Damage followed by an intact frame, damage in an
// earlier segment, a missing segment, or a bad ack file fail Open with a
// *CorruptError naming the file and offset: skipping them would silently
// lose changes a Sync had made durable. (A disk that reorders unsynced
// writes across a power cut can in principle leave an intact unsynced frame
// after a hole; that is reported as corruption too, the safe mistake.)
//
// Recovery().Unclean reports that the previous process never called Close.
// Changes it captured after its last successful Sync are gone, which the
// spool cannot list; the caller should run a verify scan of the tree.
//
// # Capacity and overflow
//
// Options.MaxBytes caps PendingBytes, the framed size of stored changes not
// yet acknowledged. Disk use is that plus acknowledged changes waiting for
// their segment to be deleted: up to about one SegmentSize, two at most
// (an Ack deletes only whole segments). When storing a
// change would pass MaxBytes, the spool starts dropping: Append stores
// nothing, adds the change's paths to the dirty set (Path, and NewPath too
// for a rename or hard link; a directory operation names the directory, and
// a dirty directory stands for its whole subtree) and returns an error
// wrapping ErrOverflow. It keeps dropping until the sender has drained
// PendingBytes to Options.ResumeBytes (default MaxBytes/2), then stores
// again. The hysteresis keeps a spool at its cap from alternating between
// storing and dropping with every acknowledgement, which would scatter dirty
// paths over the whole tree. Dirty marks persist across restarts, and so
// does dropping when PendingBytes is still above ResumeBytes.
//
// The caller recovers in this order:
//
//  1. On the first ErrOverflow, raise the "queue overflow" alert. Keep
//     appending: ErrOverflow is a condition, not a failure.
//  2. Keep draining: the sender delivers and acknowledges stored changes as
//     usual.
//  3. Take paths, mark := DirtyPaths(). Wait until Stats().AckedSeq >=
//     mark.Fence(): every change stored before the snapshot has been
//     applied. An older change applied after a resync would roll its file
//     back.
//  4. Resync each path block-level from the master's current state. Changes
//     stored after the snapshot may reach the replica after the resync and
//     find their effect already there; the apply side must tolerate that.
//  5. ClearDirty(mark). It removes only paths not marked again since the
//     snapshot; a path dropped during the resync stays for the next round.
//     When Overflowed() is false, clear the alert.
//
// # Concurrency
//
// Every method is safe for concurrent use. The design point is one goroutine
// appending (capture), one reading with Next, Peek, Wait and Rewind (the
// sender), and Ack from the sender or from a goroutine receiving the
// replica's acknowledgements. Append does no I/O under the lock the reader
// takes, and Sync's fsync blocks neither Next nor Ack.
package spool
