package blocksync

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"testing/iotest"
)

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func sigOf(t testing.TB, data []byte, bs int) Signature {
	t.Helper()
	sig, err := ComputeSignature(bytes.NewReader(data), bs)
	if err != nil {
		t.Fatalf("ComputeSignature: %v", err)
	}
	return sig
}

// delta diffs newData against old's signature and returns the ops, with
// literal data copied out of Diff's buffer.
func delta(t testing.TB, old, newData []byte, bs int, opts DiffOptions) ([]Op, Stats) {
	t.Helper()
	var ops []Op
	st, err := DiffWith(sigOf(t, old, bs), bytes.NewReader(newData), opts, func(op Op) error {
		op.Data = bytes.Clone(op.Data)
		ops = append(ops, op)
		return nil
	})
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	return ops, st
}

func encodeOps(t testing.TB, ops []Op) []byte {
	t.Helper()
	var b []byte
	for _, op := range ops {
		var err error
		if b, err = AppendOp(b, op); err != nil {
			t.Fatalf("AppendOp(%v): %v", op, err)
		}
	}
	return b
}

// checkDelta checks a delta's structure and stats, then applies it every
// way there is and compares each result with newData byte for byte.
func checkDelta(t *testing.T, old, newData []byte, ops []Op, st Stats, inPlace bool) {
	t.Helper()
	if len(ops) < 2 || ops[0].Kind != OpHeader || ops[len(ops)-1].Kind != OpEnd {
		t.Fatalf("delta is not header ... end: %v", ops)
	}
	var lit, copies int64
	for _, op := range ops[1 : len(ops)-1] {
		switch op.Kind {
		case OpLiteral:
			lit += int64(len(op.Data))
		case OpCopy:
			copies++
		default:
			t.Fatalf("unexpected %v inside a delta", op)
		}
		if err := op.Validate(); err != nil {
			t.Fatalf("Diff emitted an invalid op: %v", err)
		}
	}
	if st.NewSize != int64(len(newData)) || st.LiteralBytes != lit || st.LiteralBytes+st.CopiedBytes != st.NewSize ||
		st.Ops != int64(len(ops)-2) {
		t.Fatalf("stats %+v disagree with the delta (%d literal bytes, %d ops, new size %d)", st, lit, len(ops)-2, len(newData))
	}

	var out bytes.Buffer
	n, err := Patch(bytes.NewReader(old), int64(len(old)), SliceOps(ops), &out)
	if err != nil || n != int64(len(newData)) || !bytes.Equal(out.Bytes(), newData) {
		t.Fatalf("Patch: %d bytes, err %v; output equals new file: %v", n, err, bytes.Equal(out.Bytes(), newData))
	}

	// The same through the wire encoding, read one byte at a time (half
	// the rest at a time for long deltas, to keep the test quick).
	out.Reset()
	wire := encodeOps(t, ops)
	var r io.Reader = iotest.OneByteReader(bytes.NewReader(wire))
	if len(wire) > 256<<10 {
		r = iotest.HalfReader(bytes.NewReader(wire))
	}
	src := NewOpReader(r)
	if _, err := Patch(bytes.NewReader(old), int64(len(old)), src, &out); err != nil || !bytes.Equal(out.Bytes(), newData) {
		t.Fatalf("Patch from the wire: err %v; output equals new file: %v", err, bytes.Equal(out.Bytes(), newData))
	}
	if _, err := src.Next(); err != io.EOF {
		t.Fatalf("after the end op: %v, want io.EOF", err)
	}

	if inPlace {
		path := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(path, old, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := PatchInPlace(f, SliceOps(ops)); err != nil {
			t.Fatalf("PatchInPlace: %v", err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, newData) {
			t.Fatalf("PatchInPlace: result differs from the new file (%d bytes, want %d)", len(got), len(newData))
		}
	}
}

// planDelta makes a two-round delta, passing the wanted list and the
// refinement through their wire encodings as a transport would.
func planDelta(t testing.TB, old, newData []byte, bs int, opts DiffOptions) ([]Op, Stats) {
	t.Helper()
	sig := sigOf(t, old, bs)
	plan, err := NewPlan(sig, bytes.NewReader(newData), opts)
	if err != nil {
		t.Fatalf("NewPlan: %v", err)
	}
	enc, err := MarshalBlockList(plan.Wanted())
	if err != nil {
		t.Fatalf("MarshalBlockList: %v", err)
	}
	want, err := UnmarshalBlockList(enc)
	if err != nil {
		t.Fatalf("UnmarshalBlockList: %v", err)
	}
	fine, err := ComputeRefinement(bytes.NewReader(old), sig, want)
	if err != nil {
		t.Fatalf("ComputeRefinement: %v", err)
	}
	b, err := fine.MarshalBinary()
	if err != nil {
		t.Fatalf("refinement MarshalBinary: %v", err)
	}
	if fine, err = UnmarshalSignature(b); err != nil {
		t.Fatalf("refinement UnmarshalSignature: %v", err)
	}
	var ops []Op
	st, err := plan.Emit(fine, bytes.NewReader(newData), func(op Op) error {
		op.Data = bytes.Clone(op.Data)
		ops = append(ops, op)
		return nil
	})
	if err != nil {
		t.Fatalf("Emit: %v", err)
	}
	if r := plan.Stats(); st.LiteralBytes > r.LiteralBytes {
		t.Fatalf("second round sends %d literal bytes, more than the first round's %d", st.LiteralBytes, r.LiteralBytes)
	}
	return ops, st
}

// roundTrip diffs and checks in one round and in two, each in both modes,
// and returns the one-round stats.
func roundTrip(t *testing.T, old, newData []byte, bs int) (Stats, Stats) {
	t.Helper()
	ops, st := delta(t, old, newData, bs, DiffOptions{})
	checkDelta(t, old, newData, ops, st, false)
	ops, ist := delta(t, old, newData, bs, DiffOptions{InPlace: true})
	checkDelta(t, old, newData, ops, ist, true)
	ops, pst := planDelta(t, old, newData, bs, DiffOptions{})
	checkDelta(t, old, newData, ops, pst, false)
	ops, pst = planDelta(t, old, newData, bs, DiffOptions{InPlace: true})
	checkDelta(t, old, newData, ops, pst, true)
	return st, ist
}

func TestBlockSize(t *testing.T) {
	for _, c := range []struct {
		size int64
		want int
	}{
		{-1, 4 << 10}, {0, 4 << 10}, {1, 4 << 10}, {1 << 20, 4 << 10}, {16 << 20, 4 << 10},
		{40 << 20, 8 << 10}, {64 << 20, 8 << 10}, {256 << 20, 16 << 10}, {1 << 30, 32 << 10},
		{16 << 30, 128 << 10}, {1 << 40, 1 << 20}, {1 << 50, 1 << 20}, {1<<63 - 1, 1 << 20},
	} {
		if got := BlockSize(c.size); got != c.want {
			t.Errorf("BlockSize(%d) = %d, want %d", c.size, got, c.want)
		}
	}
}

func TestRollingSumMatchesFresh(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := randBytes(rng, 6000)
	for _, n := range []int{16, 17, 64, 4096} {
		rs := sumOf(data[:n])
		for i := 1; i+n <= len(data); i++ {
			rs.roll(data[i-1], data[i+n-1], uint32(n))
			if want := sumOf(data[i : i+n]); rs != want {
				t.Fatalf("window %d at %d: rolled %+v, fresh %+v", n, i, rs, want)
			}
		}
	}
}

// TestWeakSumGolden pins the weak sum: it is part of the signature format,
// so a change to the table or the formula needs a new format version.
func TestWeakSumGolden(t *testing.T) {
	if got, want := sumOf([]byte("Holdfast blocksync, format version 1")).weak(), uint32(0x3743b3bb); got != want {
		t.Fatalf("weak sum = %#x, want %#x", got, want)
	}
}

func TestComputeSignature(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	data := randBytes(rng, 10*1000+7)
	sig := sigOf(t, data, 1000)
	if sig.FileSize != int64(len(data)) || len(sig.Blocks) != 11 || sig.BlockSize != 1000 {
		t.Fatalf("signature: size %d, %d blocks of %d", sig.FileSize, len(sig.Blocks), sig.BlockSize)
	}
	for i, bl := range sig.Blocks {
		p := data[i*1000 : min((i+1)*1000, len(data))]
		if bl.Weak != sumOf(p).weak() || bl.Strong != strongSum(p) {
			t.Fatalf("block %d sums differ from its content's", i)
		}
	}
	// Batches, short reads and a reader that returns data with io.EOF
	// give the same signature.
	big := randBytes(rng, sigBatch*2+12345)
	want := sigOf(t, big, 4096)
	for name, r := range map[string]io.Reader{
		"one byte":  iotest.HalfReader(bytes.NewReader(big)),
		"data+EOF":  iotest.DataErrReader(bytes.NewReader(big)),
		"plain big": bytes.NewReader(big),
	} {
		got, err := ComputeSignature(r, 4096)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.FileSize != want.FileSize || len(got.Blocks) != len(want.Blocks) {
			t.Fatalf("%s: signature differs", name)
		}
		for i := range got.Blocks {
			if got.Blocks[i] != want.Blocks[i] {
				t.Fatalf("%s: block %d differs", name, i)
			}
		}
	}
	empty := sigOf(t, nil, 4096)
	if empty.FileSize != 0 || len(empty.Blocks) != 0 {
		t.Fatalf("empty file: %+v", empty)
	}
	for _, bs := range []int{0, MinBlockSize - 1, MaxBlockSize + 1} {
		if _, err := ComputeSignature(bytes.NewReader(data), bs); !errors.Is(err, ErrInvalid) {
			t.Errorf("block size %d: %v, want ErrInvalid", bs, err)
		}
	}
	boom := errors.New("boom")
	_, err := ComputeSignature(io.MultiReader(bytes.NewReader(big), iotest.ErrReader(boom)), 4096)
	if !errors.Is(err, boom) {
		t.Fatalf("reader error: %v, want it wrapped", err)
	}
}

// edit is one way to change a file, for the table and the random tests.
type edit func(rng *rand.Rand, b []byte) []byte

var edits = map[string]edit{
	"insert": func(rng *rand.Rand, b []byte) []byte {
		at := rng.IntN(len(b) + 1)
		return append(b[:at:at], append(randBytes(rng, 1+rng.IntN(300)), b[at:]...)...)
	},
	"delete": func(rng *rand.Rand, b []byte) []byte {
		if len(b) == 0 {
			return b
		}
		at := rng.IntN(len(b))
		n := 1 + rng.IntN(min(len(b)-at, 500))
		return append(b[:at:at], b[at+n:]...)
	},
	"overwrite": func(rng *rand.Rand, b []byte) []byte {
		if len(b) == 0 {
			return b
		}
		at := rng.IntN(len(b))
		copy(b[at:], randBytes(rng, 1+rng.IntN(200)))
		return b
	},
	"append": func(rng *rand.Rand, b []byte) []byte {
		return append(b, randBytes(rng, 1+rng.IntN(700))...)
	},
	"truncate": func(rng *rand.Rand, b []byte) []byte {
		return b[:rng.IntN(len(b)+1)]
	},
	"move": func(rng *rand.Rand, b []byte) []byte { // cut a range and paste it elsewhere
		if len(b) < 2 {
			return b
		}
		at := rng.IntN(len(b))
		n := 1 + rng.IntN(min(len(b)-at, 2000))
		cut := bytes.Clone(b[at : at+n])
		rest := append(b[:at:at], b[at+n:]...)
		to := rng.IntN(len(rest) + 1)
		return append(rest[:to:to], append(cut, rest[to:]...)...)
	},
	"duplicate": func(rng *rand.Rand, b []byte) []byte {
		if len(b) == 0 {
			return b
		}
		at := rng.IntN(len(b))
		n := 1 + rng.IntN(min(len(b)-at, 2000))
		to := rng.IntN(len(b) + 1)
		return append(b[:to:to], append(bytes.Clone(b[at:at+n]), b[to:]...)...)
	},
}

func TestDiffPatchTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const bs = 64
	base := randBytes(rng, 40*bs+17) // 40 full blocks and a short one
	aligned := base[:40*bs]
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	overwrite := func(b []byte, at int, s string) []byte {
		b = bytes.Clone(b)
		copy(b[at:], s)
		return b
	}
	swapped := cat(base[10*bs:20*bs], base[:10*bs], base[20*bs:])
	for _, c := range []struct {
		name     string
		old, new []byte
		// Expected literal bytes for the general and the in-place delta;
		// -1 to not check.
		lit, inPlaceLit int64
	}{
		{"identical", base, base, 0, 0},
		{"identical aligned", aligned, aligned, 0, 0},
		{"both empty", nil, nil, 0, 0},
		{"old empty", nil, base, int64(len(base)), int64(len(base))},
		{"new empty", base, nil, 0, 0},
		{"smaller than a block, same", base[:30], base[:30], 0, 0},
		{"smaller than a block, changed", base[:30], base[1:31], 30, 30},
		{"grows from less than a block", base[:30], base[:200], 200, 200},
		{"insert at start", base, cat([]byte("0123456789"), base), 10, int64(len(base)) + 10},
		{"insert in middle", base, cat(base[:1000], []byte("xyz"), base[1000:]), 3 + bs, -1},
		{"delete at start", base, base[10:], bs - 10, bs - 10},
		{"delete a block", base, cat(base[:5*bs], base[6*bs:]), 0, 0},
		{"overwrite one byte", base, overwrite(base, 7*bs+3, "!"), bs, bs},
		{"overwrite across blocks", base, overwrite(base, 7*bs+60, "!!!!!!!!"), 2 * bs, 2 * bs},
		{"overwrite short last block", base, overwrite(base, 40*bs+1, "!"), 17, 17},
		{"append to aligned", aligned, cat(aligned, []byte("tail")), 4, 4},
		{"append after short block", base, cat(base, []byte("tail")), 17 + 4, 17 + 4},
		{"truncate to block", base, base[:20*bs], 0, 0},
		{"truncate mid-block", base, base[:20*bs+5], 5, 5},
		{"blocks swapped", base, swapped, 0, -1},
		{"blocks swapped back", swapped, base, 0, -1},
		{"zeros", make([]byte, 50*bs), make([]byte, 70*bs+3), 3, 20*bs + 3},
		{"zeros shrink", make([]byte, 70*bs+3), make([]byte, 50*bs), 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, ist := roundTrip(t, c.old, c.new, bs)
			if c.lit >= 0 && st.LiteralBytes != c.lit {
				t.Errorf("literal bytes %d, want %d (%+v)", st.LiteralBytes, c.lit, st)
			}
			if c.inPlaceLit >= 0 && ist.LiteralBytes != c.inPlaceLit {
				t.Errorf("in place: literal bytes %d, want %d (%+v)", ist.LiteralBytes, c.inPlaceLit, ist)
			}
		})
	}
}

// TestDiffPatchRandom applies random edits to random files with a fixed
// seed, so a failure reproduces.
func TestDiffPatchRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	names := make([]string, 0, len(edits))
	for n := range edits {
		names = append(names, n)
	}
	// Map order is random; sort so the seed decides everything.
	for i := range names {
		for j := i + 1; j < len(names); j++ {
			if names[j] < names[i] {
				names[i], names[j] = names[j], names[i]
			}
		}
	}
	iters := 250
	if testing.Short() {
		iters = 60
	}
	for i := range iters {
		bs := []int{16, 33, 64, 100, 512, 4096}[rng.IntN(6)]
		var old []byte
		switch rng.IntN(6) {
		case 0:
			old = nil
		case 1:
			old = randBytes(rng, rng.IntN(bs)) // smaller than a block
		case 2: // repetitive content: many identical blocks
			unit := randBytes(rng, 1+rng.IntN(3*bs))
			old = bytes.Repeat(unit, 1+rng.IntN(50))
		default:
			old = randBytes(rng, rng.IntN(64<<10))
		}
		newData := bytes.Clone(old)
		var applied []string
		for range rng.IntN(6) {
			n := names[rng.IntN(len(names))]
			newData = edits[n](rng, newData)
			applied = append(applied, n)
		}
		t.Run(fmt.Sprintf("%d-bs%d-%d-bytes-%v", i, bs, len(old), applied), func(t *testing.T) {
			roundTrip(t, old, newData, bs)
		})
	}
}

// TestDiffPatchLarge covers what small files do not: refills and
// compaction of Diff's buffer, literal ops cut at their maximum, copy runs
// batched across reads.
func TestDiffPatchLarge(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	old := randBytes(rng, 4<<20+123)
	newData := bytes.Clone(old)
	for range 40 {
		newData = edits[[]string{"insert", "delete", "overwrite", "move"}[rng.IntN(4)]](rng, newData)
	}
	// A long literal stretch: a region that exists nowhere in old.
	at := rng.IntN(len(newData))
	newData = append(newData[:at:at], append(randBytes(rng, 2<<20+5), newData[at:]...)...)
	for _, bs := range []int{64, 4096, 1 << 20} {
		t.Run(fmt.Sprint(bs), func(t *testing.T) {
			st, _ := roundTrip(t, old, newData, bs)
			if bs == 4096 && st.LiteralBytes > 2<<20+5+40*3*4096 {
				t.Errorf("literal bytes %d: more than the edits explain", st.LiteralBytes)
			}
		})
	}
	// Through a reader that returns a byte at a time.
	ops, st := delta(t, old[:300<<10], newData[:310<<10], 512, DiffOptions{})
	var ops2 []Op
	st2, err := Diff(sigOf(t, old[:300<<10], 512), iotest.OneByteReader(bytes.NewReader(newData[:310<<10])), func(op Op) error {
		op.Data = bytes.Clone(op.Data)
		ops2 = append(ops2, op)
		return nil
	})
	if err != nil || st2 != st || len(ops2) != len(ops) {
		t.Fatalf("one byte at a time: %v, stats %+v vs %+v, %d vs %d ops", err, st2, st, len(ops2), len(ops))
	}
	checkDelta(t, old[:300<<10], newData[:310<<10], ops2, st2, false)
}

func TestWholeFile(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	old, newData := randBytes(rng, 200<<10), randBytes(rng, 200<<10)
	_, st := delta(t, old, newData, 1024, DiffOptions{})
	if !st.WholeFile() || st.LiteralBytes != int64(len(newData)) {
		t.Fatalf("unrelated files: %+v, WholeFile %v", st, st.WholeFile())
	}
	_, st = delta(t, old, old, 1024, DiffOptions{})
	if st.WholeFile() {
		t.Fatalf("identical files: WholeFile true")
	}
	// With the size known, Diff stops early.
	var sent int64
	st, err := DiffWith(sigOf(t, old, 1024), bytes.NewReader(newData), DiffOptions{NewSize: int64(len(newData))}, func(op Op) error {
		sent += int64(len(op.Data))
		return nil
	})
	if !errors.Is(err, ErrWholeFile) || sent > int64(WholeFileRatio*float64(len(newData)))+64<<10 {
		t.Fatalf("early stop: %v after %d literal bytes", err, sent)
	}
	// Mostly the same: no early stop.
	half := append(bytes.Clone(old[:150<<10]), newData[150<<10:]...)
	if _, err := DiffWith(sigOf(t, old, 1024), bytes.NewReader(half), DiffOptions{NewSize: int64(len(half))}, func(Op) error { return nil }); err != nil {
		t.Fatalf("a quarter changed: %v", err)
	}
}

func TestDiffErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	old := randBytes(rng, 10000)
	sig := sigOf(t, old, 100)
	boom := errors.New("boom")
	if _, err := Diff(sig, io.MultiReader(bytes.NewReader(old), iotest.ErrReader(boom)), func(Op) error { return nil }); !errors.Is(err, boom) {
		t.Errorf("reader error: %v", err)
	}
	n := 0
	if _, err := Diff(sig, bytes.NewReader(old), func(Op) error {
		if n++; n == 2 {
			return boom
		}
		return nil
	}); !errors.Is(err, boom) || n != 2 {
		t.Errorf("emit error: %v after %d ops", err, n)
	}
	bad := sig
	bad.Blocks = bad.Blocks[1:]
	if _, err := Diff(bad, bytes.NewReader(old), func(Op) error { return nil }); !errors.Is(err, ErrInvalid) {
		t.Errorf("inconsistent signature: %v", err)
	}
}

// TestDiffMemoryBounded diffs a 48 MiB stream that is never in memory as a
// whole: what Diff allocates must not grow with it.
func TestDiffMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 48 MiB")
	}
	rng := rand.New(rand.NewPCG(15, 16))
	old := randBytes(rng, 1<<20)
	sig := sigOf(t, old, 4096)
	stream := io.MultiReader(bytes.NewReader(old), io.LimitReader(rand.NewChaCha8([32]byte{1}), 47<<20))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	st, err := Diff(sig, stream, func(Op) error { return nil })
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 12<<20 {
		t.Fatalf("Diff of %d bytes allocated %d bytes", st.NewSize, alloc)
	}
}

func TestPatchRejects(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	old := randBytes(rng, 1000) // 10 blocks of 100
	newData := append(bytes.Clone(old[:500]), "new"...)
	good, _ := delta(t, old, newData, 100, DiffOptions{})
	with := func(f func(ops []Op) []Op) []Op {
		ops := make([]Op, len(good))
		copy(ops, good)
		return f(ops)
	}
	header, end := good[0], good[len(good)-1]
	for _, c := range []struct {
		name string
		ops  []Op
		want error
	}{
		{"no header", good[1:], ErrInvalid},
		{"two headers", append([]Op{header}, good...), ErrInvalid},
		{"wrong old size", with(func(o []Op) []Op { o[0].Size = 999; return o }), ErrInvalid},
		{"bad block size", with(func(o []Op) []Op { o[0].BlockSize = 3; return o }), ErrInvalid},
		{"no end", good[:len(good)-1], io.ErrUnexpectedEOF},
		{"empty", nil, io.ErrUnexpectedEOF},
		{"wrong sum", with(func(o []Op) []Op { o[len(o)-1].Sum++; return o }), ErrMismatch},
		{"wrong size", with(func(o []Op) []Op { o[len(o)-1].Size++; return o }), ErrMismatch},
		{"copy past end", []Op{header, {Kind: OpCopy, Block: 9, Count: 2}, end}, ErrInvalid},
		{"copy far past end", []Op{header, {Kind: OpCopy, Block: MaxBlocks - 1, Count: MaxBlocks}, end}, ErrInvalid},
		{"copy of nothing", []Op{header, {Kind: OpCopy, Block: 0, Count: 0}, end}, ErrInvalid},
		{"negative copy", []Op{header, {Kind: OpCopy, Block: -1, Count: 1}, end}, ErrInvalid},
		{"empty literal", []Op{header, {Kind: OpLiteral}, end}, ErrInvalid},
		{"huge literal", []Op{header, {Kind: OpLiteral, Data: make([]byte, MaxLiteral+1)}, end}, ErrInvalid},
		{"unknown op", []Op{header, {Kind: 99}, end}, ErrInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Patch(bytes.NewReader(old), int64(len(old)), SliceOps(c.ops), io.Discard)
			if !errors.Is(err, c.want) {
				t.Fatalf("Patch: %v, want %v", err, c.want)
			}
		})
	}
	// An old file shorter than the header says (it changed under us).
	same, _ := delta(t, old, old, 100, DiffOptions{})
	if _, err := Patch(bytes.NewReader(old[:950]), int64(len(old)), SliceOps(same), io.Discard); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("old file shrank: %v", err)
	}
	// A write error is returned.
	boom := errors.New("boom")
	if _, err := Patch(bytes.NewReader(old), int64(len(old)), SliceOps(good), errWriter{boom}); !errors.Is(err, boom) {
		t.Fatalf("write error: %v", err)
	}
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }

func TestPatchInPlaceRefusesBackwardCopy(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	old := randBytes(rng, 1000)
	newData := append([]byte("inserted"), old...)
	ops, _ := delta(t, old, newData, 100, DiffOptions{}) // not made for in-place
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := PatchInPlace(f, SliceOps(ops)); !errors.Is(err, ErrNotInPlace) {
		t.Fatalf("PatchInPlace of a shifting delta: %v, want ErrNotInPlace", err)
	}
}

// TestInPlaceDeltaWritesLittle checks what in-place buys: for scattered
// overwrites, every copy is at its own offset, so only literals are written.
func TestInPlaceDeltaWritesLittle(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	old := randBytes(rng, 1<<20)
	newData := bytes.Clone(old)
	for range 10 {
		copy(newData[rng.IntN(len(newData)-100):], "changed!")
	}
	ops, _ := delta(t, old, newData, 4096, DiffOptions{InPlace: true})
	var pos int64
	for _, op := range ops {
		switch op.Kind {
		case OpCopy:
			if op.Block*4096 != pos {
				t.Fatalf("copy of block %d to offset %d: moves data", op.Block, pos)
			}
			pos += op.Count * 4096
		case OpLiteral:
			pos += int64(len(op.Data))
		}
	}
}
