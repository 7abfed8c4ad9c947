package capture

import (
	"fmt"
	"sync"
)

// maxQueuedErrors bounds the errors held for a consumer that does not drain
// Errors; past it they are counted and reported as one summary error.
const maxQueuedErrors = 1024

// queue sits between a kernel reader and the consumer. It holds events the
// consumer has not taken yet, merges redundant ones (see push), and bounds
// what it holds (MaxPending), turning an overrun into an Overflow rather than
// blocking the kernel reader, whose own queue would then overflow anyway.
type queue struct {
	mu    sync.Mutex
	items []Event // pending, oldest first; items[0] has sequence number head
	head  uint64
	// newest maps a path to the sequence number of the newest pending event
	// naming it (as Path or OldPath).
	newest map[string]uint64
	// barrier is 1 + the sequence number of the newest pending event that
	// may move or delete paths other than its own (Renamed, Removed); 0 if
	// none is pending. Merging never reaches across one.
	barrier uint64
	// rescans holds the pending Overflow and Unwatched events by kind and
	// path: a pending one covers any later identical one, since the rescan
	// it asks for runs when it is delivered, after both.
	rescans map[rescanKey]bool
	max     int

	errs        []error
	droppedErrs int

	wake chan struct{} // capacity 1: "something was pushed"
}

type rescanKey struct {
	kind Kind
	path string
}

func newQueue(max int) *queue {
	if max <= 0 {
		max = DefaultMaxPending
	}
	return &queue{
		newest:  make(map[string]uint64),
		rescans: make(map[rescanKey]bool),
		max:     max,
		wake:    make(chan struct{}, 1),
	}
}

// push appends ev, or drops it when a pending event already covers it.
//
// The merge rule: a Modified or Attrib event for path P is dropped when the
// newest pending event naming P is an event of the same kind, a Created (or,
// for Attrib, a DirCreated) for P, and no Renamed or Removed event is pending
// after it. Such an event makes the consumer read P's current state when it
// is delivered, which includes the later change; and because nothing that
// could have moved P (or an ancestor of P) sits between them, the earlier
// position names the same object. Events already handed to the consumer are
// never merge targets, so a change made after the consumer read P's state is
// always delivered. Per-path order is otherwise exactly the kernel's order.
func (q *queue) push(ev Event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	defer q.signal()

	switch ev.Kind {
	case Modified, Attrib:
		if s, ok := q.newest[ev.Path]; ok && s+1 > q.barrier {
			p := q.items[s-q.head]
			if p.Kind == ev.Kind || p.Kind == Created || (p.Kind == DirCreated && ev.Kind == Attrib) {
				return
			}
		}
	case Overflow, Unwatched:
		if q.rescans[rescanKey{ev.Kind, ev.Path}] {
			return
		}
	}
	if len(q.items) >= q.max {
		// Everything pending is superseded by a rescan of the whole root.
		q.head += uint64(len(q.items))
		q.items = nil
		clear(q.newest)
		clear(q.rescans)
		q.barrier = 0
		ev = Event{Kind: Overflow, Time: ev.Time,
			Reason: fmt.Sprintf("capture queue reached %d pending events: the consumer fell behind", q.max)}
	}
	seq := q.head + uint64(len(q.items))
	q.items = append(q.items, ev)
	switch ev.Kind {
	case Overflow, Unwatched:
		q.rescans[rescanKey{ev.Kind, ev.Path}] = true
	case Renamed, Removed:
		q.barrier = seq + 1
	}
	q.newest[ev.Path] = seq
	if ev.OldPath != "" {
		q.newest[ev.OldPath] = seq
	}
}

func (q *queue) pushErr(err error) {
	q.mu.Lock()
	if len(q.errs) < maxQueuedErrors {
		q.errs = append(q.errs, err)
	} else {
		q.droppedErrs++
	}
	q.mu.Unlock()
	q.signal()
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// popEvent removes and returns the oldest pending event.
func (q *queue) popEvent() (Event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return Event{}, false
	}
	ev := q.items[0]
	q.items[0] = Event{}
	q.items = q.items[1:]
	seq := q.head
	q.head++
	if q.newest[ev.Path] == seq {
		delete(q.newest, ev.Path)
	}
	if ev.OldPath != "" && q.newest[ev.OldPath] == seq {
		delete(q.newest, ev.OldPath)
	}
	if ev.Kind == Overflow || ev.Kind == Unwatched {
		delete(q.rescans, rescanKey{ev.Kind, ev.Path})
	}
	if q.barrier == seq+1 {
		q.barrier = 0
	}
	return ev, true
}

func (q *queue) popErr() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.errs) > 0 {
		err := q.errs[0]
		q.errs[0] = nil
		q.errs = q.errs[1:]
		return err
	}
	if q.droppedErrs > 0 {
		n := q.droppedErrs
		q.droppedErrs = 0
		return fmt.Errorf("capture: %d further errors were not kept because Errors was not drained", n)
	}
	return nil
}

// deliver hands events and errors to the consumer until done is closed. An
// event is taken off the queue before it is offered, so it is never merged
// into once the consumer may have seen it.
func (q *queue) deliver(events chan<- Event, errs chan<- error, done <-chan struct{}) {
	var (
		ev    Event
		haveE bool
		err   error
	)
	for {
		if !haveE {
			ev, haveE = q.popEvent()
		}
		if err == nil {
			err = q.popErr()
		}
		var evc chan<- Event
		if haveE {
			evc = events
		}
		var errc chan<- error
		if err != nil {
			errc = errs
		}
		select {
		case evc <- ev:
			haveE = false
		case errc <- err:
			err = nil
		case <-q.wake:
		case <-done:
			return
		}
	}
}
