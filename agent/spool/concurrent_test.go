package spool

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"
)

// TestConcurrentWriterReader runs the intended shape: capture appending
// and syncing, a sender reading with Next and Wait, a third goroutine
// acknowledging, and a monitor polling Stats. Run it with -race.
func TestConcurrentWriterReader(t *testing.T) {
	const n = 3000
	s := openT(t, t.TempDir(), Options{SegmentSize: 16 << 10})
	defer closeT(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	errc := make(chan error, 4)
	acks := make(chan uint64, 16)
	done := make(chan struct{})

	wg.Go(func() { // capture
		for seq := uint64(1); seq <= n; seq++ {
			if err := s.Append(mkChange(seq)); err != nil {
				errc <- err
				return
			}
			if seq%17 == 0 || seq == n {
				if err := s.Sync(); err != nil {
					errc <- err
					return
				}
			}
		}
	})
	wg.Go(func() { // sender
		defer close(acks)
		for next := uint64(1); next <= n; {
			c, err := s.Next()
			if errors.Is(err, ErrEmpty) {
				if err := s.Wait(ctx); err != nil {
					errc <- err
					return
				}
				continue
			}
			if err != nil {
				errc <- err
				return
			}
			if want := mkChange(next); !reflect.DeepEqual(c, want) {
				t.Errorf("Next = seq %d; want %d", c.Seq, next)
				return
			}
			if next%50 == 0 || next == n {
				acks <- next
			}
			next++
		}
	})
	wg.Go(func() { // acknowledgements from the replica
		for seq := range acks {
			if err := s.Ack(seq); err != nil {
				errc <- err
				return
			}
		}
	})
	var mon sync.WaitGroup
	mon.Go(func() { // monitoring
		for {
			select {
			case <-done:
				return
			default:
			}
			st := s.Stats()
			if st.PendingRecords < 0 || st.PendingBytes < 0 || st.AckedSeq > st.DurableSeq {
				t.Errorf("inconsistent stats %+v", st)
				return
			}
			s.Overflowed()
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()
	close(done)
	mon.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if st := s.Stats(); st.PendingRecords != 0 || st.PendingBytes != 0 || st.AckedSeq != n || st.Segments != 1 {
		t.Fatalf("after draining everything: %+v", st)
	}
}
