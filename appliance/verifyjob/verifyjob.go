// Package verifyjob runs verify jobs: every chunk of the chosen backup
// sessions is read back from the disk store and checked (decryption,
// decompression, chunk id), and every fault goes to the activity log
// naming the session, the file and the offset. A password-protected
// session is checked chunk by chunk without its password, so its faults
// name the chunk instead of the file.
package verifyjob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/diskstore"
	"github.com/holdfast/holdfast/appliance/jobs"
	"github.com/holdfast/holdfast/appliance/messages"
)

// Kind is the job kind this package executes.
const Kind = "verify"

// Spec is a verify job's payload: catalog session ids, or every session,
// or every session of one scenario.
type Spec struct {
	Sessions []uint64 `json:"sessions,omitempty"`
	All      bool     `json:"all,omitempty"`
	Scenario string   `json:"scenario,omitempty"`
}

// Check says what is wrong with a spec, for the API to refuse it early.
func (s Spec) Check() error {
	n := 0
	if len(s.Sessions) > 0 {
		n++
	}
	if s.All {
		n++
	}
	if s.Scenario != "" {
		n++
	}
	if n != 1 {
		return errors.New("verify: choose exactly one of sessions, all or scenario")
	}
	return nil
}

// Catalog is the part of the catalog a verify job reads.
type Catalog interface {
	Session(id uint64) (catalog.Session, error)
	Sessions() ([]catalog.Session, error)
	Scenario(name string) (catalog.Scenario, error)
}

// Executor runs verify jobs.
type Executor struct {
	Store   *diskstore.Store
	Catalog Catalog
	Rec     activity.Recorder
}

var _ jobs.Executor = (*Executor)(nil)

// Run verifies the job's sessions one after another. The job ends
// Incomplete when any fault was found, Completed otherwise; progress is
// in bytes (and files) of the sessions verified.
func (e *Executor) Run(ctx context.Context, job catalog.Job, progress jobs.Progress) (catalog.JobResult, error) {
	var spec Spec
	if err := json.Unmarshal(job.Spec, &spec); err != nil {
		return catalog.ResultFailed, fmt.Errorf("verify job %d: bad spec: %w", job.ID, err)
	}
	if err := spec.Check(); err != nil {
		return catalog.ResultFailed, fmt.Errorf("verify job %d: %w", job.ID, err)
	}
	ctx = activity.WithJob(ctx, job.ID)
	sessions, err := e.sessions(spec)
	if err != nil {
		return catalog.ResultFailed, fmt.Errorf("verify job %d: %w", job.ID, err)
	}
	start := time.Now()
	var done, total jobs.Counts
	for _, s := range sessions {
		total.Bytes += int64(s.Bytes)
		total.Files += int64(s.Files)
	}
	progress.Set(done, total)
	problems, bad := 0, 0
	for _, s := range sessions {
		if err := ctx.Err(); err != nil {
			return catalog.ResultCanceled, err
		}
		n := e.session(ctx, job, s)
		problems += n
		if n > 0 {
			bad++
		}
		done.Bytes += int64(s.Bytes)
		done.Files += int64(s.Files)
		progress.Set(done, total)
	}
	result := catalog.ResultCompleted
	if problems > 0 {
		result = catalog.ResultIncomplete
	}
	e.Rec.Record(ctx, messages.JobFinished, job.ID, job.Name, result,
		fmt.Sprintf("%d sessions, %d bytes verified in %s: %d sessions with %d problems", len(sessions), done.Bytes,
			time.Since(start).Round(time.Millisecond), bad, problems))
	return result, nil
}

// session verifies one session and logs its faults; it returns how many.
func (e *Executor) session(ctx context.Context, job catalog.Job, s catalog.Session) int {
	if s.Stored == "" {
		e.Rec.Record(ctx, messages.VerifyUnreadable, job.ID, s.ID, "-", errors.New("the session names no stored session"))
		return 1
	}
	problems, err := e.Store.Verify(s.Stored)
	if err != nil {
		e.Rec.Record(ctx, messages.VerifyUnreadable, job.ID, s.ID, s.Stored, err)
		return 1
	}
	for _, p := range problems {
		switch {
		case p.Chunk != "":
			e.Rec.Record(ctx, messages.VerifyChunkProblem, job.ID, s.ID, s.Stored, p.Chunk, p.Err)
		case p.Path == "":
			e.Rec.Record(ctx, messages.VerifyUnreadable, job.ID, s.ID, s.Stored, p.Err)
		default:
			e.Rec.Record(ctx, messages.VerifyProblem, job.ID, s.ID, s.Stored, p.Path, p.Offset, p.Err)
		}
	}
	return len(problems)
}

func (e *Executor) sessions(spec Spec) ([]catalog.Session, error) {
	if len(spec.Sessions) > 0 {
		var out []catalog.Session
		for _, id := range spec.Sessions {
			s, err := e.Catalog.Session(id)
			if err != nil {
				return nil, fmt.Errorf("session %d: %w", id, err)
			}
			out = append(out, s)
		}
		return out, nil
	}
	all, err := e.Catalog.Sessions()
	if err != nil {
		return nil, err
	}
	if spec.All {
		return all, nil
	}
	sc, err := e.Catalog.Scenario(spec.Scenario)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", spec.Scenario, err)
	}
	var out []catalog.Session
	for _, s := range all {
		if s.ScenarioID == sc.ID {
			out = append(out, s)
		}
	}
	return out, nil
}
