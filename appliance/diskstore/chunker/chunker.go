// Package chunker splits a byte stream into content-defined chunks for the
// disk store's deduplication: FastCDC's gear hash with normalized chunking,
// and a gear table derived from a per-store secret, so that two stores cut
// the same data at different places and the sizes of encrypted chunks say
// less about the content they hold.
package chunker

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// Params bound the chunk sizes. Avg must be a power of two.
type Params struct {
	Min, Avg, Max int
}

// DefaultParams are the store's sizes: 512 KiB / 1 MiB / 4 MiB.
func DefaultParams() Params {
	return Params{Min: 512 << 10, Avg: 1 << 20, Max: 4 << 20}
}

// Validate says whether p can be used.
func (p Params) Validate() error {
	switch {
	case p.Min < 64:
		return fmt.Errorf("chunker: min size %d below 64 bytes", p.Min)
	case p.Avg&(p.Avg-1) != 0:
		return fmt.Errorf("chunker: average size %d is not a power of two", p.Avg)
	case !(p.Min < p.Avg && p.Avg < p.Max):
		return fmt.Errorf("chunker: sizes must grow: min %d, avg %d, max %d", p.Min, p.Avg, p.Max)
	case p.Max > 64<<20:
		return fmt.Errorf("chunker: max size %d above 64 MiB", p.Max)
	}
	return nil
}

// Gear is a keyed gear table. It is the only secret part of the chunker.
type Gear [256]uint64

// NewGear derives the gear table from key with HMAC-SHA-256, so that the
// table is fixed for a store and unpredictable without its key.
func NewGear(key []byte) *Gear {
	var g Gear
	var ctr [4]byte
	for i := 0; i < len(g); i += 4 {
		binary.BigEndian.PutUint32(ctr[:], uint32(i/4))
		m := hmac.New(sha256.New, key)
		m.Write([]byte("holdfast diskstore gear"))
		m.Write(ctr[:])
		sum := m.Sum(nil)
		for j := range 4 {
			g[i+j] = binary.LittleEndian.Uint64(sum[8*j:])
		}
	}
	return &g
}

// Chunker cuts the stream of one reader.
type Chunker struct {
	gear         *Gear
	p            Params
	maskS, maskL uint64
	r            io.Reader
	buf          []byte
	start, end   int // unread data is buf[start:end]
	eof          bool
}

// New returns a chunker over r. The slices Next returns share one buffer.
func New(r io.Reader, gear *Gear, p Params) (*Chunker, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b := bits.TrailingZeros(uint(p.Avg))
	// Normalized chunking (level 2): a harder mask before the average size
	// and an easier one after it pull sizes towards the average. Masks take
	// the hash's high bits, which depend on the last 64 bytes read.
	return &Chunker{
		gear:  gear,
		p:     p,
		maskS: topBits(b + 2),
		maskL: topBits(max(b-2, 1)),
		r:     r,
		buf:   make([]byte, 2*p.Max),
	}, nil
}

func topBits(n int) uint64 { return ^uint64(0) << (64 - n) }

// Reset makes the chunker cut r from its start, keeping its buffer: a
// chunker allocates 2*Max bytes, which for small files costs more than
// cutting them.
func (c *Chunker) Reset(r io.Reader) {
	c.r, c.start, c.end, c.eof = r, 0, 0, false
}

// Next returns the next chunk, valid until the following call, or io.EOF
// after the last one.
func (c *Chunker) Next() ([]byte, error) {
	if err := c.fill(); err != nil {
		return nil, err
	}
	n := c.end - c.start
	if n == 0 {
		return nil, io.EOF
	}
	cut := c.cut(c.buf[c.start:c.end])
	chunk := c.buf[c.start : c.start+cut]
	c.start += cut
	return chunk, nil
}

// fill makes at least Max bytes available unless the reader has ended.
func (c *Chunker) fill() error {
	if c.end-c.start >= c.p.Max || c.eof {
		return nil
	}
	// Move the unread bytes down only when Max of them would not fit
	// after start: with a buffer of 2*Max that copies each byte at most
	// once on average, where moving on every call copied it several times.
	if len(c.buf)-c.start < c.p.Max {
		c.end = copy(c.buf, c.buf[c.start:c.end])
		c.start = 0
	}
	for c.end-c.start < c.p.Max && c.end < len(c.buf) && !c.eof {
		n, err := c.r.Read(c.buf[c.end:])
		c.end += n
		if errors.Is(err, io.EOF) {
			c.eof = true
		} else if err != nil {
			return fmt.Errorf("chunker: read: %w", err)
		}
	}
	return nil
}

// cut returns the length of the chunk at the start of data.
func (c *Chunker) cut(data []byte) int {
	n := len(data)
	if n <= c.p.Min {
		return n
	}
	n = min(n, c.p.Max)
	normal := min(n, c.p.Avg)
	var h uint64
	i := c.p.Min
	for ; i < normal; i++ {
		h = (h << 1) + c.gear[data[i]]
		if h&c.maskS == 0 {
			return i + 1
		}
	}
	for ; i < n; i++ {
		h = (h << 1) + c.gear[data[i]]
		if h&c.maskL == 0 {
			return i + 1
		}
	}
	return n
}
