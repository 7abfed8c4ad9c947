package jobs

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/appliance/catalog"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// clock is a fake clock the tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// events collects what the queue reports; wait keeps the events it skips
// for later waits, since runs end in any order.
type events struct {
	ch      chan Event
	skipped []Event
}

func (e *events) JobEvent(ev Event) { e.ch <- ev }

func (e *events) wait(t *testing.T, kind EventKind, id uint64) Event {
	t.Helper()
	for i, ev := range e.skipped {
		if ev.Kind == kind && ev.Job.ID == id {
			e.skipped = append(e.skipped[:i], e.skipped[i+1:]...)
			return ev
		}
	}
	timeout := time.After(20 * time.Second) // a hang guard, not a timing check
	for {
		select {
		case ev := <-e.ch:
			if ev.Kind == kind && ev.Job.ID == id {
				return ev
			}
			e.skipped = append(e.skipped, ev)
		case <-timeout:
			t.Fatalf("no event %d for job %d", kind, id)
		}
	}
}

// gated reports half its work, then waits for its gate, ignoring cancel so
// tests can look at an Active job for as long as they like.
type gated struct {
	started chan uint64
	gates   sync.Map // job ID -> chan struct{}
}

func newGated() *gated { return &gated{started: make(chan uint64, 16)} }

func (g *gated) gate(id uint64) chan struct{} {
	ch, _ := g.gates.LoadOrStore(id, make(chan struct{}))
	return ch.(chan struct{})
}

func (g *gated) Run(_ context.Context, job catalog.Job, p Progress) (catalog.JobResult, error) {
	p.Set(Counts{Bytes: 500, Files: 5}, Counts{Bytes: 1000, Files: 10})
	g.started <- job.ID
	<-g.gate(job.ID)
	p.Set(Counts{Bytes: 1000, Files: 10}, Counts{Bytes: 1000, Files: 10})
	return catalog.ResultCompleted, nil
}

func (g *gated) waitStarted(t *testing.T, id uint64) {
	t.Helper()
	select {
	case got := <-g.started:
		if got != id {
			t.Fatalf("job %d started, want %d", got, id)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("job %d never started", id)
	}
}

// failing fails every run.
type failing struct{}

func (failing) Run(context.Context, catalog.Job, Progress) (catalog.JobResult, error) {
	return catalog.ResultNone, errors.New("replica host dr01 is unreachable")
}

// patient waits until canceled, as a well-behaved executor does.
type patient struct{ started chan uint64 }

func (p patient) Run(ctx context.Context, job catalog.Job, _ Progress) (catalog.JobResult, error) {
	p.started <- job.ID
	<-ctx.Done()
	return catalog.ResultCanceled, ctx.Err()
}

// panicky panics.
type panicky struct{}

func (panicky) Run(context.Context, catalog.Job, Progress) (catalog.JobResult, error) {
	panic("index out of range")
}

type fixture struct {
	dir     string
	cat     *catalog.Catalog
	q       *Queue
	clock   *clock
	events  *events
	gated   *gated
	patient patient
}

func (f *fixture) config(maxActive int) Config {
	return Config{
		Catalog: f.cat,
		Executors: map[string]Executor{
			"gated": f.gated, "failing": failing{}, "patient": f.patient, "panicky": panicky{},
		},
		MaxActive: maxActive,
		Location:  mustParis(),
		Now:       f.clock.Now,
		Observer:  f.events,
		Logger:    quiet,
	}
}

func newFixture(t *testing.T, maxActive int) *fixture {
	t.Helper()
	f := &fixture{
		dir:     t.TempDir(),
		clock:   &clock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)},
		events:  &events{ch: make(chan Event, 64)},
		gated:   newGated(),
		patient: patient{started: make(chan uint64, 16)},
	}
	f.openCatalog(t)
	f.openQueue(t, maxActive)
	return f
}

func (f *fixture) openCatalog(t *testing.T) {
	t.Helper()
	c, err := catalog.Open(f.dir, catalog.Options{Logger: quiet})
	if err != nil {
		t.Fatalf("open catalog: %v", err)
	}
	f.cat = c
	t.Cleanup(func() { _ = c.Close() }) // a second Close after a test's own is refused, not harmful
}

func (f *fixture) openQueue(t *testing.T, maxActive int) {
	t.Helper()
	q, err := Open(f.config(maxActive))
	if err != nil {
		t.Fatalf("open queue: %v", err)
	}
	f.q = q
	t.Cleanup(q.Close)
}

func (f *fixture) submit(t *testing.T, kind, schedule string) Job {
	t.Helper()
	j, err := f.q.Submit(Submission{Kind: kind, Name: kind + " " + schedule, Schedule: schedule, Spec: []byte(`{"root":"/srv"}`)})
	if err != nil {
		t.Fatalf("Submit(%s, %q): %v", kind, schedule, err)
	}
	return j
}

func (f *fixture) tick(t *testing.T, want ...uint64) {
	t.Helper()
	got, err := f.q.Tick()
	if err != nil {
		t.Fatalf("Tick: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("Tick started %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("Tick started %v, want %v", got, want)
		}
	}
}

func (f *fixture) get(t *testing.T, id uint64) Job {
	t.Helper()
	j, err := f.q.Get(id)
	if err != nil {
		t.Fatalf("Get(%d): %v", id, err)
	}
	return j
}

func TestRunNowWithProgress(t *testing.T) {
	f := newFixture(t, 2)
	j := f.submit(t, "gated", "now")
	if j.State != catalog.JobReady || !j.NextRun.Equal(f.clock.Now()) {
		t.Fatalf("submitted job = %s due %v", j.State, j.NextRun)
	}
	f.tick(t, j.ID)
	f.events.wait(t, EventStarted, j.ID)
	f.gated.waitStarted(t, j.ID)

	f.clock.Advance(10 * time.Second)
	active := f.get(t, j.ID)
	if active.State != catalog.JobActive || active.Live == nil {
		t.Fatalf("running job = %s, live %v", active.State, active.Live)
	}
	if string(active.Spec) != `{"root":"/srv"}` {
		t.Fatalf("Spec = %q, want the submitted payload", active.Spec)
	}
	live := *active.Live
	if live.Done.Bytes != 500 || live.Total.Files != 10 || live.Rate != 50 || live.FileRate != 0.5 || live.Remaining != 10*time.Second {
		t.Fatalf("live progress = %+v; want 500 of 1000 bytes at 50 B/s, 10s left", live)
	}
	if list, err := f.q.List(catalog.JobActive); err != nil || len(list) != 1 || list[0].Live == nil {
		t.Fatalf("List(active) = %v, %v", list, err)
	}

	close(f.gated.gate(j.ID))
	ev := f.events.wait(t, EventFinished, j.ID)
	if ev.Run.Result != catalog.ResultCompleted || ev.Run.Done.Bytes != 1000 {
		t.Fatalf("finish event run = %+v", ev.Run)
	}
	done := f.get(t, j.ID)
	if done.State != catalog.JobDone || done.Result != catalog.ResultCompleted || done.Live != nil ||
		!done.Finished.Equal(f.clock.Now()) || len(done.Runs) != 1 || !done.NextRun.IsZero() {
		t.Fatalf("finished job = %+v", done)
	}
	if _, ok := f.q.Progress(j.ID); ok {
		t.Fatal("Progress of a done job reports a run under way")
	}
	f.tick(t) // a done job does not run again
}

func TestProgressWithoutTotals(t *testing.T) {
	tr := &tracker{started: time.Unix(100, 0)}
	tr.Set(Counts{Bytes: 300}, Counts{})
	s := tr.status(time.Unix(103, 0))
	if s.Rate != 100 || s.Remaining != -1 {
		t.Fatalf("status with unknown totals = %+v; want 100 B/s and no estimate", s)
	}
	tr.Set(Counts{Files: 4}, Counts{Files: 10})
	if s := tr.status(time.Unix(102, 0)); s.Remaining != 3*time.Second {
		t.Fatalf("estimate from files = %v, want 3s", s.Remaining)
	}
	if s := tr.status(time.Unix(100, 0)); s.Rate != 0 || s.Remaining != -1 {
		t.Fatalf("status at the start = %+v", s)
	}
}

func TestScheduledJobWaitsForItsTime(t *testing.T) {
	f := newFixture(t, 2)
	// 12:00 UTC is 13:00 in Paris.
	j := f.submit(t, "gated", "once 2026-11-25 14:30")
	if want := time.Date(2026, 11, 25, 13, 30, 0, 0, time.UTC); !j.NextRun.Equal(want) {
		t.Fatalf("NextRun = %v, want %v", j.NextRun, want)
	}
	f.tick(t)
	f.clock.Advance(89 * time.Minute)
	f.tick(t)
	f.clock.Advance(time.Minute)
	f.tick(t, j.ID)
	f.gated.waitStarted(t, j.ID)
	close(f.gated.gate(j.ID))
	f.events.wait(t, EventFinished, j.ID)
}

func TestRepeatingJobIsRescheduled(t *testing.T) {
	f := newFixture(t, 2)
	start := f.clock.Now()
	j := f.submit(t, "failing", "every 6h")
	f.tick(t, j.ID)
	ev := f.events.wait(t, EventFailed, j.ID)
	if !strings.Contains(ev.Run.Reason, "dr01 is unreachable") {
		t.Fatalf("failed run reason = %q", ev.Run.Reason)
	}
	got := f.get(t, j.ID)
	if got.State != catalog.JobReady || got.Result != catalog.ResultFailed || !got.NextRun.Equal(start.Add(6*time.Hour)) {
		t.Fatalf("after a failed run: %s/%s next %v", got.State, got.Result, got.NextRun)
	}
	f.clock.Advance(5 * time.Hour)
	f.tick(t)
	f.clock.Advance(time.Hour)
	f.tick(t, j.ID)
	f.events.wait(t, EventFailed, j.ID)
	got = f.get(t, j.ID)
	if len(got.Runs) != 2 || !got.Runs[1].Due.Equal(start.Add(6*time.Hour)) || !got.NextRun.Equal(start.Add(12*time.Hour)) {
		t.Fatalf("after two runs: runs %+v next %v", got.Runs, got.NextRun)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	f := newFixture(t, 2)
	a := f.submit(t, "gated", "now")
	b := f.submit(t, "gated", "now")
	c := f.submit(t, "gated", "now")
	f.tick(t, a.ID, b.ID)
	f.gated.waitStarted(t, a.ID)
	f.gated.waitStarted(t, b.ID)
	f.tick(t)
	if got := f.get(t, c.ID); got.State != catalog.JobReady {
		t.Fatalf("third job = %s while two run, want ready", got.State)
	}
	close(f.gated.gate(b.ID))
	f.events.wait(t, EventFinished, b.ID)
	f.tick(t, c.ID)
	f.gated.waitStarted(t, c.ID)
	close(f.gated.gate(a.ID))
	close(f.gated.gate(c.ID))
	f.events.wait(t, EventFinished, a.ID)
	f.events.wait(t, EventFinished, c.ID)
}

func TestCancelActiveJob(t *testing.T) {
	f := newFixture(t, 2)
	j := f.submit(t, "patient", "every 1d")
	f.tick(t, j.ID)
	<-f.patient.started
	if err := f.q.Cancel(j.ID); err != nil {
		t.Fatalf("Cancel active: %v", err)
	}
	ev := f.events.wait(t, EventFinished, j.ID)
	if ev.Run.Result != catalog.ResultCanceled {
		t.Fatalf("canceled run result = %s", ev.Run.Result)
	}
	got := f.get(t, j.ID)
	if got.State != catalog.JobDone || got.Result != catalog.ResultCanceled || !got.NextRun.IsZero() {
		t.Fatalf("canceled repeating job = %s/%s next %v, want done/canceled for good", got.State, got.Result, got.NextRun)
	}
}

func TestExecutorPanicFailsTheRun(t *testing.T) {
	f := newFixture(t, 1)
	j := f.submit(t, "panicky", "now")
	f.tick(t, j.ID)
	ev := f.events.wait(t, EventFailed, j.ID)
	if !strings.Contains(ev.Run.Reason, "panicked: index out of range") {
		t.Fatalf("reason = %q", ev.Run.Reason)
	}
}

// TestTransitions drives every operation from every state.
func TestTransitions(t *testing.T) {
	type op struct {
		name string
		do   func(q *Queue, id uint64) error
	}
	newName := "renamed"
	newSched := "mon-fri 01:30"
	ops := []op{
		{"hold", func(q *Queue, id uint64) error { return q.Hold(id) }},
		{"release", func(q *Queue, id uint64) error { return q.Release(id) }},
		{"cancel", func(q *Queue, id uint64) error { return q.Cancel(id) }},
		{"modify", func(q *Queue, id uint64) error {
			_, err := q.Modify(id, Change{Name: &newName, Schedule: &newSched})
			return err
		}},
		{"delete", func(q *Queue, id uint64) error { return q.Delete(id) }},
		{"rerun", func(q *Queue, id uint64) error { _, err := q.Rerun(id); return err }},
	}
	// want[state][op] is the state after, or "" when the op is refused;
	// "gone" when the job no longer exists.
	want := map[catalog.JobState]map[string]catalog.JobState{
		catalog.JobReady:  {"hold": catalog.JobHold, "cancel": catalog.JobDone, "modify": catalog.JobReady, "delete": "gone"},
		catalog.JobHold:   {"release": catalog.JobReady, "cancel": catalog.JobDone, "modify": catalog.JobHold, "delete": "gone"},
		catalog.JobActive: {"cancel": catalog.JobDone},
		catalog.JobDone:   {"modify": catalog.JobDone, "delete": "gone", "rerun": catalog.JobReady},
	}
	for state, after := range want {
		for _, o := range ops {
			t.Run(string(state)+"/"+o.name, func(t *testing.T) {
				f := newFixture(t, 1)
				j := f.submit(t, "patient", "fri 22:00")
				switch state {
				case catalog.JobHold:
					if err := f.q.Hold(j.ID); err != nil {
						t.Fatal(err)
					}
				case catalog.JobActive:
					if _, err := f.q.Modify(j.ID, Change{Schedule: ptr("now")}); err != nil {
						t.Fatal(err)
					}
					f.tick(t, j.ID)
					<-f.patient.started
				case catalog.JobDone:
					if err := f.q.Cancel(j.ID); err != nil {
						t.Fatal(err)
					}
				}
				err := o.do(f.q, j.ID)
				wantState, allowed := after[o.name]
				if !allowed {
					var se *StateError
					if !errors.Is(err, ErrWrongState) || !errors.As(err, &se) || se.State != state || se.Fix == "" ||
						!strings.Contains(err.Error(), "it is "+string(state)) {
						t.Fatalf("%s from %s: err = %v, want a StateError naming %s and a fix", o.name, state, err, state)
					}
					if got := f.get(t, j.ID); got.State != state || got.Name != j.Name {
						t.Fatalf("refused %s changed the job: %s %q", o.name, got.State, got.Name)
					}
					return
				}
				if err != nil {
					t.Fatalf("%s from %s: %v", o.name, state, err)
				}
				if state == catalog.JobActive {
					f.events.wait(t, EventFinished, j.ID)
				}
				got, err := f.q.Get(j.ID)
				if wantState == "gone" {
					if !errors.Is(err, ErrNotFound) {
						t.Fatalf("Get after delete: err = %v, want ErrNotFound", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got.State != wantState {
					t.Fatalf("%s from %s: state %s, want %s", o.name, state, got.State, wantState)
				}
				if o.name == "modify" && (got.Name != newName || got.Schedule.String() != newSched) {
					t.Fatalf("modified job: %q %q", got.Name, got.Schedule)
				}
				if o.name == "modify" && state != catalog.JobDone {
					// 13:00 Wednesday in Paris; Thursday 01:30 is the next weekday run.
					if want := time.Date(2026, 11, 26, 0, 30, 0, 0, time.UTC); !got.NextRun.Equal(want) {
						t.Fatalf("NextRun after modify = %v, want %v", got.NextRun, want)
					}
				}
			})
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestUnknownJob(t *testing.T) {
	f := newFixture(t, 1)
	for name, err := range map[string]error{
		"get":    func() error { _, err := f.q.Get(99); return err }(),
		"hold":   f.q.Hold(99),
		"cancel": f.q.Cancel(99),
		"delete": f.q.Delete(99),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of an unknown job: err = %v, want ErrNotFound", name, err)
		}
	}
}

func TestSubmitRefused(t *testing.T) {
	f := newFixture(t, 1)
	tests := []struct {
		s    Submission
		want error
	}{
		{Submission{Kind: "tape", Name: "x"}, ErrUnknownKind},
		{Submission{Kind: "gated"}, ErrInvalid},
		{Submission{Kind: "gated", Name: "x", Schedule: "fri 25:00"}, ErrSchedule},
		{Submission{Kind: "gated", Name: "x", Schedule: "once 2026-11-25 12:59"}, ErrSchedule}, // 11:59 UTC
	}
	for _, tc := range tests {
		if _, err := f.q.Submit(tc.s); !errors.Is(err, tc.want) {
			t.Errorf("Submit(%+v): err = %v, want %v", tc.s, err, tc.want)
		}
	}
	if list, err := f.q.List(); err != nil || len(list) != 0 {
		t.Fatalf("refused submissions left jobs: %v, %v", list, err)
	}
}

func TestRerunFailedJob(t *testing.T) {
	f := newFixture(t, 1)
	j := f.submit(t, "failing", "now")
	f.tick(t, j.ID)
	f.events.wait(t, EventFailed, j.ID)
	if got := f.get(t, j.ID); got.State != catalog.JobDone || got.Result != catalog.ResultFailed {
		t.Fatalf("failed one-time job = %s/%s", got.State, got.Result)
	}
	if _, err := f.q.Modify(j.ID, Change{Spec: ptr([]byte(`{"root":"/srv/b"}`))}); err != nil {
		t.Fatal(err)
	}
	again, err := f.q.Rerun(j.ID)
	if err != nil || again.State != catalog.JobReady || again.Result != catalog.ResultNone {
		t.Fatalf("Rerun = %+v, %v", again, err)
	}
	f.tick(t, j.ID)
	f.events.wait(t, EventFailed, j.ID)
	got := f.get(t, j.ID)
	if len(got.Runs) != 2 || string(got.Spec) != `{"root":"/srv/b"}` {
		t.Fatalf("after rerun: %d runs, spec %q", len(got.Runs), got.Spec)
	}
}

func TestDeleteRefusedWhileSessionsBelong(t *testing.T) {
	f := newFixture(t, 1)
	j := f.submit(t, "gated", "fri 22:00")
	if err := f.q.Cancel(j.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cat.CreateSession(catalog.Session{JobID: j.ID, ScenarioID: 1, Entity: "/srv", MasterHost: "fs01"}); err != nil {
		t.Fatal(err)
	}
	if err := f.q.Delete(j.ID); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("Delete of a job with sessions: err = %v, want catalog.ErrInvalid", err)
	}
}

// TestRestartAfterCrash leaves jobs Active in the catalog, as a holdfastd
// killed during them would, and reopens.
func TestRestartAfterCrash(t *testing.T) {
	f := newFixture(t, 2)
	once := f.submit(t, "gated", "now")
	nightly := f.submit(t, "gated", "daily 02:00")
	ready := f.submit(t, "gated", "fri 22:00")
	f.q.Close()
	for _, id := range []uint64{once.ID, nightly.ID} {
		rec, err := f.cat.Job(id)
		if err != nil {
			t.Fatal(err)
		}
		// As Tick leaves it: Active, started at its run time.
		j, _, err := decodeJob(rec)
		if err != nil {
			t.Fatal(err)
		}
		j.State, j.Started, j.NextRun = catalog.JobActive, f.clock.Now(), f.clock.Now()
		if rec, err = j.record(); err != nil {
			t.Fatal(err)
		}
		if err := f.cat.PutJob(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.cat.Close(); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	f.openCatalog(t)
	f.openQueue(t, 2)

	for _, id := range []uint64{once.ID, nightly.ID} {
		ev := f.events.wait(t, EventFailed, id)
		if ev.Run.Reason != stoppedReason {
			t.Fatalf("crash event reason = %q", ev.Run.Reason)
		}
	}
	got := f.get(t, once.ID)
	if got.State != catalog.JobDone || got.Result != catalog.ResultFailed || len(got.Runs) != 1 || got.Runs[0].Reason != stoppedReason {
		t.Fatalf("crashed one-time job = %s/%s runs %+v", got.State, got.Result, got.Runs)
	}
	got = f.get(t, nightly.ID)
	// 14:00 in Paris now; the next 02:00 is tomorrow's, 01:00 UTC.
	if want := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC); got.State != catalog.JobReady || got.Result != catalog.ResultFailed || !got.NextRun.Equal(want) {
		t.Fatalf("crashed repeating job = %s/%s next %v, want ready at %v", got.State, got.Result, got.NextRun, want)
	}
	if got := f.get(t, ready.ID); got.State != catalog.JobReady || len(got.Runs) != 0 {
		t.Fatalf("untouched job = %s with %d runs", got.State, len(got.Runs))
	}
	// The failed one can be rerun.
	if _, err := f.q.Rerun(once.ID); err != nil {
		t.Fatal(err)
	}
	f.tick(t, once.ID)
	f.gated.waitStarted(t, once.ID)
	close(f.gated.gate(once.ID))
	f.events.wait(t, EventFinished, once.ID)
}

func TestCloseStopsRuns(t *testing.T) {
	f := newFixture(t, 1)
	j := f.submit(t, "patient", "every 1h")
	f.tick(t, j.ID)
	<-f.patient.started
	f.q.Close()
	ev := f.events.wait(t, EventFailed, j.ID)
	if ev.Run.Reason != stoppedReason || ev.Job.State != catalog.JobReady {
		t.Fatalf("run stopped by Close: %+v, job %s", ev.Run, ev.Job.State)
	}
	if _, err := f.q.Submit(Submission{Kind: "gated", Name: "late"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close: err = %v", err)
	}
}

// TestRunLoop runs the scheduler loop on the real clock.
func TestRunLoop(t *testing.T) {
	f := newFixture(t, 1)
	cfg := f.config(1)
	cfg.Now = nil
	f.q.Close()
	q, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithCancel(context.Background())
	loopDone := make(chan error, 1)
	go func() { loopDone <- q.Run(ctx, time.Hour) }()
	j, err := q.Submit(Submission{Kind: "failing", Name: "soon"})
	if err != nil {
		t.Fatal(err)
	}
	f.events.wait(t, EventFailed, j.ID) // the submit woke the loop, not the hourly tick
	cancel()
	if err := <-loopDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
}

func mustParis() *time.Location {
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		panic(err)
	}
	return loc
}

// TestCancelIgnoredByExecutor: an executor that finishes its run despite the
// cancel keeps its result, and the repeating job still does not run again.
func TestCancelIgnoredByExecutor(t *testing.T) {
	f := newFixture(t, 1)
	j := f.submit(t, "gated", "every 1h")
	f.tick(t, j.ID)
	f.gated.waitStarted(t, j.ID)
	if err := f.q.Cancel(j.ID); err != nil {
		t.Fatal(err)
	}
	if got := f.get(t, j.ID); got.State != catalog.JobActive {
		t.Fatalf("job = %s before its executor returned, want still active", got.State)
	}
	close(f.gated.gate(j.ID))
	f.events.wait(t, EventFinished, j.ID)
	if got := f.get(t, j.ID); got.State != catalog.JobDone || got.Result != catalog.ResultCompleted {
		t.Fatalf("job = %s/%s, want done/completed", got.State, got.Result)
	}
}

// TestKindWithoutExecutor: a job whose executor is missing from a later
// build's wiring fails once instead of being retried at every pass.
func TestKindWithoutExecutor(t *testing.T) {
	f := newFixture(t, 1)
	j := f.submit(t, "gated", "every 1h")
	f.q.Close()
	cfg := f.config(1)
	delete(cfg.Executors, "gated")
	q, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if started, err := q.Tick(); err != nil || len(started) != 0 {
		t.Fatalf("Tick = %v, %v", started, err)
	}
	ev := f.events.wait(t, EventFailed, j.ID)
	if !strings.Contains(ev.Run.Reason, `no executor for job kind "gated"`) || ev.Job.State != catalog.JobDone {
		t.Fatalf("event = %+v", ev)
	}
}
