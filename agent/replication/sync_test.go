package replication

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/agent/change"
)

// watchedReplica is a real LocalReplica that records how the engine calls
// it: whether two ApplyBatch calls ever overlap, the order of the sequence
// numbers, and, when set, holds a call until released or fails it.
type watchedReplica struct {
	*LocalReplica
	t *testing.T

	mu       sync.Mutex
	calls    int
	inFlight int
	lastSeq  uint64
	overlap  bool
	disorder bool

	hold    chan struct{} // if set, the first call waits for it to close
	entered chan struct{} // closed when the first call has started
	failAt  int           // if > 0, this call (1-based) and all after it fail
}

var errReplicaDown = errors.New("replica down")

func (r *watchedReplica) ApplyBatch(cs []change.Change) error {
	r.mu.Lock()
	r.calls++
	call := r.calls
	r.inFlight++
	if r.inFlight > 1 {
		r.overlap = true
	}
	for _, c := range cs {
		if c.Seq <= r.lastSeq {
			r.disorder = true
		}
		r.lastSeq = c.Seq
	}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inFlight--
		r.mu.Unlock()
	}()
	if call == 1 && r.hold != nil {
		close(r.entered)
		<-r.hold
	}
	if r.failAt > 0 && call >= r.failAt {
		return errReplicaDown
	}
	return r.LocalReplica.ApplyBatch(cs)
}

func newWatchedEngine(t *testing.T, batchMax int) (*Engine, *watchedReplica, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "replica")
	lr, err := OpenLocal(dir)
	must(t, err)
	t.Cleanup(func() { lr.Close() })
	r := &watchedReplica{LocalReplica: lr, t: t}
	e := &Engine{
		cfg:         Config{Replica: r, BatchMax: batchMax, Notify: func(Notice) {}},
		pendingSync: map[string]bool{},
		nextSeq:     1,
	}
	return e, r, dir
}

// syncChanges is a directory and n small files in it, as the planner
// would emit them.
func syncChanges(e *Engine, n int) []change.Change {
	cs := []change.Change{{Op: change.OpMkdir, Path: "d", Mode: 0o755, Seq: e.takeSeq()}}
	for i := range n {
		cs = append(cs, change.Change{
			Op: change.OpReplaceFile, Path: fmt.Sprintf("d/f%03d", i), Mode: 0o644,
			Data: []byte(fmt.Sprintf("content %d", i)), MTime: time.Unix(1e9, 0).UnixNano(), Seq: e.takeSeq(),
		})
	}
	return cs
}

func TestSyncBatcherAppliesInOrderOneBatchAtATime(t *testing.T) {
	e, r, dir := newWatchedEngine(t, 7)
	cs := syncChanges(e, 100)
	b := newBatcher(e)
	defer b.close(true)
	for _, c := range cs {
		must(t, b.add(c))
	}
	must(t, b.flush())
	if r.overlap {
		t.Error("two ApplyBatch calls overlapped")
	}
	if r.disorder {
		t.Error("changes reached the replica out of order")
	}
	if want := (len(cs) + 6) / 7; r.calls != want {
		t.Errorf("%d ApplyBatch calls, want %d", r.calls, want)
	}
	if got, want := r.LastApplied(), cs[len(cs)-1].Seq; got != want {
		t.Errorf("LastApplied = %d, want %d", got, want)
	}
	for i := range 100 {
		b, err := os.ReadFile(filepath.Join(dir, "d", fmt.Sprintf("f%03d", i)))
		if err != nil || string(b) != fmt.Sprintf("content %d", i) {
			t.Fatalf("file %d on the replica: %q, %v", i, b, err)
		}
	}
}

// The planner fills the next batch while the replica still applies the
// previous one: with the first ApplyBatch held, the next batch is still
// accepted. A batcher that applied in the planner's goroutine would never
// return from the first send.
func TestSyncBatcherFillsNextBatchWhileOneApplies(t *testing.T) {
	e, r, _ := newWatchedEngine(t, 4)
	r.hold, r.entered = make(chan struct{}), make(chan struct{})
	cs := syncChanges(e, 7) // two batches of four
	b := newBatcher(e)
	defer b.close(true)
	added := make(chan error, 1)
	go func() {
		for _, c := range cs {
			if err := b.add(c); err != nil {
				added <- err
				return
			}
		}
		added <- nil
	}()
	select {
	case err := <-added:
		must(t, err)
	case <-time.After(30 * time.Second):
		close(r.hold)
		t.Fatal("the planner was blocked while the replica applied the first batch")
	}
	<-r.entered
	if got := r.LastApplied(); got != 0 {
		t.Errorf("LastApplied = %d while the first batch is held, want 0", got)
	}
	close(r.hold)
	must(t, b.flush())
	if got, want := r.LastApplied(), cs[len(cs)-1].Seq; got != want {
		t.Errorf("LastApplied = %d, want %d", got, want)
	}
}

// After a batch fails, nothing behind it is applied (it may depend on the
// failed one), and the planner is told.
func TestSyncBatcherStopsAfterAFailedBatch(t *testing.T) {
	e, r, dir := newWatchedEngine(t, 5)
	r.failAt = 2
	cs := syncChanges(e, 40)
	b := newBatcher(e)
	defer b.close(true)
	var err error
	for _, c := range cs {
		if err = b.add(c); err != nil {
			break
		}
	}
	if err == nil {
		err = b.flush()
	}
	if !errors.Is(err, errReplicaDown) {
		t.Fatalf("error = %v, want the replica's", err)
	}
	// The second batch, then its first change alone (looking for the
	// change at fault), and nothing after.
	if r.calls != 3 {
		t.Errorf("%d ApplyBatch calls, want 3 (none after the failure)", r.calls)
	}
	if got, want := r.LastApplied(), cs[4].Seq; got != want {
		t.Errorf("LastApplied = %d, want %d (the first batch only)", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "d", "f004")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file of the failed batch is on the replica: %v", err)
	}
}
