package replication

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/holdfast/holdfast/agent/apply"
	"github.com/holdfast/holdfast/agent/blocksync"
	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/treesync"
)

// Replica is the receiving end of one replicated root. LocalReplica is the
// replica on this host; agent/remote's Client is a replica on another host,
// reached through a transport plugin.
type Replica interface {
	// ApplyBatch applies the changes in order and returns once they are
	// durable on the replica. Changes with Seq <= LastApplied are skipped.
	ApplyBatch(cs []change.Change) error
	// LastApplied is the highest Seq durably applied.
	LastApplied() uint64
	// Signature returns the block signature of the replica's copy of path,
	// for block-level synchronization.
	Signature(path string) (blocksync.Signature, error)
	// Scan describes the replica tree as treesync.Scan does, for the
	// comparison a synchronization starts with. The problems' Err may have
	// lost its type on the way (a remote replica sends their text).
	Scan() ([]treesync.Entry, []*treesync.ScanError, error)
	Close() error
}

// LocalReplica applies changes to a directory on this host.
type LocalReplica struct {
	dir    string
	ap     *apply.Applier
	broken bool // the applier refused further work after a failed sync
}

// OpenLocal opens (creating if needed) the replica directory dir.
func OpenLocal(dir string) (*LocalReplica, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create replica directory %s: %w", dir, err)
	}
	ap, err := apply.Open(dir, apply.Options{})
	if err != nil {
		return nil, fmt.Errorf("open replica %s: %w", dir, err)
	}
	return &LocalReplica{dir: dir, ap: ap}, nil
}

// ApplyBatch applies cs. After a failure that is not one change's fault (a
// failed sync, no space while syncing) the applier must be reopened so it
// replays from what is really on disk; that happens on the next call.
func (r *LocalReplica) ApplyBatch(cs []change.Change) error {
	if r.broken {
		if err := r.ap.Close(); err != nil {
			return fmt.Errorf("reopen replica %s: %w", r.dir, err)
		}
		ap, err := apply.Open(r.dir, apply.Options{})
		if err != nil {
			return fmt.Errorf("reopen replica %s: %w", r.dir, err)
		}
		r.ap, r.broken = ap, false
	}
	err := r.ap.ApplyBatch(cs)
	var ae *apply.Error
	if err != nil && !errors.As(err, &ae) {
		r.broken = true
	}
	return err
}

func (r *LocalReplica) LastApplied() uint64 { return r.ap.LastApplied() }
func (r *LocalReplica) Close() error        { return r.ap.Close() }

// Scan scans the replica directory.
func (r *LocalReplica) Scan() ([]treesync.Entry, []*treesync.ScanError, error) {
	return treesync.Scan(r.dir, treesync.ScanOptions{})
}

// Signature reads the replica's copy of path without following symlinks
// out of the tree.
func (r *LocalReplica) Signature(path string) (blocksync.Signature, error) {
	if err := change.ValidPath(path); err != nil {
		return blocksync.Signature{}, err
	}
	root, err := os.OpenRoot(r.dir)
	if err != nil {
		return blocksync.Signature{}, fmt.Errorf("signature of %s: %w", path, err)
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(path))
	if err != nil {
		return blocksync.Signature{}, fmt.Errorf("signature of %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return blocksync.Signature{}, fmt.Errorf("signature of %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return blocksync.Signature{}, fmt.Errorf("signature of %s: not a regular file", path)
	}
	sig, err := blocksync.ComputeSignature(f, blocksync.BlockSize(st.Size()))
	if err != nil {
		return blocksync.Signature{}, fmt.Errorf("signature of %s: %w", path, err)
	}
	return sig, nil
}
