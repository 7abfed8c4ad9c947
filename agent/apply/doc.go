// Package apply applies captured replication changes (change.Change) to a
// replica tree, safely and durably. It is the last step of continuous
// replication on a replica host: the transport hands it changes in Seq
// order, at least once, and acknowledges a change to the master only after
// Apply or ApplyBatch has returned nil for it.
//
// # Durability
//
// Apply returns nil only once the change is on stable storage: the file's
// data or inode is fsynced, and so is every directory whose entries the
// change added, removed or renamed. Only then is the change's Seq recorded,
// durably, as LastApplied. After a crash or restart the transport may
// deliver changes again; those with Seq <= LastApplied are skipped, and the
// one that was in flight is applied again. Every op is written so that
// applying it again on a tree it has already (wholly or partly) changed
// gives the same tree; the per-op contract below says how.
//
// ApplyBatch is group commit: it applies a run of changes and syncs the
// files and directories they touched once, so many small writes cost one
// fsync each for the file and the state instead of one per change. A crash
// inside a batch may then leave several applied changes above LastApplied,
// which are all applied again on restart. That is safe only for changes
// that never move or drop a name, so a batch commits (syncs and records
// LastApplied) before and after every change that renames, removes or
// replaces a name. Within one commit the changes are writes, truncations,
// creations of new names and metadata changes, and applying such a run
// again over its own result gives the same tree.
//
// Whole files are the exception that makes synchronization fast: a run of
// consecutive OpReplaceFile changes, each with the metadata changes of its
// own path that follow it (owner, mode, times, xattrs, applied to the new
// file before it has a name), commits once. Every file of the run is
// written under its temporary name, all are synced together, then renamed
// in order; their directories are synced and LastApplied recorded once. A
// crash before the renames leaves only temporary names; a crash during
// them leaves each path old or new, and the replay renames the rest. A run
// ends at any other change, at a path it already holds, at a file with
// several links (rewritten in place, on its own) and at 256 files or
// 64 MiB. A failure of one of its changes is that change's *Error, and the
// run's files before it are committed, as in any batch.
//
// After a failed fsync the page cache no longer tells what is on disk, so
// the Applier refuses every later change: close it, open it again, and let
// the transport deliver again from LastApplied.
//
// # Atomic visibility
//
// A half-applied change is never visible, with two documented exceptions:
// an OpWrite (or OpTruncate) of an existing file changes it in place, as the
// master did; the master captured that write as one unit, and if the
// replica crashes in the middle the change is delivered again (LastApplied
// was not advanced) and writing the same bytes at the same offset is
// idempotent. And an OpReplaceFile or OpPatch of a file with several hard
// links is rewritten in place, so that the other names keep sharing its
// content rather than silently keeping the old one (an OpPatch builds and
// checks the new content in a temporary file first, then copies it over).
//
// Everything else that creates or replaces a name builds the new object
// under a temporary name in the same directory (".holdfast-tmp-<seq>"),
// syncs it, and renames it over the old name. Temporary names are derived
// from Seq, so the replay of a change that crashed half-way finds and
// reuses its own leftover; on errors they are removed before returning.
//
// # Confinement
//
// Every path is resolved below the target directory's file descriptor with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS): no
// directory on the way to a name may be a symlink, whatever it points to,
// because a symlink's target is data copied from the master and means
// nothing on the replica. The last component is never followed either: an
// op on a path that is a symlink acts on the link itself (OpWrite,
// OpTruncate, OpCreate and OpReplaceFile replace the link by a regular
// file; OpPatch refuses it with ErrBaseMismatch, as a link has no content
// to patch; OpChown, OpSetTimes and xattr ops use the no-follow variants;
// OpChmod does nothing, as Linux has no symlink modes). A change whose path
// leaves the root ("..", absolute), goes through a symlink, or names the
// applier's own state directory fails with an error wrapping ErrEscape, so
// that the caller can log it; nothing is changed.
//
// The applier keeps its state (LastApplied and the lock that makes it the
// only writer of the tree) in <target>/.holdfast/. Changes naming that
// directory are refused, and the replication engine must exclude it when it
// scans or compares a replica. Open also restricts the target directory
// itself to its owner (mode 0700): the tree below mirrors the master's
// owners and modes, world-writable directories included, and the root's
// mode is what keeps local users from writing into the replica.
//
// # Per-op contract
//
// Paths below are Path (and NewPath) of the change. "Parent synced" means
// the directory holding the name is fsynced before the change is
// acknowledged, also when the op found its work already done, because a
// process crash leaves metadata in the page cache that is not yet on disk.
//
//   - OpWrite: writes Data at Offset into the regular file. An absent file
//     (or a symlink or special file in its place) is replaced by a new file
//     of mode 0600 holding just Data at Offset, built under a temporary
//     name; the master sends the mode with OpChmod. A directory is an
//     error. Again: the same bytes land at the same offset.
//   - OpTruncate: sets the size to Size, creating the file like OpWrite.
//     Again: the same size.
//   - OpCreate: makes Path an empty regular file with Mode (exact, not
//     masked by the umask). An existing regular file is truncated and
//     re-moded in place; a symlink or special file is replaced; a directory
//     is an error. Again: still empty, same mode.
//   - OpMkdir: makes Path a directory with Mode. An existing directory only
//     gets its mode set; any other object is removed first. Again: no-op
//     apart from the mode.
//   - OpSymlink: makes Path a symlink to Target, stored verbatim and never
//     resolved. An existing link with the same target is kept; anything
//     else but a directory is replaced atomically. Again: no-op.
//   - OpLink: makes NewPath another name of the object at Path (a symlink at
//     Path is linked, not followed). If NewPath already names the same
//     inode nothing is done; another object there is replaced atomically.
//     Again: no-op. Both paths must be in the tree, and on one filesystem.
//   - OpRename: renames Path to NewPath (files or directories, across
//     directories, replacing NewPath as rename(2) does). If Path is gone
//     and NewPath exists the rename was already applied. Both parents are
//     synced.
//   - OpRemove: removes a file, symlink or empty directory. A missing path
//     is success. A non-empty directory is an error.
//   - OpChmod: sets the permission bits, setuid, setgid and sticky from
//     Mode. No-op on symlinks.
//   - OpChown: sets UID and GID without following symlinks, when owners are
//     preserved (Options.Owner); otherwise it does nothing. As on the
//     master, the kernel clears setuid/setgid of a file on chown; the
//     master's following OpChmod restores them in order.
//   - OpSetTimes: sets the modification time to MTime with nanoseconds,
//     without following symlinks. The access time is left alone.
//   - OpSetXattr, OpRemoveXattr: set or remove XattrName on the object
//     itself, never a symlink's target; removing a missing attribute is
//     success. The kernel decides which namespaces are allowed (user.* on
//     files and directories only; trusted.* and security.* as root).
//   - OpReplaceFile: replaces the file wholly with Data, Mode and (unless
//     MTime is 0, meaning not captured) MTime: written under a temporary
//     name, synced, renamed over Path. The owner and extended attributes of
//     the file it replaces are carried over, because a whole-file resend
//     says nothing about them and losing an ACL silently is worse than
//     keeping one the verify scan would flag. A file with several hard
//     links is rewritten in place (see above). Again: the same content.
//   - OpPatch: rebuilds the regular file at Path from its current content
//     and the delta of package blocksync in Data, then sets Mode and MTime
//     and carries owner and xattrs over exactly as OpReplaceFile does. The
//     delta's framing is checked first (a damaged, truncated or reordered
//     delta fails wrapping blocksync.ErrInvalid before anything is
//     created); blocksync.Patch then writes the new content under a
//     temporary name, refusing any copy beyond the old file and any result
//     whose size or checksum differs from the delta's end op; only then is
//     it synced and renamed over Path. On any failure the file is
//     untouched and the temporary name removed. A missing file, a symlink
//     or special file in its place, or a file of another size or content
//     than the delta was made against fails with ErrBaseMismatch, and the
//     master sends the file whole instead. Again: the file already holds
//     the result, which the header's size check or the end checksum then
//     refuses as a base; so before failing, OpPatch checks whether the file
//     has the end op's size and checksum, and if it has, the patch is done
//     (mode and time are set again, file and parent synced). A crash in the
//     middle of the in-place rewrite of a hard-linked file leaves content
//     that is neither version; the replay fails with ErrBaseMismatch and
//     the whole-file resend repairs it.
//
// Metadata of symlinks (owner, times, xattrs) is made durable with
// syncfs(2) on the filesystem holding them, because a symlink cannot be
// opened to fsync it.
//
// # Disk full
//
// ENOSPC and EDQUOT are reported wrapping ErrNoSpace. The change is not
// recorded as applied (the master keeps it spooled), and no temporary file
// is left; a new file that could not be written whole never appears.
package apply
