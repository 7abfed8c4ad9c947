// Package snapshot keeps point-in-time, read-only copies of a replica tree
// on the replica host. Backups read a snapshot instead of the busy master,
// and Assured Recovery starts the application on a writable view of one
// while replication keeps applying changes to the replica itself.
//
// # Layout
//
// A Store is one directory, normally <replica>/.holdfast/snapshots, which
// the replication scans already leave out. It must be on the filesystem of
// the tree it copies, because that is where copy-on-write clones work:
//
//	<dir>/<id>/tree        the copy of the replica (apply.StateDir left out)
//	<dir>/<id>/info.json   its Info, written atomically
//	<dir>/<id>.partial/    a snapshot being built (never listed)
//	<dir>/<id>.released/   a snapshot being deleted (never listed)
//
// IDs sort by creation time (20261125T110405.123Z-001). A snapshot is built
// under <id>.partial and renamed to <id> only once its content, metadata and
// Info are on disk (syncfs), so a crash never leaves half a snapshot
// listed; OpenStore and List remove the leftovers of a crashed Create or
// Release. A partial snapshot whose Create is still running is recognised
// by the flock its creator holds on it and left alone.
//
// # Methods
//
// Create clones each file with the FICLONE ioctl where the filesystem has
// copy-on-write extents (XFS with reflink, btrfs): Method "reflink", whose
// cost is metadata only and does not grow with the data. Elsewhere it
// copies data extents with copy_file_range (Method "copy"), holes skipped,
// which is correct but proportional to the data. A Store tries FICLONE on
// the first file with content and keeps the answer; a snapshot in which any
// file had to be copied, or which has no file content at all, is recorded
// as "copy".
//
// Create does not stop writers: a consistent point in time needs the
// caller to hold the replica's applier still while Create runs (with
// reflink that is a short pause), and to say which consistency it obtained
// in Meta ("crash" by default, "application" once the application was
// quiesced or an Assured Recovery test passed, see SetConsistency).
//
// # Readers and writers
//
// Open gives the backup side a View: read methods only, every path resolved
// below the snapshot's root by os.Root, so neither ".." nor a symlink in the
// snapshot (whose target is data copied from the master) leads out of it.
// The store's directories are mode 0700: only root reads a snapshot on
// disk. A View does not make the files immutable: a root process can still
// change them through the *os.File it was given (fchmod, fchown, xattrs) or
// by path outside the View; nothing in this package does.
//
// Writable gives Assured Recovery a tree that starts equal to a snapshot
// and takes writes without changing it: an overlayfs mount whose lower
// layer is the snapshot when the process may mount, otherwise a clone of
// the snapshot (reflink or copy) in the scratch directory. Discard removes
// every write. Views and Writables hold a shared flock on their snapshot,
// and Release refuses a snapshot in use with ErrInUse, across processes.
package snapshot
