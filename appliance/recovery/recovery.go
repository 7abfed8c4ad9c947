// Package recovery gives operators the replica-side tools of continuous
// data protection for a scenario's replicas held on this appliance: Data
// Rewind (bookmarks, rewind points, rewinding the replica to a point, a
// time or a bookmark), snapshots of the replica's data (point-in-time,
// read-only, what backups read), and Assured Recovery tests (the
// scenario's handler proves the application on a writable view of a fresh
// snapshot while replication goes on). Every outcome lands in the activity
// log with its message code; test results also land in the catalog.
package recovery

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/holdfast/holdfast/agent/apply"
	"github.com/holdfast/holdfast/agent/rewind"
	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/runner"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// Placer says where a scenario's replicas are: the runner.
type Placer interface {
	Placement(name string) (runner.Placement, error)
}

// Handlers finds a scenario type's handler plugin.
type Handlers interface {
	ScenarioHandler(typ string) (sdk.ScenarioHandler, error)
}

// Store is the part of the catalog the service uses.
type Store interface {
	Entities(scenarioID uint64) ([]catalog.Entity, error)
	CreateRecoveryTest(t catalog.RecoveryTest) (catalog.RecoveryTest, error)
	RecoveryTests(scenarioID uint64, limit int) ([]catalog.RecoveryTest, error)
}

// Options tune the service.
type Options struct {
	// Rewind is used for journals the service opens itself (replicas of
	// stopped scenarios); running engines open theirs with the runner's.
	Rewind rewind.Options
	// ForceClone makes Assured Recovery views clones instead of overlay
	// mounts; tests use it to cover both.
	ForceClone bool
}

// Service answers rewind, snapshot and test requests.
type Service struct {
	placer   Placer
	handlers Handlers
	store    Store
	rec      activity.Recorder
	opts     Options
	testMu   sync.Mutex // Assured Recovery tests run one at a time
}

// New returns a service.
func New(placer Placer, handlers Handlers, store Store, rec activity.Recorder, opts Options) *Service {
	return &Service{placer: placer, handlers: handlers, store: store, rec: rec, opts: opts}
}

// SnapshotDir is where a replica directory keeps its snapshots: below the
// applier's state directory, so on the same filesystem (reflinks work) and
// out of every replication scan.
func SnapshotDir(replicaDir string) string {
	return filepath.Join(replicaDir, apply.StateDir, "snapshots")
}

// scratchDir is where Assured Recovery builds writable views.
func scratchDir(replicaDir string) string {
	return filepath.Join(replicaDir, apply.StateDir, "recovery-views")
}

// replicaName is how a replica is named in messages and records.
func replicaName(lr runner.LocalReplica) string { return lr.Host + ":" + lr.Dir }

// replicas returns the scenario's placement and its replicas held here
// matching dir ("" for all).
func (s *Service) replicas(name, dir string) (runner.Placement, []runner.LocalReplica, error) {
	pl, err := s.placer.Placement(name)
	if err != nil {
		return pl, nil, err
	}
	reps, err := selectReplicas(pl, dir)
	return pl, reps, err
}

// selectReplicas keeps the replicas matching dir ("" keeps all) and fails
// when none of the scenario's replicas is on this appliance.
func selectReplicas(pl runner.Placement, dir string) ([]runner.LocalReplica, error) {
	name := pl.Scenario.Name
	if len(pl.Local) == 0 {
		return nil, messages.New(messages.RecoveryUnavailable, name,
			fmt.Sprintf("its replicas are on %s; rewind, snapshots and tests work on replicas held by this appliance", strings.Join(pl.Elsewhere, ", ")))
	}
	if dir == "" {
		return pl.Local, nil
	}
	clean := filepath.Clean(dir)
	var dirs []string
	for _, lr := range pl.Local {
		if lr.Dir == clean {
			return []runner.LocalReplica{lr}, nil
		}
		dirs = append(dirs, lr.Dir)
	}
	return nil, messages.New(messages.BadRequest,
		fmt.Sprintf("replica: scenario %s has no replica directory %s on this appliance (it has %s)", name, dir, strings.Join(dirs, ", ")))
}

// withJournal runs fn on the replica's rewind journal: the running engine's
// when the scenario runs here, otherwise one opened for the call.
func (s *Service) withJournal(pl runner.Placement, lr runner.LocalReplica, fn func(j *rewind.Replica) error) error {
	name := pl.Scenario.Name
	if lr.Live != nil {
		j := lr.Live.Journal()
		if j == nil {
			return messages.New(messages.RecoveryUnavailable, name, fmt.Sprintf("replica %s has no rewind journal (journal turned off)", replicaName(lr)))
		}
		return fn(j)
	}
	if pl.Running {
		return messages.New(messages.RecoveryUnavailable, name,
			fmt.Sprintf("replica %s is held by the appliance's replica role while the scenario runs; stop the scenario first", replicaName(lr)))
	}
	if _, err := os.Stat(lr.Dir); err != nil {
		return messages.New(messages.RecoveryUnavailable, name,
			fmt.Sprintf("replica %s has no data yet (%v); run the scenario first", replicaName(lr), err))
	}
	j, err := rewind.Open(lr.Dir, s.opts.Rewind)
	if err != nil {
		return s.journalErr(name, lr, err)
	}
	err = fn(j)
	if cerr := j.Close(); cerr != nil && err == nil {
		err = messages.Wrap(cerr, messages.RewindFailed, name, replicaName(lr), cerr)
	}
	return err
}

// journalErr gives a journal failure its message code.
func (s *Service) journalErr(name string, lr runner.LocalReplica, err error) error {
	var me *messages.Error
	if errors.As(err, &me) {
		return err
	}
	switch {
	case errors.Is(err, rewind.ErrDropped):
		return messages.Wrap(err, messages.RewindPointDropped, name, replicaName(lr), err)
	case errors.Is(err, rewind.ErrDamaged):
		return messages.Wrap(err, messages.RewindJournalDamaged, name, replicaName(lr), err)
	case errors.Is(err, rewind.ErrNoPoint), errors.Is(err, rewind.ErrNoBookmark):
		return messages.Wrap(err, messages.RewindNoPoint, name, replicaName(lr), err)
	case errors.Is(err, apply.ErrInUse):
		return messages.Wrap(err, messages.RecoveryUnavailable, name,
			fmt.Sprintf("replica %s is in use by another writer (a running scenario or a rewind): %v", replicaName(lr), err))
	}
	return messages.Wrap(err, messages.RewindFailed, name, replicaName(lr), err)
}

// checkLabel validates a bookmark or snapshot label.
func checkLabel(field, label string) error {
	if strings.TrimSpace(label) == "" {
		return messages.New(messages.BadRequest, field+": missing: give a short text that says what the point is before, e.g. \"before patch 7\"")
	}
	if len(label) > 128 {
		return messages.New(messages.BadRequest, fmt.Sprintf("%s: %d bytes; at most 128", field, len(label)))
	}
	for _, r := range label {
		if !unicode.IsPrint(r) {
			return messages.New(messages.BadRequest, fmt.Sprintf("%s: %q holds a control character", field, label))
		}
	}
	return nil
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// pairRecorder records with the scenario's context.
func (s *Service) record(ctx context.Context, code messages.Code, args ...any) {
	s.rec.Record(ctx, code, args...)
}
