package blocksync

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func FuzzUnmarshalSignature(f *testing.F) {
	rng := rand.New(rand.NewPCG(41, 42))
	for _, size := range []int{0, 5, 100, 333} {
		sig := sigOf(f, randBytes(rng, size), 16+size%50)
		b, err := sig.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("HFsg\x01"))
	sparse, err := ComputeRefinement(bytes.NewReader(randBytes(rng, 1000)), sigOf(f, randBytes(rng, 1000), 64), []int64{1, 2, 7, 15})
	if err != nil {
		f.Fatal(err)
	}
	b, err := sparse.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		// As given, and with the checksum made right, to get past it.
		if len(b) >= 4 {
			checkSignatureDecode(t, reseal(b))
		}
		checkSignatureDecode(t, b)
	})
}

func checkSignatureDecode(t *testing.T, b []byte) {
	sig, err := UnmarshalSignature(b)
	if err != nil {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error not wrapping ErrInvalid: %v", err)
		}
		return
	}
	if err := sig.Validate(); err != nil {
		t.Fatalf("decoded an invalid signature: %v", err)
	}
	if int64(len(sig.Blocks))*sumSize > int64(len(b)) {
		t.Fatalf("%d blocks from %d bytes", len(sig.Blocks), len(b))
	}
	again, err := sig.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	sig2, err := UnmarshalSignature(again)
	if err != nil || sig2.FileSize != sig.FileSize || sig2.BlockSize != sig.BlockSize ||
		(len(sig.Blocks) > 0 && !reflect.DeepEqual(sig2.Blocks, sig.Blocks)) ||
		(len(sig.Index) > 0 && !reflect.DeepEqual(sig2.Index, sig.Index)) || (sig.Index == nil) != (sig2.Index == nil) {
		t.Fatalf("re-encoding changed the signature: %v", err)
	}
}

func FuzzDecodeOp(f *testing.F) {
	for _, op := range sampleOps() {
		if len(op.Data) > 1000 {
			continue
		}
		b, err := AppendOp(nil, op)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{opMagic, opVersion, byte(OpLiteral), 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		// As given, and as one frame with its checksum made right.
		if len(b) >= 4 {
			checkOpDecode(t, reseal(b))
		}
		checkOpDecode(t, b)
	})
}

func checkOpDecode(t *testing.T, b []byte) {
	op, n, err := DecodeOp(b)
	if err != nil {
		if !errors.Is(err, ErrInvalid) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		return
	}
	if n <= 0 || n > len(b) {
		t.Fatalf("consumed %d of %d bytes", n, len(b))
	}
	if err := op.Validate(); err != nil {
		t.Fatalf("decoded an invalid op: %v", err)
	}
	again, err := AppendOp(nil, op)
	if err != nil {
		t.Fatal(err)
	}
	op2, _, err := DecodeOp(again)
	if err != nil || !reflect.DeepEqual(op, op2) {
		t.Fatalf("re-encoding changed %v to %v (%v)", op, op2, err)
	}
	// The same bytes through a stream.
	op3, err := NewOpReader(bytes.NewReader(b)).Next()
	if err != nil || !reflect.DeepEqual(op, op3) {
		t.Fatalf("OpReader gave %v (%v), DecodeOp %v", op3, err, op)
	}
}

func FuzzUnmarshalBlockList(f *testing.F) {
	for _, l := range [][]int64{nil, {0}, {3, 4, 5, 100, 1 << 20}} {
		b, err := MarshalBlockList(l)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= 4 {
			checkBlockListDecode(t, reseal(b))
		}
		checkBlockListDecode(t, b)
	})
}

func checkBlockListDecode(t *testing.T, b []byte) {
	l, err := UnmarshalBlockList(b)
	if err != nil {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error not wrapping ErrInvalid: %v", err)
		}
		return
	}
	if len(l) > len(b) {
		t.Fatalf("%d entries from %d bytes", len(l), len(b))
	}
	again, err := MarshalBlockList(l)
	if err != nil {
		t.Fatalf("decoded a list that does not encode: %v", err)
	}
	l2, err := UnmarshalBlockList(again)
	if err != nil || len(l2) != len(l) || (len(l) > 0 && !reflect.DeepEqual(l, l2)) {
		t.Fatalf("re-encoding changed the list: %v", err)
	}
}

// FuzzPatch feeds arbitrary deltas to Patch and PatchInPlace against a
// small old file: they must fail cleanly or produce exactly what the end op
// announces, never panic or read out of range. An input starting with an
// even byte is a wire stream (through OpReader); with an odd byte, a
// program of ops (see opProgram) that gets past the codec's checksums, and
// whose result a naive reference patcher predicts.
func FuzzPatch(f *testing.F) {
	rng := rand.New(rand.NewPCG(43, 44))
	old := randBytes(rng, 1000)
	add := func(newData []byte, bs int, inPlace bool) {
		ops, _ := delta(f, old, newData, bs, DiffOptions{InPlace: inPlace})
		f.Add(append([]byte{0}, encodeOps(f, ops)...))
	}
	add(old, 100, false)
	add(append([]byte("head"), old...), 64, false)
	add(append([]byte("head"), old...), 64, true)
	add(old[300:700], 16, false)
	add(append(bytes.Clone(old[500:]), old[:500]...), 100, false)
	add(nil, 100, false)
	f.Add([]byte{1, 84, 1, 0, 0, 2, 1, 3, 3, 1, 7, 2})
	f.Add([]byte{1, 84, 3, 0, 3, 1, 5, 1, 2, 3, 4, 5, 0, 9, 1, 2})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		var src func() OpSource
		var want []byte
		var known bool
		if in[0]%2 == 0 {
			stream := in[1:]
			src = func() OpSource { return NewOpReader(bytes.NewReader(stream)) }
		} else {
			var ops []Op
			ops, want, known = opProgram(in[1:], old)
			src = func() OpSource { return SliceOps(ops) }
		}
		var out bytes.Buffer
		n, err := Patch(bytes.NewReader(old), int64(len(old)), src(), &out)
		if n != int64(out.Len()) {
			t.Fatalf("Patch reports %d bytes, wrote %d", n, out.Len())
		}
		if in[0]%2 == 1 {
			if known && (err != nil || !bytes.Equal(out.Bytes(), want)) {
				t.Fatalf("valid delta: Patch %v, output equals the reference's: %v", err, bytes.Equal(out.Bytes(), want))
			}
			if !known && err == nil {
				t.Fatalf("Patch accepted a delta the reference rejects")
			}
		}
		path := filepath.Join(dir, "f")
		if err := os.WriteFile(path, old, 0o600); err != nil {
			t.Fatal(err)
		}
		fl, ferr := os.OpenFile(path, os.O_RDWR, 0)
		if ferr != nil {
			t.Fatal(ferr)
		}
		_, ierr := PatchInPlace(fl, src())
		if cerr := fl.Close(); cerr != nil {
			t.Fatal(cerr)
		}
		if err != nil {
			return
		}
		// Patch accepted the delta, so its output matches the end op. An
		// in-place patch may refuse it, but if it accepts it, it must
		// produce the same file.
		if ierr == nil {
			got, rerr := os.ReadFile(path)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if !bytes.Equal(got, out.Bytes()) {
				t.Fatalf("PatchInPlace produced %d bytes unlike Patch's %d", len(got), out.Len())
			}
		} else if !errors.Is(ierr, ErrNotInPlace) {
			t.Fatalf("Patch accepted the delta, PatchInPlace failed otherwise: %v", ierr)
		}
	})
}

// opProgram turns fuzz bytes into a delta against old, with some of every
// mistake a delta can make, and applies it naively: ref is the new file
// and ok says whether the delta is valid, so Patch must accept it.
func opProgram(b []byte, old []byte) (ops []Op, ref []byte, ok bool) {
	next := func() int {
		if len(b) == 0 {
			return 0
		}
		c := int(b[0])
		b = b[1:]
		return c
	}
	bs := MinBlockSize + next()%200
	size := int64(len(old))
	ok = true
	if next()%8 == 7 {
		size++ // a header for another file
		ok = false
	}
	ops = append(ops, Op{Kind: OpHeader, BlockSize: bs, Size: size})
	nb := numBlocks(int64(len(old)), bs)
	goodEnd := true
loop:
	for len(b) > 0 {
		switch next() % 5 {
		case 0:
			op := Op{Kind: OpCopy, Block: int64(next()) % (nb + 2), Count: int64(next() % 5)}
			if op.Count == 0 || op.Block+op.Count > nb {
				ok = false
			} else {
				ref = append(ref, old[op.Block*int64(bs):min((op.Block+op.Count)*int64(bs), int64(len(old)))]...)
			}
			ops = append(ops, op)
		case 1:
			n := next() % 40
			data := make([]byte, n)
			copy(data, b)
			b = b[min(n, len(b)):]
			if n == 0 {
				ok = false
			}
			ref = append(ref, data...)
			ops = append(ops, Op{Kind: OpLiteral, Data: data})
		case 2:
			ops = append(ops, Op{Kind: OpHeader, BlockSize: bs, Size: size})
			ok = false // a second header
		case 3:
			goodEnd = next()%4 != 0
			break loop
		case 4:
			ops = append(ops, Op{Kind: OpCopy, Block: -1, Count: int64(next())})
			ok = false
		}
	}
	end := Op{Kind: OpEnd, Size: int64(len(ref)), Sum: xxhash.Sum64(ref)}
	if !goodEnd {
		end.Sum++
		ok = false
	}
	return append(ops, end), ref, ok
}

// FuzzDiffPatch checks the round trip on arbitrary pairs of files.
func FuzzDiffPatch(f *testing.F) {
	f.Add([]byte("the quick brown fox jumps over the lazy dog"), []byte("the quick brown cat jumps over the lazy dog!"), uint8(0))
	f.Add(bytes.Repeat([]byte("abcdefgh"), 40), bytes.Repeat([]byte("abcdefgh"), 41), uint8(3))
	f.Add([]byte{}, []byte("x"), uint8(200))
	f.Fuzz(func(t *testing.T, old, newData []byte, bsSeed uint8) {
		bs := MinBlockSize + int(bsSeed)%48
		roundTrip(t, old, newData, bs)
	})
}
