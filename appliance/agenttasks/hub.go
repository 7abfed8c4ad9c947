// Package agenttasks is the appliance's side of agent data tasks: a
// restore written by an agent into a directory on its host, and a read of
// an agent's directory streamed to the appliance. Agents pull, so a task
// is not sent: it waits in the Hub, appears in its host's assignments
// (Tasks), and the agent fetches its content (restore) or uploads it
// (read) on the task's stream route, then posts its result. The caller
// of Restore or Read blocks until that result, its context ends, the
// agent does not pick the task up in time, or the agent is lost.
//
// Tasks live in memory only. An appliance that restarts loses them, and
// the jobs that waited on them fail with it (the job queue marks a job
// that was Active at a restart failed); the agent then sees its task
// vanish from the assignments and abandons it.
//
// Security: the caller of a route is the host in its verified client
// certificate (mutual TLS on the agent listener); a task is served only
// to the host it was made for, to anyone else it does not exist (404).
// The stream an agent uploads is decoded with bounds (datastream.Limits)
// and never trusted; what an agent writes is confined by agent/restore on
// the agent.
package agenttasks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"sync"
	"time"

	"github.com/holdfast/holdfast/agent/control"
	"github.com/holdfast/holdfast/agent/datastream"
	"github.com/holdfast/holdfast/agent/restore"
	"github.com/holdfast/holdfast/appliance/messages"
)

// Defaults of Options.
const (
	DefaultPickupTimeout  = 2 * time.Minute
	DefaultSilenceTimeout = 30 * time.Second
	DefaultTaskDeadline   = 24 * time.Hour
	// resultGrace is how long a call whose stream broke waits for the
	// agent's own account before reporting the broken stream.
	resultGrace = 5 * time.Second
)

// Options tune a Hub.
type Options struct {
	// PickupTimeout is how long a task may wait for its agent to fetch
	// it before the call fails with HF-E5050.
	PickupTimeout time.Duration
	// SilenceTimeout is how long an agent running a task may go without
	// polling before the task is given up as lost (HF-E5054).
	SilenceTimeout time.Duration
	// TaskDeadline is the agent's deadline for a task whose context has
	// none.
	TaskDeadline time.Duration
	// Limits bound the streams agents upload.
	Limits datastream.Limits
	// Known, if set, tells whether host is an enrolled agent; tasks for
	// other hosts are refused at once (HF-E8017).
	Known  func(host string) bool
	Logger *slog.Logger
}

// Hub holds the tasks waiting for or running on agents.
type Hub struct {
	opts Options

	mu    sync.Mutex
	tasks map[string]*task
	seen  map[string]time.Time // last request of each host
}

// New returns an empty Hub.
func New(opts Options) *Hub {
	if opts.PickupTimeout <= 0 {
		opts.PickupTimeout = DefaultPickupTimeout
	}
	if opts.SilenceTimeout <= 0 {
		opts.SilenceTimeout = DefaultSilenceTimeout
	}
	if opts.TaskDeadline <= 0 {
		opts.TaskDeadline = DefaultTaskDeadline
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Hub{opts: opts, tasks: map[string]*task{}, seen: map[string]time.Time{}}
}

// Progress is how far a task's stream went: entries and content bytes
// sent to the agent (restore) or received from it (read).
type Progress struct {
	Entries int64
	Bytes   int64
}

// ProgressFunc is told the progress as the stream goes; it may be nil.
// It is called from the calling goroutine.
type ProgressFunc func(Progress)

// Result is the outcome of a task: the agent's account, and what went
// through the stream.
type Result struct {
	Task string // the task's ID
	Host string
	control.TaskResult
	Streamed Progress
}

// Problems returns the entries the agent listed, each as a message with
// its code (HF-W5052, HF-W5053, HF-W5055), for the activity log.
func (r Result) Problems() []*messages.Error {
	out := make([]*messages.Error, 0, len(r.TaskResult.Problems))
	for _, p := range r.TaskResult.Problems {
		code := messages.TaskEntryFailed
		switch p.Kind {
		case control.ProblemRefused:
			code = messages.TaskEntryRefused
		case control.ProblemUnreadable:
			code = messages.TaskEntryUnreadable
		}
		out = append(out, messages.New(code, r.Host, fmt.Sprintf("%q", p.Path), p.Error))
	}
	return out
}

// task is one task in the Hub.
type task struct {
	control.Task
	host string

	conn   chan *stream            // the stream handler hands over the connection
	result chan control.TaskResult // buffered 1
	gone   chan struct{}           // closed when the call is over
	mu     sync.Mutex
	picked bool // the stream route was used
	posted bool // a result arrived
}

// stream is a task's connection, lent by the route's handler to the
// call until the call sends on done.
type stream struct {
	w     io.Writer // restore: the response
	flush func() error
	r     io.Reader // read: the request body
	abort func()    // makes blocked I/O on the connection fail
	done  chan error
}

// Restore has host write the entries src puts into dir, with the
// overwrite policy (agent/restore's names). src calls put once per entry,
// in order, parents before what they contain; an error from put means
// the stream to the agent broke, and src should return it. The call ends
// when the agent reported its result; an error is returned when the task
// did not complete (the Result then holds what is known).
func (h *Hub) Restore(ctx context.Context, host, dir, policy string, src func(put func(datastream.Header, io.Reader) error) error, progress ProgressFunc) (Result, error) {
	if _, err := restore.ParsePolicy(policy); err != nil {
		return Result{Host: host}, messages.New(messages.BadRequest, err.Error())
	}
	t, err := h.register(ctx, host, control.Task{Kind: control.TaskRestore, Dir: dir, Policy: policy})
	if err != nil {
		return Result{Host: host}, err
	}
	defer h.remove(t)
	return h.run(ctx, t, func(s *stream, res *Result) error {
		w := datastream.NewWriter(s.w)
		put := func(hd datastream.Header, content io.Reader) error {
			if content != nil {
				content = &counting{r: content, p: &res.Streamed, progress: progress}
			}
			err := w.Put(hd, content)
			res.Streamed.Entries++
			if err == nil {
				err = s.flush()
			}
			if progress != nil {
				progress(res.Streamed)
			}
			if err != nil && !errors.Is(err, datastream.ErrContent) {
				return &brokenStream{err}
			}
			return err
		}
		if err := src(put); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return &brokenStream{err}
		}
		if err := s.flush(); err != nil {
			return &brokenStream{err}
		}
		return nil
	})
}

// Read has host stream the entries of dir (only paths below it, and
// their parents, when paths is not empty) and gives each to sink, in the
// order received, parents first. A sink error that wraps a
// *datastream.SourceError (the agent could not read that file to its
// end) concerns that entry only; any other sink error ends the task.
func (h *Hub) Read(ctx context.Context, host, dir string, paths []string, sink func(datastream.Header, io.Reader) error, progress ProgressFunc) (Result, error) {
	t, err := h.register(ctx, host, control.Task{Kind: control.TaskRead, Dir: dir, Paths: paths})
	if err != nil {
		return Result{Host: host}, err
	}
	defer h.remove(t)
	return h.run(ctx, t, func(s *stream, res *Result) error {
		r := datastream.NewReader(s.r, h.opts.Limits)
		for {
			hd, content, err := r.Next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			var fe *datastream.FormatError
			if errors.As(err, &fe) && fe.Err != nil {
				// Cut short or unreadable: the connection, not the agent's
				// data, failed.
				return &brokenStream{fmt.Errorf("stream from agent %s: %w", t.host, err)}
			}
			if err != nil {
				return messages.Wrap(err, messages.TaskFailed, t.host, string(t.Kind), t.ID, "its stream is malformed")
			}
			res.Streamed.Entries++
			if content != nil {
				content = &counting{r: content, p: &res.Streamed, progress: progress}
			}
			if err := sink(hd, content); err != nil {
				var se *datastream.SourceError
				if !errors.As(err, &se) {
					return fmt.Errorf("store %q read from agent %s: %w", hd.Path, t.host, err)
				}
			}
			if progress != nil {
				progress(res.Streamed)
			}
		}
	})
}

// Tasks returns the tasks of host for its assignments, and notes that
// host is alive.
func (h *Hub) Tasks(host string) []control.Task {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seen[host] = time.Now()
	var out []control.Task
	for _, t := range h.tasks {
		if t.host == host {
			out = append(out, t.Task)
		}
	}
	return out
}

func (h *Hub) register(ctx context.Context, host string, ct control.Task) (*task, error) {
	if host == "" {
		return nil, messages.New(messages.BadRequest, "a task needs a host")
	}
	if h.opts.Known != nil && !h.opts.Known(host) {
		return nil, messages.New(messages.AgentUnknown, host)
	}
	if ct.Dir == "" || !path.IsAbs(ct.Dir) || path.Clean(ct.Dir) != ct.Dir {
		return nil, messages.New(messages.BadRequest, fmt.Sprintf("%s directory %q on %s: want an absolute, clean path", ct.Kind, ct.Dir, host))
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("task ID: %w", err)
	}
	ct.ID = "t" + hex.EncodeToString(b[:])
	ct.Deadline = time.Now().Add(h.opts.TaskDeadline).UTC().Truncate(time.Second)
	if d, ok := ctx.Deadline(); ok {
		ct.Deadline = d.UTC()
	}
	if err := control.CheckTasks([]control.Task{ct}); err != nil {
		return nil, messages.New(messages.BadRequest, err.Error())
	}
	t := &task{Task: ct, host: host, conn: make(chan *stream), result: make(chan control.TaskResult, 1), gone: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.tasks) >= control.MaxTasks {
		return nil, messages.New(messages.BadRequest, fmt.Sprintf("%d agent tasks already wait or run; at most %d", len(h.tasks), control.MaxTasks))
	}
	h.tasks[ct.ID] = t
	h.opts.Logger.Info("agent task registered", "task", ct.ID, "kind", ct.Kind, "host", host, "dir", ct.Dir)
	return t, nil
}

func (h *Hub) remove(t *task) {
	h.mu.Lock()
	delete(h.tasks, t.ID)
	h.mu.Unlock()
	close(t.gone)
}

// lookup finds task id for host; another host's task does not exist.
func (h *Hub) lookup(id, host string) *task {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seen[host] = time.Now()
	t := h.tasks[id]
	if t == nil || t.host != host {
		return nil
	}
	return t
}

func (h *Hub) lastSeen(host string) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen[host]
}

// run waits for the agent to pick t up, lets work use the stream, and
// waits for the agent's result.
func (h *Hub) run(ctx context.Context, t *task, work func(*stream, *Result) error) (Result, error) {
	res := Result{Task: t.ID, Host: t.host}
	kind := string(t.Kind)
	pickup := time.NewTimer(h.opts.PickupTimeout)
	defer pickup.Stop()
	var s *stream
	select {
	case s = <-t.conn:
	case r := <-t.result:
		// The agent gave up before fetching anything.
		return h.finish(t, res, r)
	case <-pickup.C:
		return res, messages.New(messages.TaskNotPickedUp, t.host, kind, t.ID, h.opts.PickupTimeout)
	case <-ctx.Done():
		return res, fmt.Errorf("%s task %s on agent %s: %w", kind, t.ID, t.host, context.Cause(ctx))
	}

	// While the stream runs, a watchdog cuts it if the caller gives up
	// or the agent falls silent.
	var lost error
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		tick := time.NewTicker(h.checkEvery())
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				lost = context.Cause(ctx)
				s.abort()
				return
			case <-tick.C:
				if err := h.silent(t); err != nil {
					lost = err
					s.abort()
					return
				}
			}
		}
	}()
	streamErr := work(s, &res)
	close(stop)
	<-watched
	s.done <- streamErr // the handler may return: the connection is no longer used
	if lost != nil {
		return res, h.lostError(ctx, t, lost)
	}
	var broken *brokenStream
	if streamErr != nil && !errors.As(streamErr, &broken) {
		// The caller's source or sink failed, or the agent sent
		// garbage: its result would change nothing.
		return res, streamErr
	}

	var grace <-chan time.Time
	if streamErr != nil {
		timer := time.NewTimer(resultGrace)
		defer timer.Stop()
		grace = timer.C
	}
	tick := time.NewTicker(h.checkEvery())
	defer tick.Stop()
	for {
		select {
		case r := <-t.result:
			res, err := h.finish(t, res, r)
			if err == nil && streamErr != nil {
				// The agent completed what it got, but the stream did
				// not carry everything.
				err = messages.New(messages.TaskFailed, t.host, kind, t.ID, streamErr.Error())
			}
			return res, err
		case <-grace:
			return res, messages.New(messages.TaskAgentLost, t.host, kind, t.ID, streamErr.Error())
		case <-ctx.Done():
			return res, h.lostError(ctx, t, context.Cause(ctx))
		case <-tick.C:
			if err := h.silent(t); err != nil {
				return res, h.lostError(ctx, t, err)
			}
		}
	}
}

func (h *Hub) checkEvery() time.Duration {
	return min(time.Second, h.opts.SilenceTimeout/4)
}

// silent says why t's agent counts as lost, or nil.
func (h *Hub) silent(t *task) error {
	if since := time.Since(h.lastSeen(t.host)); since > h.opts.SilenceTimeout {
		return fmt.Errorf("no request from the agent for %s", since.Round(time.Second))
	}
	return nil
}

func (h *Hub) lostError(ctx context.Context, t *task, why error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s task %s on agent %s: %w", t.Kind, t.ID, t.host, why)
	}
	return messages.New(messages.TaskAgentLost, t.host, string(t.Kind), t.ID, why.Error())
}

func (h *Hub) finish(t *task, res Result, r control.TaskResult) (Result, error) {
	res.TaskResult = r
	h.opts.Logger.Info("agent task finished", "task", res.Task, "host", res.Host,
		"written", r.Written, "skipped", r.Skipped, "failed", r.Failed, "bytes", r.Bytes, "error", r.Error)
	if r.Error != "" {
		return res, messages.New(messages.TaskFailed, res.Host, string(t.Kind), res.Task, r.Error)
	}
	return res, nil
}

// brokenStream marks an error of the connection itself: the agent may
// still say what happened, so its result is awaited a little.
type brokenStream struct{ err error }

func (e *brokenStream) Error() string { return e.err.Error() }
func (e *brokenStream) Unwrap() error { return e.err }

// counting counts content bytes as they are read and reports progress
// at most every progressStep bytes.
type counting struct {
	r        io.Reader
	p        *Progress
	progress ProgressFunc
	unshown  int64
}

const progressStep = 1 << 20

func (c *counting) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.Bytes += int64(n)
	c.unshown += int64(n)
	if c.progress != nil && c.unshown >= progressStep {
		c.unshown = 0
		c.progress(*c.p)
	}
	return n, err
}
