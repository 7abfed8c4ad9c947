package jobs

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/appliance/catalog"
)

// maxRuns bounds the run history kept per job, so a job repeating every few
// minutes for years does not grow its record without end.
const maxRuns = 100

// Run is one run of a job, as the queue recorded it.
type Run struct {
	Due      time.Time         `json:"due"` // when the schedule made it due
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Result   catalog.JobResult `json:"result"`
	Reason   string            `json:"reason,omitempty"` // why it failed or was cut short
	Done     Counts            `json:"done"`             // last progress the executor reported
	Total    Counts            `json:"total"`
}

// queueRecord is what the queue keeps in catalog.Job.Spec: the catalog's Job
// record has no schedule, next-run or history fields, and its encoding is not
// ours to change, so they travel here as JSON around the caller's payload.
type queueRecord struct {
	Schedule string    `json:"schedule"`
	NextRun  time.Time `json:"next_run,omitzero"`
	Runs     []Run     `json:"runs,omitempty"`
	Payload  []byte    `json:"payload,omitempty"`
}

// Job is a job as the queue shows it. The embedded catalog.Job's Spec holds
// the caller's payload (what Submit was given), not the stored record.
type Job struct {
	catalog.Job
	Schedule Schedule
	NextRun  time.Time // when a Ready or held job is due; zero once Done
	Runs     []Run     // oldest first, at most the latest 100
	Live     *Status   // progress of the run under way, for an Active job
}

func decodeJob(rec catalog.Job) (Job, queueRecord, error) {
	var qr queueRecord
	if err := json.Unmarshal(rec.Spec, &qr); err != nil {
		return Job{}, qr, fmt.Errorf("job %d: stored queue record: %w", rec.ID, err)
	}
	s, err := ParseSchedule(qr.Schedule)
	if err != nil {
		return Job{}, qr, fmt.Errorf("job %d: stored schedule: %w", rec.ID, err)
	}
	j := Job{Job: rec, Schedule: s, NextRun: qr.NextRun, Runs: qr.Runs}
	j.Job.Spec = qr.Payload
	return j, qr, nil
}

// record is the catalog form of j.
func (j Job) record() (catalog.Job, error) {
	qr := queueRecord{Schedule: j.Schedule.String(), NextRun: j.NextRun, Runs: j.Runs, Payload: j.Job.Spec}
	if n := len(qr.Runs); n > maxRuns {
		qr.Runs = qr.Runs[n-maxRuns:]
	}
	spec, err := json.Marshal(qr)
	if err != nil {
		return catalog.Job{}, fmt.Errorf("job %d: encode queue record: %w", j.ID, err)
	}
	rec := j.Job
	rec.Spec = spec
	return rec, nil
}
