package throttle

import (
	"context"
	"io"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const (
	// minBurst is the smallest token bucket. Below it, a slow link would be
	// fed in tiny writes, each costing a syscall and a packet header.
	minBurst = 64 << 10
	// maxBurst caps chunks at a size any int (even 32-bit) can hold and a
	// transport can buffer.
	maxBurst = 1 << 30
	// maxSleep bounds every wait so the writer re-reads the clock at least
	// this often: timers run on the monotonic clock, but the schedule is in
	// wall-clock time, which can jump (NTP steps, suspend and resume).
	maxSleep = time.Minute
)

// burstFor is the bucket size for a rate: a tenth of a second's worth, so
// short bursts stay smooth, but at least minBurst.
func burstFor(bps int64) int {
	return int(min(max(bps/10, minBurst), maxBurst))
}

// Writer is an io.Writer that limits the bandwidth of the writes passed to
// the underlying writer according to a Schedule. Large writes are split into
// chunks no larger than the token bucket. While the schedule says paused,
// writes block until the schedule allows sending again or the context is
// done. Concurrent writes are serialized so that their bytes never
// interleave.
type Writer struct {
	mu    sync.Mutex
	w     io.Writer
	sched Schedule
	clock func() time.Time
	lim   *rate.Limiter

	// The schedule's rate, cached for clock readings in [from, until) so
	// steady-state writes do not re-evaluate the schedule; until is zero if
	// the rate never changes.
	cached    bool
	from      time.Time
	until     time.Time
	bps       int64
	unlimited bool
	applied   int64 // rate last set on lim; 0 before the first
}

// NewWriter returns a Writer that writes to w at the rates s allows. clock
// tells the time the schedule is evaluated at and the token bucket runs on;
// nil means time.Now. Waiting itself uses real timers.
func NewWriter(w io.Writer, s Schedule, clock func() time.Time) *Writer {
	if clock == nil {
		clock = time.Now
	}
	// The limit is replaced before first use; starting from the zero time,
	// the bucket is full then, so a transfer may begin with one burst.
	return &Writer{w: w, sched: s, clock: clock, lim: rate.NewLimiter(1, minBurst)}
}

// Write is WriteContext with a background context: while paused it blocks
// until the schedule allows sending.
func (w *Writer) Write(p []byte) (int, error) {
	return w.WriteContext(context.Background(), p)
}

// WriteContext writes p, waiting as the schedule requires. If ctx is done
// first it returns the number of bytes already written and ctx.Err().
// Errors from the underlying writer are returned unchanged.
func (w *Writer) WriteContext(ctx context.Context, p []byte) (n int, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(p) > 0 {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		now := w.clock()
		bps, unlimited, until := w.rate(now)
		// Never sleep past a schedule change: the new rate may be higher.
		wait := maxSleep
		if !until.IsZero() {
			wait = min(wait, until.Sub(now))
		}
		switch {
		case unlimited:
			m, err := w.w.Write(p)
			n += m
			if err == nil && m < len(p) {
				err = io.ErrShortWrite
			}
			return n, err
		case bps == 0: // paused: replication spools meanwhile
			if err := sleep(ctx, wait); err != nil {
				return n, err
			}
			continue
		}
		if bps != w.applied {
			// SetLimitAt/SetBurstAt first credit the tokens earned at
			// the old rate, so a rate change neither loses nor invents
			// capacity.
			w.lim.SetLimitAt(now, rate.Limit(bps))
			w.lim.SetBurstAt(now, burstFor(bps))
			w.applied = bps
		}
		chunk := min(len(p), w.lim.Burst())
		// A reservation of at most the burst always succeeds.
		r := w.lim.ReserveN(now, chunk)
		if d := r.DelayFrom(now); d > 0 {
			if err := sleep(ctx, min(d, wait)); err != nil {
				r.CancelAt(w.clock())
				return n, err
			}
			if wait < d {
				// Woken early to re-read the schedule: return the
				// tokens and reserve again at whatever rate applies.
				r.CancelAt(w.clock())
				continue
			}
		}
		m, err := w.w.Write(p[:chunk])
		n += m
		if err == nil && m < chunk {
			err = io.ErrShortWrite
		}
		if err != nil {
			return n, err
		}
		p = p[chunk:]
	}
	return n, nil
}

// rate returns the schedule's rate at now and when it next changes.
func (w *Writer) rate(now time.Time) (bps int64, unlimited bool, until time.Time) {
	valid := w.cached && !now.Before(w.from) && (w.until.IsZero() || now.Before(w.until))
	if !valid {
		w.bps, w.unlimited = w.sched.RateAt(now)
		w.from, w.until, w.cached = now, w.sched.NextChange(now), true
	}
	return w.bps, w.unlimited, w.until
}

// sleep waits for d or until ctx is done, whichever is first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
