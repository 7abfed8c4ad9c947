package recovery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/holdfast/holdfast/agent/rewind"
	"github.com/holdfast/holdfast/agent/snapshot"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/runner"
)

// Consistency of a snapshot, as backups record it.
const (
	// ConsistencyCrash: taken with the replica's applying paused, as a
	// power cut would leave the data: the application may need recovery.
	ConsistencyCrash = "crash"
	// ConsistencyApplication: an Assured Recovery test passed on it.
	ConsistencyApplication = "application"
)

// autoRelease reports whether the scenario's snapshots are released by
// retention. File Server snapshots are kept until an operator releases
// them, as the product we replace does; the others keep SnapshotsKeep.
func autoRelease(sc catalog.Scenario) (int, bool) {
	if sc.Type == "fileserver" || sc.SnapshotsKeep == 0 {
		return 0, false
	}
	return int(sc.SnapshotsKeep), true
}

// Snap is a snapshot of one replica.
type Snap struct {
	Replica string
	Root    string
	snapshot.Info
}

// TakeSnapshot takes a snapshot of every replica of the scenario held here.
// A running replica stops applying while its snapshot is made (the master
// spools meanwhile, as in suspend mode) and goes on right after: the image
// is crash-consistent. label is optional.
func (s *Service) TakeSnapshot(ctx context.Context, name, label string) ([]Snap, error) {
	if label != "" {
		if err := checkLabel("label", label); err != nil {
			return nil, err
		}
	}
	pl, err := s.placer.Placement(name)
	if err != nil {
		return nil, err
	}
	if !pl.Scenario.Suspend && !pl.Scenario.AssuredRecovery {
		return nil, messages.New(messages.ScenarioNoConsistency, name)
	}
	reps, err := selectReplicas(pl, "")
	if err != nil {
		return nil, err
	}
	var out []Snap
	for _, lr := range reps {
		info, err := s.snapshot(ctx, pl, lr, snapshot.Meta{Scenario: name, Consistency: ConsistencyCrash, Label: label})
		if err != nil {
			return out, err
		}
		out = append(out, Snap{Replica: replicaName(lr), Root: lr.Root, Info: info})
		s.retain(ctx, pl.Scenario, lr)
	}
	return out, nil
}

// snapshot makes one snapshot of lr with nothing applied meanwhile.
func (s *Service) snapshot(ctx context.Context, pl runner.Placement, lr runner.LocalReplica, meta snapshot.Meta) (snapshot.Info, error) {
	name := pl.Scenario.Name
	fail := func(err error) error {
		return messages.Wrap(err, messages.SnapshotFailed, name, pl.Scenario.ID, replicaName(lr), err)
	}
	store, err := snapshot.OpenStore(SnapshotDir(lr.Dir))
	if err != nil {
		return snapshot.Info{}, fail(err)
	}
	start := time.Now()
	var info snapshot.Info
	create := func() error {
		var err error
		info, err = store.Create(ctx, lr.Dir, meta, nil)
		return err
	}
	switch {
	case lr.Live != nil:
		err = lr.Live.Freeze(create)
	case pl.Running:
		return snapshot.Info{}, messages.New(messages.RecoveryUnavailable, name,
			fmt.Sprintf("replica %s is held by the appliance's replica role while the scenario runs; stop the scenario to snapshot it", replicaName(lr)))
	default:
		// Holding the replica's journal keeps a scenario started meanwhile
		// from writing during the copy.
		err = s.withJournal(pl, lr, func(*rewind.Replica) error { return create() })
	}
	if err != nil {
		var me *messages.Error
		if errors.As(err, &me) {
			return snapshot.Info{}, err
		}
		return snapshot.Info{}, fail(err)
	}
	s.record(ctx, messages.SnapshotTaken, info.ID, name, replicaName(lr), since(start), info.Files, info.Bytes, info.Method, info.Consistency)
	return info, nil
}

// retain releases the oldest snapshots beyond the scenario's limit.
func (s *Service) retain(ctx context.Context, sc catalog.Scenario, lr runner.LocalReplica) {
	keep, ok := autoRelease(sc)
	if !ok {
		return
	}
	store, err := snapshot.OpenStore(SnapshotDir(lr.Dir))
	if err == nil {
		var gone []snapshot.Info
		gone, err = store.Keep(keep)
		for _, g := range gone {
			s.record(ctx, messages.SnapshotReleased, g.ID, sc.Name, replicaName(lr), fmt.Sprintf("retention keeps the newest %d", keep))
		}
	}
	if err != nil {
		s.record(ctx, messages.SnapshotReleaseFailed, sc.Name, sc.ID, replicaName(lr), err)
	}
}

// Snapshots lists the snapshots of the scenario's replicas held here,
// oldest first per replica.
func (s *Service) Snapshots(name string) ([]Snap, error) {
	pl, reps, err := s.replicas(name, "")
	if err != nil {
		return nil, err
	}
	out := []Snap{}
	for _, lr := range reps {
		store, err := snapshot.OpenStore(SnapshotDir(lr.Dir))
		if err != nil {
			return nil, messages.Wrap(err, messages.SnapshotFailed, name, pl.Scenario.ID, replicaName(lr), err)
		}
		list, err := store.List()
		if err != nil {
			return nil, messages.Wrap(err, messages.SnapshotFailed, name, pl.Scenario.ID, replicaName(lr), err)
		}
		for _, in := range list {
			out = append(out, Snap{Replica: replicaName(lr), Root: lr.Root, Info: in})
		}
	}
	return out, nil
}

// ReleaseSnapshot releases the snapshot id of whichever replica holds it.
func (s *Service) ReleaseSnapshot(ctx context.Context, name, id string) error {
	pl, reps, err := s.replicas(name, "")
	if err != nil {
		return err
	}
	for _, lr := range reps {
		store, err := snapshot.OpenStore(SnapshotDir(lr.Dir))
		if err != nil {
			return messages.Wrap(err, messages.SnapshotReleaseFailed, name, pl.Scenario.ID, replicaName(lr), err)
		}
		err = store.Release(id)
		if errors.Is(err, snapshot.ErrNotFound) {
			continue
		}
		if err != nil {
			return messages.Wrap(err, messages.SnapshotReleaseFailed, name, pl.Scenario.ID, replicaName(lr), err)
		}
		s.record(ctx, messages.SnapshotReleased, id, name, replicaName(lr), "released by an operator")
		return nil
	}
	return messages.New(messages.SnapshotNotFound, name, id)
}

// Image is a consistent, read-only image of one replicated root, for a
// backup to read.
type Image struct {
	Root        string // the master root it mirrors
	Dir         string // the replica directory holding the snapshot
	Replica     string
	Snapshot    string
	Consistency string
}

// ConsistentImage gives a backup one image of each of the scenario's roots,
// from the first replica held here that has it. With Assured Recovery
// configured the images are snapshots a passed test proved
// (application-consistent); otherwise snapshots taken with applying paused
// (crash-consistent). A failed test is an error (HF-E5001): a backup never
// claims a consistency it does not have.
func (s *Service) ConsistentImage(ctx context.Context, name string) ([]Image, error) {
	pl, reps, err := s.replicas(name, "")
	if err != nil {
		return nil, err
	}
	byName := map[string]runner.LocalReplica{}
	for _, lr := range reps {
		byName[replicaName(lr)] = lr
	}
	var images []Image
	seen := map[string]bool{}
	add := func(replica, id, consistency string) {
		lr, ok := byName[replica]
		if !ok || seen[lr.Root] {
			return
		}
		seen[lr.Root] = true
		images = append(images, Image{Root: lr.Root, Dir: lr.Dir, Replica: replica, Snapshot: id, Consistency: consistency})
	}
	if pl.Scenario.AssuredRecovery {
		tests, err := s.Test(ctx, name)
		if err != nil {
			return nil, err
		}
		for _, t := range tests {
			if !t.Passed {
				why := t.Error
				if why == "" {
					why = strings.Join(t.Problems, "; ")
				}
				return nil, messages.New(messages.BackupNoConsistentImage, name, pl.Scenario.ID,
					fmt.Sprintf("%s (the Assured Recovery test failed: %s)", t.Replica, why))
			}
			add(t.Replica, t.Snapshot, ConsistencyApplication)
		}
		return images, nil
	}
	snaps, err := s.TakeSnapshot(ctx, name, "backup")
	if err != nil {
		return nil, err
	}
	for _, sn := range snaps {
		add(sn.Replica, sn.ID, sn.Consistency)
	}
	return images, nil
}
