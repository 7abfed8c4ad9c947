package spool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/holdfast/holdfast/agent/change"
)

// mkChange returns a deterministic change for seq, so a test (or a crashed
// child process) can check content by Seq alone. It cycles through ops
// with and without data and sizes from 0 to ~700 bytes.
func mkChange(seq uint64) change.Change {
	c := change.Change{Seq: seq, Captured: 1_764_000_000_000_000_000 + int64(seq)*1000}
	n := seq % 97
	switch seq % 5 {
	case 0:
		c.Op, c.Path, c.NewPath = change.OpRename, "docs/a"+itoa(n), "archive/b"+itoa(seq%89)
	case 1:
		data := make([]byte, (seq*37)%700)
		for i := range data {
			data[i] = byte(seq) + byte(i)
		}
		c.Op, c.Path, c.Offset, c.Data = change.OpWrite, "data/f"+itoa(n), int64(seq)*512, data
	case 2:
		c.Op, c.Path, c.Mode = change.OpMkdir, "dir"+itoa(n), 0o755
	case 3:
		c.Op, c.Path, c.Size = change.OpTruncate, "data/f"+itoa(n), int64(seq)
	default:
		c.Op, c.Path, c.XattrName, c.XattrValue = change.OpSetXattr, "data/f"+itoa(n), "user.tag", []byte(itoa(seq))
	}
	return c
}

func itoa(n uint64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append(b, byte('0'+n%10))
	}
	slices.Reverse(b)
	return string(b)
}

func openT(t testing.TB, dir string, o Options) *Spool {
	t.Helper()
	s, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func closeT(t testing.TB, s *Spool) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// appendRange appends seqs from..to, syncing every batch appends.
func appendRange(t testing.TB, s *Spool, from, to uint64, batch int) {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		if err := s.Append(mkChange(seq)); err != nil {
			t.Fatalf("Append(%d): %v", seq, err)
		}
		if batch > 0 && int(seq-from+1)%batch == 0 {
			if err := s.Sync(); err != nil {
				t.Fatalf("Sync: %v", err)
			}
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// expectNext reads n changes and checks they are from, from+1, ... with the
// content mkChange gives them.
func expectNext(t testing.TB, s *Spool, from uint64, n int) {
	t.Helper()
	for i := range n {
		c, err := s.Next()
		if err != nil {
			t.Fatalf("Next (want seq %d): %v", from+uint64(i), err)
		}
		if want := mkChange(from + uint64(i)); !reflect.DeepEqual(c, want) {
			t.Fatalf("Next:\n got %+v\nwant %+v", c, want)
		}
	}
}

func expectEmpty(t testing.TB, s *Spool) {
	t.Helper()
	if c, err := s.Next(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("Next = seq %d, %v; want ErrEmpty", c.Seq, err)
	}
}

func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAppendReadAckRestart(t *testing.T) {
	dir := t.TempDir()
	o := Options{SegmentSize: 4096, MaxBytes: 1 << 20}
	s := openT(t, dir, o)
	if r := s.Recovery(); r.Unclean || len(r.Truncated) > 0 {
		t.Fatalf("fresh spool: Recovery = %+v", r)
	}
	expectEmpty(t, s)

	appendRange(t, s, 1, 300, 10)
	st := s.Stats()
	if st.PendingRecords != 300 || st.OldestSeq != 1 || st.OldestCaptured != mkChange(1).Captured ||
		st.DurableSeq != 300 || st.LastSeq != 300 || st.Segments < 10 {
		t.Fatalf("after 300 appends: %+v", st)
	}
	if n := len(segFiles(t, dir)); n != st.Segments {
		t.Fatalf("%d segment files, Stats says %d", n, st.Segments)
	}

	// Peek does not consume.
	for range 2 {
		if c, err := s.Peek(); err != nil || c.Seq != 1 {
			t.Fatalf("Peek = %d, %v", c.Seq, err)
		}
	}
	expectNext(t, s, 1, 100)
	if err := s.Ack(100); err != nil {
		t.Fatal(err)
	}
	after := s.Stats()
	if after.PendingRecords != 200 || after.OldestSeq != 101 || after.AckedSeq != 100 || after.Segments >= st.Segments {
		t.Fatalf("after Ack(100): %+v (before %+v)", after, st)
	}
	if n := len(segFiles(t, dir)); n != after.Segments {
		t.Fatalf("%d segment files after Ack, Stats says %d", n, after.Segments)
	}
	if err := s.Ack(50); err != nil { // behind: a no-op
		t.Fatal(err)
	}

	// Rewind goes back to the oldest unacknowledged change.
	expectNext(t, s, 101, 50)
	s.Rewind()
	expectNext(t, s, 101, 10)

	before := s.Stats()
	closeT(t, s)

	// Restart: reading resumes after the persisted ack, not after what was
	// read (at least once).
	s = openT(t, dir, o)
	if r := s.Recovery(); r.Unclean || len(r.Truncated) > 0 {
		t.Fatalf("clean restart: Recovery = %+v", r)
	}
	if got := s.Stats(); got != before {
		t.Fatalf("Stats changed across restart:\n got %+v\nwant %+v", got, before)
	}
	expectNext(t, s, 101, 200)
	expectEmpty(t, s)

	if err := s.Append(mkChange(300)); !errors.Is(err, ErrSeqOrder) {
		t.Fatalf("Append(300) again = %v; want ErrSeqOrder", err)
	}
	if err := s.Append(change.Change{Seq: 301, Op: change.OpWrite, Path: "/abs"}); !errors.Is(err, change.ErrInvalid) {
		t.Fatalf("Append(invalid) = %v; want change.ErrInvalid", err)
	}
	if err := s.Append(mkChange(301)); err != nil {
		t.Fatal(err)
	}
	expectEmpty(t, s) // not synced: not visible
	if err := s.Ack(301); !errors.Is(err, ErrAckAhead) {
		t.Fatalf("Ack(301) before Sync = %v; want ErrAckAhead", err)
	}
	if err := s.Ack(300); err != nil {
		t.Fatal(err)
	}
	st = s.Stats()
	if st.Segments != 1 || st.PendingRecords != 1 || st.OldestSeq != 301 || st.OldestCaptured != mkChange(301).Captured {
		t.Fatalf("after Ack(300) with 301 unsynced: %+v", st)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	expectNext(t, s, 301, 1)
	if err := s.Ack(301); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.PendingRecords != 0 || st.PendingBytes != 0 || st.OldestSeq != 0 {
		t.Fatalf("all acknowledged: %+v", st)
	}
	closeT(t, s)

	// Everything acknowledged: the next Seq must still follow the ack.
	s = openT(t, dir, o)
	defer closeT(t, s)
	if st := s.Stats(); st.LastSeq != 301 || st.AckedSeq != 301 || st.PendingRecords != 0 {
		t.Fatalf("reopened empty spool: %+v", st)
	}
	if err := s.Append(mkChange(301)); !errors.Is(err, ErrSeqOrder) {
		t.Fatalf("Append(301) after full ack = %v; want ErrSeqOrder", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close = %v", err)
	}
	if err := s.Append(mkChange(400)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
}

func TestAckAheadOfReader(t *testing.T) {
	// The replica already had changes from before a restart: it acknowledges
	// past what this process has delivered, and the reader skips them.
	dir := t.TempDir()
	s := openT(t, dir, Options{SegmentSize: 2048})
	defer closeT(t, s)
	appendRange(t, s, 1, 120, 0)
	expectNext(t, s, 1, 3)
	if err := s.Ack(90); err != nil {
		t.Fatal(err)
	}
	expectNext(t, s, 91, 30)
	expectEmpty(t, s)
	if st := s.Stats(); st.PendingRecords != 30 || st.OldestSeq != 91 {
		t.Fatalf("%+v", st)
	}
}

func TestLockedAndOptions(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v; want ErrLocked", err)
	}
	closeT(t, s)
	for _, o := range []Options{
		{SegmentSize: 10},
		{MaxBytes: -1},
		{MaxBytes: 100, ResumeBytes: 100},
	} {
		if _, err := Open(t.TempDir(), o); err == nil {
			t.Errorf("Open with %+v succeeded", o)
		}
	}
}

func TestUncleanShutdown(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	appendRange(t, s, 1, 5, 0)
	// Simulate a crash: drop the Spool without Close, release its lock.
	s.lock.Close()
	s2 := openT(t, dir, Options{})
	defer closeT(t, s2)
	if !s2.Recovery().Unclean {
		t.Fatal("Recovery().Unclean = false after a crash")
	}
	expectNext(t, s2, 1, 5)
}

func TestWait(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on empty spool = %v", err)
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		if err := s.AppendSync(mkChange(1)); err != nil {
			t.Error(err)
		}
	}()
	if err := s.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	expectNext(t, s, 1, 1)
	done := make(chan error)
	go func() { done <- s.Wait(context.Background()) }()
	time.Sleep(10 * time.Millisecond)
	closeT(t, s)
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait across Close = %v", err)
	}
	if err := os.Remove(filepath.Join(s.dir, cleanName)); err != nil {
		t.Fatalf("no clean-shutdown marker after Close: %v", err)
	}
}
