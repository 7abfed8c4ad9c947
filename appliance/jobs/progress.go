package jobs

import (
	"sync"
	"time"
)

// Counts is an amount of work: bytes and files.
type Counts struct {
	Bytes int64 `json:"bytes"`
	Files int64 `json:"files"`
}

// Progress is how an executor reports its work while it runs. total holds
// zeros for what is not known (yet); it may grow as the executor finds more.
type Progress interface {
	Set(done, total Counts)
}

// Status is the live progress of a running job.
type Status struct {
	Started time.Time
	Done    Counts
	Total   Counts
	// Rate is bytes per second, averaged since the run started; files per
	// second in FileRate. Zero before any time has passed.
	Rate     float64
	FileRate float64
	// Remaining is the estimated time left, from the bytes when their total
	// is known, else from the files; -1 when it cannot be estimated.
	Remaining time.Duration
}

// tracker holds one run's reported progress; the queue reads it on demand.
type tracker struct {
	mu          sync.Mutex
	started     time.Time
	done, total Counts
}

func (t *tracker) Set(done, total Counts) {
	t.mu.Lock()
	t.done, t.total = done, total
	t.mu.Unlock()
}

func (t *tracker) counts() (done, total Counts) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.done, t.total
}

func (t *tracker) status(now time.Time) Status {
	done, total := t.counts()
	s := Status{Started: t.started, Done: done, Total: total, Remaining: -1}
	elapsed := now.Sub(t.started).Seconds()
	if elapsed <= 0 {
		return s
	}
	s.Rate = float64(done.Bytes) / elapsed
	s.FileRate = float64(done.Files) / elapsed
	switch {
	case total.Bytes > 0 && s.Rate > 0:
		s.Remaining = remaining(total.Bytes-done.Bytes, s.Rate)
	case total.Files > 0 && s.FileRate > 0:
		s.Remaining = remaining(total.Files-done.Files, s.FileRate)
	}
	return s
}

func remaining(left int64, perSecond float64) time.Duration {
	if left <= 0 {
		return 0
	}
	return time.Duration(float64(left) / perSecond * float64(time.Second))
}
