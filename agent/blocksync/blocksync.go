// Package blocksync brings a replica's old copy of one file up to date with
// the master's new copy by sending only what changed, the way rsync does.
//
// The replica computes a Signature of its copy: for each block, a weak
// rolling checksum and a strong hash. The master slides a window over its
// file, one byte at a time where needed, and looks the window's rolling
// checksum up in the signature, so a block is found again at any byte
// offset, not only at multiples of the block size: an insertion or deletion
// shifts the rest of the file without making it all look new. Diff turns
// that into a delta, a stream of Ops ("copy old blocks i..i+n", "these
// literal bytes"), and Patch rebuilds the new file from the old one and the
// delta.
//
// Plan does the same in two rounds, for a master that can read its file
// twice: after the first, the replica describes the old blocks left unused
// in blocks eight times smaller, and the master diffs the changed regions
// again against those. A 4 KiB change in a file of 32 KiB blocks then costs
// about 4 to 8 KiB instead of 32 to 64 (docs/bench-blocksync.md: a quarter
// of rsync's bytes for 1% of a 1 GiB file changed in 4 KiB pieces). A
// master that chooses the block size can also Prehash its file while it
// waits for the signature, so both ends hash at the same time.
//
// A delta is framed by a header op (the block size and old size it was made
// against) and an end op (the new file's size and checksum), so Patch can
// tell a delta for another version of the file, a truncated stream or a
// wrong result from a good one: it never reports success for output that
// differs from what the master read.
//
// The replica applies a delta either into a new file that then replaces the
// old one (Patch; atomic with a temp file and rename, the default), or, for
// a delta made with DiffOptions.InPlace, over the old file itself
// (PatchInPlace: writes only what changed but is not atomic).
//
// In replication, a delta is the fallback when the spool could not say
// which ranges changed (resync after an overflow, a replica restored from
// an old backup, a verify scan that found a difference). In terms of
// package change: an in-place delta whose copies all stay at their offsets
// amounts to OpWrite changes (its literals, at their offsets) and an
// OpTruncate (the new size); a delta that moves data travels as itself; and
// when Stats.WholeFile says most of the file differs, the caller sends the
// file whole (OpReplaceFile) instead.
//
// Every decoder in this package (UnmarshalSignature, UnmarshalBlockList,
// DecodeOp, OpReader, Patch) reads bytes that crossed a network: each
// checks versions, checksums and bounds, never panics and never allocates
// more than its input or a fixed bound justifies. Each has a fuzz test.
package blocksync

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"runtime"
	"sync"
)

// Limits. They are part of the wire format's contract: a decoder rejects
// anything beyond them, so a hostile peer cannot make it allocate without
// bound.
const (
	// MinBlockSize is the smallest block size ComputeSignature accepts.
	// BlockSize never picks less than 4 KiB; the tiny sizes exist so tests
	// can cover many blocks with little data.
	MinBlockSize = 16
	// MaxBlockSize is the largest block size, and so the most memory one
	// block's window costs Diff.
	MaxBlockSize = 1 << 20
	// MaxBlocks bounds a signature's length: 2^24 blocks of at most 1 MiB
	// is 16 TiB, and the signature of the largest file is 320 MiB.
	MaxBlocks = 1 << 24
	// MaxLiteral bounds one literal op's data.
	MaxLiteral = 1 << 20
	// StrongSize is how many bytes of each block's SHA-256 the signature
	// keeps. 128 bits make an accidental match impossible in practice and a
	// crafted one (two different blocks with the same truncated hash) as hard
	// as a 2^64 birthday search; the end op's checksum catches anything that
	// still slips through, as a failed Patch rather than a wrong file.
	StrongSize = 16
	// WholeFileRatio: when more than this share of the new file travels as
	// literal bytes, a delta saves little over sending the file whole and
	// still costs the signature, the master's scan and the replica's reads
	// of its old copy, so Stats.WholeFile advises sending the file whole.
	// 70% is the threshold Arcserve Replication uses for the same choice.
	WholeFileRatio = 0.70

	minAutoBlock = 4 << 10 // smallest block BlockSize picks: a page
	maxAutoBlock = 1 << 20 // largest: bounds what one changed byte costs
)

// Errors. Each failure wraps one of these, so callers can tell a damaged or
// hostile input (ErrInvalid), a delta that did not reproduce the master's
// file (ErrMismatch) and the other outcomes apart with errors.Is.
var (
	// ErrInvalid is wrapped by every validation and decoding failure.
	ErrInvalid = errors.New("blocksync: invalid input")
	// ErrMismatch means a patched file's size or checksum differs from the
	// one the master announced in the delta's end op; the output must be
	// discarded and the file sent whole.
	ErrMismatch = errors.New("blocksync: patched file does not match the master's")
	// ErrWholeFile is returned by Diff when DiffOptions.NewSize is set and
	// the literal bytes exceed WholeFileRatio of it: the caller should send
	// the file whole instead of finishing the delta.
	ErrWholeFile = errors.New("blocksync: most of the file differs; send it whole")
	// ErrNotInPlace is returned by PatchInPlace for a copy that reads old
	// data the patch has already overwritten (a delta not made with
	// DiffOptions.InPlace).
	ErrNotInPlace = errors.New("blocksync: delta cannot be applied in place")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// BlockSize picks the block size for a file of fileSize bytes: about the
// square root of the size, rounded to a power of two, between 4 KiB and
// 1 MiB.
//
// Why the square root (rsync's rule, generator.c): the signature costs about
// 20 bytes per block, fileSize/b blocks, and each changed region costs about
// one block of literal bytes, k·b for k regions; the sum is smallest at
// b = sqrt(20·fileSize/k). Not knowing k, sqrt(fileSize) is the compromise
// that keeps both terms around sqrt(fileSize) bytes per change: a 1 GiB file
// gets 32 KiB blocks and a 640 KiB signature. Files changed in many small
// scattered places (databases, VM images) would do better with smaller
// blocks; a caller that knows that can pass its own size to
// ComputeSignature.
//
// Why a power of two: blocks then line up with pages and filesystem blocks,
// so an in-place patch rewrites whole pages. Why 4 KiB at least: below a
// page the per-block costs (a hash call, an index entry, 20 signature bytes)
// grow while in-place writes get no cheaper. Why 1 MiB at most: it bounds
// what one changed byte costs on the wire and how much a window holds in
// memory.
func BlockSize(fileSize int64) int {
	if fileSize <= minAutoBlock {
		return minAutoBlock
	}
	// Rounding the exponent rounds the square root to the nearest power
	// of two on a log scale.
	e := int(math.Round(math.Log2(math.Sqrt(float64(fileSize)))))
	b := 1 << min(max(e, bits.Len(minAutoBlock)-1), bits.Len(maxAutoBlock)-1)
	return b
}

func checkBlockSize(bs int) error {
	if bs < MinBlockSize || bs > MaxBlockSize {
		return invalid("block size %d outside [%d, %d]", bs, MinBlockSize, MaxBlockSize)
	}
	return nil
}

// numBlocks is how many blocks of bs bytes cover size bytes, the last one
// possibly short. Written without size+bs-1 so it cannot overflow.
func numBlocks(size int64, bs int) int64 {
	n := size / int64(bs)
	if size%int64(bs) != 0 {
		n++
	}
	return n
}

// BlockSum is what the signature holds for one block of the old file.
type BlockSum struct {
	Weak   uint32           // rolling checksum: cheap to slide, so tried at every offset
	Strong [StrongSize]byte // truncated SHA-256: decides whether a weak hit is a match
}

// Signature describes the replica's old file: its size, the block size and
// one BlockSum per block; the last block is short when the size is not a
// multiple of the block size.
//
// A sparse signature (Index not nil) describes some blocks only: Blocks[i]
// is the sum of block number Index[i], Index increasing. The second round
// of a Plan uses one, for the old blocks the first round left unused.
type Signature struct {
	BlockSize int
	FileSize  int64
	Blocks    []BlockSum
	Index     []int64
}

// Validate checks that the signature is internally consistent: a block size
// within bounds, and exactly one sum per block of FileSize or, if sparse,
// per listed block, each listed block within the file.
func (s Signature) Validate() error {
	if err := checkBlockSize(s.BlockSize); err != nil {
		return err
	}
	if s.FileSize < 0 {
		return invalid("negative file size %d", s.FileSize)
	}
	n := numBlocks(s.FileSize, s.BlockSize)
	if n > MaxBlocks {
		return invalid("%d blocks; at most %d", n, MaxBlocks)
	}
	if s.Index == nil {
		if int64(len(s.Blocks)) != n {
			return invalid("%d block sums for a %d-byte file of %d-byte blocks; want %d",
				len(s.Blocks), s.FileSize, s.BlockSize, n)
		}
		return nil
	}
	if len(s.Index) != len(s.Blocks) {
		return invalid("sparse signature of %d blocks with %d sums", len(s.Index), len(s.Blocks))
	}
	for i, k := range s.Index {
		if k < 0 || k >= n || (i > 0 && k <= s.Index[i-1]) {
			return invalid("sparse signature lists block %d at %d: out of range or out of order", k, i)
		}
	}
	return nil
}

// sigBatch is how much ComputeSignature reads at a time: large enough that
// splitting a batch's hashing across cores costs little, small enough to
// keep memory trivial.
const sigBatch = 4 << 20

// ComputeSignature reads r to its end and returns its signature with
// blocks of blockSize bytes. It hashes each batch of blocks on all cores
// while the next batch is read, because the strong hash dominates its cost.
func ComputeSignature(r io.Reader, blockSize int) (Signature, error) {
	if err := checkBlockSize(blockSize); err != nil {
		return Signature{}, err
	}
	sig := Signature{BlockSize: blockSize}
	batch := max(1, sigBatch/blockSize) * blockSize

	// One goroutine reads into two buffers in turn; this one hashes. The
	// buffers start small, so a small file costs little, and double while
	// the file fills them.
	type chunk struct {
		buf []byte
		n   int
		err error
	}
	size := min(batch, max(1, (64<<10)/blockSize)*blockSize)
	free := make(chan []byte, 2)
	free <- nil
	free <- nil
	full := make(chan chunk, 1)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer close(full)
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-stop:
				return
			}
			if len(buf) < size {
				buf = make([]byte, size)
			}
			n, err := io.ReadFull(r, buf)
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF // a short last batch is the normal end
			}
			if n == len(buf) {
				size = min(2*size, batch)
			}
			select {
			case full <- chunk{buf, n, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	// Wait for the reader on every return, so r is never read after
	// ComputeSignature returns.
	defer func() { close(stop); <-done }()

	for c := range full {
		if c.n > 0 {
			nb := int(numBlocks(int64(c.n), blockSize))
			if int64(len(sig.Blocks)+nb) > MaxBlocks {
				return Signature{}, fmt.Errorf("blocksync: signature: file exceeds %d blocks of %d bytes", MaxBlocks, blockSize)
			}
			start := len(sig.Blocks)
			sig.Blocks = append(sig.Blocks, make([]BlockSum, nb)...)
			sumBlocks(c.buf[:c.n], blockSize, sig.Blocks[start:])
			sig.FileSize += int64(c.n)
		}
		if c.err == io.EOF {
			break
		}
		if c.err != nil {
			return Signature{}, fmt.Errorf("blocksync: signature: reading block %d: %w", len(sig.Blocks), c.err)
		}
		free <- c.buf
	}
	return sig, nil
}

// sumBlocks fills out with the sums of data's consecutive blocks.
func sumBlocks(data []byte, bs int, out []BlockSum) {
	parallel(len(out), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			p := data[i*bs : min((i+1)*bs, len(data))]
			out[i] = BlockSum{Weak: sumOf(p).weak(), Strong: strongSum(p)}
		}
	})
}

// parallel runs fn over [0, n) split into one contiguous range per core.
func parallel(n int, fn func(lo, hi int)) {
	w := min(runtime.GOMAXPROCS(0), n)
	if w <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for i := range w {
		lo, hi := i*n/w, (i+1)*n/w
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

func strongSum(p []byte) (s [StrongSize]byte) {
	h := sha256.Sum256(p)
	copy(s[:], h[:])
	return s
}

// rollsum is the weak rolling checksum: rsync's pair of sums (a = sum of
// the window's bytes, b = sum of the running a's), but over bytes first
// mapped through a fixed random table. rsync sums raw bytes, so for a 4 KiB
// window a spans only ~30,000 of its 65,536 values and text spans fewer;
// the table spreads both halves over all 32 bits, which keeps weak hits
// (each costs a SHA-256) rare. Sliding the window costs two table loads and
// a handful of adds.
type rollsum struct{ a, b uint32 }

// subst is the byte table, derived from a fixed seed with splitmix64. It is
// part of the signature format: changing it changes every weak sum, which
// needs a new format version (TestWeakSumGolden pins it).
var subst = func() (t [256]uint32) {
	x := uint64(0x486f6c6466617374) // "Holdfast"
	for i := range t {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		t[i] = uint32(z ^ z>>31)
	}
	return t
}()

// sumOf computes the rolling checksum of p from scratch, four bytes per
// step so the adds do not form one long dependency chain.
func sumOf(p []byte) rollsum {
	var a, b uint32
	for len(p) >= 4 {
		t0, t1, t2, t3 := subst[p[0]], subst[p[1]], subst[p[2]], subst[p[3]]
		b += 4*a + 4*t0 + 3*t1 + 2*t2 + t3
		a += t0 + t1 + t2 + t3
		p = p[4:]
	}
	for _, c := range p {
		a += subst[c]
		b += a
	}
	return rollsum{a, b}
}

// roll slides an n-byte window one byte: out leaves, in enters.
func (r *rollsum) roll(out, in byte, n uint32) {
	t := subst[out]
	r.a += subst[in] - t
	r.b += r.a - n*t
}

func (r rollsum) weak() uint32 { return r.a ^ bits.RotateLeft32(r.b, 16) }
