package blocksync

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// A Plan is a delta made in two rounds, for when the master can read its
// file twice (an io.ReaderAt) and afford one more round trip.
//
// One round with blocks of sqrt(size) bytes sends a whole block for every
// changed region, however small the change: a 4 KiB write into a 1 GiB file
// costs 32 KiB. The second round fixes that without making the first
// signature bigger: the replica describes the old blocks the first round
// left unused, near the changed regions, in blocks eight times smaller, and
// the master diffs the changed regions again against those. A file with few
// changes pays a small second signature; one with many small changes
// sends about one small block per change instead of one large one.
//
// The master's side:
//
//	plan, err := NewPlan(sig, file, opts)   // round 1: scans file, keeps no data
//	want := plan.Wanted()                   // send to the replica
//	fine := ...                             // the replica's ComputeRefinement(old, sig, want)
//	stats, err := plan.Emit(fine, file, emit) // round 2: the delta, for Patch
//
// The delta Emit produces is an ordinary one: Patch and PatchInPlace apply
// it. Its copies count in the small blocks' unit. Its end op carries the
// checksum of the file as the first round read it, so a file that changed
// between the rounds makes Patch fail rather than produce a mix.
type Plan struct {
	bs       int
	oldSize  int64
	inPlace  bool
	segments []segment
	end      Op
	st       Stats
}

// segment is a stretch of the new file: a copy of old blocks (in the first
// round's block numbers), or literal bytes still to be looked at again.
type segment struct {
	literal      bool
	block, count int64 // copy
	off, n       int64 // literal: offset and length in the new file
}

// NewPlan runs the first round: it reads newFile to its end and records
// which old blocks (of sig, a full signature) it matches where, and which
// ranges of the new file matched nothing. It keeps no file data: its memory
// grows with the number of changed regions, at worst two small entries per
// block of the new file. DiffOptions work as for Diff.
func NewPlan(sig Signature, newFile io.Reader, opts DiffOptions) (*Plan, error) {
	if err := sig.Validate(); err != nil {
		return nil, fmt.Errorf("blocksync: plan: %w", err)
	}
	if sig.Index != nil {
		return nil, fmt.Errorf("blocksync: plan: %w", invalid("first round needs a full signature, not a sparse one"))
	}
	p := &Plan{bs: sig.BlockSize, oldSize: sig.FileSize, inPlace: opts.InPlace}
	var off int64 // where the next op lands in the new file
	record := func(op Op) error {
		switch op.Kind {
		case OpCopy:
			p.segments = append(p.segments, segment{block: op.Block, count: op.Count})
			off += min((op.Block+op.Count)*int64(p.bs), p.oldSize) - op.Block*int64(p.bs)
		case OpLiteral:
			n := int64(len(op.Data))
			if k := len(p.segments) - 1; k >= 0 && p.segments[k].literal {
				p.segments[k].n += n // Diff cuts long literals in pieces
			} else {
				p.segments = append(p.segments, segment{literal: true, off: off, n: n})
			}
			off += n
		case OpEnd:
			p.end = op
		}
		return nil
	}
	d := newDiffer(sig, opts, record)
	d.reset(newFile, 0, false)
	err := d.run()
	p.st = d.st
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Stats are the first round's: the literal bytes are an upper bound on the
// final delta's.
func (p *Plan) Stats() Stats { return p.st }

// fineRatio is how many small blocks the second round cuts a block into:
// 8, or fewer if the block size is not a multiple of 8 or the small blocks
// would be under MinBlockSize. 0 means no second round.
func fineRatio(bs int) int {
	for _, r := range []int{8, 4, 2} {
		if bs%r == 0 && bs/r >= MinBlockSize {
			return r
		}
	}
	return 0
}

// Wanted lists the old blocks (increasing block numbers) worth describing
// in small blocks for the second round: those the first round did not
// copy anywhere and that lie at or next to the offset of a literal range
// at least one small block long. Where a region was rewritten in place,
// that is the block that was there; where bytes were inserted or deleted,
// the block that held the edit. It returns nil when a second round cannot
// help; the replica then answers with an empty refinement.
func (p *Plan) Wanted() []int64 {
	r := fineRatio(p.bs)
	if r == 0 || numBlocks(p.oldSize, p.bs/r) > MaxBlocks {
		return nil
	}
	nb := numBlocks(p.oldSize, p.bs)
	used := make([]uint64, (nb+63)/64)
	for _, s := range p.segments {
		if !s.literal {
			for k := s.block; k < s.block+s.count; k++ {
				used[k/64] |= 1 << (k % 64)
			}
		}
	}
	var want []int64
	bs := int64(p.bs)
	for _, s := range p.segments {
		if !s.literal || s.n < bs/int64(r) {
			continue
		}
		lo := max(0, s.off/bs-1)
		hi := min(nb, (s.off+s.n)/bs+2)
		for k := lo; k < hi; k++ {
			if used[k/64]&(1<<(k%64)) == 0 {
				used[k/64] |= 1 << (k % 64) // once only
				want = append(want, k)
			}
		}
	}
	// Ranges come in file order but their neighbourhoods may overlap, so
	// sort (insertion sort: the list is nearly sorted already).
	for i := 1; i < len(want); i++ {
		for j := i; j > 0 && want[j] < want[j-1]; j-- {
			want[j], want[j-1] = want[j-1], want[j]
		}
	}
	return want
}

// ComputeRefinement is the replica's half of the second round: the sparse
// signature, in small blocks, of the old blocks the master listed (Wanted).
// sig is the replica's signature of the same file, old reads it. A list
// the replica cannot refine (blocks too small to cut) gets an empty
// signature, which Emit takes as "no second round".
func ComputeRefinement(old io.ReaderAt, sig Signature, wanted []int64) (Signature, error) {
	if err := checkBlockSize(sig.BlockSize); err != nil {
		return Signature{}, fmt.Errorf("blocksync: refinement: %w", err)
	}
	bs, size := sig.BlockSize, sig.FileSize
	nb := numBlocks(size, bs)
	for i, k := range wanted {
		if k < 0 || k >= nb || (i > 0 && k <= wanted[i-1]) {
			return Signature{}, fmt.Errorf("blocksync: refinement: %w",
				invalid("wanted block %d at %d: out of range or out of order", k, i))
		}
	}
	r := fineRatio(bs)
	if r == 0 || len(wanted) == 0 || numBlocks(size, bs/r) > MaxBlocks {
		return Signature{BlockSize: bs, FileSize: size, Index: []int64{}, Blocks: []BlockSum{}}, nil
	}
	fs := bs / r
	nFine := numBlocks(size, fs)
	fine := Signature{BlockSize: fs, FileSize: size, Index: make([]int64, 0, len(wanted)*r)}
	for _, k := range wanted {
		for f := k * int64(r); f < min((k+1)*int64(r), nFine); f++ {
			fine.Index = append(fine.Index, f)
		}
	}
	fine.Blocks = make([]BlockSum, len(fine.Index))

	// Read a batch of wanted blocks, hash its small blocks on all cores.
	perBatch := max(1, sigBatch/bs)
	buf := make([]byte, min(len(wanted), perBatch)*bs)
	next := 0 // first fine block of the batch
	for start := 0; start < len(wanted); start += perBatch {
		batch := wanted[start:min(start+perBatch, len(wanted))]
		var pieces [][]byte
		for i, k := range batch {
			n := min(int64(bs), size-k*int64(bs))
			b := buf[i*bs : i*bs+int(n)]
			if err := readAt(old, b, k*int64(bs), "old"); err != nil {
				return Signature{}, err
			}
			for o := 0; o < len(b); o += fs {
				pieces = append(pieces, b[o:min(o+fs, len(b))])
			}
		}
		out := fine.Blocks[next : next+len(pieces)]
		parallel(len(pieces), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				out[i] = BlockSum{Weak: sumOf(pieces[i]).weak(), Strong: strongSum(pieces[i])}
			}
		})
		next += len(pieces)
	}
	return fine, nil
}

// Emit runs the second round and emits the delta: the first round's copies,
// and for each literal range the result of diffing it again against fine,
// the replica's ComputeRefinement. newFile must hold what the first round
// read. An emitted literal's Data is only valid during the call to emit.
func (p *Plan) Emit(fine Signature, newFile io.ReaderAt, emit func(Op) error) (Stats, error) {
	if err := fine.Validate(); err != nil {
		return Stats{}, fmt.Errorf("blocksync: plan: refinement: %w", err)
	}
	refine := len(fine.Blocks) > 0
	unit := p.bs
	if refine {
		if fine.FileSize != p.oldSize || fine.BlockSize > p.bs || p.bs%fine.BlockSize != 0 {
			return Stats{}, fmt.Errorf("blocksync: plan: %w", invalid(
				"refinement of %d-byte blocks of a %d-byte file for %d-byte blocks of a %d-byte file",
				fine.BlockSize, fine.FileSize, p.bs, p.oldSize))
		}
		unit = fine.BlockSize
	}
	ratio := int64(p.bs / unit)
	m := &merger{emit: emit, unit: int64(unit), oldSize: p.oldSize}
	if err := m.send(Op{Kind: OpHeader, BlockSize: unit, Size: p.oldSize}); err != nil {
		return Stats{}, err
	}
	var d *differ
	if refine {
		d = newDiffer(fine, DiffOptions{InPlace: p.inPlace}, m.add)
	}
	var buf []byte
	nb, nu := numBlocks(p.oldSize, p.bs), numBlocks(p.oldSize, unit)
	for _, s := range p.segments {
		switch {
		case !s.literal:
			end := (s.block + s.count) * ratio
			if s.block+s.count == nb {
				end = nu // the last block may be short: fewer small blocks
			}
			if err := m.add(Op{Kind: OpCopy, Block: s.block * ratio, Count: end - s.block*ratio}); err != nil {
				return m.st, err
			}
		case refine:
			d.reset(io.NewSectionReader(newFile, s.off, s.n), s.off, true)
			err := d.run()
			m.st.WeakHits += d.st.WeakHits
			if err != nil {
				return m.st, err
			}
			if d.st.NewSize != s.n {
				return m.st, fmt.Errorf("blocksync: plan: new file changed between rounds: read %d bytes at offset %d, want %d",
					d.st.NewSize, s.off, s.n)
			}
		default:
			if buf == nil {
				buf = make([]byte, min(s.n, MaxLiteral))
			}
			for o := s.off; o < s.off+s.n; {
				b := buf[:min(int64(len(buf)), s.off+s.n-o)]
				if err := readAt(newFile, b, o, "new"); err != nil {
					return m.st, err
				}
				if err := m.add(Op{Kind: OpLiteral, Data: b}); err != nil {
					return m.st, err
				}
				o += int64(len(b))
			}
		}
	}
	if err := m.flush(); err != nil {
		return m.st, err
	}
	m.st.NewSize = p.st.NewSize
	return m.st, m.send(p.end)
}

// merger passes ops on to emit, joining copies of consecutive blocks that
// arrive separately (the end of one range's copies and the next copy), and
// counts what passes.
type merger struct {
	emit               func(Op) error
	unit, oldSize      int64
	runStart, runCount int64
	st                 Stats
}

func (m *merger) add(op Op) error {
	if op.Kind == OpCopy {
		if m.runCount > 0 && m.runStart+m.runCount == op.Block {
			m.runCount += op.Count
			return nil
		}
		if err := m.flush(); err != nil {
			return err
		}
		m.runStart, m.runCount = op.Block, op.Count
		return nil
	}
	if err := m.flush(); err != nil {
		return err
	}
	m.st.LiteralBytes += int64(len(op.Data))
	return m.send(op)
}

func (m *merger) flush() error {
	if m.runCount == 0 {
		return nil
	}
	op := Op{Kind: OpCopy, Block: m.runStart, Count: m.runCount}
	m.runCount = 0
	m.st.CopiedBytes += min((op.Block+op.Count)*m.unit, m.oldSize) - op.Block*m.unit
	return m.send(op)
}

func (m *merger) send(op Op) error {
	if err := m.emit(op); err != nil {
		return fmt.Errorf("blocksync: plan: emitting %v: %w", op.Kind, err)
	}
	if op.Kind == OpCopy || op.Kind == OpLiteral {
		m.st.Ops++
	}
	return nil
}

// Block list encoding (Wanted on the wire), format version 1:
//
//	"HFbl"     magic, 4 bytes
//	version    1 byte
//	count      uvarint
//	blocks     uvarints: the first block number, then each gap minus one
//	CRC-32C    of everything before it, uint32 little-endian
const (
	listMagic   = "HFbl"
	listVersion = 1
)

// MarshalBlockList encodes an increasing list of block numbers.
func MarshalBlockList(blocks []int64) ([]byte, error) {
	if len(blocks) > MaxBlocks {
		return nil, invalid("block list of %d; at most %d", len(blocks), MaxBlocks)
	}
	b := append([]byte(listMagic), listVersion)
	b = binary.AppendUvarint(b, uint64(len(blocks)))
	for i, k := range blocks {
		if k < 0 || (i > 0 && k <= blocks[i-1]) {
			return nil, invalid("block list: %d at %d out of order", k, i)
		}
		if i == 0 {
			b = binary.AppendUvarint(b, uint64(k))
		} else {
			b = binary.AppendUvarint(b, uint64(k-blocks[i-1]-1))
		}
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// UnmarshalBlockList decodes a block list: at most MaxBlocks increasing
// block numbers below MaxBlocks. It never panics and allocates only in
// proportion to len(b).
func UnmarshalBlockList(b []byte) ([]int64, error) {
	if len(b) < len(listMagic)+1+1+4 {
		return nil, invalid("block list of %d bytes is too short", len(b))
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, invalid("block list checksum mismatch")
	}
	if string(body[:len(listMagic)]) != listMagic {
		return nil, invalid("not a block list")
	}
	if v := body[len(listMagic)]; v != listVersion {
		return nil, invalid("block list format version %d; this build reads %d", v, listVersion)
	}
	rest := body[len(listMagic)+1:]
	n, c := binary.Uvarint(rest)
	if c <= 0 || n > MaxBlocks || n > uint64(len(rest)-c) {
		return nil, invalid("block list count: bad varint or more entries than bytes")
	}
	rest = rest[c:]
	out := make([]int64, n)
	var prev uint64
	for i := range out {
		v, c := binary.Uvarint(rest)
		if c <= 0 {
			return nil, invalid("block list entry %d: bad varint", i)
		}
		rest = rest[c:]
		if i > 0 {
			v += prev + 1
			if v <= prev {
				return nil, invalid("block list entry %d out of order", i)
			}
		}
		if v >= MaxBlocks {
			return nil, invalid("block list entry %d: block %d out of range", i, v)
		}
		out[i], prev = int64(v), v
	}
	if len(rest) != 0 {
		return nil, invalid("block list has %d trailing bytes", len(rest))
	}
	return out, nil
}
