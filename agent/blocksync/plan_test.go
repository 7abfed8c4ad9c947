package blocksync

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"testing"
)

// TestPlanSmallChanges checks what the second round is for: scattered small
// changes cost about a small block each, not a large one.
func TestPlanSmallChanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(61, 62))
	old := randBytes(rng, 1<<20)
	newData := bytes.Clone(old)
	for range 20 {
		at := rng.IntN(len(newData) - 100)
		copy(newData[at:], randBytes(rng, 100))
	}
	// An insertion and a deletion, which shift what follows.
	newData = append(newData[:300000:300000], append([]byte("inserted!"), newData[300000:]...)...)
	newData = append(newData[:700000:700000], newData[700050:]...)
	for _, inPlace := range []bool{false, true} {
		_, one := delta(t, old, newData, 4096, DiffOptions{InPlace: inPlace})
		ops, two := planDelta(t, old, newData, 4096, DiffOptions{InPlace: inPlace})
		checkDelta(t, old, newData, ops, two, inPlace)
		t.Logf("in place %v: one round %d literal bytes, two rounds %d", inPlace, one.LiteralBytes, two.LiteralBytes)
		if inPlace {
			continue // after the insertion, in-place deltas cannot reuse what moved
		}
		// Each change touches one or two 4 KiB blocks; in two rounds, one
		// or two 512-byte blocks, plus the insertion's and deletion's.
		if one.LiteralBytes < 20*4096 || two.LiteralBytes > 24*2*512 {
			t.Errorf("literal bytes: one round %d, two rounds %d", one.LiteralBytes, two.LiteralBytes)
		}
	}
}

func TestPlanNothingToRefine(t *testing.T) {
	rng := rand.New(rand.NewPCG(63, 64))
	old := randBytes(rng, 100000)
	sig := sigOf(t, old, 1024)
	plan, err := NewPlan(sig, bytes.NewReader(old), DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if w := plan.Wanted(); w != nil {
		t.Fatalf("identical file: wants %v", w)
	}
	fine, err := ComputeRefinement(bytes.NewReader(old), sig, nil)
	if err != nil || len(fine.Blocks) != 0 {
		t.Fatalf("empty refinement: %v, %d blocks", err, len(fine.Blocks))
	}
	var ops []Op
	st, err := plan.Emit(fine, bytes.NewReader(old), func(op Op) error { ops = append(ops, op); return nil })
	if err != nil || st.LiteralBytes != 0 || len(ops) != 3 || ops[0].BlockSize != 1024 {
		t.Fatalf("Emit: %v, %+v, %v", err, st, ops)
	}
	// A tiny change gets no second round: a small block cannot fit in it.
	changed := bytes.Clone(old)
	changed[5000] ^= 1
	newData := append(changed[:60000:60000], append([]byte("x"), changed[60000:]...)...)
	plan, err = NewPlan(sig, bytes.NewReader(newData), DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if w := plan.Wanted(); len(w) == 0 || len(w) > 6 {
		t.Fatalf("two changes: wants %v", w)
	}
}

func TestPlanRejects(t *testing.T) {
	rng := rand.New(rand.NewPCG(65, 66))
	old := randBytes(rng, 100000)
	newData := bytes.Clone(old)
	copy(newData[50000:], "changed")
	sig := sigOf(t, old, 1024)
	plan, err := NewPlan(sig, bytes.NewReader(newData), DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := plan.Wanted()
	for name, w := range map[string][]int64{
		"out of order": {5, 3},
		"duplicate":    {3, 3},
		"negative":     {-1},
		"past the end": {98},
	} {
		if _, err := ComputeRefinement(bytes.NewReader(old), sig, w); !errors.Is(err, ErrInvalid) {
			t.Errorf("ComputeRefinement(%s): %v", name, err)
		}
	}
	if _, err := ComputeRefinement(bytes.NewReader(old[:40000]), sig, want); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("ComputeRefinement of a shrunk file: %v", err)
	}
	fine, err := ComputeRefinement(bytes.NewReader(old), sig, want)
	if err != nil {
		t.Fatal(err)
	}
	discard := func(Op) error { return nil }
	other := fine
	other.FileSize--
	if _, err := plan.Emit(other, bytes.NewReader(newData), discard); !errors.Is(err, ErrInvalid) {
		t.Errorf("refinement of another file: %v", err)
	}
	odd := sigOf(t, old, 1000)
	odd.Index = []int64{0}
	odd.Blocks = odd.Blocks[:1]
	if _, err := plan.Emit(odd, bytes.NewReader(newData), discard); !errors.Is(err, ErrInvalid) {
		t.Errorf("refinement in a block size that does not divide: %v", err)
	}
	if _, err := NewPlan(fine, bytes.NewReader(newData), DiffOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewPlan with a sparse signature: %v", err)
	}
	// The new file changed between the rounds: Emit notices a size change,
	// Patch a content change.
	if _, err := plan.Emit(fine, bytes.NewReader(newData[:49500]), discard); err == nil {
		t.Errorf("Emit over a truncated new file succeeded")
	}
	changed := bytes.Clone(newData)
	copy(changed[50000:], "CHANGED")
	var ops []Op
	if _, err := plan.Emit(fine, bytes.NewReader(changed), func(op Op) error {
		op.Data = bytes.Clone(op.Data)
		ops = append(ops, op)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := Patch(bytes.NewReader(old), int64(len(old)), SliceOps(ops), io.Discard); !errors.Is(err, ErrMismatch) {
		t.Errorf("Patch of a delta whose file changed between rounds: %v, want ErrMismatch", err)
	}
}

func TestBlockListEncoding(t *testing.T) {
	for _, l := range [][]int64{nil, {0}, {7}, {0, 1, 2, 3}, {5, 100, 1 << 20, MaxBlocks - 1}} {
		b, err := MarshalBlockList(l)
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalBlockList(b)
		if err != nil || len(got) != len(l) || (len(l) > 0 && !reflect.DeepEqual(got, l)) {
			t.Fatalf("%v: got %v, %v", l, got, err)
		}
		for i := range b {
			c := bytes.Clone(b)
			c[i] ^= 0x04
			if _, err := UnmarshalBlockList(c); !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v with byte %d flipped: %v", l, i, err)
			}
		}
		for n := range len(b) {
			if _, err := UnmarshalBlockList(b[:n]); !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v cut to %d bytes: %v", l, n, err)
			}
		}
	}
	for _, l := range [][]int64{{3, 3}, {4, 2}, {-1}} {
		if _, err := MarshalBlockList(l); !errors.Is(err, ErrInvalid) {
			t.Errorf("MarshalBlockList(%v): %v", l, err)
		}
	}
	for name, b := range map[string][]byte{
		"block 2^24":       reseal(append(append([]byte(listMagic), listVersion, 1), 0x80, 0x80, 0x80, 0x08, 0, 0, 0, 0)),
		"count past bytes": reseal(append([]byte(listMagic), listVersion, 100, 1, 2, 0, 0, 0, 0)),
		"trailing bytes":   reseal(append([]byte(listMagic), listVersion, 1, 5, 6, 0, 0, 0, 0)),
		"wrapping gap": reseal(append(append([]byte(listMagic), listVersion, 2, 5),
			0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0)),
		"version 2": reseal(append([]byte(listMagic), 2, 0, 0, 0, 0, 0)),
	} {
		if _, err := UnmarshalBlockList(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestSparseSignatureEncoding(t *testing.T) {
	rng := rand.New(rand.NewPCG(67, 68))
	old := randBytes(rng, 10000)
	full := sigOf(t, old, 100)
	for _, idx := range [][]int64{{}, {0}, {99}, {3, 4, 5, 60, 99}} {
		s := Signature{BlockSize: 100, FileSize: 10000, Index: idx}
		for _, k := range idx {
			s.Blocks = append(s.Blocks, full.Blocks[k])
		}
		if s.Blocks == nil {
			s.Blocks = []BlockSum{}
		}
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalSignature(b)
		if err != nil || !reflect.DeepEqual(got, s) {
			t.Fatalf("%v: got %+v, %v", idx, got, err)
		}
	}
	for name, s := range map[string]Signature{
		"out of order": {BlockSize: 100, FileSize: 10000, Index: []int64{5, 4}, Blocks: make([]BlockSum, 2)},
		"past the end": {BlockSize: 100, FileSize: 10000, Index: []int64{100}, Blocks: make([]BlockSum, 1)},
		"sums short":   {BlockSize: 100, FileSize: 10000, Index: []int64{1, 2}, Blocks: make([]BlockSum, 1)},
	} {
		if _, err := s.MarshalBinary(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestPrehash(t *testing.T) {
	rng := rand.New(rand.NewPCG(69, 70))
	for _, bs := range []int{64, 4096} {
		old := randBytes(rng, 300000+rng.IntN(5000))
		newData := bytes.Clone(old)
		for range 8 {
			newData = edits[[]string{"insert", "delete", "overwrite", "move"}[rng.IntN(4)]](rng, newData)
		}
		pre, err := Prehash(bytes.NewReader(newData), int64(len(newData)), bs)
		if err != nil {
			t.Fatal(err)
		}
		for _, inPlace := range []bool{false, true} {
			want, wst := delta(t, old, newData, bs, DiffOptions{InPlace: inPlace})
			got, gst := delta(t, old, newData, bs, DiffOptions{InPlace: inPlace, Prehashed: pre})
			if !reflect.DeepEqual(got, want) || gst != wst {
				t.Fatalf("bs %d, in place %v: prehashing changed the delta", bs, inPlace)
			}
			checkDelta(t, old, newData, got, gst, inPlace)
		}
		// Made with another block size: ignored.
		other, err := Prehash(bytes.NewReader(newData), int64(len(newData)), bs*2)
		if err != nil {
			t.Fatal(err)
		}
		ops, st := delta(t, old, newData, bs, DiffOptions{Prehashed: other})
		checkDelta(t, old, newData, ops, st, false)
		// The file changed after Prehash: Patch refuses the delta.
		changed := bytes.Clone(old)
		changed[bs*3] ^= 1
		stale, err := Prehash(bytes.NewReader(old), int64(len(old)), bs)
		if err != nil {
			t.Fatal(err)
		}
		ops, _ = delta(t, old, changed, bs, DiffOptions{Prehashed: stale})
		if _, err := Patch(bytes.NewReader(old), int64(len(old)), SliceOps(ops), io.Discard); !errors.Is(err, ErrMismatch) {
			t.Fatalf("delta from a stale prehash: %v, want ErrMismatch", err)
		}
	}
	if _, err := Prehash(bytes.NewReader(nil), 100, 64); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("prehash past the end: %v", err)
	}
}
