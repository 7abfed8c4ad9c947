package diskstore

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// enc appends the store's binary encodings: fixed-width big-endian
// integers and uvarint-length-prefixed byte strings.
type enc struct{ b []byte }

func (e *enc) u8(v uint8)       { e.b = append(e.b, v) }
func (e *enc) u32(v uint32)     { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64)     { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *enc) raw(p []byte)     { e.b = append(e.b, p...) }
func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) bytes(p []byte) {
	e.uvarint(uint64(len(p)))
	e.b = append(e.b, p...)
}
func (e *enc) str(s string) { e.bytes([]byte(s)) }

// zeroTime stands for the zero time.Time, which UnixNano cannot express.
const zeroTime int64 = math.MinInt64

func (e *enc) time(t time.Time) {
	ns := zeroTime
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	e.u64(uint64(ns))
}

// dec reads what enc wrote. The first error sticks; every length is checked
// against what is left and against a limit before anything is allocated.
type dec struct {
	b    []byte
	what string
	err  error
}

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = corrupt("%s: %s", d.what, fmt.Sprintf(format, args...))
	}
}

func (d *dec) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.fail("truncated (want %d bytes, %d left)", n, len(d.b))
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *dec) u8() uint8 {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *dec) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *dec) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of items each at least minSize bytes long, refusing
// counts the remaining bytes cannot hold.
func (d *dec) count(limit uint64, minSize int) int {
	v := d.uvarint()
	if d.err != nil {
		return 0
	}
	if v > limit || v*uint64(max(minSize, 1)) > uint64(len(d.b)) {
		d.fail("count %d too large", v)
		return 0
	}
	return int(v)
}

func (d *dec) bytes(limit int) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(limit) {
		d.fail("length %d above %d", n, limit)
		return nil
	}
	return d.take(int(n))
}

func (d *dec) str(limit int) string { return string(d.bytes(limit)) }

func (d *dec) time() time.Time {
	v := int64(d.u64())
	if v == zeroTime {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

// done fails if bytes are left over.
func (d *dec) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}
