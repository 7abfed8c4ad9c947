package blocksync

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// DiffOptions adjust Diff. The zero value is the general case.
type DiffOptions struct {
	// InPlace makes a delta that PatchInPlace can apply over the old file:
	// an old block is only used at or before its own offset, because the
	// patch writes the new file front to back over the old one, and what
	// lies before the write position is already gone. Insertions then cost
	// literal bytes up to the next match the rule allows; in-place
	// overwrites, appends and truncations cost nothing extra.
	InPlace bool
	// NewSize, when positive, is the new file's expected size. Diff then
	// gives up with ErrWholeFile as soon as the literal bytes exceed
	// WholeFileRatio of it, so a caller that spools the delta before
	// sending it spools at most that much and wastes no more scanning.
	NewSize int64
	// Prehashed, if not nil, holds the new file's aligned blocks' hashes
	// (see Prehash), which Diff then uses instead of hashing them again.
	// Ignored if made with another block size.
	Prehashed *Prehashed
}

// Stats describe a delta.
type Stats struct {
	NewSize      int64 // bytes read from the new file
	LiteralBytes int64 // bytes sent as literal data
	CopiedBytes  int64 // bytes taken from the old file
	Ops          int64 // copy and literal ops emitted (header and end not counted)
	WeakHits     int64 // weak-sum hits whose strong hash differed: hashing wasted on false alarms
}

// WholeFile reports whether more than WholeFileRatio of the new file
// travels as literal bytes, so that sending the file whole (OpReplaceFile)
// would have been as good: next time, skip the signature.
func (s Stats) WholeFile() bool {
	return s.NewSize > 0 && float64(s.LiteralBytes) > WholeFileRatio*float64(s.NewSize)
}

// Diff reads newFile to its end and emits the delta that turns the file
// sig describes into it: OpHeader, then copies and literals, then OpEnd.
// An emitted literal's Data is only valid during the call to emit (it
// points into Diff's buffer). An error from emit stops Diff and is
// returned wrapped.
//
// Diff streams: besides an index of the signature it holds a few blocks and
// a few MiB of the new file at a time, whatever the file's size.
func Diff(sig Signature, newFile io.Reader, emit func(Op) error) (Stats, error) {
	return DiffWith(sig, newFile, DiffOptions{}, emit)
}

// DiffWith is Diff with options.
func DiffWith(sig Signature, newFile io.Reader, opts DiffOptions, emit func(Op) error) (Stats, error) {
	if err := sig.Validate(); err != nil {
		return Stats{}, fmt.Errorf("blocksync: diff: %w", err)
	}
	d := newDiffer(sig, opts, emit)
	d.reset(newFile, 0, false)
	err := d.run()
	return d.st, err
}

// maxChain bounds how many old blocks with the same weak sum (and
// different contents) a lookup tries. Weak sums are easy to collide on
// purpose; without a bound an old file built of colliding blocks would make
// every byte of the scan cost thousands of comparisons. Past the bound,
// Diff may miss a match (sending literal bytes), never make a wrong one.
const maxChain = 32

// index finds old blocks by weak sum. A bit filter answers most lookups
// of the byte-by-byte scan, which mostly miss, from a few cache lines; an
// open-addressing table (cheaper than a map for uint32 keys) answers the
// rest.
type index struct {
	filter []uint64
	fshift uint32
	slots  []slot
	sshift uint32
	next   []int32 // block -> next block with the same weak sum, -1 at the end
}

// slot is one entry of the index's table: a weak sum and the first block
// of its chain (-1: empty). The sum is kept here so a probe reads one
// cache line, not the signature too.
type slot struct {
	weak  uint32
	first int32
}

func filterSlot(w uint32, shift uint32) uint32 { return (w * 0x9e3779b1) >> shift }

// log2Ceil is the smallest e >= lo with 1<<e >= n.
func log2Ceil(n int, lo uint32) uint32 {
	e := lo
	for e < 31 && 1<<e < n {
		e++
	}
	return e
}

// newIndex indexes the full-size blocks. Of blocks with identical content
// it keeps the last: any of them gives the same bytes, and the last is the
// one an in-place delta can use at most offsets.
func newIndex(sig Signature, nFull int) index {
	fbits := log2Ceil(16*nFull, 6) // about 16 bits per block: ~6% false hits
	sbits := log2Ceil(2*nFull, 1)  // half full at most: short probes
	ix := index{
		filter: make([]uint64, (1<<fbits)/64),
		fshift: 32 - fbits,
		slots:  make([]slot, 1<<sbits),
		sshift: 32 - sbits,
		next:   make([]int32, nFull),
	}
	for i := range ix.slots {
		ix.slots[i].first = -1
	}
	for j := range nFull {
		bl := &sig.Blocks[j]
		ix.next[j] = -1
		s := ix.slot(bl.Weak)
		h := ix.slots[s].first
		if h < 0 {
			ix.slots[s] = slot{bl.Weak, int32(j)}
			f := filterSlot(bl.Weak, ix.fshift)
			ix.filter[f/64] |= 1 << (f % 64)
			continue
		}
		// Walk the chain: replace a block with the same content, or append.
		n, last := 0, int32(-1)
		for c := h; c >= 0; c = ix.next[c] {
			if sig.Blocks[c].Strong == bl.Strong {
				ix.next[j] = ix.next[c]
				if last < 0 {
					ix.slots[s].first = int32(j)
				} else {
					ix.next[last] = int32(j)
				}
				break
			}
			last = c
			n++
			if ix.next[c] < 0 {
				if n < maxChain {
					ix.next[c] = int32(j)
				}
				break
			}
		}
	}
	return ix
}

// slot returns the table slot that holds weak sum w, or the empty slot
// where it would go.
func (ix *index) slot(w uint32) uint32 {
	mask := uint32(len(ix.slots) - 1)
	for s := (w * 0x85ebca6b) >> ix.sshift; ; s = (s + 1) & mask {
		if e := ix.slots[s]; e.first < 0 || e.weak == w {
			return s
		}
	}
}

// head returns the first block with weak sum w, or -1.
func (ix *index) head(w uint32) int32 { return ix.slots[ix.slot(w)].first }

// minParallelBlock is the smallest block matchRun hashes on several cores.
const minParallelBlock = 16 << 10

// readSize is how much Diff asks newFile for at a time.
const readSize = 2 << 20

// differ is one scan in progress: a whole Diff, a Plan's first round, or
// one literal range of a Plan's second round (a section: no header, no end
// op, no checksum). Offsets into buf are ints; base is the file offset of
// buf[0].
//
// Old blocks are addressed two ways: a position is an index into
// sig.Blocks, a block number is the block's place in the old file (its
// offset divided by the block size). They are the same for a full
// signature; a sparse one (sig.Index) lists some blocks only.
type differ struct {
	sig     Signature
	bs      int
	nFull   int64 // positions [0, nFull) are full-size blocks
	tailPos int64 // position of the old file's short last block, -1 if not in sig
	tailLen int
	opts    DiffOptions
	emit    func(Op) error
	ix      index
	section bool
	r       io.Reader
	sum     *xxhash.Digest

	buf    []byte
	bufMax int // buf starts small, for small files, and grows to this
	base   int64
	lit    int // start of the literal bytes not yet emitted
	pos    int // start of the window
	end    int // end of the data read
	eof    bool

	rolling bool // rs holds the rolling sum of the window at pos
	rs      rollsum
	strong  [StrongSize]byte
	strongN int64 // file offset strong was computed at, -1 if none
	ahead   [StrongSize]byte
	aheadN  int64 // the same for the hash skipChanged computed
	checked int64 // file offset of the last window scan looked up, -1 if none

	runStart, runCount int64 // copy run not yet emitted, in block numbers
	lastEnd            int64 // position after the last one copied, -1 if none
	litChunk           int   // longest literal op emitted

	par     int                // windows matchRun hashes at once: one per core
	strongs [][StrongSize]byte // matchRun's hashes, par of them

	st Stats
}

func newDiffer(sig Signature, opts DiffOptions, emit func(Op) error) *differ {
	bs := sig.BlockSize
	n := int64(len(sig.Blocks))
	nFull, tailPos, tailLen := n, int64(-1), int(sig.FileSize%int64(bs))
	if n > 0 && tailLen != 0 && blockNum(sig, n-1) == numBlocks(sig.FileSize, bs)-1 {
		nFull, tailPos = n-1, n-1
	}
	litChunk := min(max(64<<10, bs), MaxLiteral)
	par := runtime.GOMAXPROCS(0)
	return &differ{
		par:      par,
		strongs:  make([][StrongSize]byte, par),
		sig:      sig,
		bs:       bs,
		nFull:    nFull,
		tailPos:  tailPos,
		tailLen:  tailLen,
		opts:     opts,
		emit:     emit,
		ix:       newIndex(sig, int(nFull)),
		buf:      make([]byte, litChunk+bs+min(readSize, 64<<10)),
		bufMax:   litChunk + bs + max(readSize, bs),
		litChunk: litChunk,
	}
}

// reset readies d to scan r, whose first byte is at file offset base.
// Scanning a section emits neither header nor end op.
func (d *differ) reset(r io.Reader, base int64, section bool) {
	d.r, d.base, d.section = r, base, section
	d.sum = nil
	if !section {
		d.sum = xxhash.New()
	}
	d.lit, d.pos, d.end, d.eof = 0, 0, 0, false
	d.rolling = false
	d.strongN, d.aheadN, d.checked = -1, -1, -1
	d.runCount, d.lastEnd = 0, -1
	d.st = Stats{}
}

// blockNum is the old file's block number of position p.
func blockNum(sig Signature, p int64) int64 {
	if sig.Index == nil {
		return p
	}
	return sig.Index[p]
}

func (d *differ) num(p int64) int64 { return blockNum(d.sig, p) }

// posOf is the position of block number k, or -1 if sig lacks it.
func (d *differ) posOf(k int64) int64 {
	if d.sig.Index == nil {
		if k < int64(len(d.sig.Blocks)) {
			return k
		}
		return -1
	}
	p, ok := slices.BinarySearch(d.sig.Index, k)
	if !ok {
		return -1
	}
	return int64(p)
}

// follows reports whether position p+1 is the old block right after p's.
func (d *differ) follows(p int64) bool {
	return d.sig.Index == nil || d.sig.Index[p+1] == d.sig.Index[p]+1
}

func (d *differ) run() error {
	if !d.section {
		if err := d.send(Op{Kind: OpHeader, BlockSize: d.bs, Size: d.sig.FileSize}); err != nil {
			return err
		}
	}
	for {
		if err := d.fill(); err != nil {
			return err
		}
		if d.end-d.pos < d.bs {
			break // less than a block left, and no more to read
		}
		if !d.rolling {
			// Just after a match (or at the start), the likeliest next
			// block is the one after it: check that by strong hash alone,
			// one block per core at a time, before paying for a weak sum.
			matched, err := d.matchRun()
			if err != nil {
				return err
			}
			if matched {
				continue
			}
			if matched, err = d.skipChanged(); err != nil {
				return err
			}
			if matched {
				continue
			}
		}
		matched, err := d.scan()
		if err != nil {
			return err
		}
		if !matched && d.eof && d.pos+d.bs >= d.end {
			break
		}
	}
	return d.finish()
}

// fill reads more of the new file once the window cannot slide further,
// first moving the unsent literal bytes and the window to the front of buf.
func (d *differ) fill() error {
	if d.eof || d.end-d.pos > d.bs {
		return nil
	}
	if d.lit > 0 {
		n := copy(d.buf, d.buf[d.lit:d.end])
		d.base += int64(d.lit)
		d.pos -= d.lit
		d.end = n
		d.lit = 0
	}
	if len(d.buf) < d.bufMax && d.st.NewSize >= int64(len(d.buf)) {
		nb := make([]byte, min(2*len(d.buf), d.bufMax))
		copy(nb, d.buf[:d.end])
		d.buf = nb
	}
	for empty := 0; d.end < len(d.buf) && !d.eof; {
		n, err := d.r.Read(d.buf[d.end:])
		if n > 0 {
			if d.sum != nil {
				_, _ = d.sum.Write(d.buf[d.end : d.end+n]) // xxhash.Digest.Write never fails
			}
			d.end += n
			d.st.NewSize += int64(n)
		}
		if errors.Is(err, io.EOF) {
			d.eof = true
		} else if err != nil {
			return fmt.Errorf("blocksync: diff: reading new file at offset %d: %w", d.base+int64(d.end), err)
		}
		if n == 0 && err == nil {
			if empty++; empty > 100 {
				return fmt.Errorf("blocksync: diff: reading new file: %w", io.ErrNoProgress)
			}
			continue // a Reader may return nothing now and then
		}
		if d.end-d.pos > d.bs && n < readSize/4 {
			break // a slow stream: work with what arrived
		}
	}
	return nil
}

// usable reports whether the full block at position p may be copied to
// file offset off.
func (d *differ) usable(p int64, off int64) bool {
	return p >= 0 && p < d.nFull && (!d.opts.InPlace || d.num(p)*int64(d.bs) >= off)
}

// expected is the position of the old block most likely at the window: the
// one after the last copied block or, if there is none, the block at the
// same offset. -1 if none is usable.
func (d *differ) expected() int64 {
	off := d.base + int64(d.pos)
	p := d.next()
	if p < 0 && off%int64(d.bs) == 0 {
		p = d.posOf(off / int64(d.bs))
	}
	if !d.usable(p, off) {
		return -1
	}
	return p
}

// next is the position of the old block right after the last one copied,
// or -1.
func (d *differ) next() int64 {
	p := d.lastEnd
	if p <= 0 || p >= int64(len(d.sig.Blocks)) || !d.follows(p-1) {
		return -1
	}
	return p
}

// matchRun checks the windows at pos, pos+bs, ... against the expected
// block and its successors by strong hash, one window per core at a time,
// and copies the matching prefix.
//
// Why not more windows at a time: a changed block ends a run, and every
// window hashed past it is wasted. With 1% of a file changed in scattered
// places, runs are a dozen or so blocks long; hashing 128 windows ahead
// wasted four times the useful work, one per core wastes a few percent.
// Blocks under minParallelBlock are hashed on this goroutine: handing them
// to others costs about as much as hashing them.
func (d *differ) matchRun() (bool, error) {
	j := d.expected()
	if j < 0 || d.strongN == d.base+int64(d.pos) {
		// No expected block, or this window's hash is known already,
		// which means it was compared with the expected block and differs.
		return false, nil
	}
	copied := false
	for {
		k := int(min(int64((d.end-d.pos)/d.bs), int64(d.par), d.nFull-j))
		if d.bs < minParallelBlock {
			k = min(k, 1)
		}
		for i := 1; i < k; i++ {
			if !d.follows(j + int64(i) - 1) {
				k = i
				break
			}
		}
		if k <= 0 {
			return copied, nil
		}
		strongs := d.strongs[:k]
		if k == 1 || d.prehashed(d.pos) {
			for i := range strongs {
				strongs[i] = d.strongAt(d.pos + i*d.bs)
			}
		} else {
			parallel(k, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					strongs[i] = strongSum(d.window(d.pos + i*d.bs))
				}
			})
		}
		n := 0
		for n < k && strongs[n] == d.sig.Blocks[j+int64(n)].Strong {
			n++
		}
		if n > 0 {
			if err := d.copyBlocks(j, int64(n)); err != nil {
				return true, err
			}
			copied = true
		}
		if n < k {
			// Keep the hash: scan's first lookup is for this same window.
			d.strong, d.strongN = strongs[n], d.base+int64(d.pos)
			return copied, nil
		}
		j += int64(n)
		if j >= d.nFull || !d.follows(j-1) {
			return copied, nil
		}
	}
}

// maxSkip is how many blocks past a mismatch skipChanged looks for the
// run to resume.
const maxSkip = 4

// skipChanged handles the commonest change, data overwritten in place: the
// expected block did not match at pos, but a block after it matches at its
// own place, at most maxSkip blocks further on. The bytes between are then
// sent as literal bytes without sliding the window through them, which
// costs a lookup per byte and could only find old data at an odd offset
// inside a rewritten stretch. A hash per block tried is cheap beside that,
// and free with Prehashed. The hash of the window one block on is kept for
// the scan, which reaches it first if nothing matches.
func (d *differ) skipChanged() (bool, error) {
	j := d.expected()
	if j < 0 {
		return false, nil
	}
	for i := int64(1); i <= maxSkip; i++ {
		p := d.pos + int(i)*d.bs
		if j+i >= d.nFull || !d.follows(j+i-1) || d.end-p < d.bs {
			return false, nil
		}
		off := d.base + int64(p)
		if !d.usable(j+i, off) {
			return false, nil
		}
		s := d.strongAt(p)
		if s == d.sig.Blocks[j+i].Strong {
			d.pos = p // the rewritten blocks, sent as literal bytes
			return true, d.copyBlocks(j+i, 1)
		}
		if i == 1 {
			d.ahead, d.aheadN = s, off
		}
	}
	return false, nil
}

func (d *differ) window(pos int) []byte { return d.buf[pos : pos+d.bs] }

// scan slides the window a byte at a time from pos until it matches an old
// block (true) or reaches the end of what is buffered (false). This is the
// loop that runs over every changed byte, so it keeps its state in locals
// and asks the bit filter before anything else.
func (d *differ) scan() (bool, error) {
	bs := d.bs
	if !d.rolling {
		d.rs = sumOf(d.window(d.pos))
		d.rolling = true
	}
	// The window at pos was looked up already if an earlier scan stopped
	// there for want of data.
	skip := d.checked == d.base+int64(d.pos)
	buf, n := d.buf, uint32(bs)
	filter, shift := d.ix.filter, d.ix.fshift
	rs, pos, end := d.rs, d.pos, d.end
	litEnd := d.lit + d.litChunk
	for {
		if w := rs.weak(); !skip && filter[filterSlot(w, shift)/64]&(1<<(filterSlot(w, shift)%64)) != 0 {
			d.pos, d.rs = pos, rs
			if j := d.lookup(w); j >= 0 {
				return true, d.copyBlocks(j, 1)
			}
		}
		skip = false
		if pos+bs >= end {
			d.pos, d.rs = pos, rs
			d.checked = d.base + int64(pos)
			return false, nil
		}
		rs.roll(buf[pos], buf[pos+bs], n)
		pos++
		if pos >= litEnd {
			d.pos, d.rs = pos, rs
			if err := d.literal(pos); err != nil {
				return false, err
			}
			litEnd = d.lit + d.litChunk
		}
	}
}

// lookup returns the position of an old block whose content equals the
// window at pos, or -1. It prefers the block after the last copied one,
// then the block at the same offset, so runs of copies merge into one op
// and an in-place patch finds blocks already where they belong.
func (d *differ) lookup(w uint32) int64 {
	off := d.base + int64(d.pos)
	try := func(p int64) bool {
		if !d.usable(p, off) || d.sig.Blocks[p].Weak != w {
			return false
		}
		if d.strongN != off {
			if d.aheadN == off {
				d.strong = d.ahead
			} else {
				d.strong = d.strongAt(d.pos)
			}
			d.strongN = off
		}
		if d.sig.Blocks[p].Strong != d.strong {
			d.st.WeakHits++
			return false
		}
		return true
	}
	next := d.next()
	if try(next) {
		return next
	}
	if off%int64(d.bs) == 0 {
		if p := d.posOf(off / int64(d.bs)); p != next && try(p) {
			return p
		}
	}
	for c := d.ix.head(w); c >= 0; c = d.ix.next[c] {
		if try(int64(c)) {
			return int64(c)
		}
	}
	return -1
}

// copyBlocks records a copy of the old blocks at positions [p, p+n), which
// follow each other in the old file, at the window, and moves the window
// past them. Copies of consecutive blocks merge into one op.
func (d *differ) copyBlocks(p, n int64) error {
	if err := d.literal(d.pos); err != nil {
		return err
	}
	if err := d.addRun(d.num(p), n); err != nil {
		return err
	}
	d.lastEnd = p + n
	d.st.CopiedBytes += n * int64(d.bs)
	d.pos += int(n) * d.bs
	d.lit = d.pos
	d.rolling = false
	return nil
}

// addRun adds old blocks [k, k+n) (block numbers) to the pending copy.
func (d *differ) addRun(k, n int64) error {
	if d.runCount > 0 && d.runStart+d.runCount != k {
		if err := d.flushRun(); err != nil {
			return err
		}
	}
	if d.runCount == 0 {
		d.runStart = k
	}
	d.runCount += n
	return nil
}

func (d *differ) flushRun() error {
	if d.runCount == 0 {
		return nil
	}
	op := Op{Kind: OpCopy, Block: d.runStart, Count: d.runCount}
	d.runCount = 0
	return d.send(op)
}

// literal emits buf[lit:upTo] as literal ops and advances lit.
func (d *differ) literal(upTo int) error {
	if d.lit == upTo {
		return nil
	}
	if err := d.flushRun(); err != nil {
		return err
	}
	for d.lit < upTo {
		n := min(upTo-d.lit, d.litChunk)
		if err := d.send(Op{Kind: OpLiteral, Data: d.buf[d.lit : d.lit+n]}); err != nil {
			return err
		}
		d.lit += n
		d.st.LiteralBytes += int64(n)
	}
	if d.opts.NewSize > 0 && float64(d.st.LiteralBytes) > WholeFileRatio*float64(d.opts.NewSize) {
		return fmt.Errorf("blocksync: diff: %d of %d bytes differ: %w", d.st.LiteralBytes, d.opts.NewSize, ErrWholeFile)
	}
	return nil
}

// finish handles what is left when less than a block remains. The old
// file's short last block is looked for only there, at the very end of
// what is scanned, where a file whose end did not change has it; sliding a
// second, shorter window over the whole file to find it elsewhere would
// save at most one block of literal bytes.
func (d *differ) finish() error {
	if t := d.tailLen; d.tailPos >= 0 && d.end-d.lit >= t {
		at := d.end - t
		off := d.base + int64(at)
		k := d.num(d.tailPos)
		tail := d.buf[at:d.end]
		bl := d.sig.Blocks[d.tailPos]
		if (!d.opts.InPlace || k*int64(d.bs) >= off) && sumOf(tail).weak() == bl.Weak && strongSum(tail) == bl.Strong {
			if err := d.literal(at); err != nil {
				return err
			}
			if err := d.addRun(k, 1); err != nil {
				return err
			}
			d.st.CopiedBytes += int64(t)
			d.lit = d.end
		}
	}
	if err := d.literal(d.end); err != nil {
		return err
	}
	if err := d.flushRun(); err != nil {
		return err
	}
	if d.section {
		return nil
	}
	return d.send(Op{Kind: OpEnd, Size: d.st.NewSize, Sum: d.sum.Sum64()})
}

func (d *differ) send(op Op) error {
	if err := d.emit(op); err != nil {
		return fmt.Errorf("blocksync: diff: emitting %v: %w", op.Kind, err)
	}
	if op.Kind == OpCopy || op.Kind == OpLiteral {
		d.st.Ops++
	}
	return nil
}
