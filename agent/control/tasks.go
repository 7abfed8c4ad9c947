package control

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/restore"
)

// Data tasks: work on files an agent does once and reports, beside the
// roles it runs continuously. The task's content travels on its own
// routes as an agent/datastream stream: the agent fetches a restore's
// entries with GET and sends a read directory's with POST, then posts
// its TaskResult. {id} is the task's ID; only the host the task is for
// may use them.
const (
	TaskStreamPattern = "/agent/v1/tasks/{id}/stream"
	TaskResultPattern = "/agent/v1/tasks/{id}/result"
)

// TaskStreamPath and TaskResultPath are the routes of task id.
func TaskStreamPath(id string) string { return "/agent/v1/tasks/" + id + "/stream" }

// TaskResultPath is the route an agent posts task id's outcome to.
func TaskResultPath(id string) string { return "/agent/v1/tasks/" + id + "/result" }

// TaskKind names what a task does.
type TaskKind string

// Kinds of tasks.
const (
	// TaskRestore: write the entries the appliance streams below Dir,
	// through agent/restore with Policy.
	TaskRestore TaskKind = "restore"
	// TaskRead: stream Dir's entries (or only Paths below it) to the
	// appliance.
	TaskRead TaskKind = "read"
)

// Bounds of tasks and their results.
const (
	MaxTasks     = 256
	MaxTaskPaths = 1024
	// MaxProblems bounds the entries a TaskResult lists; the rest are
	// counted in LeftOut.
	MaxProblems = 200
)

// Task is one data task for the host that receives it.
type Task struct {
	ID     string   `json:"id"`
	Kind   TaskKind `json:"kind"`
	Dir    string   `json:"dir"`              // absolute, clean directory on the agent
	Policy string   `json:"policy,omitempty"` // restore: an agent/restore policy name
	// Paths, for a read, limits it to these entries (relative, clean)
	// and what is below them; empty reads all of Dir.
	Paths    []string  `json:"paths,omitempty"`
	Deadline time.Time `json:"deadline"` // the agent gives up after it
}

// TaskResult is an agent's outcome of one task. Counts are of entries:
// for a restore, written (new names included), skipped by the policy,
// and failed; for a read, streamed, skipped (sockets, devices, FIFOs)
// and unreadable.
type TaskResult struct {
	Written  int64         `json:"written"`
	Skipped  int64         `json:"skipped"`
	Failed   int64         `json:"failed"`
	Bytes    int64         `json:"bytes"` // content bytes written or streamed
	Problems []TaskProblem `json:"problems,omitempty"`
	LeftOut  int64         `json:"left_out,omitempty"` // problems beyond MaxProblems
	// Error, when not empty, says why the task as a whole failed.
	Error string `json:"error,omitempty"`
}

// TaskProblem is one entry that did not go as asked.
type TaskProblem struct {
	Path  string      `json:"path"`
	Kind  ProblemKind `json:"kind"`
	Error string      `json:"error"`
}

// ProblemKind classifies a TaskProblem.
type ProblemKind string

// Kinds of problems.
const (
	// ProblemRefused: the restore writer refused the entry (a name that
	// leaves the destination, a symlink or file in the way).
	ProblemRefused ProblemKind = "refused"
	// ProblemFailed: writing the entry failed (no space, I/O error).
	ProblemFailed ProblemKind = "failed"
	// ProblemUnreadable: a read could not read the entry.
	ProblemUnreadable ProblemKind = "unreadable"
	// ProblemIncomplete: the sender could not read the entry's content,
	// so it was not restored.
	ProblemIncomplete ProblemKind = "incomplete"
)

// AddProblem records p, keeping at most MaxProblems and counting the
// rest. Path and text are made printable first.
func (r *TaskResult) AddProblem(p TaskProblem) {
	if len(r.Problems) >= MaxProblems {
		r.LeftOut++
		return
	}
	p.Path, p.Error = Printable(p.Path), Printable(p.Error)
	r.Problems = append(r.Problems, p)
}

// CheckTasks refuses tasks an agent must not act on.
func CheckTasks(ts []Task) error {
	if len(ts) > MaxTasks {
		return fmt.Errorf("%d tasks; at most %d", len(ts), MaxTasks)
	}
	seen := map[string]bool{}
	for i, t := range ts {
		f := fmt.Sprintf("tasks[%d]", i)
		if err := CheckTaskID(t.ID); err != nil {
			return fmt.Errorf("%s.id: %w", f, err)
		}
		if seen[t.ID] {
			return fmt.Errorf("%s.id: %q appears twice", f, t.ID)
		}
		seen[t.ID] = true
		if err := checkDir(f+".dir", t.Dir); err != nil {
			return err
		}
		if t.Deadline.IsZero() {
			return fmt.Errorf("%s.deadline: missing", f)
		}
		switch t.Kind {
		case TaskRestore:
			if _, err := restore.ParsePolicy(t.Policy); err != nil {
				return fmt.Errorf("%s.policy: %w", f, err)
			}
			if len(t.Paths) != 0 {
				return fmt.Errorf("%s.paths: only a read takes paths", f)
			}
		case TaskRead:
			if t.Policy != "" {
				return fmt.Errorf("%s.policy: only a restore takes a policy", f)
			}
			if len(t.Paths) > MaxTaskPaths {
				return fmt.Errorf("%s.paths: %d; at most %d", f, len(t.Paths), MaxTaskPaths)
			}
			for j, p := range t.Paths {
				if err := change.ValidPath(p); err != nil {
					return fmt.Errorf("%s.paths[%d]: %w", f, j, err)
				}
				if err := checkText(fmt.Sprintf("%s.paths[%d]", f, j), p); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("%s.kind: %q; want restore or read", f, t.Kind)
		}
	}
	return nil
}

// CheckTaskID accepts what IDs look like: 1 to 64 lower-case letters,
// digits, '.', '_' and '-' (safe in a URL path and a file name).
func CheckTaskID(id string) error {
	if err := checkSession(id); err != nil {
		return err
	}
	if strings.Trim(id, ".") == "" {
		return fmt.Errorf("%q: not a task ID", id)
	}
	return nil
}

// Check refuses results the appliance must not record.
func (r TaskResult) Check() error {
	if r.Written < 0 || r.Skipped < 0 || r.Failed < 0 || r.Bytes < 0 || r.LeftOut < 0 {
		return errors.New("negative count")
	}
	if len(r.Problems) > MaxProblems {
		return fmt.Errorf("%d problems; at most %d", len(r.Problems), MaxProblems)
	}
	if err := checkText("error", r.Error); err != nil {
		return err
	}
	for i, p := range r.Problems {
		f := fmt.Sprintf("problems[%d]", i)
		switch p.Kind {
		case ProblemRefused, ProblemFailed, ProblemUnreadable, ProblemIncomplete:
		default:
			return fmt.Errorf("%s.kind: %q", f, p.Kind)
		}
		if err := checkText(f+".path", p.Path); err != nil {
			return err
		}
		if err := checkText(f+".error", p.Error); err != nil {
			return err
		}
	}
	return nil
}
