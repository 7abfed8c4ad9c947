package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/agent/change"
)

// File magics. The last byte is the format version of that file kind; a
// reader that sees a version it does not know refuses the file instead of
// guessing.
const (
	segMagic   = "HFSPSEG\x01"
	dirtyMagic = "HFSPDRT\x01"
	ackMagic   = "HFSPACK\x01"
	magicLen   = 8
)

const (
	segHeaderLen    = int64(magicLen)
	frameHeaderLen  = 24 // length u32, seq u64, captured i64, header CRC u32
	frameTrailerLen = 4  // CRC of header and record
	frameOverhead   = frameHeaderLen + frameTrailerLen

	// maxRecord bounds the length field. Every valid change encodes to less
	// (change.MaxData is 16 MiB plus a few paths), and a bound keeps a
	// damaged length from turning into a huge allocation.
	maxRecord = 32 << 20

	ackFileLen = magicLen + 8 + 4

	// readChunk is how much a frameReader reads at a time: many small
	// frames per system call, while a large frame is read whole.
	readChunk = 256 << 10

	// maxTailSearch bounds how much of a damaged last segment recovery reads
	// to look for intact frames after the damage. A segment is at most
	// SegmentSize plus one frame; anything larger is not ours to truncate.
	maxTailSearch = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// fsync is every fsync the spool does, files and directories. Only the
// fuzz test replaces it: durability is not what it checks, and real fsyncs
// would hold it to about a hundred inputs a second.
var fsync = (*os.File).Sync

// frameHeader is the decoded fixed part of a frame. Seq and Captured
// duplicate fields of the record so that scanning, acknowledging and
// reporting lag never need to decode records.
type frameHeader struct {
	length   uint32
	seq      uint64
	captured int64
}

func (h frameHeader) frameLen() int64 { return frameOverhead + int64(h.length) }

// appendFrame appends one frame holding rec to b.
func appendFrame(b []byte, seq uint64, captured int64, rec []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, frameHeaderLen)...)
	putHeader(b[start:], frameHeader{length: uint32(len(rec)), seq: seq, captured: captured})
	b = append(b, rec...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// appendChangeFrame appends c's frame to b without an intermediate copy of
// the record.
func appendChangeFrame(b []byte, c *change.Change) ([]byte, error) {
	start := len(b)
	b = append(b, make([]byte, frameHeaderLen)...)
	b = c.Append(b)
	n := len(b) - start - frameHeaderLen
	if n > maxRecord {
		return b[:start], fmt.Errorf("change %d encodes to %d bytes; a frame holds at most %d", c.Seq, n, maxRecord)
	}
	putHeader(b[start:], frameHeader{length: uint32(n), seq: c.Seq, captured: c.Captured})
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli)), nil
}

func putHeader(b []byte, h frameHeader) {
	binary.LittleEndian.PutUint32(b[0:], h.length)
	binary.LittleEndian.PutUint64(b[4:], h.seq)
	binary.LittleEndian.PutUint64(b[12:], uint64(h.captured))
	binary.LittleEndian.PutUint32(b[20:], crc32.Checksum(b[:20], castagnoli))
}

// parseHeader decodes a frame header; ok is false when its CRC does not
// match or its length is out of range.
func parseHeader(b []byte) (h frameHeader, ok bool) {
	if crc32.Checksum(b[:20], castagnoli) != binary.LittleEndian.Uint32(b[20:24]) {
		return h, false
	}
	h = frameHeader{
		length:   binary.LittleEndian.Uint32(b[0:]),
		seq:      binary.LittleEndian.Uint64(b[4:]),
		captured: int64(binary.LittleEndian.Uint64(b[12:])),
	}
	return h, h.length > 0 && h.length <= maxRecord
}

// damage describes bytes that are not an intact frame. short means the
// frame runs past the end of the readable region, which is what a torn
// write looks like.
type damage struct {
	reason string
	short  bool
}

func (d *damage) Error() string { return d.reason }

// frameReader reads frames from one file with positioned reads, so it never
// disturbs a file offset another goroutine relies on, and it buffers so that
// small frames cost a fraction of a system call each.
type frameReader struct {
	f   *os.File
	buf []byte
	off int64 // file offset of buf[0]
}

func (r *frameReader) reset(f *os.File) {
	r.f = f
	r.buf = r.buf[:0]
	r.off = 0
}

// bytes returns the n bytes at off. Bytes at or beyond limit are never
// read: the region past a segment's synced end may be half-written.
func (r *frameReader) bytes(off int64, n int, limit int64) ([]byte, error) {
	if off < 0 || off+int64(n) > limit {
		return nil, &damage{reason: fmt.Sprintf("%d bytes at offset %d run past the end at %d", n, off, limit), short: true}
	}
	if off >= r.off && off+int64(n) <= r.off+int64(len(r.buf)) {
		return r.buf[off-r.off:][:n], nil
	}
	want := max(n, readChunk)
	if int64(want) > limit-off {
		want = int(limit - off)
	}
	if cap(r.buf) < want || (cap(r.buf) > 4*readChunk && want <= readChunk) {
		// Shrink after a large frame too, so one 16 MiB record does not pin
		// 16 MiB for the life of the reader.
		r.buf = make([]byte, want)
	}
	r.buf = r.buf[:want]
	got, err := r.f.ReadAt(r.buf, off)
	if got < n {
		r.buf = r.buf[:0]
		if err == nil || errors.Is(err, io.EOF) {
			return nil, &damage{reason: fmt.Sprintf("file ends before offset %d", off+int64(n)), short: true}
		}
		return nil, fmt.Errorf("read %s at %d: %w", r.f.Name(), off, err)
	}
	r.buf, r.off = r.buf[:got], off
	return r.buf[:n], nil
}

// frame reads and checks the frame at off. The returned record aliases the
// reader's buffer and is valid until the next call. A *damage error means
// the bytes are not an intact frame; any other error is an I/O failure.
func (r *frameReader) frame(off, limit int64) (frameHeader, []byte, error) {
	hb, err := r.bytes(off, frameHeaderLen, limit)
	if err != nil {
		return frameHeader{}, nil, err
	}
	h, ok := parseHeader(hb)
	if !ok {
		return h, nil, &damage{reason: "frame header checksum mismatch or bad length"}
	}
	fb, err := r.bytes(off, int(h.frameLen()), limit)
	if err != nil {
		return h, nil, err
	}
	body := fb[:len(fb)-frameTrailerLen]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(fb[len(body):]) {
		return h, nil, &damage{reason: fmt.Sprintf("frame checksum mismatch (seq %d in header)", h.seq)}
	}
	return h, body[frameHeaderLen:], nil
}

// intactFrameIn reports whether b holds an intact frame at any offset. It
// tells a torn tail (nothing intact after the damage) from damage in the
// middle of the data. The length check before the header CRC makes random
// bytes cheap to reject.
func intactFrameIn(b []byte) bool {
	for p := 0; p+frameOverhead < len(b); p++ {
		n := int(binary.LittleEndian.Uint32(b[p:]))
		if n == 0 || n > len(b)-p-frameOverhead {
			continue
		}
		h, ok := parseHeader(b[p:])
		if !ok {
			continue
		}
		end := p + int(h.frameLen())
		if crc32.Checksum(b[p:end-frameTrailerLen], castagnoli) == binary.LittleEndian.Uint32(b[end-frameTrailerLen:end]) {
			return true
		}
	}
	return false
}

// segName is the file name of segment index i. Fixed width keeps a
// directory listing in order.
func segName(i uint64) string { return fmt.Sprintf("%020d.seg", i) }

func parseSegName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, ".seg")
	if !ok || len(digits) != 20 {
		return 0, false
	}
	i, err := strconv.ParseUint(digits, 10, 64)
	return i, err == nil && i > 0
}

func encodeAck(seq uint64) []byte {
	b := append([]byte(ackMagic), make([]byte, 8)...)
	binary.LittleEndian.PutUint64(b[magicLen:], seq)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeAck(b []byte) (uint64, error) {
	switch {
	case len(b) != ackFileLen:
		return 0, fmt.Errorf("%d bytes; want %d", len(b), ackFileLen)
	case string(b[:magicLen]) != ackMagic:
		return 0, fmt.Errorf("bad magic %q", b[:magicLen])
	case crc32.Checksum(b[:ackFileLen-4], castagnoli) != binary.LittleEndian.Uint32(b[ackFileLen-4:]):
		return 0, errors.New("checksum mismatch")
	}
	return binary.LittleEndian.Uint64(b[magicLen:]), nil
}

// writeFileAtomic replaces dir/name with data so that after a crash the
// file holds either the old or the new contents: write a temporary file,
// fsync it, rename it over the old one, fsync the directory.
func writeFileAtomic(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := fsync(f); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return syncDir(dir)
}

// syncDir makes entries created, renamed or removed in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	err = fsync(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
