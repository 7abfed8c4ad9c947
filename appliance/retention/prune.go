package retention

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/diskstore"
	"github.com/holdfast/holdfast/appliance/jobs"
	"github.com/holdfast/holdfast/appliance/messages"
)

// Kind is the job kind of prune jobs.
const Kind = "prune"

// Catalog is the part of the catalog a prune job reads and changes.
type Catalog interface {
	Sessions() ([]catalog.Session, error)
	DeleteSession(id uint64) error
	ScenarioByID(id uint64) (catalog.Scenario, error)
}

// Executor runs prune jobs (their spec is empty: the rules come from the
// configuration).
type Executor struct {
	Store   *diskstore.Store
	Catalog Catalog
	Rules   Rules
	Rec     activity.Recorder
	// Busy retries: Prune refuses while a backup session is open; the job
	// tries again after Backoff, doubling, Attempts times in all. Zero
	// values: 6 attempts from 10 s (about 5 minutes in all).
	Attempts int
	Backoff  time.Duration
	Now      func() time.Time // time.Now when nil
}

var _ jobs.Executor = (*Executor)(nil)

// Run deletes the expired sessions and reclaims their space.
//
// Order: a session leaves the catalog first, then the store. A crash in
// between leaves a stored session no catalog entry names — harmless (its
// chunks stay until it is deleted), and found again by 'holdfast catalog
// rebuild' — whereas the other order could leave the catalog listing a
// session whose data is gone, which a restore would find only on the day
// it is needed.
func (e *Executor) Run(ctx context.Context, job catalog.Job, progress jobs.Progress) (catalog.JobResult, error) {
	ctx = activity.WithJob(ctx, job.ID)
	now := time.Now
	if e.Now != nil {
		now = e.Now
	}
	all, err := e.Catalog.Sessions()
	if err != nil {
		return catalog.ResultFailed, fmt.Errorf("prune job %d: %w", job.ID, err)
	}
	expired := Expired(all, e.Rules, now())
	var done, total jobs.Counts
	for _, s := range expired {
		total.Files++
		total.Bytes += int64(s.Bytes)
	}
	progress.Set(done, total)
	incomplete := false
	deleted := 0
	for _, s := range expired {
		if err := ctx.Err(); err != nil {
			return catalog.ResultCanceled, err
		}
		if err := e.Catalog.DeleteSession(s.ID); err != nil {
			return catalog.ResultFailed, fmt.Errorf("prune job %d: delete session %d from the catalog: %w", job.ID, s.ID, err)
		}
		deleted++
		name := strconv.FormatUint(s.ScenarioID, 10)
		if sc, err := e.Catalog.ScenarioByID(s.ScenarioID); err == nil {
			name = sc.Name
		}
		e.Rec.Record(ctx, messages.PruneSessionExpired, job.ID, s.ID, name, s.Entity, s.Finished.Format(time.RFC3339))
		if s.Stored != "" {
			if err := e.Store.DeleteSession(s.Stored); err != nil && !errors.Is(err, diskstore.ErrNotFound) {
				incomplete = true
				e.Rec.Record(ctx, messages.PruneStoreDeleteFailed, job.ID, s.ID, s.Stored, err)
			}
		}
		done.Files++
		done.Bytes += int64(s.Bytes)
		progress.Set(done, total)
	}
	st, err := e.prune(ctx, job)
	switch {
	case errors.Is(err, diskstore.ErrBusy):
		e.Rec.Record(ctx, messages.PruneGaveUp, job.ID, e.attempts())
		incomplete = true
	case errors.Is(err, context.Canceled):
		return catalog.ResultCanceled, err
	case err != nil:
		return catalog.ResultFailed, fmt.Errorf("prune job %d: %d sessions deleted, then garbage collection failed: %w", job.ID, deleted, err)
	}
	e.Rec.Record(ctx, messages.PruneDone, job.ID, deleted, st.BytesFreed, st.PacksDeleted, st.PacksRewritten)
	result := catalog.ResultCompleted
	if incomplete {
		result = catalog.ResultIncomplete
	}
	e.Rec.Record(ctx, messages.JobFinished, job.ID, job.Name, result,
		fmt.Sprintf("%d sessions deleted, %d bytes reclaimed", deleted, st.BytesFreed))
	return result, nil
}

func (e *Executor) attempts() int {
	if e.Attempts <= 0 {
		return 6
	}
	return e.Attempts
}

// prune runs the store's garbage collection, waiting while backups write.
func (e *Executor) prune(ctx context.Context, job catalog.Job) (diskstore.PruneStats, error) {
	delay := e.Backoff
	if delay <= 0 {
		delay = 10 * time.Second
	}
	n := e.attempts()
	for attempt := 1; ; attempt++ {
		st, err := e.Store.Prune()
		if !errors.Is(err, diskstore.ErrBusy) || attempt == n {
			return st, err
		}
		e.Rec.Record(ctx, messages.PruneBusy, job.ID, delay, attempt, n)
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(delay):
		}
		delay *= 2
	}
}
