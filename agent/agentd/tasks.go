package agentd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/holdfast/holdfast/agent/control"
	"github.com/holdfast/holdfast/internal/atomicfile"
)

// TasksFile, in the state directory, remembers which data tasks were
// started and which finished, so a restarted agent neither redoes a
// finished restore nor leaves the appliance waiting on one it lost.
const TasksFile = "tasks.json"

// Bounds of the remembered finished tasks.
const (
	keepFinished    = 7 * 24 * time.Hour
	maxFinished     = 1000
	interruptedText = "holdfast-agent stopped (crash or restart) while the task ran; it did not finish"
)

// taskState is TasksFile's content.
type taskState struct {
	Started  map[string]time.Time `json:"started"`
	Finished map[string]time.Time `json:"finished"`
}

// tasks runs the data tasks of the assignments, each ID once.
type tasks struct {
	client *control.Client
	dir    string
	log    *slog.Logger

	mu          sync.Mutex
	state       taskState
	running     map[string]context.CancelFunc
	unsent      map[string]control.TaskResult // results the appliance has not taken yet
	interrupted map[string]bool               // started before this process and never finished
	wg          sync.WaitGroup
}

func newTasks(client *control.Client, dir string, log *slog.Logger) *tasks {
	ts := &tasks{client: client, dir: dir, log: log, running: map[string]context.CancelFunc{},
		unsent: map[string]control.TaskResult{}, interrupted: map[string]bool{}}
	st, err := loadTaskState(dir)
	if err != nil {
		// Forgetting finished tasks only risks redoing one the
		// appliance still lists, which it does not once it has the
		// result.
		log.Warn("task state unreadable; starting afresh", "err", err)
	}
	ts.state = st
	for id := range st.Started {
		if _, done := st.Finished[id]; !done {
			ts.interrupted[id] = true
		}
	}
	return ts
}

// apply starts the tasks not seen before, abandons running tasks the
// appliance no longer lists, reports interrupted ones, and sends again
// results that did not arrive.
func (ts *tasks) apply(ctx context.Context, list []control.Task) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	listed := make(map[string]bool, len(list))
	for _, t := range list {
		listed[t.ID] = true
	}
	for id, cancel := range ts.running {
		if !listed[id] {
			ts.log.Info("task no longer assigned; abandoning it", "task", id)
			cancel()
		}
	}
	for id := range ts.interrupted {
		if !listed[id] {
			delete(ts.interrupted, id)
			ts.finishedLocked(id)
		}
	}
	for id, res := range ts.unsent {
		if !listed[id] {
			delete(ts.unsent, id)
			continue
		}
		ts.sendLocked(ctx, id, res)
	}
	for _, t := range list {
		switch {
		case ts.running[t.ID] != nil:
		case ts.interrupted[t.ID]:
			delete(ts.interrupted, t.ID)
			ts.finishedLocked(t.ID)
			ts.log.Warn("reporting a task interrupted by a restart", "task", t.ID, "kind", t.Kind)
			ts.sendLocked(ctx, t.ID, control.TaskResult{Error: interruptedText})
		case ts.isFinishedLocked(t.ID):
		default:
			ts.startLocked(ctx, t)
		}
	}
}

func (ts *tasks) isFinishedLocked(id string) bool {
	_, ok := ts.state.Finished[id]
	return ok
}

func (ts *tasks) startLocked(ctx context.Context, t control.Task) {
	if ts.state.Started == nil {
		ts.state.Started = map[string]time.Time{}
	}
	ts.state.Started[t.ID] = time.Now().UTC()
	if err := saveTaskState(ts.dir, ts.state); err != nil {
		// Without the record a crash would go unreported: do not start.
		ts.log.Error("cannot record the task's start; not starting it", "task", t.ID, "err", err)
		delete(ts.state.Started, t.ID)
		return
	}
	tctx, cancel := context.WithDeadline(ctx, t.Deadline)
	ts.running[t.ID] = cancel
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		defer cancel()
		log := ts.log.With("task", t.ID, "kind", t.Kind, "dir", t.Dir)
		log.Info("task started")
		var res control.TaskResult
		switch t.Kind {
		case control.TaskRestore:
			res = ts.restore(tctx, t)
		case control.TaskRead:
			res = ts.read(tctx, t)
		}
		if res.Error == "" && tctx.Err() != nil {
			res.Error = "task ended early: " + context.Cause(tctx).Error()
		}
		log.Info("task finished", "written", res.Written, "skipped", res.Skipped, "failed", res.Failed, "bytes", res.Bytes, "error", res.Error)
		ts.mu.Lock()
		defer ts.mu.Unlock()
		delete(ts.running, t.ID)
		ts.finishedLocked(t.ID)
		// The result goes even when the agent is stopping: the
		// appliance waits for it.
		ts.sendLocked(context.WithoutCancel(ctx), t.ID, res)
	}()
}

// sendLocked posts a result; one the appliance did not receive is kept
// for the next poll, one it refused is dropped.
func (ts *tasks) sendLocked(ctx context.Context, id string, res control.TaskResult) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := ts.client.TaskResult(ctx, id, res)
	var refused *control.RefusedError
	switch {
	case err == nil:
		delete(ts.unsent, id)
	case errors.As(err, &refused):
		ts.log.Warn("appliance refused a task result", "task", id, "err", err)
		delete(ts.unsent, id)
	default:
		ts.log.Warn("task result not delivered; will retry", "task", id, "err", err)
		ts.unsent[id] = res
	}
}

// finishedLocked records id as done for good.
func (ts *tasks) finishedLocked(id string) {
	if ts.state.Finished == nil {
		ts.state.Finished = map[string]time.Time{}
	}
	now := time.Now().UTC()
	ts.state.Finished[id] = now
	delete(ts.state.Started, id)
	for old, at := range ts.state.Finished {
		if now.Sub(at) > keepFinished {
			delete(ts.state.Finished, old)
		}
	}
	for len(ts.state.Finished) > maxFinished {
		oldest, at := "", now
		for k, v := range ts.state.Finished {
			if !v.After(at) {
				oldest, at = k, v
			}
		}
		delete(ts.state.Finished, oldest)
	}
	if err := saveTaskState(ts.dir, ts.state); err != nil {
		ts.log.Error("cannot record a finished task", "task", id, "err", err)
	}
}

// stop abandons the running tasks and waits for them.
func (ts *tasks) stop() {
	ts.mu.Lock()
	for _, cancel := range ts.running {
		cancel()
	}
	ts.mu.Unlock()
	ts.wg.Wait()
}

func loadTaskState(dir string) (taskState, error) {
	b, err := os.ReadFile(filepath.Join(dir, TasksFile))
	if errors.Is(err, os.ErrNotExist) {
		return taskState{}, nil
	}
	if err != nil {
		return taskState{}, err
	}
	var st taskState
	if err := json.Unmarshal(b, &st); err != nil {
		return taskState{}, fmt.Errorf("%s: %w", TasksFile, err)
	}
	for id := range st.Started {
		if control.CheckTaskID(id) != nil {
			delete(st.Started, id)
		}
	}
	return st, nil
}

func saveTaskState(dir string, st taskState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode task state: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, TasksFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save task state: %w", err)
	}
	return nil
}
