package rewind

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A segment file, seg-<first ID, 20 digits>, starts with segMagic and the
// format version (uint32 LE), then holds records, each framed as: payload
// length (uint32 LE), CRC-32C of the payload (uint32 LE), payload.
const (
	segMagic   = "HFRW"
	segVersion = 1
	segHeader  = 8
	frameHead  = 8
	segPrefix  = "seg-"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func segName(first uint64) string { return fmt.Sprintf("%s%020d", segPrefix, first) }

func parseSegName(name string) (uint64, bool) {
	s, ok := strings.CutPrefix(name, segPrefix)
	if !ok || len(s) != 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil
}

func segmentHeader() []byte {
	return binary.LittleEndian.AppendUint32([]byte(segMagic), segVersion)
}

// frame appends the framed payload to b.
func frame(b, payload []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(payload, castagnoli))
	return append(b, payload...)
}

// segRecord is a record read from a segment and where it starts.
type segRecord struct {
	rec *Record
	off int64
	len int64 // framed
}

// readSegment reads every record of the segment file at path. A damaged
// record stops it with an error wrapping ErrDamaged that names the file
// and offset. In the last segment, a record cut short by the end of the
// file, or a bad final record reaching it, is a write torn by a crash:
// torn is then its offset (the caller cuts the file there) and err is nil.
func readSegment(path string, last bool) (recs []segRecord, torn int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, -1, fmt.Errorf("open journal segment: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, -1, fmt.Errorf("stat journal segment: %w", err)
	}
	return scanSegment(f, st.Size(), path, last)
}

func scanSegment(r io.ReaderAt, size int64, name string, last bool) (recs []segRecord, torn int64, err error) {
	damaged := func(off int64, why string, args ...any) error {
		return fmt.Errorf("%w: %s at offset %d: %s", ErrDamaged, name, off, fmt.Sprintf(why, args...))
	}
	head := make([]byte, segHeader)
	if n, _ := r.ReadAt(head, 0); n < segHeader {
		if last {
			return nil, 0, nil // the header itself was torn
		}
		return nil, -1, damaged(0, "segment header cut short")
	}
	if string(head[:4]) != segMagic || binary.LittleEndian.Uint32(head[4:]) != segVersion {
		return nil, -1, damaged(0, "not a journal segment of format %d", segVersion)
	}
	off := int64(segHeader)
	fh := make([]byte, frameHead)
	for off < size {
		if size-off < frameHead {
			if last {
				return recs, off, nil
			}
			return recs, -1, damaged(off, "record header cut short")
		}
		if _, err := r.ReadAt(fh, off); err != nil {
			return recs, -1, fmt.Errorf("read %s at offset %d: %w", name, off, err)
		}
		n := int64(binary.LittleEndian.Uint32(fh))
		sum := binary.LittleEndian.Uint32(fh[4:])
		if n == 0 || n > maxPayload {
			return recs, -1, damaged(off, "record length %d", n)
		}
		end := off + frameHead + n
		if end > size {
			if last {
				return recs, off, nil
			}
			return recs, -1, damaged(off, "record of %d bytes runs past the end", n)
		}
		payload := make([]byte, n)
		if _, err := r.ReadAt(payload, off+frameHead); err != nil {
			return recs, -1, fmt.Errorf("read %s at offset %d: %w", name, off, err)
		}
		if crc32.Checksum(payload, castagnoli) != sum {
			if last && end == size {
				return recs, off, nil
			}
			return recs, -1, damaged(off, "checksum mismatch")
		}
		rec, err := decodeRecord(payload)
		if err != nil {
			return recs, -1, damaged(off, "%v", err)
		}
		recs = append(recs, segRecord{rec: rec, off: off, len: end - off})
		off = end
	}
	return recs, -1, nil
}

// readRecordAt reads back one record the index points at, checking its
// frame and checksum again: the disk may have changed since Open.
func readRecordAt(path string, off int64) (*Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open journal segment: %w", err)
	}
	defer f.Close()
	name := filepath.Base(path)
	fh := make([]byte, frameHead)
	if _, err := f.ReadAt(fh, off); err != nil {
		return nil, fmt.Errorf("%w: %s at offset %d: %v", ErrDamaged, name, off, err)
	}
	n := int64(binary.LittleEndian.Uint32(fh))
	if n == 0 || n > maxPayload {
		return nil, fmt.Errorf("%w: %s at offset %d: record length %d", ErrDamaged, name, off, n)
	}
	payload := make([]byte, n)
	if _, err := f.ReadAt(payload, off+frameHead); err != nil {
		return nil, fmt.Errorf("%w: %s at offset %d: %v", ErrDamaged, name, off, err)
	}
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(fh[4:]) {
		return nil, fmt.Errorf("%w: %s at offset %d: checksum mismatch", ErrDamaged, name, off)
	}
	rec, err := decodeRecord(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %s at offset %d: %v", ErrDamaged, name, off, err)
	}
	return rec, nil
}

// segment is one segment file as the journal knows it.
type segment struct {
	name      string
	first     uint64 // the first ID it holds or will hold
	last      uint64 // the last ID read or written; first-1 if none
	size      int64
	blobBytes int64     // blobs of its records
	newest    time.Time // of its last record
	damage    error     // set when reading stopped at damage
}
