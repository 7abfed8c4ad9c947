package blocksync

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
)

// OpKind says what an Op does.
type OpKind uint8

// A delta is one OpHeader, any number of OpCopy and OpLiteral, and one OpEnd.
const (
	// OpHeader opens a delta: BlockSize and Size (the old file's size) of
	// the signature it was made against, so Patch refuses a delta for
	// another version of the file.
	OpHeader OpKind = iota + 1
	// OpCopy appends Count old blocks starting at block Block. Only the old
	// file's last block may be short.
	OpCopy
	// OpLiteral appends Data.
	OpLiteral
	// OpEnd closes a delta: Size and Sum (xxHash64) of the whole new file,
	// checked by Patch before it reports success.
	OpEnd
	opKindLimit
)

var opKindNames = [...]string{"", "header", "copy", "literal", "end"}

func (k OpKind) String() string {
	if k > 0 && k < opKindLimit {
		return opKindNames[k]
	}
	return fmt.Sprintf("opkind(%d)", uint8(k))
}

// Op is one instruction of a delta. Which fields count depends on Kind.
type Op struct {
	Kind      OpKind
	Block     int64  // OpCopy: first old block
	Count     int64  // OpCopy: number of consecutive old blocks, at least 1
	Data      []byte // OpLiteral: 1 to MaxLiteral bytes
	BlockSize int    // OpHeader
	Size      int64  // OpHeader: old file's size; OpEnd: new file's size
	Sum       uint64 // OpEnd: xxHash64 of the new file
}

func (o Op) String() string {
	switch o.Kind {
	case OpHeader:
		return fmt.Sprintf("header(block size %d, old size %d)", o.BlockSize, o.Size)
	case OpCopy:
		return fmt.Sprintf("copy(block %d, count %d)", o.Block, o.Count)
	case OpLiteral:
		return fmt.Sprintf("literal(%d bytes)", len(o.Data))
	case OpEnd:
		return fmt.Sprintf("end(size %d, sum %016x)", o.Size, o.Sum)
	}
	return o.Kind.String()
}

// Validate checks an op's fields against the format's bounds. Whether a
// copy fits the old file is for Patch to check: only it knows the file.
func (o Op) Validate() error {
	switch o.Kind {
	case OpHeader:
		if err := checkBlockSize(o.BlockSize); err != nil {
			return err
		}
		if o.Size < 0 || numBlocks(o.Size, o.BlockSize) > MaxBlocks {
			return invalid("header: old size %d out of range for %d-byte blocks", o.Size, o.BlockSize)
		}
	case OpCopy:
		if o.Block < 0 || o.Block >= MaxBlocks || o.Count < 1 || o.Count > MaxBlocks {
			return invalid("copy of blocks [%d, +%d) out of range", o.Block, o.Count)
		}
	case OpLiteral:
		if len(o.Data) == 0 || len(o.Data) > MaxLiteral {
			return invalid("literal of %d bytes; want 1 to %d", len(o.Data), MaxLiteral)
		}
	case OpEnd:
		if o.Size < 0 {
			return invalid("end: negative size %d", o.Size)
		}
	default:
		return invalid("unknown op kind %d", o.Kind)
	}
	return nil
}

// Op encoding, format version 1: one self-delimiting frame per op,
//
//	magic 0xB7, version 1, kind     3 bytes
//	header:  block size, old size   uvarints
//	copy:    block, count           uvarints
//	literal: length, data           uvarint, bytes
//	end:     size, sum              uvarint, uint64 little-endian
//	CRC-32C of the frame before it  uint32 little-endian
//
// Every frame carries the version, so a stream can be read op by op with no
// preamble, and its own CRC, so damage is caught at the op it hits, before
// Patch writes anything from it.
const (
	opMagic   = 0xB7
	opVersion = 1
	// MaxOpSize is the longest encoded op: a literal of MaxLiteral bytes.
	MaxOpSize = 3 + binary.MaxVarintLen64 + MaxLiteral + 4
)

// AppendOp appends op's encoding to b. It fails only for an invalid op.
func AppendOp(b []byte, op Op) ([]byte, error) {
	if err := op.Validate(); err != nil {
		return b, err
	}
	start := len(b)
	b = append(b, opMagic, opVersion, byte(op.Kind))
	switch op.Kind {
	case OpHeader:
		b = binary.AppendUvarint(b, uint64(op.BlockSize))
		b = binary.AppendUvarint(b, uint64(op.Size))
	case OpCopy:
		b = binary.AppendUvarint(b, uint64(op.Block))
		b = binary.AppendUvarint(b, uint64(op.Count))
	case OpLiteral:
		b = binary.AppendUvarint(b, uint64(len(op.Data)))
		b = append(b, op.Data...)
	case OpEnd:
		b = binary.AppendUvarint(b, uint64(op.Size))
		b = binary.LittleEndian.AppendUint64(b, op.Sum)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli)), nil
}

// errShort means b holds only the start of a frame; decodeOp's n then says
// how many bytes it needs at least.
var errShort = errors.New("short frame")

// DecodeOp decodes the op at the start of b and returns it with the length
// of its frame. An incomplete frame fails with an error wrapping
// io.ErrUnexpectedEOF. A literal's Data aliases b. It never panics.
func DecodeOp(b []byte) (Op, int, error) {
	op, n, err := decodeOp(b)
	if errors.Is(err, errShort) {
		return Op{}, 0, fmt.Errorf("%w: op frame of %d bytes is incomplete", io.ErrUnexpectedEOF, len(b))
	}
	return op, n, err
}

func decodeOp(b []byte) (Op, int, error) {
	if len(b) < 3 {
		return Op{}, 3, errShort
	}
	if b[0] != opMagic {
		return Op{}, 0, invalid("op: bad magic byte %#x", b[0])
	}
	if b[1] != opVersion {
		return Op{}, 0, invalid("op: format version %d; this build reads %d", b[1], opVersion)
	}
	op := Op{Kind: OpKind(b[2])}
	p := 3
	// uv reads one uvarint at p; short reports that b ends inside it.
	var short bool
	uv := func() uint64 {
		v, n := binary.Uvarint(b[p:])
		if n == 0 {
			short = true
			return 0
		}
		if n < 0 {
			n = -n // overflow: Validate or the checks below reject the value
			v = math.MaxUint64
		}
		p += n
		return v
	}
	var v1, v2 uint64
	switch op.Kind {
	case OpHeader, OpCopy, OpEnd:
		v1 = uv()
		if short {
			return Op{}, len(b) + 1, errShort
		}
		if op.Kind == OpEnd {
			if len(b) < p+8 {
				return Op{}, p + 8 + 4, errShort
			}
			op.Sum = binary.LittleEndian.Uint64(b[p:])
			p += 8
		} else {
			v2 = uv()
			if short {
				return Op{}, len(b) + 1, errShort
			}
		}
	case OpLiteral:
		v1 = uv()
		if short {
			return Op{}, len(b) + 1, errShort
		}
		if v1 == 0 || v1 > MaxLiteral {
			return Op{}, 0, invalid("literal of %d bytes; want 1 to %d", v1, MaxLiteral)
		}
		if len(b) < p+int(v1) {
			return Op{}, p + int(v1) + 4, errShort
		}
		op.Data = b[p : p+int(v1) : p+int(v1)]
		p += int(v1)
	default:
		return Op{}, 0, invalid("unknown op kind %d", b[2])
	}
	if len(b) < p+4 {
		return Op{}, p + 4, errShort
	}
	if crc32.Checksum(b[:p], castagnoli) != binary.LittleEndian.Uint32(b[p:]) {
		return Op{}, 0, invalid("%v op: checksum mismatch", op.Kind)
	}
	// Clamp before converting, so a huge value stays huge (and is
	// rejected) instead of wrapping negative.
	toInt64 := func(v uint64) int64 { return int64(min(v, math.MaxInt64)) }
	switch op.Kind {
	case OpHeader:
		op.BlockSize = int(min(v1, MaxBlockSize+1))
		op.Size = toInt64(v2)
	case OpCopy:
		op.Block, op.Count = toInt64(v1), toInt64(v2)
	case OpEnd:
		op.Size = toInt64(v1)
	}
	if err := op.Validate(); err != nil {
		return Op{}, 0, err
	}
	return op, p + 4, nil
}

// OpSource yields a delta's ops in order. Next returns io.EOF after the
// last one. An op's Data may be reused by the following call to Next.
type OpSource interface {
	Next() (Op, error)
}

// SliceOps is an OpSource over ops held in memory.
func SliceOps(ops []Op) OpSource { return &sliceOps{ops: ops} }

type sliceOps struct{ ops []Op }

func (s *sliceOps) Next() (Op, error) {
	if len(s.ops) == 0 {
		return Op{}, io.EOF
	}
	op := s.ops[0]
	s.ops = s.ops[1:]
	return op, nil
}

// OpReader decodes ops from a stream. It may read ahead of the op it
// returns, but it never waits for bytes beyond that op's frame, so a peer
// that sends the end op and then waits for a reply does not deadlock it.
type OpReader struct {
	br    *bufio.Reader
	large []byte // frames too long for br, grown on demand up to MaxOpSize
}

// opReadBuf is OpReader's buffer: it holds the literal ops Diff emits for
// blocks up to 64 KiB whole. Longer frames go through OpReader.large.
const opReadBuf = 128 << 10

// NewOpReader returns an OpReader reading from r.
func NewOpReader(r io.Reader) *OpReader {
	return &OpReader{br: bufio.NewReaderSize(r, opReadBuf)}
}

// Next decodes the next op. It returns io.EOF at a clean end of the
// stream, and an error wrapping io.ErrUnexpectedEOF when the stream ends
// inside a frame. A literal's Data is valid until the next call.
func (r *OpReader) Next() (Op, error) {
	need := 3
	for {
		if need > r.br.Size() {
			return r.nextLarge(need)
		}
		// Peeking what is already buffered costs nothing; peeking more
		// than the frame needs would wait for bytes that may never come.
		b, err := r.br.Peek(max(need, r.br.Buffered()))
		op, n, derr := decodeOp(b)
		if derr == nil {
			if _, err := r.br.Discard(n); err != nil {
				return Op{}, fmt.Errorf("blocksync: reading op: %w", err)
			}
			return op, nil
		}
		if !errors.Is(derr, errShort) {
			return Op{}, derr
		}
		if err != nil {
			return Op{}, readErr(err, len(b))
		}
		need = n
	}
}

// nextLarge reads a frame of n bytes (decodeOp bounded n by MaxOpSize
// before asking for it) into r.large and decodes it.
func (r *OpReader) nextLarge(n int) (Op, error) {
	if n > MaxOpSize {
		return Op{}, invalid("op frame of %d bytes", n)
	}
	if len(r.large) < n {
		r.large = make([]byte, n)
	}
	b := r.large[:n]
	if got, err := io.ReadFull(r.br, b); err != nil {
		return Op{}, readErr(err, got)
	}
	op, _, err := decodeOp(b)
	if errors.Is(err, errShort) { // cannot happen: n is the frame's length
		return Op{}, invalid("op frame shorter than announced")
	}
	return op, err
}

func readErr(err error, got int) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		if got == 0 && errors.Is(err, io.EOF) {
			return io.EOF
		}
		return fmt.Errorf("blocksync: reading op: stream ends inside a frame: %w", io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("blocksync: reading op: %w", err)
}

// OpWriter encodes ops onto a stream through a buffer; call Flush at the
// end.
type OpWriter struct {
	bw  *bufio.Writer
	buf []byte
}

// NewOpWriter returns an OpWriter writing to w.
func NewOpWriter(w io.Writer) *OpWriter {
	return &OpWriter{bw: bufio.NewWriterSize(w, 256<<10)}
}

// Write encodes op. Its signature suits Diff's emit callback.
func (w *OpWriter) Write(op Op) error {
	var err error
	if w.buf, err = AppendOp(w.buf[:0], op); err != nil {
		return err
	}
	if _, err := w.bw.Write(w.buf); err != nil {
		return fmt.Errorf("blocksync: writing %v: %w", op.Kind, err)
	}
	return nil
}

// Flush writes out what is buffered.
func (w *OpWriter) Flush() error {
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("blocksync: flushing ops: %w", err)
	}
	return nil
}
