package catalog

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

// TestConcurrentWriters runs many goroutines that append activity, create
// scenarios (some with clashing names) and jobs at once, and checks that no
// ID or sequence number is handed out twice and that each name is taken once.
func TestConcurrentWriters(t *testing.T) {
	c := openTest(t, t.TempDir())
	const workers, perWorker = 16, 25
	var (
		mu        sync.Mutex
		seqs      = map[uint64]bool{}
		scenarios = map[uint64]string{}
		jobs      = map[uint64]bool{}
		exists    int
		wg        sync.WaitGroup
		errs      = make(chan error, workers)
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			fail := func(err error) { errs <- err }
			for i := 0; i < perWorker; i++ {
				e, err := c.AppendActivity(ActivityEntry{JobID: uint64(w%3 + 1), Message: "m"})
				if err != nil {
					fail(err)
					return
				}
				// Pairs of workers race for the same names.
				name := fmt.Sprintf("sc-%d-%d", w/2, i)
				s, err := c.CreateScenario(Scenario{Name: name}, []Entity{{Name: "e"}})
				switch {
				case errors.Is(err, ErrExists):
					mu.Lock()
					exists++
					mu.Unlock()
				case err != nil:
					fail(err)
					return
				}
				j, err := c.CreateJob(Job{Name: name})
				if err != nil {
					fail(err)
					return
				}
				if _, err := c.Activity(ActivityFilter{JobID: 1, Limit: 5}); err != nil {
					fail(err)
					return
				}
				mu.Lock()
				if seqs[e.Seq] {
					t.Errorf("activity seq %d handed out twice", e.Seq)
				}
				seqs[e.Seq] = true
				if s.ID != 0 {
					if _, dup := scenarios[s.ID]; dup {
						t.Errorf("scenario ID %d handed out twice", s.ID)
					}
					scenarios[s.ID] = name
				}
				if jobs[j.ID] {
					t.Errorf("job ID %d handed out twice", j.ID)
				}
				jobs[j.ID] = true
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := workers * perWorker
	if len(seqs) != total || len(jobs) != total {
		t.Fatalf("%d seqs, %d jobs; want %d each", len(seqs), len(jobs), total)
	}
	if len(scenarios)+exists != total || len(scenarios) != total/2 {
		t.Fatalf("%d scenarios created, %d name clashes; want %d and %d", len(scenarios), exists, total/2, total/2)
	}
	for seq := uint64(1); seq <= uint64(total); seq++ {
		if !seqs[seq] {
			t.Fatalf("activity seq %d missing: sequence has gaps", seq)
		}
	}
	list, err := c.Scenarios()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != total/2 {
		t.Fatalf("%d scenarios stored, want %d", len(list), total/2)
	}
	for _, s := range list {
		if scenarios[s.ID] != s.Name {
			t.Fatalf("scenario %d is %q, creator saw %q", s.ID, s.Name, scenarios[s.ID])
		}
	}
}
