package daemon

import (
	"log/slog"

	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/jobs"
	"github.com/holdfast/holdfast/appliance/retention"
)

// ensurePruneJob submits the scheduled prune job ([store] prune_schedule)
// when no prune job is waiting in the queue, so retention applies without
// an operator having to think of it. An empty schedule submits none.
func ensurePruneJob(q *jobs.Queue, schedule string, logger *slog.Logger) {
	if schedule == "" {
		return
	}
	list, err := q.List(catalog.JobReady, catalog.JobHold, catalog.JobActive)
	if err != nil {
		logger.Error("list jobs for the scheduled prune", "err", err)
		return
	}
	for _, j := range list {
		if j.Kind == retention.Kind {
			return
		}
	}
	if _, err := q.Submit(jobs.Submission{Kind: retention.Kind, Name: "scheduled prune of the disk store", Owner: "holdfastd",
		Schedule: schedule, Spec: []byte("{}")}); err != nil {
		// A bad schedule in the configuration: said once, at start.
		logger.Error("submit the scheduled prune job", "schedule", schedule, "err", err)
	}
}
