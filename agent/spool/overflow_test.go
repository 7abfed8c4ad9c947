package spool

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/holdfast/holdfast/agent/change"
)

// drainUntil delivers and acknowledges changes one by one until done says
// so.
func drainUntil(t *testing.T, s *Spool, done func(Stats) bool) {
	t.Helper()
	for !done(s.Stats()) {
		c, err := s.Next()
		if err != nil {
			t.Fatalf("Next while draining: %v (stats %+v)", err, s.Stats())
		}
		if err := s.Ack(c.Seq); err != nil {
			t.Fatal(err)
		}
	}
}

func dirtyT(t *testing.T, s *Spool) []string {
	t.Helper()
	p, _ := s.DirtyPaths()
	return p
}

func TestOverflow(t *testing.T) {
	dir := t.TempDir()
	o := Options{SegmentSize: 4096, MaxBytes: 8 << 10, ResumeBytes: 2 << 10}
	s := openT(t, dir, o)

	// Store until the first change that does not fit.
	var seq uint64
	for {
		seq++
		err := s.Append(mkChange(seq))
		if errors.Is(err, ErrOverflow) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	lastStored := seq - 1
	want := dirtyPathsOf(ptr(mkChange(seq)))
	if !s.Overflowed() || !s.Stats().Dropping {
		t.Fatal("not overflowed after ErrOverflow")
	}
	if st := s.Stats(); st.PendingBytes > o.MaxBytes || st.PendingRecords != int64(lastStored) {
		t.Fatalf("over the cap: %+v", st)
	}

	// Path granularity: a rename dirties both names, a directory op the
	// directory, a hard link both names; a path marked twice is listed once.
	for _, c := range []change.Change{
		{Op: change.OpRename, Path: "old/name", NewPath: "new/name"},
		{Op: change.OpMkdir, Path: "newdir", Mode: 0o755},
		{Op: change.OpWrite, Path: "old/name", Data: []byte("x")},
		{Op: change.OpLink, Path: "data/x", NewPath: "data/y"},
	} {
		seq++
		c.Seq = seq
		if err := s.Append(c); !errors.Is(err, ErrOverflow) {
			t.Fatalf("Append(%v) while dropping = %v; want ErrOverflow", c.Op, err)
		}
	}
	want = append(want, "old/name", "new/name", "newdir", "data/x", "data/y")
	slices.Sort(want)
	want = slices.Compact(want)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := dirtyT(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("DirtyPaths = %q; want %q", got, want)
	}
	_, oldMark := s.DirtyPaths()
	closeT(t, s)

	// The dirty set and the dropping state survive a restart.
	s = openT(t, dir, o)
	defer func() { s.Close() }()
	if got := dirtyT(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("DirtyPaths after restart = %q; want %q", got, want)
	}
	// Dropped Seqs are not persisted: LastSeq is the last stored one.
	if st := s.Stats(); !st.Dropping || st.DirtyPaths != len(want) || st.LastSeq != lastStored {
		t.Fatalf("after restart: %+v", st)
	}
	if err := s.ClearDirty(oldMark); !errors.Is(err, ErrStaleMark) {
		t.Fatalf("ClearDirty(mark of the previous Open) = %v", err)
	}

	// Hysteresis: below MaxBytes but above ResumeBytes, still dropping.
	drainUntil(t, s, func(st Stats) bool { return st.PendingBytes < o.MaxBytes-1024 })
	seq++
	if err := s.Append(change.Change{Seq: seq, Op: change.OpChmod, Path: "newdir", Mode: 0o700}); !errors.Is(err, ErrOverflow) {
		t.Fatalf("Append above ResumeBytes = %v; want ErrOverflow", err)
	}
	// Drained to ResumeBytes: storing again.
	drainUntil(t, s, func(st Stats) bool { return st.PendingBytes <= o.ResumeBytes })
	seq++
	if err := s.Append(mkChange(seq)); err != nil {
		t.Fatalf("Append after draining = %v", err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Dropping || !s.Overflowed() {
		t.Fatalf("after resuming: %+v, Overflowed %v (dirty paths stay until cleared)", st, s.Overflowed())
	}

	// The resync snapshot. Its fence is the last stored change.
	paths, mark := s.DirtyPaths()
	if mark.Fence() != seq || !reflect.DeepEqual(paths, want) {
		t.Fatalf("snapshot %q fence %d; want %q fence %d", paths, mark.Fence(), want, seq)
	}
	// While the resync runs, the spool overflows again and drops, among
	// others, a rename of an already dirty path to a new one: every path
	// dropped after the snapshot must outlive ClearDirty.
	var later []string
	for {
		seq++
		c := change.Change{Seq: seq, Op: change.OpWrite, Path: "fill", Data: make([]byte, 1000)}
		if seq%8 == 0 {
			c = change.Change{Seq: seq, Op: change.OpRename, Path: "old/name", NewPath: "late/path"}
		}
		err := s.Append(c)
		if err != nil && !errors.Is(err, ErrOverflow) {
			t.Fatal(err)
		}
		if err != nil {
			later = append(later, dirtyPathsOf(&c)...)
			if c.Op == change.OpRename {
				break
			}
		}
	}
	slices.Sort(later)
	later = slices.Compact(later)
	if !slices.Contains(later, "old/name") || !slices.Contains(later, "late/path") {
		t.Fatalf("dropped after the snapshot: %q", later)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.ClearDirty(mark); err != nil {
		t.Fatal(err)
	}
	if got := dirtyT(t, s); !reflect.DeepEqual(got, later) {
		t.Fatalf("after ClearDirty: %q; want %q", got, later)
	}
	closeT(t, s)
	s = openT(t, dir, o)
	if got := dirtyT(t, s); !reflect.DeepEqual(got, later) {
		t.Fatalf("after ClearDirty and restart: %q; want %q", got, later)
	}

	// Second round: drain, resync, clear: nothing left.
	drainUntil(t, s, func(st Stats) bool { return st.PendingRecords == 0 })
	_, mark = s.DirtyPaths()
	if err := s.ClearDirty(mark); err != nil {
		t.Fatal(err)
	}
	if s.Overflowed() || len(dirtyT(t, s)) != 0 {
		t.Fatalf("Overflowed after the last ClearDirty: %q", dirtyT(t, s))
	}
	seq++
	if err := s.AppendSync(mkChange(seq)); err != nil {
		t.Fatal(err)
	}
	closeT(t, s)
	if b, err := os.ReadFile(filepath.Join(dir, dirtyName)); err != nil || string(b) != dirtyMagic {
		t.Fatalf("dirty file after clearing = %q, %v", b, err)
	}
	s = openT(t, dir, o)
	if s.Overflowed() || s.Stats().Dropping {
		t.Fatal("overflowed after clearing and restart")
	}
	expectNext(t, s, seq, 1)
}
