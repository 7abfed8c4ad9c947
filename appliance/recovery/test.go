package recovery

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/holdfast/holdfast/agent/snapshot"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/runner"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// Test runs an Assured Recovery test on every replica of the scenario held
// here: a fresh snapshot (applying pauses only while it is made), a
// writable view of it, the handler's Verify on the view while replication
// goes on, then the view is discarded. Each result is stored in the catalog
// and the activity log; a snapshot that passed becomes
// application-consistent. The returned error is for tests that could not
// be run; a test that ran and failed is a result, not an error.
func (s *Service) Test(ctx context.Context, name string) ([]catalog.RecoveryTest, error) {
	pl, err := s.placer.Placement(name)
	if err != nil {
		return nil, err
	}
	sc := pl.Scenario
	if !sc.AssuredRecovery {
		return nil, messages.New(messages.RecoveryImpossible, name, "Assured Recovery is not enabled on the scenario (create it with --assured-recovery)")
	}
	h, err := s.handlers.ScenarioHandler(sc.Type)
	if err != nil {
		return nil, err
	}
	info, err := h.Describe(ctx)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(info.Capabilities, sdk.CapabilityAssuredRecovery) {
		return nil, messages.New(messages.RecoveryImpossible, name, fmt.Sprintf("the %s handler cannot test an application", sc.Type))
	}
	if !pl.Running || pl.State != string(catalog.StateRunning) {
		return nil, messages.New(messages.RecoveryNotReplicating, name, pl.State)
	}
	reps, err := selectReplicas(pl, "")
	if err != nil {
		return nil, err
	}
	entities, err := s.store.Entities(sc.ID)
	if err != nil {
		return nil, messages.Wrap(err, messages.ScenarioDataUnreadable, name, err)
	}
	var out []catalog.RecoveryTest
	for _, lr := range reps {
		t, err := s.testOne(ctx, pl, lr, h, entityOf(entities, lr.Root))
		if err != nil {
			return out, err
		}
		out = append(out, t)
	}
	return out, nil
}

// entityOf names the entity covering root, or root itself.
func entityOf(entities []catalog.Entity, root string) string {
	for _, e := range entities {
		for _, p := range e.Paths {
			if p == root || strings.HasPrefix(root, strings.TrimSuffix(p, "/")+"/") {
				return e.Name
			}
		}
	}
	return root
}

func (s *Service) testOne(ctx context.Context, pl runner.Placement, lr runner.LocalReplica, h sdk.ScenarioHandler, entity string) (catalog.RecoveryTest, error) {
	sc := pl.Scenario
	// One test at a time: what is in the views folder then is a crash's
	// leftover (an overlay stays mounted when holdfastd dies in a test).
	s.testMu.Lock()
	defer s.testMu.Unlock()
	if err := discardLeftovers(scratchDir(lr.Dir)); err != nil {
		return catalog.RecoveryTest{}, messages.Wrap(err, messages.SnapshotReleaseFailed, sc.Name, sc.ID, replicaName(lr), err)
	}
	snap, err := s.snapshot(ctx, pl, lr, snapshot.Meta{Scenario: sc.Name, Consistency: ConsistencyCrash, Label: "assured recovery"})
	if err != nil {
		return catalog.RecoveryTest{}, err
	}
	start := time.Now()
	t := catalog.RecoveryTest{ScenarioID: sc.ID, Replica: replicaName(lr), Snapshot: snap.ID, Started: start.UTC()}
	store, err := snapshot.OpenStore(SnapshotDir(lr.Dir))
	if err != nil {
		return t, messages.Wrap(err, messages.SnapshotFailed, sc.Name, sc.ID, replicaName(lr), err)
	}
	res, view, runErr := s.verify(ctx, store, snap.ID, lr, h, sdk.VerifyRequest{
		Scenario: sdk.ScenarioConfig{Name: sc.Name, MasterHost: sc.MasterHost, Roots: sc.Roots},
		Entity:   entity,
	})
	t.Duration = time.Since(start)
	t.View = view
	t.Passed = runErr == nil && res.Passed
	t.Checked = res.Checked
	t.Problems = res.Problems
	if runErr != nil {
		t.Error = runErr.Error()
	}
	stored, err := s.store.CreateRecoveryTest(t)
	if err != nil {
		return t, messages.Wrap(err, messages.CatalogWriteFailed, err)
	}
	if t.Passed {
		if err := store.SetConsistency(snap.ID, ConsistencyApplication); err != nil {
			return stored, messages.Wrap(err, messages.SnapshotFailed, sc.Name, sc.ID, replicaName(lr), err)
		}
		s.record(ctx, messages.RecoveryTestPassed, sc.Name, snap.ID, replicaName(lr), t.Checked, t.Duration.Round(time.Millisecond))
	} else {
		why := t.Error
		if why == "" {
			why = fmt.Sprintf("%d problems: %s", len(t.Problems), strings.Join(t.Problems, "; "))
		}
		s.record(ctx, messages.RecoveryTestFailed, sc.Name, snap.ID, replicaName(lr), t.Duration.Round(time.Millisecond), why)
	}
	s.retain(ctx, sc, lr)
	return stored, nil
}

// discardLeftovers removes the views a crashed test left in dir.
func discardLeftovers(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, e := range entries {
		if err := snapshot.DiscardLeftover(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// verify runs the handler on a writable view of the snapshot and discards
// the view, whatever happened.
func (s *Service) verify(ctx context.Context, store *snapshot.Store, id string, lr runner.LocalReplica, h sdk.ScenarioHandler, req sdk.VerifyRequest) (res sdk.VerifyResult, view string, err error) {
	scratch := filepath.Join(scratchDir(lr.Dir), id)
	var opts []snapshot.WritableOption
	if s.opts.ForceClone {
		opts = append(opts, snapshot.WithoutOverlay())
	}
	w, err := store.Writable(ctx, id, scratch, opts...)
	if err != nil {
		return res, "", fmt.Errorf("make a writable view of snapshot %s: %w", id, err)
	}
	view = string(w.Method())
	defer func() {
		if derr := w.Discard(); derr != nil {
			err = errors.Join(err, fmt.Errorf("discard the writable view of snapshot %s: %w", id, derr))
		}
	}()
	req.Root = w.Dir()
	res, err = h.Verify(ctx, req)
	return res, view, err
}

// Tests lists the scenario's recorded Assured Recovery tests, newest first.
func (s *Service) Tests(name string, limit int) ([]catalog.RecoveryTest, error) {
	pl, err := s.placer.Placement(name)
	if err != nil {
		return nil, err
	}
	list, err := s.store.RecoveryTests(pl.Scenario.ID, limit)
	if err != nil {
		return nil, messages.Wrap(err, messages.ScenarioDataUnreadable, name, err)
	}
	return list, nil
}
