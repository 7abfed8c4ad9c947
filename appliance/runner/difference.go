package runner

import (
	"fmt"
	"time"

	"github.com/holdfast/holdfast/agent/treesync"
	"github.com/holdfast/holdfast/appliance/messages"
)

// Difference is the difference report of a scenario: what differs between
// each master root and its replica right now. Making it changes nothing.
type Difference struct {
	Entries []DifferenceEntry
}

// DifferenceEntry is one difference.
type DifferenceEntry struct {
	Root, ReplicaDir string
	Path             string
	Kind             string
	Detail           string
}

// Difference compares every root of the scenario with each replica.
func (r *Runner) Difference(name string) (Difference, error) {
	sc, err := r.lookup(name)
	if err != nil {
		return Difference{}, err
	}
	remote, err := r.remote(sc)
	if err != nil {
		return Difference{}, err
	}
	if remote {
		r.mu.Lock()
		run := r.running[sc.ID]
		r.mu.Unlock()
		if run == nil {
			// The master's tree is on the master: its agent makes the
			// report, and it is told to only while the scenario runs.
			return Difference{}, messages.New(messages.ScenarioNotRunning, name)
		}
		return r.remoteDifference(run, 60*time.Second)
	}
	var out Difference
	for _, rep := range sc.Replicas {
		for _, root := range sc.Roots {
			dir := ReplicaDir(rep.Target, sc.Roots, root)
			master, mp, err := treesync.Scan(root, treesync.ScanOptions{})
			if err != nil {
				return Difference{}, messages.Wrap(err, messages.ReplicationFailed, name, fmt.Errorf("scan master %s: %w", root, err))
			}
			replica, rp, err := treesync.Scan(dir, treesync.ScanOptions{})
			if err != nil {
				return Difference{}, messages.Wrap(err, messages.ReplicationFailed, name, fmt.Errorf("scan replica %s: %w", dir, err))
			}
			for _, p := range append(mp, rp...) {
				out.Entries = append(out.Entries, DifferenceEntry{Root: root, ReplicaDir: dir, Path: p.Path, Kind: "unreadable", Detail: p.Err.Error()})
			}
			for _, d := range treesync.Compare(master, replica) {
				out.Entries = append(out.Entries, DifferenceEntry{Root: root, ReplicaDir: dir, Path: d.Path, Kind: d.Kind.String(), Detail: d.String()})
			}
		}
	}
	return out, nil
}
