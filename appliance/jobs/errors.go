package jobs

import (
	"errors"
	"fmt"

	"github.com/holdfast/holdfast/appliance/catalog"
)

var (
	// ErrNotFound means no job has the ID given.
	ErrNotFound = errors.New("jobs: no such job")
	// ErrWrongState means the job's state does not allow the operation; the
	// error is a *StateError saying the state and what to do.
	ErrWrongState = errors.New("jobs: job is in the wrong state")
	// ErrUnknownKind means no executor is registered for the job's kind.
	ErrUnknownKind = errors.New("jobs: no executor for this kind of job")
	// ErrInvalid means a submission or change lacks something it needs.
	ErrInvalid = errors.New("jobs: invalid job")
	// ErrClosed is returned by operations on a closed queue.
	ErrClosed = errors.New("jobs: queue closed")
)

// StateError is an operation refused because of the job's state.
type StateError struct {
	Op    string // hold, release, cancel, modify, delete, rerun
	ID    uint64
	Name  string
	State catalog.JobState
	Fix   string // what the operator can do instead
}

func (e *StateError) Error() string {
	return fmt.Sprintf("cannot %s job %d (%s): it is %s; %s", e.Op, e.ID, e.Name, e.State, e.Fix)
}

func (e *StateError) Unwrap() error { return ErrWrongState }

func wrongState(op string, j Job, fix string) error {
	return &StateError{Op: op, ID: j.ID, Name: j.Name, State: j.State, Fix: fix}
}
