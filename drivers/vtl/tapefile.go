package vtl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sort"
	"strings"
)

// Tape file format (version 1), one file per cartridge, BARCODE.vtape:
//
//	offset 0, 512 bytes: header
//	  0..7    magic "HFVTAPE1"
//	  8..11   version, uint32 little endian (1)
//	  12..15  flags, uint32 LE: bit 0 = write protected
//	  16..23  capacity in bytes, uint64 LE (entry headers count against it)
//	  24..31  early-warning zone in bytes before capacity, uint64 LE
//	  32..63  barcode, ASCII, space padded
//	  64..67  CRC-32C of bytes 0..63, uint32 LE
//	  rest zero
//	offset 512: entries, back to back, in tape order
//	  0       kind: 'B' data block, 'F' filemark
//	  1..3    zero
//	  4..7    data length, uint32 LE (0 for a filemark)
//	  8..11   CRC-32C of the data
//	  12..15  CRC-32C of bytes 0..11
//	  16..    data
//
// The end of the file is the end of data. Writing anywhere but at the end
// of data cuts the file there first, as a tape drive forgets everything
// past the point it writes. Opening scans the entry headers once (not the
// data) into an in-memory index, so LOCATE and SPACE are O(1)/O(log n)
// whatever the tape's used length. A tail entry cut short by a crash (its
// header or data runs past the end of the file) is dropped; an entry
// header that fails its checksum with data after it is a damaged tape.
const (
	tapeMagic       = "HFVTAPE1"
	tapeVersion     = 1
	tapeHeaderSize  = 512
	entryHeaderSize = 16
	kindBlock       = 'B'
	kindFilemark    = 'F'
	flagWriteProt   = 1
	maxBlockLen     = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// tapeHeader is the fixed header of a tape file.
type tapeHeader struct {
	Flags        uint32
	Capacity     uint64
	EarlyWarning uint64
	Barcode      string
}

func (h tapeHeader) encode() []byte {
	b := make([]byte, tapeHeaderSize)
	copy(b, tapeMagic)
	binary.LittleEndian.PutUint32(b[8:], tapeVersion)
	binary.LittleEndian.PutUint32(b[12:], h.Flags)
	binary.LittleEndian.PutUint64(b[16:], h.Capacity)
	binary.LittleEndian.PutUint64(b[24:], h.EarlyWarning)
	copy(b[32:64], fmt.Sprintf("%-32s", h.Barcode))
	binary.LittleEndian.PutUint32(b[64:], crc32.Checksum(b[:64], castagnoli))
	return b
}

// decodeTapeHeader parses and checks a tape file header.
func decodeTapeHeader(b []byte) (tapeHeader, error) {
	var h tapeHeader
	if len(b) < 68 {
		return h, fmt.Errorf("tape header: %d bytes, want at least 68", len(b))
	}
	if string(b[:8]) != tapeMagic {
		return h, errors.New("tape header: bad magic")
	}
	if got, want := binary.LittleEndian.Uint32(b[64:]), crc32.Checksum(b[:64], castagnoli); got != want {
		return h, fmt.Errorf("tape header: checksum %08x, want %08x", got, want)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != tapeVersion {
		return h, fmt.Errorf("tape header: version %d not supported", v)
	}
	h.Flags = binary.LittleEndian.Uint32(b[12:])
	h.Capacity = binary.LittleEndian.Uint64(b[16:])
	h.EarlyWarning = binary.LittleEndian.Uint64(b[24:])
	h.Barcode = strings.TrimRight(string(b[32:64]), " ")
	if h.EarlyWarning > h.Capacity {
		return h, fmt.Errorf("tape header: early warning %d beyond capacity %d", h.EarlyWarning, h.Capacity)
	}
	return h, nil
}

type entryHeader struct {
	kind   byte
	length uint32
	crc    uint32
}

func (e entryHeader) encode(b []byte) {
	b[0] = e.kind
	b[1], b[2], b[3] = 0, 0, 0
	binary.LittleEndian.PutUint32(b[4:], e.length)
	binary.LittleEndian.PutUint32(b[8:], e.crc)
	binary.LittleEndian.PutUint32(b[12:], crc32.Checksum(b[:12], castagnoli))
}

func decodeEntryHeader(b []byte) (entryHeader, error) {
	if len(b) < entryHeaderSize {
		return entryHeader{}, io.ErrUnexpectedEOF
	}
	if got, want := binary.LittleEndian.Uint32(b[12:]), crc32.Checksum(b[:12], castagnoli); got != want {
		return entryHeader{}, fmt.Errorf("entry header checksum %08x, want %08x", got, want)
	}
	e := entryHeader{kind: b[0], length: binary.LittleEndian.Uint32(b[4:]), crc: binary.LittleEndian.Uint32(b[8:])}
	switch {
	case e.kind == kindFilemark && e.length == 0:
	case e.kind == kindBlock && e.length > 0 && e.length <= maxBlockLen:
	default:
		return entryHeader{}, fmt.Errorf("entry kind %q length %d invalid", e.kind, e.length)
	}
	return e, nil
}

// entry is one logical object on the tape, as indexed in memory.
type entry struct {
	off    int64 // offset of the entry header in the file
	length uint32
	crc    uint32
	kind   byte
}

// tapeFile is an open cartridge.
type tapeFile struct {
	f       *os.File
	hdr     tapeHeader
	entries []entry
	fms     []int // object numbers of the filemarks, ascending
	end     int64 // file size: offset of the end of data
}

// createTapeFile writes a new blank cartridge; it fails if one exists.
func createTapeFile(path string, h tapeHeader) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create tape %s: %w", path, err)
	}
	if _, err := f.Write(h.encode()); err != nil {
		f.Close()
		return fmt.Errorf("create tape %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("create tape %s: %w", path, err)
	}
	return f.Close()
}

// openTapeFile opens a cartridge and indexes its entries.
func openTapeFile(path string) (*tapeFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open tape: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open tape: %w", err)
	}
	t, err := indexTape(f, st.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open tape %s: %w", path, err)
	}
	return t, nil
}

// indexTape reads the header and every entry header of f, size bytes
// long; a tail torn by a crash is cut off when f is a file.
func indexTape(f io.ReaderAt, size int64) (*tapeFile, error) {
	hb := make([]byte, tapeHeaderSize)
	if _, err := f.ReadAt(hb, 0); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	h, err := decodeTapeHeader(hb)
	if err != nil {
		return nil, err
	}
	t := &tapeFile{hdr: h}
	off := int64(tapeHeaderSize)
	// Entry headers are read through an 8 KiB window: one read covers
	// many small blocks' headers, and a large block costs one read.
	win := make([]byte, 8<<10)
	var winOff, winLen int64
	for {
		if off+entryHeaderSize > size {
			break // end of data, or a torn header
		}
		if off < winOff || off+entryHeaderSize > winOff+winLen {
			n, err := f.ReadAt(win, off)
			if n < entryHeaderSize {
				return nil, fmt.Errorf("read entry header at %d: %w", off, err)
			}
			winOff, winLen = off, int64(n)
		}
		e, err := decodeEntryHeader(win[off-winOff:])
		if err != nil {
			return nil, fmt.Errorf("entry %d at offset %d: %w", len(t.entries), off, err)
		}
		dataEnd := off + entryHeaderSize + int64(e.length)
		if dataEnd > size {
			break // data runs past the end: torn tail
		}
		if e.kind == kindFilemark {
			t.fms = append(t.fms, len(t.entries))
		}
		t.entries = append(t.entries, entry{off: off, length: e.length, crc: e.crc, kind: e.kind})
		off = dataEnd
	}
	t.end = off
	if file, ok := f.(*os.File); ok {
		t.f = file
		if size != off {
			if err := file.Truncate(off); err != nil {
				return nil, fmt.Errorf("cut torn tail at %d: %w", off, err)
			}
		}
	}
	return t, nil
}

// used is the bytes of the capacity the content takes.
func (t *tapeFile) used() int64 { return t.end - tapeHeaderSize }

// truncateAt forgets every object from number p on.
func (t *tapeFile) truncateAt(p int) error {
	if p >= len(t.entries) {
		return nil
	}
	off := t.entries[p].off
	if err := t.f.Truncate(off); err != nil {
		return fmt.Errorf("truncate tape at object %d: %w", p, err)
	}
	t.entries = t.entries[:p]
	t.fms = t.fms[:sort.SearchInts(t.fms, p)]
	t.end = off
	return nil
}

// appendAt writes one object at position p (cutting what follows).
func (t *tapeFile) appendAt(p int, kind byte, data []byte) error {
	if err := t.truncateAt(p); err != nil {
		return err
	}
	var hb [entryHeaderSize]byte
	e := entryHeader{kind: kind, length: uint32(len(data)), crc: crc32.Checksum(data, castagnoli)}
	e.encode(hb[:])
	if _, err := t.f.WriteAt(hb[:], t.end); err != nil {
		return fmt.Errorf("write entry header: %w", err)
	}
	if len(data) > 0 {
		if _, err := t.f.WriteAt(data, t.end+entryHeaderSize); err != nil {
			return fmt.Errorf("write block: %w", err)
		}
	}
	if kind == kindFilemark {
		t.fms = append(t.fms, len(t.entries))
	}
	t.entries = append(t.entries, entry{off: t.end, length: e.length, crc: e.crc, kind: kind})
	t.end += entryHeaderSize + int64(len(data))
	return nil
}

// readBlock reads object p's data into buf (up to len(buf)) and checks
// its checksum when the whole block was read.
func (t *tapeFile) readBlock(p int, buf []byte) (int, error) {
	e := t.entries[p]
	n := min(len(buf), int(e.length))
	if n == int(e.length) {
		if _, err := t.f.ReadAt(buf[:n], e.off+entryHeaderSize); err != nil {
			return 0, fmt.Errorf("read block %d: %w", p, err)
		}
		if crc32.Checksum(buf[:n], castagnoli) != e.crc {
			return 0, fmt.Errorf("block %d: data checksum mismatch", p)
		}
		return n, nil
	}
	// A partial read still checks the whole block.
	whole := make([]byte, e.length)
	if _, err := t.f.ReadAt(whole, e.off+entryHeaderSize); err != nil {
		return 0, fmt.Errorf("read block %d: %w", p, err)
	}
	if crc32.Checksum(whole, castagnoli) != e.crc {
		return 0, fmt.Errorf("block %d: data checksum mismatch", p)
	}
	return copy(buf, whole), nil
}

// filemarksBefore counts the filemarks at object numbers below p.
func (t *tapeFile) filemarksBefore(p int) int { return sort.SearchInts(t.fms, p) }

func (t *tapeFile) setHeader(h tapeHeader) error {
	if _, err := t.f.WriteAt(h.encode(), 0); err != nil {
		return fmt.Errorf("write tape header: %w", err)
	}
	if err := t.f.Sync(); err != nil {
		return fmt.Errorf("sync tape header: %w", err)
	}
	t.hdr = h
	return nil
}

func (t *tapeFile) close() error {
	if t.f == nil {
		return nil
	}
	err := t.f.Close()
	t.f = nil
	return err
}
