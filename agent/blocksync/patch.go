package blocksync

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cespare/xxhash/v2"
)

// copyBuf is how much of the old file a patch reads at a time, whatever a
// copy op's count: a hostile count costs time, bounded by the old file's
// size, never memory.
const copyBuf = 256 << 10

// patcher holds what Patch and PatchInPlace share: the header's checks,
// the copy ops' bounds and the running checksum of the new file.
type patcher struct {
	oldSize int64
	bs      int64
	nBlocks int64
	header  bool
	size    int64 // bytes of the new file produced so far
	sum     *xxhash.Digest
	buf     []byte
}

func newPatcher(oldSize int64) *patcher {
	return &patcher{oldSize: oldSize, sum: xxhash.New()}
}

// next reads the next op and checks it against the delta's structure and
// the old file. For a copy it returns the byte range to read from the old
// file. done is true after a matching end op.
func (p *patcher) next(src OpSource) (op Op, from, n int64, done bool, err error) {
	op, err = src.Next()
	if errors.Is(err, io.EOF) {
		return op, 0, 0, false, fmt.Errorf("blocksync: patch: delta ends without its end op: %w", io.ErrUnexpectedEOF)
	}
	if err != nil {
		return op, 0, 0, false, fmt.Errorf("blocksync: patch: %w", err)
	}
	if err := op.Validate(); err != nil {
		return op, 0, 0, false, fmt.Errorf("blocksync: patch: %w", err)
	}
	if (op.Kind == OpHeader) == p.header {
		if p.header {
			return op, 0, 0, false, fmt.Errorf("blocksync: patch: %w", invalid("second header op"))
		}
		return op, 0, 0, false, fmt.Errorf("blocksync: patch: %w", invalid("delta starts with %v, not a header", op.Kind))
	}
	switch op.Kind {
	case OpHeader:
		if op.Size != p.oldSize {
			return op, 0, 0, false, fmt.Errorf("blocksync: patch: %w",
				invalid("delta was made against a %d-byte file; this one has %d bytes", op.Size, p.oldSize))
		}
		p.header = true
		p.bs = int64(op.BlockSize)
		p.nBlocks = numBlocks(p.oldSize, op.BlockSize)
		p.buf = make([]byte, min(copyBuf, max(p.bs, 64<<10)))
	case OpCopy:
		// Validate bounded Block and Count by MaxBlocks, so neither the sum
		// nor the product below can overflow.
		if op.Block+op.Count > p.nBlocks {
			return op, 0, 0, false, fmt.Errorf("blocksync: patch: %w",
				invalid("copy of blocks [%d, %d) from a file of %d blocks", op.Block, op.Block+op.Count, p.nBlocks))
		}
		from = op.Block * p.bs
		n = min((op.Block+op.Count)*p.bs, p.oldSize) - from
	case OpEnd:
		if op.Size != p.size || op.Sum != p.sum.Sum64() {
			return op, 0, 0, false, fmt.Errorf("blocksync: patch: produced %d bytes with checksum %016x; master sent %d bytes with %016x: %w",
				p.size, p.sum.Sum64(), op.Size, op.Sum, ErrMismatch)
		}
		done = true
	}
	return op, from, n, done, nil
}

func (p *patcher) produced(b []byte) {
	_, _ = p.sum.Write(b) // xxhash.Digest.Write never fails
	p.size += int64(len(b))
}

// readAt reads len(b) bytes of the (which) file at off. A short read means
// the file shrank under us, which the sizes checked before did not foresee.
func readAt(r io.ReaderAt, b []byte, off int64, which string) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("blocksync: reading %s file at offset %d: %w", which, off, err)
}

// Patch writes the new file to out: the old file (oldSize bytes, read
// through old) with the delta from src applied. It reads src up to and
// including the end op, and succeeds only if what it wrote has the size
// and checksum the end op announces; otherwise what it wrote must be
// discarded. It returns the number of bytes written.
//
// Every op is checked before it is applied: a delta made for another size
// of file, a copy reaching past the old file, ops out of order or a
// missing end all fail with an error, and no op makes Patch allocate more
// than a fixed buffer.
//
// Writing to a temporary file next to the old one, syncing it and renaming
// it over the old one makes the update atomic: this is the safe default.
func Patch(old io.ReaderAt, oldSize int64, src OpSource, out io.Writer) (int64, error) {
	if oldSize < 0 {
		return 0, fmt.Errorf("blocksync: patch: %w", invalid("negative old size %d", oldSize))
	}
	p := newPatcher(oldSize)
	for {
		op, from, n, done, err := p.next(src)
		if err != nil {
			return p.size, err
		}
		if done {
			return p.size, nil
		}
		switch op.Kind {
		case OpLiteral:
			if _, err := out.Write(op.Data); err != nil {
				return p.size, fmt.Errorf("blocksync: patch: writing at offset %d: %w", p.size, err)
			}
			p.produced(op.Data)
		case OpCopy:
			for n > 0 {
				b := p.buf[:min(n, int64(len(p.buf)))]
				if err := readAt(old, b, from, "old"); err != nil {
					return p.size, err
				}
				if _, err := out.Write(b); err != nil {
					return p.size, fmt.Errorf("blocksync: patch: writing at offset %d: %w", p.size, err)
				}
				p.produced(b)
				from += int64(len(b))
				n -= int64(len(b))
			}
		}
	}
}

// PatchInPlace applies a delta made with DiffOptions.InPlace over the old
// file itself, writing only the literal bytes and the blocks that moved;
// blocks already at their place are read (for the checksum) but not
// rewritten. At the end it truncates f to the new size. It does not sync f.
//
// It is not atomic: a crash, a broken connection or a failed check midway
// leaves f part old and part new, and a delta not made for in-place use
// fails with ErrNotInPlace at the first copy that would read bytes already
// overwritten, after the ops before it were applied. A replica that must
// keep a consistent copy at all times uses Patch into a temporary file
// instead. What PatchInPlace buys is I/O: for a 1 GiB file with 1% changed
// it writes about 1% of the file, where Patch writes all of it.
//
// The safety rule: the patch writes the new file front to back, so when it
// reaches offset p, the old bytes before p may be gone. A copy to p from an
// old offset s >= p reads bytes not yet overwritten (and, copying in
// increasing order, reads each chunk before the write that could reach
// it); s < p could read new bytes instead of old ones, so it is refused.
func PatchInPlace(f *os.File, src OpSource) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("blocksync: patch in place: %w", err)
	}
	p := newPatcher(fi.Size())
	for {
		op, from, n, done, err := p.next(src)
		if err != nil {
			return p.size, err
		}
		if done {
			if err := f.Truncate(p.size); err != nil {
				return p.size, fmt.Errorf("blocksync: patch in place: %w", err)
			}
			return p.size, nil
		}
		switch op.Kind {
		case OpLiteral:
			if _, err := f.WriteAt(op.Data, p.size); err != nil {
				return p.size, fmt.Errorf("blocksync: patch in place: %w", err)
			}
			p.produced(op.Data)
		case OpCopy:
			if from < p.size {
				return p.size, fmt.Errorf("blocksync: patch in place: %v to offset %d reads from offset %d: %w",
					op, p.size, from, ErrNotInPlace)
			}
			for n > 0 {
				b := p.buf[:min(n, int64(len(p.buf)))]
				if err := readAt(f, b, from, "old"); err != nil {
					return p.size, err
				}
				if from != p.size {
					if _, err := f.WriteAt(b, p.size); err != nil {
						return p.size, fmt.Errorf("blocksync: patch in place: %w", err)
					}
				}
				p.produced(b)
				from += int64(len(b))
				n -= int64(len(b))
			}
		}
	}
}
