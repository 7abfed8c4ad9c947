package blocksync

import (
	"fmt"
	"io"
)

// Prehashed holds the strong hashes of a file's full blocks at multiples
// of the block size.
type Prehashed struct {
	bs   int
	sums [][StrongSize]byte
}

// Prehash hashes the full blocks of bs bytes at multiples of bs in the new
// file, on all cores. That is most of the hashing Diff or NewPlan does (the
// blocks that did not move), done ahead: a master can run it while it
// waits for the replica's signature, so both ends hash at the same time.
// It needs the block size the replica will use, so the master chooses it
// (BlockSize of its own file) and asks the replica for it.
//
// If the file changes between Prehash and Diff, the delta is wrong and
// Patch refuses it: the end op carries the checksum of what Diff read.
func Prehash(newFile io.ReaderAt, size int64, bs int) (*Prehashed, error) {
	if err := checkBlockSize(bs); err != nil {
		return nil, fmt.Errorf("blocksync: prehash: %w", err)
	}
	n := size / int64(bs)
	if size < 0 || n > MaxBlocks {
		return nil, fmt.Errorf("blocksync: prehash: %w", invalid("%d-byte file of %d-byte blocks", size, bs))
	}
	p := &Prehashed{bs: bs, sums: make([][StrongSize]byte, n)}
	per := int64(max(1, sigBatch/bs))
	buf := make([]byte, min(n, per)*int64(bs))
	for k := int64(0); k < n; k += per {
		m := min(per, n-k)
		b := buf[:m*int64(bs)]
		if err := readAt(newFile, b, k*int64(bs), "new"); err != nil {
			return nil, fmt.Errorf("blocksync: prehash: %w", err)
		}
		out := p.sums[k : k+m]
		parallel(int(m), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				out[i] = strongSum(b[i*bs : (i+1)*bs])
			}
		})
	}
	return p, nil
}

// prehashed reports whether the window at pos has a hash in
// opts.Prehashed.
func (d *differ) prehashed(pos int) bool {
	p := d.opts.Prehashed
	off := d.base + int64(pos)
	return p != nil && p.bs == d.bs && off%int64(d.bs) == 0 && off/int64(d.bs) < int64(len(p.sums))
}

// strongAt is the strong hash of the window at pos, from opts.Prehashed
// if it has it.
func (d *differ) strongAt(pos int) [StrongSize]byte {
	if d.prehashed(pos) {
		return d.opts.Prehashed.sums[(d.base+int64(pos))/int64(d.bs)]
	}
	return strongSum(d.window(pos))
}
