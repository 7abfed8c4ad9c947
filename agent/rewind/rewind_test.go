package rewind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast/holdfast/agent/change"
)

func big(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

// base builds the tree every undo test starts from and returns the next
// Seq.
func base(t *testing.T, r *Replica) uint64 {
	t.Helper()
	const mt = 1_600_000_000_123_456_789
	cs := seqs(1,
		change.Change{Op: change.OpMkdir, Path: "d", Mode: 0o755},
		change.Change{Op: change.OpReplaceFile, Path: "d/f", Data: big(200<<10, 1), Mode: 0o644, MTime: mt},
		change.Change{Op: change.OpReplaceFile, Path: "d/small", Data: []byte("hello"), Mode: 0o600, MTime: mt},
		change.Change{Op: change.OpSymlink, Path: "d/l", Target: "f"},
		change.Change{Op: change.OpReplaceFile, Path: "g", Data: []byte("gg"), Mode: 0o640, MTime: mt},
		change.Change{Op: change.OpSetXattr, Path: "g", XattrName: "user.a", XattrValue: []byte("1")},
		change.Change{Op: change.OpSetTimes, Path: "g", MTime: mt},
		change.Change{Op: change.OpMkdir, Path: "e", Mode: 0o700},
		change.Change{Op: change.OpReplaceFile, Path: "d/h", Data: big(100<<10, 2), Mode: 0o644, MTime: mt},
		change.Change{Op: change.OpLink, Path: "d/h", NewPath: "h2"},
		change.Change{Op: change.OpSetTimes, Path: "d", MTime: mt},
		change.Change{Op: change.OpSetTimes, Path: "e", MTime: mt},
	)
	if err := r.ApplyBatch(cs); err != nil {
		t.Fatalf("base tree: %v", err)
	}
	return uint64(len(cs) + 1)
}

func TestUndoEachOp(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    change.Change
	}{
		{"write inside", change.Change{Op: change.OpWrite, Path: "d/f", Offset: 1000, Data: big(5000, 9)}},
		{"write large", change.Change{Op: change.OpWrite, Path: "d/f", Offset: 10, Data: big(150<<10, 9)}},
		{"write past end", change.Change{Op: change.OpWrite, Path: "d/small", Offset: 3, Data: []byte("xxxxxxxx")}},
		{"write new file", change.Change{Op: change.OpWrite, Path: "d/new", Data: []byte("n")}},
		{"write over symlink", change.Change{Op: change.OpWrite, Path: "d/l", Data: []byte("n")}},
		{"write linked", change.Change{Op: change.OpWrite, Path: "h2", Offset: 5, Data: []byte("linked")}},
		{"truncate shorter", change.Change{Op: change.OpTruncate, Path: "d/f", Size: 10}},
		{"truncate longer", change.Change{Op: change.OpTruncate, Path: "d/small", Size: 1000}},
		{"create over file", change.Change{Op: change.OpCreate, Path: "d/f", Mode: 0o600}},
		{"create new", change.Change{Op: change.OpCreate, Path: "e/c", Mode: 0o600}},
		{"mkdir new", change.Change{Op: change.OpMkdir, Path: "d/sub", Mode: 0o750}},
		{"mkdir existing", change.Change{Op: change.OpMkdir, Path: "e", Mode: 0o777}},
		{"mkdir over file", change.Change{Op: change.OpMkdir, Path: "g", Mode: 0o755}},
		{"symlink over file", change.Change{Op: change.OpSymlink, Path: "d/small", Target: "x"}},
		{"symlink new", change.Change{Op: change.OpSymlink, Path: "s", Target: "d"}},
		{"link new", change.Change{Op: change.OpLink, Path: "d/f", NewPath: "e/f2"}},
		{"link over file", change.Change{Op: change.OpLink, Path: "d/f", NewPath: "g"}},
		{"rename file", change.Change{Op: change.OpRename, Path: "d/f", NewPath: "e/f"}},
		{"rename over file", change.Change{Op: change.OpRename, Path: "d/small", NewPath: "g"}},
		{"rename dir", change.Change{Op: change.OpRename, Path: "d", NewPath: "e/d"}},
		{"rename over empty dir", change.Change{Op: change.OpRename, Path: "d", NewPath: "e"}},
		{"remove file", change.Change{Op: change.OpRemove, Path: "g"}},
		{"remove linked", change.Change{Op: change.OpRemove, Path: "h2"}},
		{"remove symlink", change.Change{Op: change.OpRemove, Path: "d/l"}},
		{"remove dir", change.Change{Op: change.OpRemove, Path: "e"}},
		{"chmod", change.Change{Op: change.OpChmod, Path: "d/f", Mode: 0o4700}},
		{"chown", change.Change{Op: change.OpChown, Path: "d/f", UID: 1234, GID: 5678}},
		{"settimes", change.Change{Op: change.OpSetTimes, Path: "d", MTime: 42}},
		{"setxattr new", change.Change{Op: change.OpSetXattr, Path: "d/f", XattrName: "user.b", XattrValue: []byte("v")}},
		{"setxattr old", change.Change{Op: change.OpSetXattr, Path: "g", XattrName: "user.a", XattrValue: []byte("2")}},
		{"removexattr", change.Change{Op: change.OpRemoveXattr, Path: "g", XattrName: "user.a"}},
		{"replace file", change.Change{Op: change.OpReplaceFile, Path: "d/f", Data: []byte("new"), Mode: 0o600, MTime: 7}},
		{"replace linked", change.Change{Op: change.OpReplaceFile, Path: "h2", Data: []byte("new"), Mode: 0o600, MTime: 7}},
		{"replace new", change.Change{Op: change.OpReplaceFile, Path: "e/n", Data: []byte("new"), Mode: 0o600, MTime: 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r := openR(t, dir, Options{})
			seq := base(t, r)
			before := digest(t, dir)
			mark := r.j.next - 1
			tc.c.Seq = seq
			if err := r.ApplyBatch([]change.Change{tc.c}); err != nil {
				t.Fatalf("apply: %v", err)
			}
			after := digest(t, dir)
			if after == before {
				t.Fatalf("the change changed nothing")
			}
			res, err := r.Rewind(context.Background(), Target{Point: mark}, "", nil)
			if err != nil {
				t.Fatalf("rewind: %v", err)
			}
			if res.Undone != 1 {
				t.Errorf("undone %d points, want 1", res.Undone)
			}
			if got := digest(t, dir); got != before {
				t.Fatalf("after rewind the tree differs:\n%s", diffDigest(got, before))
			}
			// The rewind is undone by rewinding to the point before it.
			if _, err := r.Rewind(context.Background(), Target{Point: res.FirstNew - 2}, "", nil); err != nil {
				t.Fatalf("rewind the rewind: %v", err)
			}
			if got := digest(t, dir); got != after {
				t.Fatalf("after rewinding the rewind the tree differs:\n%s", diffDigest(got, after))
			}
		})
	}
}

// randomChange is a change of a random op over a small set of paths.
func randomChange(rng *rand.Rand) change.Change {
	paths := []string{"a", "b", "c", "d1/a", "d1/b", "d2/x"}
	p := paths[rng.IntN(len(paths))]
	q := paths[rng.IntN(len(paths))]
	switch rng.IntN(12) {
	case 0, 1:
		return change.Change{Op: change.OpWrite, Path: p, Offset: int64(rng.IntN(100 << 10)), Data: big(1+rng.IntN(80<<10), byte(rng.IntN(256)))}
	case 2:
		return change.Change{Op: change.OpTruncate, Path: p, Size: int64(rng.IntN(150 << 10))}
	case 3, 4:
		return change.Change{Op: change.OpReplaceFile, Path: p, Data: big(rng.IntN(100<<10), byte(rng.IntN(256))), Mode: 0o644, MTime: rng.Int64N(1 << 60)}
	case 5:
		return change.Change{Op: change.OpRename, Path: p, NewPath: q}
	case 6:
		return change.Change{Op: change.OpRemove, Path: p}
	case 7:
		return change.Change{Op: change.OpChmod, Path: p, Mode: uint32(rng.IntN(0o1000))}
	case 8:
		return change.Change{Op: change.OpSymlink, Path: p, Target: q}
	case 9:
		return change.Change{Op: change.OpCreate, Path: p, Mode: 0o600}
	case 10:
		return change.Change{Op: change.OpSetTimes, Path: p, MTime: rng.Int64N(1 << 60)}
	}
	return change.Change{Op: change.OpSetXattr, Path: p, XattrName: "user.r", XattrValue: []byte{byte(rng.IntN(256))}}
}

// TestRandomRewinds applies random runs of changes, remembering the tree
// after each point, and rewinds to random points.
func TestRandomRewinds(t *testing.T) {
	for seed := range uint64(4) {
		t.Run("", func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			dir := t.TempDir()
			r := openR(t, dir, Options{})
			if err := r.ApplyBatch(seqs(1,
				change.Change{Op: change.OpMkdir, Path: "d1", Mode: 0o755},
				change.Change{Op: change.OpMkdir, Path: "d2", Mode: 0o755})); err != nil {
				t.Fatal(err)
			}
			seq := uint64(3)
			states := map[uint64]string{r.j.next - 1: digest(t, dir)}
			for round := range 6 {
				for range 25 {
					c := randomChange(rng)
					c.Seq = seq
					seq++
					err := r.ApplyBatch([]change.Change{c})
					if err != nil && !isChangeErr(err) {
						t.Fatalf("apply %v: %v", c.Op, err)
					}
					states[r.j.next-1] = digest(t, dir)
					checkAllBlobs(t, r, c)
				}
				var ids []uint64
				for id := range states {
					ids = append(ids, id)
				}
				to := ids[rng.IntN(len(ids))]
				if _, err := r.Rewind(context.Background(), Target{Point: to}, "", nil); err != nil {
					t.Fatalf("round %d: rewind to %d: %v", round, to, err)
				}
				if got := digest(t, dir); got != states[to] {
					t.Fatalf("round %d: rewind to %d: tree differs:\n%s", round, to, diffDigest(got, states[to]))
				}
				states[r.j.next-1] = digest(t, dir)
			}
		})
	}
}

func isChangeErr(err error) bool {
	var ae interface{ Unwrap() error }
	return errors.As(err, &ae)
}

func TestBookmarkTimeAndPath(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_700_000_000, 0)
	r := openR(t, dir, Options{Now: func() time.Time { return now }})
	seq := base(t, r)
	before := digest(t, dir)
	if _, err := r.Bookmark("clean"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if err := r.ApplyBatch(seqs(seq,
		change.Change{Op: change.OpWrite, Path: "d/f", Data: []byte("oops")},
		change.Change{Op: change.OpRemove, Path: "g"})); err != nil {
		t.Fatal(err)
	}
	// Only d is rewound: g stays removed.
	if _, err := r.Rewind(context.Background(), Target{Bookmark: "clean"}, "d", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "g")); !os.IsNotExist(err) {
		t.Errorf("g came back from a rewind of d only: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "d/f"))
	if !bytes.Equal(b, big(200<<10, 1)) {
		t.Errorf("d/f not rewound")
	}
	if _, err := r.Rewind(context.Background(), Target{Time: now.Add(-time.Second)}, "", nil); err != nil {
		t.Fatal(err)
	}
	if got := digest(t, dir); got != before {
		t.Fatalf("rewind to a time: tree differs:\n%s", diffDigest(got, before))
	}
	if _, err := r.Rewind(context.Background(), Target{Bookmark: "nope"}, "", nil); !errors.Is(err, ErrNoBookmark) {
		t.Errorf("unknown bookmark: %v", err)
	}
	if _, err := r.Rewind(context.Background(), Target{Point: 1 << 40}, "", nil); !errors.Is(err, ErrNoPoint) {
		t.Errorf("unknown point: %v", err)
	}
	ps, err := r.Points(Filter{Path: "d", Limit: 3})
	if err != nil || len(ps) == 0 {
		t.Fatalf("points: %v %v", ps, err)
	}
	for i := 1; i < len(ps); i++ {
		if ps[i].ID >= ps[i-1].ID {
			t.Errorf("points not newest first: %v", ps)
		}
	}
}

func TestRetention(t *testing.T) {
	dir := t.TempDir()
	var drops []Dropped
	r := openR(t, dir, Options{MaxBytes: 4 << 20, OnDrop: func(d Dropped) { drops = append(drops, d) }})
	seq := uint64(1)
	for i := range 40 {
		c := change.Change{Seq: seq, Op: change.OpReplaceFile, Path: "f", Data: big(512<<10, byte(i)), Mode: 0o600, MTime: 1}
		seq++
		if err := r.ApplyBatch([]change.Change{c}); err != nil {
			t.Fatal(err)
		}
	}
	if len(drops) == 0 {
		t.Fatal("nothing dropped")
	}
	u, err := r.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if u.Bytes > 4<<20+1<<20 {
		t.Errorf("journal holds %d bytes, over the limit", u.Bytes)
	}
	before := digest(t, dir)
	_, err = r.Rewind(context.Background(), Target{Point: 1}, "", nil)
	if !errors.Is(err, ErrDropped) {
		t.Fatalf("rewind to a dropped point: %v", err)
	}
	if got := digest(t, dir); got != before {
		t.Fatalf("a refused rewind changed the tree")
	}
	// The oldest kept point still rewinds.
	if _, err := r.Rewind(context.Background(), Target{Point: u.OldestID}, "", nil); err != nil {
		t.Fatalf("rewind to the oldest kept point: %v", err)
	}
}

func TestDamagedRecord(t *testing.T) {
	dir := t.TempDir()
	r := openR(t, dir, Options{})
	seq := base(t, r)
	if err := r.ApplyBatch(seqs(seq, change.Change{Op: change.OpWrite, Path: "d/small", Data: []byte("XY")})); err != nil {
		t.Fatal(err)
	}
	e := r.j.index[len(r.j.index)-1]
	seg := filepath.Join(dir, ".holdfast/rewind", e.seg.name)
	r.Close()
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[e.off+frameHead+3] ^= 0x40
	// A record after it, so the damage is not a torn tail.
	b = frame(b, (&Record{ID: e.rec.ID + 1, Kind: KindBookmark, Label: "x", Time: time.Unix(1, 0)}).marshal())
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r = openR(t, dir, Options{})
	before := digest(t, dir)
	_, err = r.Rewind(context.Background(), Target{Point: 1}, "", nil)
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("rewind over a damaged record: %v", err)
	}
	if got := digest(t, dir); got != before {
		t.Fatalf("a refused rewind changed the tree")
	}
	// Replication goes on.
	if err := r.ApplyBatch(seqs(seq+1, change.Change{Op: change.OpWrite, Path: "d/small", Data: []byte("Z")})); err != nil {
		t.Fatalf("apply after damage: %v", err)
	}
}

func TestTornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	r := openR(t, dir, Options{})
	base(t, r)
	e := r.j.index[len(r.j.index)-1]
	seg := filepath.Join(dir, ".holdfast/rewind", e.seg.name)
	r.Close()
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{200, 0, 0, 0, 1, 2, 3})
	f.Close()
	r = openR(t, dir, Options{})
	if r.j.next != e.rec.ID+1 {
		t.Errorf("next id %d, want %d", r.j.next, e.rec.ID+1)
	}
	if _, err := r.Rewind(context.Background(), Target{Point: 0}, "", nil); err != nil {
		t.Fatalf("rewind after a torn tail: %v", err)
	}
}

func checkAllBlobs(t *testing.T, r *Replica, what any) {
	t.Helper()
	for _, e := range r.j.index {
		if e.rec.Kind != KindChange || e.voided {
			continue
		}
		full, _ := r.j.read(e)
		if err := r.checkBlobs(full); err != nil {
			t.Fatalf("after %+v: %v", what, err)
		}
	}
}

// TestSegmentsRotateBetweenGroups: a group's IDs are handed out when it is
// captured, before the append that may start a new segment; the new
// segment must be named after the group's first ID, or the next Open
// finds its records "out of order", loses them and jumps its IDs.
func TestSegmentsRotateBetweenGroups(t *testing.T) {
	dir := t.TempDir()
	r := openR(t, dir, Options{MaxBytes: 64 << 20})
	seq := uint64(1)
	for i := range 60 {
		c := change.Change{Seq: seq, Op: change.OpReplaceFile, Path: fmt.Sprintf("f%d", i%3), Data: big(256<<10, byte(i)), Mode: 0o600, MTime: 1}
		seq++
		if err := r.ApplyBatch([]change.Change{c}); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.j.segs) < 3 {
		t.Fatalf("%d segments; the test needs rotations", len(r.j.segs))
	}
	before, err := r.Points(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	next := r.j.next
	r.Close()
	r = openR(t, dir, Options{MaxBytes: 64 << 20})
	for _, s := range r.j.segs {
		if s.damage != nil {
			t.Fatalf("segment %s damaged after a clean close: %v", s.name, s.damage)
		}
	}
	after, err := r.Points(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) || r.j.next != next {
		t.Fatalf("reopened journal has %d points and next ID %d; before %d and %d", len(after), r.j.next, len(before), next)
	}
	if _, err := r.Rewind(context.Background(), Target{Point: before[len(before)-1].ID}, "", nil); err != nil {
		t.Fatal(err)
	}
}
