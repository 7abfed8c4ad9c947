package jobs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/holdfast/holdfast/appliance/catalog"
)

// splitter is a parent executor: it runs its job as child jobs of kind
// "gated" and ends Completed only if every child did.
type splitter struct {
	q        *Queue
	children int
	ids      chan []uint64
}

func (s *splitter) Run(ctx context.Context, job catalog.Job, p Progress) (catalog.JobResult, error) {
	subs := make([]Submission, s.children)
	for i := range subs {
		subs[i] = Submission{Kind: "gated", Name: job.Name + " child"}
	}
	kids, err := s.q.SubmitChildren(job.ID, subs)
	if err != nil {
		return catalog.ResultFailed, err
	}
	ids := make([]uint64, len(kids))
	for i, k := range kids {
		ids[i] = k.ID
	}
	s.ids <- ids
	kids, err = s.q.WaitChildren(ctx, job.ID, ids, p.Set)
	if err != nil {
		return catalog.ResultCanceled, err
	}
	for _, k := range kids {
		if k.Result != catalog.ResultCompleted {
			return catalog.ResultIncomplete, nil
		}
	}
	return catalog.ResultCompleted, nil
}

func TestChildJobsRunWhileTheirParentWaits(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cancel bool
		want   catalog.JobResult
	}{
		{"all children complete", false, catalog.ResultCompleted},
		{"parent canceled", true, catalog.ResultCanceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 1)
			f.q.Close()
			sp := &splitter{children: 2, ids: make(chan []uint64, 1)}
			cfg := f.config(1) // one slot: the children can only run if the waiting parent gives it up
			cfg.Now = nil
			cfg.Executors["split"] = sp
			q, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			sp.q = q
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			go func() { _ = q.Run(ctx, 20*time.Millisecond) }()

			parent, err := q.Submit(Submission{Kind: "split", Name: "two scenarios"})
			if err != nil {
				t.Fatal(err)
			}
			var ids []uint64
			select {
			case ids = <-sp.ids:
			case <-time.After(20 * time.Second):
				t.Fatal("the parent never submitted its children")
			}
			f.gated.waitStarted(t, ids[0])
			child, err := q.Get(ids[0])
			if err != nil {
				t.Fatal(err)
			}
			if child.ParentID != parent.ID {
				t.Errorf("child %d has parent %d, want %d", child.ID, child.ParentID, parent.ID)
			}
			if tc.cancel {
				if err := q.Cancel(parent.ID); err != nil {
					t.Fatal(err)
				}
				// gated ignores cancel: let the running child return only once
				// the parent has ended, so the slot cannot pass to the second.
				defer close(f.gated.gate(ids[0]))
			} else {
				close(f.gated.gate(ids[0]))
				f.gated.waitStarted(t, ids[1]) // only after the first freed the single slot
				close(f.gated.gate(ids[1]))
			}
			ev := f.events.wait(t, EventFinished, parent.ID)
			if ev.Run.Result != tc.want {
				t.Fatalf("parent ended %s (%s), want %s", ev.Run.Result, ev.Run.Reason, tc.want)
			}
			if tc.cancel {
				second, err := q.Get(ids[1])
				if err != nil {
					t.Fatal(err)
				}
				if second.State != catalog.JobDone || second.Result != catalog.ResultCanceled {
					t.Errorf("the child not yet started is %s/%s, want Done/Canceled", second.State, second.Result)
				}
				return
			}
			if got := ev.Run.Done; got.Files != 20 || got.Bytes != 2000 {
				t.Errorf("parent's progress %+v, want the sum of its children's (20 files, 2000 bytes)", got)
			}
		})
	}
}

func TestSubmitChildrenOfUnknownKind(t *testing.T) {
	f := newFixture(t, 1)
	_, err := f.q.SubmitChildren(1, []Submission{{Kind: "nope", Name: "x"}})
	if !errors.Is(err, ErrUnknownKind) {
		t.Fatalf("SubmitChildren of an unknown kind: %v, want ErrUnknownKind", err)
	}
}
