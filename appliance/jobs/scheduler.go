package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/holdfast/holdfast/appliance/catalog"
)

// Tick is one scheduler pass: it starts the Ready jobs that are due, oldest
// run time first, while fewer than MaxActive run, and returns the IDs of
// those it started.
// Run calls it periodically; tests call it after moving their fake clock.
func (q *Queue) Tick() ([]uint64, error) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, ErrClosed
	}
	now := q.now().UTC()
	ready, err := q.list([]catalog.JobState{catalog.JobReady})
	if err != nil {
		q.mu.Unlock()
		return nil, fmt.Errorf("scheduler pass: %w", err)
	}
	slices.SortStableFunc(ready, func(a, b Job) int { return a.NextRun.Compare(b.NextRun) })
	var started []uint64
	var events []Event
	for _, j := range ready {
		if q.running() >= q.maxActive || j.NextRun.After(now) {
			break
		}
		ev, err := q.start(j, now)
		if err != nil {
			q.mu.Unlock()
			q.notify(events...)
			return started, fmt.Errorf("scheduler pass: %w", err)
		}
		if ev.Kind == EventStarted {
			started = append(started, j.ID)
		}
		events = append(events, ev)
	}
	q.mu.Unlock()
	q.notify(events...)
	return started, nil
}

// Run calls Tick every interval, and at once when a job is submitted,
// released, modified or ends, until ctx is done. A failed pass is logged and
// retried at the next one.
func (q *Queue) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := q.Tick(); err != nil {
			if errors.Is(err, ErrClosed) {
				return err
			}
			q.log.Error("job scheduler pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-q.wake:
		}
	}
}

// start makes j Active and runs its executor. Called with q.mu held.
func (q *Queue) start(j Job, now time.Time) (Event, error) {
	exec, ok := q.executors[j.Kind]
	if !ok {
		// Registered at submit time but not in this build's wiring: end the
		// job rather than retry it forever.
		run := Run{Due: j.NextRun, Started: now, Finished: now, Result: catalog.ResultFailed,
			Reason: fmt.Sprintf("no executor for job kind %q", j.Kind)}
		j, err := q.endRun(j, run, true)
		if err != nil {
			return Event{}, err
		}
		return Event{Kind: EventFailed, Job: j.Job, Run: run}, nil
	}
	due := j.NextRun
	j.State = catalog.JobActive
	j.Started = now
	j.Finished = time.Time{}
	j.Result = catalog.ResultNone
	if err := q.put(j); err != nil {
		return Event{}, fmt.Errorf("start job %d: %w", j.ID, err)
	}
	ctx, cancel := context.WithCancel(q.base)
	r := &activeRun{cancel: cancel, due: due, progress: &tracker{started: now}}
	q.active[j.ID] = r
	q.runs.Add(1)
	go q.execute(ctx, exec, j, r)
	return Event{Kind: EventStarted, Job: j.Job, Run: Run{Due: due, Started: now}}, nil
}

func (q *Queue) execute(ctx context.Context, exec Executor, j Job, r *activeRun) {
	defer q.runs.Done()
	defer r.cancel()
	result, err := runExecutor(ctx, exec, j.Job, r.progress)

	q.mu.Lock()
	delete(q.active, j.ID)
	run := Run{Due: r.due, Started: j.Started, Finished: q.now().UTC()}
	run.Done, run.Total = r.progress.counts()
	run.Result, run.Reason = outcome(result, err)
	final := false
	switch {
	case r.canceled && run.Result != catalog.ResultCompleted:
		run.Result, final = catalog.ResultCanceled, true
		if run.Reason == "" {
			run.Reason = "canceled by an operator"
		}
	case q.base.Err() != nil && run.Result != catalog.ResultCompleted:
		run.Result, run.Reason = catalog.ResultFailed, stoppedReason
	case r.canceled:
		final = true // completed as the cancel came; still not to run again
	}
	// The job is Active, so no operation has touched its record meanwhile.
	current, gerr := q.get(j.ID)
	if gerr == nil {
		current, gerr = q.endRun(current, run, final)
	}
	q.mu.Unlock()
	if gerr != nil {
		q.log.Error("record the end of a job run", "job", j.ID, "result", run.Result, "err", gerr)
		return
	}
	kind := EventFinished
	if run.Result == catalog.ResultFailed {
		kind = EventFailed
	}
	q.notify(Event{Kind: kind, Job: current.Job, Run: run})
	q.poke()
}

// runExecutor turns an executor's panic into a failed run.
func runExecutor(ctx context.Context, exec Executor, job catalog.Job, p Progress) (result catalog.JobResult, err error) {
	defer func() {
		if v := recover(); v != nil {
			result, err = catalog.ResultFailed, fmt.Errorf("executor panicked: %v", v)
		}
	}()
	return exec.Run(ctx, job, p)
}

func outcome(result catalog.JobResult, err error) (catalog.JobResult, string) {
	switch {
	case err != nil && (result == catalog.ResultNone || result == catalog.ResultCompleted):
		return catalog.ResultFailed, err.Error()
	case err != nil:
		return result, err.Error()
	case result == catalog.ResultNone:
		return catalog.ResultCompleted, ""
	}
	return result, ""
}

// endRun records a run's end on j: Ready at its next run time when the
// schedule repeats and the run was not the last (final), Done otherwise.
// Called with q.mu held, or before the queue is shared.
func (q *Queue) endRun(j Job, run Run, final bool) (Job, error) {
	j.Runs = append(j.Runs, run)
	if n := len(j.Runs); n > maxRuns {
		j.Runs = j.Runs[n-maxRuns:]
	}
	j.Finished = run.Finished
	j.Result = run.Result
	j.State = catalog.JobDone
	j.NextRun = time.Time{}
	if !final {
		if next, ok := j.Schedule.After(run.Due, run.Finished, q.loc); ok {
			j.State = catalog.JobReady
			j.NextRun = next.UTC()
		}
	}
	j.Live = nil
	if err := q.put(j); err != nil {
		return Job{}, fmt.Errorf("record end of job %d: %w", j.ID, err)
	}
	return j, nil
}
