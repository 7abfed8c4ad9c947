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
	"time"

	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/backup"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/diskstore"
	"github.com/holdfast/holdfast/appliance/jobs"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/recovery"
	"github.com/holdfast/holdfast/appliance/restorejob"
	"github.com/holdfast/holdfast/appliance/retention"
	"github.com/holdfast/holdfast/appliance/verifyjob"
	"github.com/holdfast/holdfast/internal/atomicfile"
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

// startJobs opens the job queue with the backup executor and runs its
// scheduler until stop is called.
func startJobs(ctx context.Context, cat *catalog.Catalog, rec *recovery.Service, store *diskstore.Store, local func(string) bool, log *activity.Log, logger *slog.Logger, rules retention.Rules) (*jobs.Queue, func(), error) {
	q, err := jobs.Open(jobs.Config{
		Catalog: cat,
		Executors: map[string]jobs.Executor{
			backup.Kind:     &backup.Executor{Images: rec, Store: store, Catalog: cat, Rec: log},
			restorejob.Kind: &restorejob.Executor{Store: store, Catalog: cat, Rec: log, Local: local},
			verifyjob.Kind:  &verifyjob.Executor{Store: store, Catalog: cat, Rec: log},
			retention.Kind:  &retention.Executor{Store: store, Catalog: cat, Rules: rules, Rec: log},
		},
		Observer: jobEvents{rec: log},
		Logger:   logger.With("component", "jobs"),
	})
	if err != nil {
		return nil, nil, err
	}
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
