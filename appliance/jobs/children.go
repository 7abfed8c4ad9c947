package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/appliance/catalog"
)

// Children lets an executor split its job into child jobs that run
// through the queue like any other (multistreaming: one child per
// scenario, run side by side up to MaxActive) and wait for them.
type Children interface {
	// SubmitChildren queues the submissions as children of parent, to run
	// now. Their Schedule and Hold are ignored.
	SubmitChildren(parent uint64, subs []Submission) ([]Job, error)
	// WaitChildren returns the children once every one is Done. While it
	// waits the parent's run does not count against MaxActive, so its
	// children can take the slot; report is called with the children's
	// summed progress now and then. When ctx ends, the children still
	// running are canceled and WaitChildren returns ctx's error.
	WaitChildren(ctx context.Context, parent uint64, ids []uint64, report func(done, total Counts)) ([]Job, error)
}

var _ Children = (*Queue)(nil)

// SubmitChildren implements Children.
func (q *Queue) SubmitChildren(parent uint64, subs []Submission) ([]Job, error) {
	out := make([]Job, 0, len(subs))
	for _, s := range subs {
		if _, ok := q.executors[s.Kind]; !ok {
			return out, fmt.Errorf("submit child of job %d: %w: %q", parent, ErrUnknownKind, s.Kind)
		}
		sched, err := ParseSchedule("now")
		if err != nil {
			return out, err
		}
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return out, fmt.Errorf("submit child of job %d: %w", parent, ErrClosed)
		}
		now := q.now().UTC()
		j := Job{
			Job: catalog.Job{ParentID: parent, Kind: s.Kind, Name: s.Name, Owner: s.Owner, ScenarioIDs: s.ScenarioIDs,
				State: catalog.JobReady, Created: now, Spec: s.Spec},
			Schedule: sched,
			NextRun:  now,
		}
		rec, err := j.record()
		if err == nil {
			rec, err = q.cat.CreateJob(rec)
		}
		q.mu.Unlock()
		if err != nil {
			return out, fmt.Errorf("submit child %q of job %d: %w", s.Name, parent, err)
		}
		j.ID = rec.ID
		out = append(out, j)
	}
	q.poke()
	return out, nil
}

// childPoll is how often WaitChildren looks at its children. Children are
// long (a scenario's backup), so a short poll costs nothing worth an event
// mechanism.
const childPoll = 100 * time.Millisecond

// WaitChildren implements Children.
func (q *Queue) WaitChildren(ctx context.Context, parent uint64, ids []uint64, report func(done, total Counts)) ([]Job, error) {
	q.setWaiting(parent, true)
	defer q.setWaiting(parent, false)
	t := time.NewTicker(childPoll)
	defer t.Stop()
	for {
		kids := make([]Job, 0, len(ids))
		var done, total Counts
		finished := 0
		for _, id := range ids {
			j, err := q.Get(id)
			if err != nil {
				return nil, fmt.Errorf("wait for child job %d of job %d: %w", id, parent, err)
			}
			kids = append(kids, j)
			switch {
			case j.State == catalog.JobDone:
				finished++
				if n := len(j.Runs); n > 0 {
					done.Bytes += j.Runs[n-1].Done.Bytes
					done.Files += j.Runs[n-1].Done.Files
					total.Bytes += j.Runs[n-1].Total.Bytes
					total.Files += j.Runs[n-1].Total.Files
				}
			case j.Live != nil:
				done.Bytes += j.Live.Done.Bytes
				done.Files += j.Live.Done.Files
				total.Bytes += j.Live.Total.Bytes
				total.Files += j.Live.Total.Files
			}
		}
		if report != nil {
			report(done, total)
		}
		if finished == len(ids) {
			return kids, nil
		}
		select {
		case <-ctx.Done():
			for _, k := range kids {
				if k.State != catalog.JobDone {
					if err := q.Cancel(k.ID); err != nil {
						q.log.Warn("cancel child job", "job", k.ID, "parent", parent, "err", err)
					}
				}
			}
			return kids, ctx.Err()
		case <-t.C:
		}
	}
}

// setWaiting marks a parent's run as waiting for its children, which frees
// its slot, and asks for a scheduler pass so that a child can take it.
func (q *Queue) setWaiting(id uint64, waiting bool) {
	q.mu.Lock()
	if r, ok := q.active[id]; ok {
		r.waiting = waiting
	}
	q.mu.Unlock()
	q.poke()
}

// running counts the runs that hold a slot. Called with q.mu held.
func (q *Queue) running() int {
	n := 0
	for _, r := range q.active {
		if !r.waiting {
			n++
		}
	}
	return n
}
