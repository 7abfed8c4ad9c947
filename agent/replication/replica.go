package replication

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/holdfast/holdfast/agent/apply"
	"github.com/holdfast/holdfast/agent/blocksync"
	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/rewind"
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

// LocalReplica applies changes to a directory on this host, through the
// rewind journal unless it was opened without one.
type LocalReplica struct {
	dir    string
	opts   LocalOptions
	mu     sync.Mutex // held while a batch is applied; see Freeze
	ap     *apply.Applier
	jr     *rewind.Replica // nil when the journal is off
	broken bool            // the applier refused further work after a failed sync
}

// LocalOptions tune a LocalReplica.
type LocalOptions struct {
	// Rewind turns the rewind journal on with these options; nil leaves
	// it off.
	Rewind *rewind.Options
}

// OpenLocal opens (creating if needed) the replica directory dir, with
// the rewind journal on and its defaults (rewind.DefaultMaxBytes,
// rewind.DefaultMaxAge).
func OpenLocal(dir string) (*LocalReplica, error) {
	return OpenLocalWith(dir, LocalOptions{Rewind: &rewind.Options{}})
}

// OpenLocalWith opens (creating if needed) the replica directory dir.
func OpenLocalWith(dir string, opts LocalOptions) (*LocalReplica, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create replica directory %s: %w", dir, err)
	}
	r := &LocalReplica{dir: dir, opts: opts}
	if err := r.open(); err != nil {
		return nil, fmt.Errorf("open replica %s: %w", dir, err)
	}
	return r, nil
}

func (r *LocalReplica) open() error {
	if r.opts.Rewind != nil {
		jr, err := rewind.Open(r.dir, *r.opts.Rewind)
		if err != nil {
			return err
		}
		r.jr, r.ap = jr, jr.Applier()
		return nil
	}
	ap, err := apply.Open(r.dir, apply.Options{})
	if err != nil {
		return err
	}
	r.ap = ap
	return nil
}

func (r *LocalReplica) close() error {
	if r.jr != nil {
		return r.jr.Close()
	}
	return r.ap.Close()
}

// ApplyBatch applies cs. After a failure that is not one change's fault (a
// failed sync, no space while syncing) the applier must be reopened so it
// replays from what is really on disk; that happens on the next call.
func (r *LocalReplica) ApplyBatch(cs []change.Change) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.broken {
		if err := r.close(); err != nil {
			return fmt.Errorf("reopen replica %s: %w", r.dir, err)
		}
		if err := r.open(); err != nil {
			return fmt.Errorf("reopen replica %s: %w", r.dir, err)
		}
		r.broken = false
	}
	var err error
	if r.jr != nil {
		err = r.jr.ApplyBatch(cs)
	} else {
		err = r.ap.ApplyBatch(cs)
	}
	var ae *apply.Error
	if err != nil && !errors.As(err, &ae) {
		r.broken = true
	}
	return err
}

// Journal is the replica's rewind journal, nil when it is off.
func (r *LocalReplica) Journal() *rewind.Replica { return r.jr }

// Freeze runs fn while no batch is being applied, so that fn sees the
// tree between two batches (a snapshot of the replica, for one).
func (r *LocalReplica) Freeze(fn func() error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fn()
}

func (r *LocalReplica) LastApplied() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ap.LastApplied()
}

func (r *LocalReplica) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.close()
}

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
