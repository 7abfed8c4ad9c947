package blocksync

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"reflect"
	"testing"
	"testing/iotest"
)

// reseal recomputes the trailing CRC-32C, to get past the checksum to the
// checks behind it.
func reseal(b []byte) []byte {
	body := b[:len(b)-4]
	return binary.LittleEndian.AppendUint32(bytes.Clone(body), crc32.Checksum(body, castagnoli))
}

func TestSignatureEncoding(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, size := range []int{0, 1, 99, 100, 1000, 1234} {
		sig := sigOf(t, randBytes(rng, size), 100)
		b, err := sig.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalSignature(b)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if got.BlockSize != sig.BlockSize || got.FileSize != sig.FileSize || len(got.Blocks) != len(sig.Blocks) ||
			(len(sig.Blocks) > 0 && !reflect.DeepEqual(got.Blocks, sig.Blocks)) {
			t.Fatalf("size %d: round trip changed the signature", size)
		}
	}

	sig := sigOf(t, randBytes(rng, 1000), 100)
	good, _ := sig.MarshalBinary()
	// Any single flipped bit, and any truncation, is caught.
	for i := range good {
		b := bytes.Clone(good)
		b[i] ^= 0x10
		if _, err := UnmarshalSignature(b); !errors.Is(err, ErrInvalid) {
			t.Fatalf("bit flipped in byte %d: %v", i, err)
		}
	}
	for n := range len(good) {
		if _, err := UnmarshalSignature(good[:n]); !errors.Is(err, ErrInvalid) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
	hdr := len(sigMagic) + 1
	for name, b := range map[string][]byte{
		"version 2":       func() []byte { b := bytes.Clone(good); b[len(sigMagic)] = 2; return reseal(b) }(),
		"extra block":     reseal(append(bytes.Clone(good[:len(good)-4]), make([]byte, sumSize+4)...)),
		"missing block":   reseal(append(bytes.Clone(good[:len(good)-4-sumSize]), 0, 0, 0, 0)),
		"block size 8":    reseal(append(append([]byte(sigMagic), sigVersion, 8, 0), 0, 0, 0, 0)),
		"block size 2^30": reseal(append(binary.AppendUvarint(append([]byte(sigMagic), sigVersion), 1<<30), 0, 0, 0, 0, 0)),
		// A huge claimed size must be refused before anything is allocated.
		"huge file": reseal(append(binary.AppendUvarint(append([]byte(sigMagic), sigVersion, 100), 1<<62), 0, 0, 0, 0)),
		"bad varint": reseal(append(append([]byte(sigMagic), sigVersion),
			0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0)),
		"bad magic": reseal(append([]byte("HFxx"), good[hdr-1:]...)),
	} {
		if _, err := UnmarshalSignature(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	bad := sig
	bad.Blocks = bad.Blocks[:3]
	if _, err := bad.MarshalBinary(); !errors.Is(err, ErrInvalid) {
		t.Errorf("marshal of an inconsistent signature: %v", err)
	}
}

func sampleOps() []Op {
	return []Op{
		{Kind: OpHeader, BlockSize: 4096, Size: 1 << 36},
		{Kind: OpHeader, BlockSize: MinBlockSize, Size: 0},
		{Kind: OpCopy, Block: 0, Count: 1},
		{Kind: OpCopy, Block: MaxBlocks - 1, Count: MaxBlocks},
		{Kind: OpLiteral, Data: []byte("x")},
		{Kind: OpLiteral, Data: bytes.Repeat([]byte("ab"), 40000)},
		{Kind: OpLiteral, Data: make([]byte, MaxLiteral)},
		{Kind: OpEnd, Size: 0, Sum: 0},
		{Kind: OpEnd, Size: 1<<63 - 1, Sum: 0xfedcba9876543210},
	}
}

func TestOpEncoding(t *testing.T) {
	ops := sampleOps()
	var stream []byte
	for _, op := range ops {
		b, err := AppendOp(nil, op)
		if err != nil {
			t.Fatalf("%v: %v", op, err)
		}
		got, n, err := DecodeOp(append(bytes.Clone(b), "trailing"...))
		if err != nil || n != len(b) || !reflect.DeepEqual(got, op) {
			t.Fatalf("%v: decoded %v, %d of %d bytes, %v", op, got, n, len(b), err)
		}
		for k := range len(b) {
			if _, _, err := DecodeOp(b[:k]); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%v cut to %d bytes: %v, want io.ErrUnexpectedEOF", op, k, err)
			}
		}
		for i := range min(len(b), 40) {
			c := bytes.Clone(b)
			c[i] ^= 0x01
			if _, _, err := DecodeOp(c); err == nil {
				t.Fatalf("%v with byte %d flipped decoded", op, i)
			}
		}
		stream = append(stream, b...)
	}
	// The same stream through OpReader, in pieces of every size.
	for _, r := range []io.Reader{bytes.NewReader(stream), iotest.OneByteReader(bytes.NewReader(stream)), iotest.HalfReader(bytes.NewReader(stream))} {
		or := NewOpReader(r)
		for i, want := range ops {
			got, err := or.Next()
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("op %d: %v, %v; want %v", i, got, err, want)
			}
		}
		if _, err := or.Next(); err != io.EOF {
			t.Fatalf("after the last op: %v, want io.EOF", err)
		}
	}
	// A stream cut inside a frame, small or large.
	for _, cut := range []int{len(stream) - 1, len(stream) - 30, 20} {
		or := NewOpReader(bytes.NewReader(stream[:cut]))
		var err error
		for err == nil {
			_, err = or.Next()
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("stream cut at %d: %v, want io.ErrUnexpectedEOF", cut, err)
		}
	}

	for _, op := range []Op{
		{Kind: 0}, {Kind: opKindLimit},
		{Kind: OpHeader, BlockSize: 8}, {Kind: OpHeader, BlockSize: 4096, Size: -1},
		{Kind: OpHeader, BlockSize: 16, Size: 16*MaxBlocks + 1},
		{Kind: OpCopy, Block: -1, Count: 1}, {Kind: OpCopy, Count: 0}, {Kind: OpCopy, Block: MaxBlocks, Count: 1},
		{Kind: OpLiteral}, {Kind: OpLiteral, Data: make([]byte, MaxLiteral+1)},
		{Kind: OpEnd, Size: -1},
	} {
		if _, err := AppendOp(nil, op); !errors.Is(err, ErrInvalid) {
			t.Errorf("AppendOp(%v): %v, want ErrInvalid", op, err)
		}
	}
	// Values out of range on the wire are refused after the checksum.
	frame := func(kind OpKind, fields ...uint64) []byte {
		b := []byte{opMagic, opVersion, byte(kind)}
		for _, f := range fields {
			b = binary.AppendUvarint(b, f)
		}
		return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	}
	for name, b := range map[string][]byte{
		"copy of 2^64-1 blocks": frame(OpCopy, 0, 1<<64-1),
		"block 2^63":            frame(OpCopy, 1<<63, 1),
		"header size 2^64-1":    frame(OpHeader, 4096, 1<<64-1),
		"block size 2^64-1":     frame(OpHeader, 1<<64-1, 0),
		"literal of 2^40":       frame(OpLiteral, 1<<40),
		"unknown kind":          frame(9, 1),
		"version 2":             append([]byte{opMagic, 2, byte(OpCopy)}, frame(OpCopy, 1, 1)[3:]...),
	} {
		if _, _, err := DecodeOp(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}
