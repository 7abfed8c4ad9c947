package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/backup"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/diskstore"
	"github.com/holdfast/holdfast/appliance/jobs"
	"github.com/holdfast/holdfast/appliance/jobsecrets"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/recovery"
	"github.com/holdfast/holdfast/appliance/restorejob"
	"github.com/holdfast/holdfast/appliance/retention"
	"github.com/holdfast/holdfast/appliance/verifyjob"
	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// Where the disk store and the key that unlocks it live in the data
// directory. The key file is the appliance key: without it (or a password
// slot added later) the store cannot be read.
const (
	StoreDir     = "store"
	StoreKeyFile = "store.key"
)

// openStore opens the disk store, creating it and its key on first use.
func openStore(dataDir string, logger *slog.Logger) (*diskstore.Store, error) {
	keyPath := filepath.Join(dataDir, StoreKeyFile)
	dir := filepath.Join(dataDir, StoreDir)
	key, err := os.ReadFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		// The data directory's layout makes store/ empty at first start.
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			return nil, fmt.Errorf("disk store %s exists but its key %s is missing: restore the key file from your copy", dir, keyPath)
		}
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("generate the disk store key: %w", err)
		}
		if err := atomicfile.Write(keyPath, key, 0o600); err != nil {
			return nil, err
		}
		return diskstore.Create(dir, diskstore.WithApplianceKey(key), diskstore.Options{Logger: logger})
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", keyPath, err)
	}
	return diskstore.Open(dir, diskstore.WithApplianceKey(key), diskstore.Options{Logger: logger})
}

// jobEvents turns the queue's events into activity-log entries.
type jobEvents struct {
	rec activity.Recorder
}

func (o jobEvents) JobEvent(ev jobs.Event) {
	ctx := activity.WithJob(context.Background(), ev.Job.ID)
	switch ev.Kind {
	case jobs.EventStarted:
		o.rec.Record(ctx, messages.JobStarted, ev.Job.ID, ev.Job.Name, ev.Job.Kind)
	case jobs.EventFailed:
		o.rec.Record(ctx, messages.JobFailed, ev.Job.ID, ev.Job.Name, ev.Run.Reason)
	}
	// A finished job's summary is recorded by its executor, which knows
	// what it did.
}

// jobDeps is what the job executors work with.
type jobDeps struct {
	cat       *catalog.Catalog
	images    *recovery.Service
	store     *diskstore.Store
	storePath string
	local     func(host string) bool
	agents    restorejob.Agents
	readers   backup.Reader
	scenarios restorejob.Scenarios
	handlers  recovery.Handlers
	rules     retention.Rules
	secrets   *jobsecrets.Secrets
	log       *activity.Log
}

// granular asks a scenario type's handler whether its entities restore
// file by file.
func granular(h recovery.Handlers) func(ctx context.Context, typ string) (bool, error) {
	return func(ctx context.Context, typ string) (bool, error) {
		sh, err := h.ScenarioHandler(typ)
		if err != nil {
			return false, err
		}
		info, err := sh.Describe(ctx)
		if err != nil {
			return false, err
		}
		return slices.Contains(info.Capabilities, sdk.CapabilityGranularRestore), nil
	}
}

// startJobs opens the job queue with the backup and restore executors and
// runs its scheduler until stop is called.
func startJobs(ctx context.Context, d jobDeps, logger *slog.Logger) (*jobs.Queue, func(), error) {
	log := d.log
	// The backup executor gets the queue for its child jobs once it is open.
	backups := &backup.Executor{Images: d.images, Store: d.store, Catalog: d.cat, Rec: log, Media: "disk store " + d.storePath, Secrets: d.secrets,
		Agents: d.readers, Local: d.local}
	q, err := jobs.Open(jobs.Config{
		Catalog: d.cat,
		Executors: map[string]jobs.Executor{
			backup.Kind: backups,
			restorejob.Kind: &restorejob.Executor{Store: d.store, Catalog: d.cat, Rec: log, Local: d.local,
				Agents: d.agents, Scenarios: d.scenarios, Granular: granular(d.handlers), Secrets: d.secrets},
			verifyjob.Kind: &verifyjob.Executor{Store: d.store, Catalog: d.cat, Rec: log},
			retention.Kind: &retention.Executor{Store: d.store, Catalog: d.cat, Rules: d.rules, Rec: log},
		},
		Observer: jobEvents{rec: log},
		Logger:   logger.With("component", "jobs"),
	})
	if err != nil {
		return nil, nil, err
	}
	backups.Children = q
	qctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := q.Run(qctx, time.Second); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, jobs.ErrClosed) {
			logger.Error("job scheduler stopped", "err", err)
		}
	}()
	stop := func() {
		cancel()
		q.Close()
		<-done
	}
	return q, stop, nil
}
