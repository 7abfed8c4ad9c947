package blocksync

import (
	"encoding/binary"
	"hash/crc32"
	"math"
)

// Signature encoding, format version 1:
//
//	"HFsg"              magic, 4 bytes
//	version             1 byte
//	block size          uvarint
//	file size           uvarint
//	listed blocks       uvarint: 0 for a full signature, else 1 + the sparse count n
//	index (sparse)      n uvarints: the first block number, then each gap minus one
//	per block           weak sum (uint32, little-endian), then StrongSize bytes
//	CRC-32C             of everything before it, uint32 little-endian
//
// A full signature's block count follows from the sizes. Either way the
// decoder checks that the bytes hold exactly the sums announced before it
// allocates, so what it allocates is bounded by the input's length. The CRC
// catches damage in transit or at rest; the strong hashes and the delta's
// end checksum catch the rest.
const (
	sigMagic   = "HFsg"
	sigVersion = 1
	sumSize    = 4 + StrongSize
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MarshalBinary encodes the signature. It fails only for an invalid one.
func (s Signature) MarshalBinary() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(sigMagic)+1+2*binary.MaxVarintLen64+len(s.Blocks)*sumSize+4)
	b = append(b, sigMagic...)
	b = append(b, sigVersion)
	b = binary.AppendUvarint(b, uint64(s.BlockSize))
	b = binary.AppendUvarint(b, uint64(s.FileSize))
	if s.Index == nil {
		b = append(b, 0)
	} else {
		b = binary.AppendUvarint(b, 1+uint64(len(s.Index)))
	}
	for i, k := range s.Index {
		if i == 0 {
			b = binary.AppendUvarint(b, uint64(k))
		} else {
			b = binary.AppendUvarint(b, uint64(k-s.Index[i-1]-1))
		}
	}
	for _, bl := range s.Blocks {
		b = binary.LittleEndian.AppendUint32(b, bl.Weak)
		b = append(b, bl.Strong[:]...)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// UnmarshalSignature decodes and validates an encoded signature. It never
// panics, and it allocates only in proportion to len(b).
func UnmarshalSignature(b []byte) (Signature, error) {
	const minLen = len(sigMagic) + 1 + 3 + 4
	if len(b) < minLen {
		return Signature{}, invalid("signature of %d bytes is too short", len(b))
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return Signature{}, invalid("signature checksum mismatch")
	}
	if string(body[:len(sigMagic)]) != sigMagic {
		return Signature{}, invalid("not a signature (magic %q)", body[:len(sigMagic)])
	}
	if v := body[len(sigMagic)]; v != sigVersion {
		return Signature{}, invalid("signature format version %d; this build reads %d", v, sigVersion)
	}
	rest := body[len(sigMagic)+1:]
	bs, n := binary.Uvarint(rest)
	if n <= 0 {
		return Signature{}, invalid("signature block size: bad varint")
	}
	rest = rest[n:]
	size, n := binary.Uvarint(rest)
	if n <= 0 {
		return Signature{}, invalid("signature file size: bad varint")
	}
	rest = rest[n:]
	if bs < MinBlockSize || bs > MaxBlockSize {
		return Signature{}, invalid("signature block size %d outside [%d, %d]", bs, MinBlockSize, MaxBlockSize)
	}
	if size > math.MaxInt64 {
		return Signature{}, invalid("signature file size %d too large", size)
	}
	nb := numBlocks(int64(size), int(bs))
	if nb > MaxBlocks {
		return Signature{}, invalid("signature of %d blocks; at most %d", nb, MaxBlocks)
	}
	listed, n := binary.Uvarint(rest)
	if n <= 0 {
		return Signature{}, invalid("signature block count: bad varint")
	}
	rest = rest[n:]
	s := Signature{BlockSize: int(bs), FileSize: int64(size)}
	if listed > 0 {
		listed--
		// Each listed block takes at least one index byte and a sum.
		if listed > uint64(nb) || listed > uint64(len(rest)/(1+sumSize)) {
			return Signature{}, invalid("sparse signature of %d blocks in %d bytes of a %d-block file", listed, len(rest), nb)
		}
		s.Index = make([]int64, listed)
		var k uint64
		for i := range s.Index {
			v, n := binary.Uvarint(rest)
			if n <= 0 {
				return Signature{}, invalid("sparse signature index %d: bad varint", i)
			}
			rest = rest[n:]
			if i > 0 {
				v += k + 1 // a gap; the range check below catches wrapping too
				if v <= k {
					return Signature{}, invalid("sparse signature index %d out of order", i)
				}
			}
			if v >= uint64(nb) {
				return Signature{}, invalid("sparse signature lists block %d of %d", v, nb)
			}
			s.Index[i], k = int64(v), v
		}
		nb = int64(listed)
	}
	if int64(len(rest)) != nb*sumSize {
		return Signature{}, invalid("signature holds %d bytes of block sums; %d blocks need %d",
			len(rest), nb, nb*sumSize)
	}
	s.Blocks = make([]BlockSum, nb)
	for i := range s.Blocks {
		p := rest[i*sumSize : (i+1)*sumSize]
		s.Blocks[i].Weak = binary.LittleEndian.Uint32(p)
		copy(s.Blocks[i].Strong[:], p[4:])
	}
	return s, nil
}
