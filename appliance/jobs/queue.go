package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/holdfast/holdfast/appliance/catalog"
)

// Executor runs jobs of one kind. It gets the job with Spec holding the
// payload given to Submit, reports progress as it goes, and returns how the
// run ended. It must return soon after ctx is canceled (an operator's
// cancel, or the appliance stopping). A non-nil error with an empty or
// Completed result is recorded as Failed, with the error as the reason.
type Executor interface {
	Run(ctx context.Context, job catalog.Job, progress Progress) (catalog.JobResult, error)
}

// EventKind says what happened to a job.
type EventKind int

const (
	// EventStarted: the job became Active.
	EventStarted EventKind = iota + 1
	// EventFinished: a run ended completed, incomplete or canceled.
	EventFinished
	// EventFailed: a run failed, including one cut short by a crash or stop.
	EventFailed
)

// Event is a job starting or ending, for the activity log.
type Event struct {
	Kind EventKind
	Job  catalog.Job // Spec holds the payload
	Run  Run         // the run that ended; for EventStarted only Due and Started
}

// Observer is told of job events (the appliance turns them into activity
// log entries with its own message codes). It is called without the queue's
// lock held, so it may call the queue, and must not block for long.
type Observer interface {
	JobEvent(Event)
}

// Config is what a Queue needs.
type Config struct {
	Catalog   *catalog.Catalog
	Executors map[string]Executor // by job kind
	MaxActive int                 // jobs run at once; 2 when zero
	Location  *time.Location      // for schedules' wall-clock times; time.Local when nil
	Now       func() time.Time    // time.Now when nil; tests pass a fake clock
	Observer  Observer            // optional
	Logger    *slog.Logger        // slog.Default when nil
}

// Queue is the job queue. Its methods are safe for concurrent use.
type Queue struct {
	cat       *catalog.Catalog
	executors map[string]Executor
	maxActive int
	loc       *time.Location
	now       func() time.Time
	observer  Observer
	log       *slog.Logger

	base   context.Context // parent of every run's context; canceled by Close
	stop   context.CancelFunc
	wake   chan struct{}
	runs   sync.WaitGroup
	mu     sync.Mutex // serializes read-check-write of job records
	active map[uint64]*activeRun
	closed bool
}

type activeRun struct {
	cancel   context.CancelFunc
	canceled bool // by an operator, not by Close
	due      time.Time
	progress *tracker
	waiting  bool // for its child jobs; holds no slot meanwhile
}

// stoppedReason is recorded for runs a crash or a stop cut short.
const stoppedReason = "holdfastd stopped while the job was active; it can be rerun"

// Open starts a queue on the catalog's jobs. Jobs found Active were cut
// short by a crash: each is recorded as a failed run, and then goes back to
// Ready at its next run time if its schedule repeats, or is Done/Failed.
func Open(cfg Config) (*Queue, error) {
	if cfg.Catalog == nil {
		return nil, errors.New("open job queue: no catalog")
	}
	q := &Queue{
		cat:       cfg.Catalog,
		executors: maps.Clone(cfg.Executors),
		maxActive: cfg.MaxActive,
		loc:       cfg.Location,
		now:       cfg.Now,
		observer:  cfg.Observer,
		log:       cfg.Logger,
		wake:      make(chan struct{}, 1),
		active:    map[uint64]*activeRun{},
	}
	if q.maxActive <= 0 {
		q.maxActive = 2
	}
	if q.loc == nil {
		q.loc = time.Local
	}
	if q.now == nil {
		q.now = time.Now
	}
	if q.log == nil {
		q.log = slog.Default()
	}
	q.log = q.log.With("component", "jobs")
	q.base, q.stop = context.WithCancel(context.Background())

	all, err := q.list(nil)
	if err != nil {
		return nil, fmt.Errorf("open job queue: %w", err)
	}
	var events []Event
	for _, j := range all {
		if j.State != catalog.JobActive {
			continue
		}
		run := Run{Due: j.NextRun, Started: j.Started, Finished: q.now().UTC(), Result: catalog.ResultFailed, Reason: stoppedReason}
		j, err = q.endRun(j, run, false)
		if err != nil {
			return nil, fmt.Errorf("open job queue: %w", err)
		}
		q.log.Warn("job was active when holdfastd stopped; recorded as failed", "job", j.ID, "name", j.Name, "state", j.State)
		events = append(events, Event{Kind: EventFailed, Job: j.Job, Run: run})
	}
	q.notify(events...)
	return q, nil
}

// Close cancels the runs under way and waits for their executors to return;
// those runs are recorded as failed (stopped), like after a crash.
func (q *Queue) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.stop()
	q.runs.Wait()
}

// Submission is a new job.
type Submission struct {
	Kind        string // selects the Executor
	Name        string
	Owner       string
	ScenarioIDs []uint64
	Schedule    string // see ParseSchedule; "now" when empty
	Spec        []byte // payload for the executor
	Hold        bool   // submit on hold, to be released later
}

// Submit adds a job to the queue, Ready (or Hold) until its first run time.
func (q *Queue) Submit(s Submission) (Job, error) {
	if _, ok := q.executors[s.Kind]; !ok {
		return Job{}, fmt.Errorf("submit job %q: %w: %q", s.Name, ErrUnknownKind, s.Kind)
	}
	if s.Name == "" {
		return Job{}, fmt.Errorf("submit job of kind %q: %w: it needs a name", s.Kind, ErrInvalid)
	}
	if s.Schedule == "" {
		s.Schedule = "now"
	}
	sched, err := ParseSchedule(s.Schedule)
	if err != nil {
		return Job{}, fmt.Errorf("submit job %q: %w", s.Name, err)
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return Job{}, fmt.Errorf("submit job %q: %w", s.Name, ErrClosed)
	}
	now := q.now().UTC()
	first, err := sched.First(now, q.loc)
	if err != nil {
		q.mu.Unlock()
		return Job{}, fmt.Errorf("submit job %q: %w", s.Name, err)
	}
	j := Job{
		Job: catalog.Job{Kind: s.Kind, Name: s.Name, Owner: s.Owner, ScenarioIDs: s.ScenarioIDs,
			State: catalog.JobReady, Created: now, Spec: s.Spec},
		Schedule: sched,
		NextRun:  first.UTC(),
	}
	if s.Hold {
		j.State = catalog.JobHold
	}
	rec, err := j.record()
	if err == nil {
		rec, err = q.cat.CreateJob(rec)
	}
	q.mu.Unlock()
	if err != nil {
		return Job{}, fmt.Errorf("submit job %q: %w", s.Name, err)
	}
	j.ID = rec.ID
	q.poke()
	return j, nil
}

// Get returns one job, with live progress when it is Active.
func (q *Queue) Get(id uint64) (Job, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.get(id)
}

// List returns the jobs in the given states (all jobs when none are given)
// in ID order, with live progress for Active ones.
func (q *Queue) List(states ...catalog.JobState) ([]Job, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.list(states)
}

// Progress returns the live progress of an Active job; ok is false when
// the job is not running.
func (q *Queue) Progress(id uint64) (s Status, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	r, ok := q.active[id]
	if !ok {
		return Status{}, false
	}
	return r.progress.status(q.now()), true
}

// Hold keeps a Ready job from running until it is released.
func (q *Queue) Hold(id uint64) error {
	return q.change("hold", id, func(j *Job) error {
		switch j.State {
		case catalog.JobReady:
			j.State = catalog.JobHold
			return nil
		case catalog.JobActive:
			return wrongState("hold", *j, "an active job cannot be held: cancel it, or hold it after this run")
		case catalog.JobHold:
			return wrongState("hold", *j, "it is already held: release it to let it run")
		default:
			return wrongState("hold", *j, "a done job does not run again unless rerun")
		}
	})
}

// Release lets a held job run again. If its run time passed while it was
// held, it runs at the next scheduler pass.
func (q *Queue) Release(id uint64) error {
	err := q.change("release", id, func(j *Job) error {
		if j.State != catalog.JobHold {
			return wrongState("release", *j, "only a held job can be released")
		}
		j.State = catalog.JobReady
		return nil
	})
	if err == nil {
		q.poke()
	}
	return err
}

// Cancel ends a job. An Active job's run is canceled (its executor's context
// is canceled and Cancel returns at once; the job becomes Done/Canceled when
// the executor returns); a Ready or held job becomes Done/Canceled now. A
// repeating job does not run again.
func (q *Queue) Cancel(id uint64) error {
	var events []Event
	err := q.change("cancel", id, func(j *Job) error {
		switch j.State {
		case catalog.JobActive:
			r, ok := q.active[id]
			if !ok {
				return fmt.Errorf("job %d is recorded active but no run of it is under way", id)
			}
			r.canceled = true
			r.cancel()
			return errUnchanged
		case catalog.JobReady, catalog.JobHold:
			due := j.NextRun
			j.State = catalog.JobDone
			j.Result = catalog.ResultCanceled
			j.Finished = q.now().UTC()
			j.NextRun = time.Time{}
			events = append(events, Event{Kind: EventFinished, Job: j.Job, Run: Run{Due: due, Finished: j.Finished, Result: catalog.ResultCanceled, Reason: "canceled before it ran"}})
			return nil
		default:
			return wrongState("cancel", *j, "it has already ended; delete it to remove it from the queue")
		}
	})
	q.notify(events...)
	return err
}

// Change is a modification of a job; nil fields stay as they are.
type Change struct {
	Name     *string
	Schedule *string // the next run time is computed afresh from now
	Spec     *[]byte
}

// Modify changes a job's name, schedule or payload. An Active job cannot be
// modified. A new schedule on a Done job is used when it is rerun.
func (q *Queue) Modify(id uint64, c Change) (Job, error) {
	var out Job
	err := q.change("modify", id, func(j *Job) error {
		if j.State == catalog.JobActive {
			return wrongState("modify", *j, "an active job cannot be modified: wait for this run to end, or cancel it")
		}
		if c.Name != nil {
			if *c.Name == "" {
				return fmt.Errorf("%w: a job needs a name", ErrInvalid)
			}
			j.Name = *c.Name
		}
		if c.Schedule != nil {
			s, err := ParseSchedule(*c.Schedule)
			if err != nil {
				return err
			}
			j.Schedule = s
			if j.State != catalog.JobDone {
				first, err := s.First(q.now().UTC(), q.loc)
				if err != nil {
					return err
				}
				j.NextRun = first.UTC()
			}
		}
		if c.Spec != nil {
			j.Job.Spec = *c.Spec
		}
		out = *j
		return nil
	})
	if err == nil {
		q.poke()
	}
	return out, err
}

// Rerun puts a Done job back to Ready at its schedule's first run time from
// now: a failed job can be run again, with Modify first to change its
// schedule if need be.
func (q *Queue) Rerun(id uint64) (Job, error) {
	var out Job
	err := q.change("rerun", id, func(j *Job) error {
		if j.State != catalog.JobDone {
			return wrongState("rerun", *j, "only a done job can be rerun")
		}
		first, err := j.Schedule.First(q.now().UTC(), q.loc)
		if err != nil {
			return fmt.Errorf("%w (modify the job's schedule first)", err)
		}
		j.State = catalog.JobReady
		j.Result = catalog.ResultNone
		j.NextRun = first.UTC()
		out = *j
		return nil
	})
	if err == nil {
		q.poke()
	}
	return out, err
}

// Delete removes a job that is not Active. The catalog refuses to delete a
// job that backup sessions belong to (catalog.ErrInvalid).
func (q *Queue) Delete(id uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	j, err := q.get(id)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if j.State == catalog.JobActive {
		return wrongState("delete", j, "cancel it first, then delete it once it is done")
	}
	if err := q.cat.DeleteJob(id); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	return nil
}

// errUnchanged tells change that the operation succeeded without a write.
var errUnchanged = errors.New("unchanged")

// change reads a job, lets fn check and change it, and writes it back, all
// under the queue's lock.
func (q *Queue) change(op string, id uint64, fn func(*Job) error) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	j, err := q.get(id)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := fn(&j); err != nil {
		if errors.Is(err, errUnchanged) {
			return nil
		}
		var se *StateError
		if errors.As(err, &se) {
			return err
		}
		return fmt.Errorf("%s job %d: %w", op, id, err)
	}
	if err := q.put(j); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

func (q *Queue) get(id uint64) (Job, error) {
	rec, err := q.cat.Job(id)
	if errors.Is(err, catalog.ErrNotFound) {
		return Job{}, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	if err != nil {
		return Job{}, err
	}
	j, _, err := decodeJob(rec)
	if err != nil {
		return Job{}, err
	}
	q.addLive(&j)
	return j, nil
}

func (q *Queue) list(states []catalog.JobState) ([]Job, error) {
	recs, err := q.cat.Jobs()
	if err != nil {
		return nil, err
	}
	out := []Job{}
	for _, rec := range recs {
		if len(states) > 0 && !slices.Contains(states, rec.State) {
			continue
		}
		j, _, err := decodeJob(rec)
		if err != nil {
			return nil, err
		}
		q.addLive(&j)
		out = append(out, j)
	}
	return out, nil
}

func (q *Queue) addLive(j *Job) {
	if r, ok := q.active[j.ID]; ok {
		s := r.progress.status(q.now())
		j.Live = &s
	}
}

func (q *Queue) put(j Job) error {
	rec, err := j.record()
	if err != nil {
		return err
	}
	return q.cat.PutJob(rec)
}

// poke asks a running scheduler loop for a pass now.
func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *Queue) notify(events ...Event) {
	if q.observer == nil {
		return
	}
	for _, e := range events {
		q.observer.JobEvent(e)
	}
}
