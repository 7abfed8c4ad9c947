package runner

import (
	"github.com/holdfast/holdfast/agent/replication"
	"github.com/holdfast/holdfast/appliance/catalog"
)

// LocalReplica is one replica directory of a scenario that lies on this
// appliance: the data Data Rewind, snapshots and Assured Recovery work on.
type LocalReplica struct {
	Host string // the replica host as the scenario names it
	Root string // the master root it mirrors
	Dir  string
	// Live is the replica a running engine holds open (only it may write
	// the directory then); nil when no engine here holds it.
	Live *replication.LocalReplica
}

// Placement says where a scenario's replicas are and what runs them.
type Placement struct {
	Scenario catalog.Scenario
	State    string // as Status shows it
	// Running is true while replication runs, here or on agents.
	Running bool
	Local   []LocalReplica
	// Elsewhere lists the replica hosts that are other machines.
	Elsewhere []string
}

// Placement returns where the scenario's replicas are. A replica on this
// appliance of a scenario replicated by an agent's master is Live while
// the appliance's replica role holds it open (Options.Held).
func (r *Runner) Placement(name string) (Placement, error) {
	sc, err := r.lookup(name)
	if err != nil {
		return Placement{}, err
	}
	pl := Placement{Scenario: sc, State: r.status(sc).State}
	r.mu.Lock()
	run, running := r.running[sc.ID]
	r.mu.Unlock()
	pl.Running = running
	live := map[string]*replication.LocalReplica{}
	if running {
		for _, p := range run.pairs {
			live[p.replicaDir] = p.replica
		}
	}
	for _, rep := range sc.Replicas {
		if !r.isLocal(rep.Host) {
			pl.Elsewhere = append(pl.Elsewhere, rep.Host)
			continue
		}
		for _, root := range sc.Roots {
			dir := ReplicaDir(rep.Target, sc.Roots, root)
			lr := LocalReplica{Host: rep.Host, Root: root, Dir: dir, Live: live[dir]}
			if lr.Live == nil && running {
				lr.Live = r.opts.Held.Get(dir)
			}
			pl.Local = append(pl.Local, lr)
		}
	}
	return pl, nil
}
