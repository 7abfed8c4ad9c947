package agenttasks

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/holdfast/holdfast/agent/control"
	"github.com/holdfast/holdfast/agent/datastream"
)

// Handler serves the task routes (control.TaskStreamPattern with GET
// and POST, control.TaskResultPattern with POST). caller names the host
// behind a request from its verified certificate, as for
// control.Handler; requests it cannot name are refused.
func (h *Hub) Handler(caller func(*http.Request) (string, error)) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+control.TaskStreamPattern, h.withTask(caller, h.sendStream))
	mux.HandleFunc("POST "+control.TaskStreamPattern, h.withTask(caller, h.receiveStream))
	mux.HandleFunc("POST "+control.TaskResultPattern, h.withTask(caller, h.receiveResult))
	return mux
}

// withTask finds the caller's task named in the path; another host's
// task is answered as missing, not forbidden, so task IDs leak nothing.
func (h *Hub) withTask(caller func(*http.Request) (string, error), serve func(http.ResponseWriter, *http.Request, *task)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		host, err := caller(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		id := r.PathValue("id")
		t := h.lookup(id, host)
		if t == nil {
			http.Error(w, fmt.Sprintf("no task %q for host %s (finished, given up, or never made)", id, host), http.StatusNotFound)
			return
		}
		serve(w, r, t)
	}
}

// claim marks t's stream as taken; a task's stream is used once.
func (t *task) claim(w http.ResponseWriter, kind control.TaskKind) bool {
	if t.Kind != kind {
		http.Error(w, fmt.Sprintf("task %s is a %s task", t.ID, t.Kind), http.StatusConflict)
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.picked {
		http.Error(w, fmt.Sprintf("the stream of task %s was already used", t.ID), http.StatusConflict)
		return false
	}
	t.picked = true
	return true
}

// lend hands the connection to the waiting call and waits until the call
// is done with it (a handler must not return while its writer is used).
func (t *task) lend(r *http.Request, s *stream) (lent bool, err error) {
	select {
	case t.conn <- s:
	case <-t.gone:
		return false, nil
	case <-r.Context().Done():
		return false, nil
	}
	return true, <-s.done
}

// sendStream streams a restore's entries to its agent.
func (h *Hub) sendStream(w http.ResponseWriter, r *http.Request, t *task) {
	if !t.claim(w, control.TaskRestore) {
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	s := &stream{
		w: w, flush: rc.Flush, done: make(chan error, 1),
		abort: func() { _ = rc.SetWriteDeadline(time.Now()) },
	}
	if ok, err := t.lend(r, s); ok && err != nil {
		h.opts.Logger.Warn("restore stream to agent ended early", "task", t.ID, "host", t.host, "err", err)
	}
}

// receiveStream takes a read's entries from its agent.
func (h *Hub) receiveStream(w http.ResponseWriter, r *http.Request, t *task) {
	if !t.claim(w, control.TaskRead) {
		return
	}
	rc := http.NewResponseController(w)
	s := &stream{
		r: r.Body, done: make(chan error, 1),
		abort: func() { _ = rc.SetReadDeadline(time.Now()) },
	}
	ok, err := t.lend(r, s)
	switch {
	case !ok:
		http.Error(w, fmt.Sprintf("task %s was given up", t.ID), http.StatusGone)
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	default:
		status := http.StatusInternalServerError
		var fe *datastream.FormatError
		if errors.As(err, &fe) {
			status = http.StatusBadRequest
		}
		http.Error(w, err.Error(), status)
	}
}

// receiveResult takes the agent's outcome of the task, once.
func (h *Hub) receiveResult(w http.ResponseWriter, r *http.Request, t *task) {
	res, err := control.DecodeTaskResult(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	t.mu.Lock()
	posted := t.posted
	t.posted = true
	t.mu.Unlock()
	if posted {
		http.Error(w, fmt.Sprintf("task %s already has a result", t.ID), http.StatusConflict)
		return
	}
	t.result <- res
	w.WriteHeader(http.StatusNoContent)
}
