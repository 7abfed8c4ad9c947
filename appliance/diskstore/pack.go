package diskstore

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// A pack file holds blobs back to back and ends with a sealed index of
// them, so the pack alone says what it holds:
//
//	"HFDSPACK" | version u8 | 0 [7] | blob ... | index blob |
//	index blob length u32 | CRC-32C of the index blob u32 | "HFDSPEND"
//
// The index blob's plaintext is: count uvarint, then per blob
// id [32] | kind u8 | offset uvarint | length uvarint. Its AEAD binds it to
// the pack's name, so an index cannot be moved to another pack. The CRC
// tells a torn or damaged tail before any decryption is tried.
//
// A pack is written under packs/tmp-NAME, fsynced, renamed to
// packs/XX/NAME.pack (XX the name's first two hex digits) and the
// directory fsynced: a pack with its final name is complete.
const (
	packMagic       = "HFDSPACK"
	packEndMagic    = "HFDSPEND"
	packVersion     = 1
	packHeaderSize  = 16
	packTrailerSize = 16
	maxPackIndex    = 64 << 20
	maxPackEntries  = 1 << 20
	packEntryMin    = 32 + 1 + 1 + 1
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

type packEntry struct {
	id     ID
	kind   blobKind
	offset uint64
	length uint32
}

func encodePackIndex(entries []packEntry) []byte {
	var e enc
	e.uvarint(uint64(len(entries)))
	for _, p := range entries {
		e.raw(p.id[:])
		e.u8(uint8(p.kind))
		e.uvarint(p.offset)
		e.uvarint(uint64(p.length))
	}
	return e.b
}

// decodePackIndex reads an index's plaintext. dataEnd is where the pack's
// blobs end: every entry must lie in [packHeaderSize, dataEnd).
func decodePackIndex(b []byte, dataEnd uint64) ([]packEntry, error) {
	d := dec{b: b, what: "pack index"}
	n := d.count(maxPackEntries, packEntryMin)
	entries := make([]packEntry, 0, n)
	for range n {
		var p packEntry
		copy(p.id[:], d.take(32))
		p.kind = blobKind(d.u8())
		p.offset = d.uvarint()
		length := d.uvarint()
		if d.err != nil {
			break
		}
		if p.kind != kindData && p.kind != kindTree {
			d.fail("entry of kind %v", p.kind)
		} else if length < blobHeaderSize || length > blobHeaderSize+maxBlobPlain+16 {
			d.fail("entry length %d", length)
		} else if p.offset < packHeaderSize || p.offset > dataEnd || length > dataEnd-p.offset {
			d.fail("entry at %d+%d outside the pack's %d bytes of blobs", p.offset, length, dataEnd)
		}
		p.length = uint32(length)
		entries = append(entries, p)
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return entries, nil
}

// packTrailer is the last packTrailerSize bytes of a pack.
func parsePackTrailer(b []byte) (indexLen uint32, sum uint32, err error) {
	if len(b) != packTrailerSize || string(b[8:]) != packEndMagic {
		return 0, 0, corrupt("pack trailer: bad end magic")
	}
	indexLen = binary.BigEndian.Uint32(b)
	if indexLen < blobHeaderSize || indexLen > maxPackIndex {
		return 0, 0, corrupt("pack trailer: index length %d", indexLen)
	}
	return indexLen, binary.BigEndian.Uint32(b[4:]), nil
}

// packIndexID binds a pack's index blob to the pack's name.
func packIndexID(name string) ID { return sha256.Sum256([]byte("pack index " + name)) }

func newPackName() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validPackName(name string) bool {
	if len(name) != 32 {
		return false
	}
	_, err := hex.DecodeString(name)
	return err == nil && strings.ToLower(name) == name
}

func packPath(dir, name string) string {
	return filepath.Join(dir, "packs", name[:2], name+".pack")
}

// packWriter appends blobs to one temporary pack file.
type packWriter struct {
	dir     string
	name    string
	f       *os.File
	size    int64
	entries []packEntry
}

func createPack(dir string) (*packWriter, error) {
	name := newPackName()
	tmp := filepath.Join(dir, "packs", "tmp-"+name)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, ioErr(err, "create pack")
	}
	hdr := make([]byte, packHeaderSize)
	copy(hdr, packMagic)
	hdr[8] = packVersion
	if _, err := f.Write(hdr); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, ioErr(err, "write pack %s header", name)
	}
	return &packWriter{dir: dir, name: name, f: f, size: packHeaderSize}, nil
}

func (w *packWriter) append(kind blobKind, id ID, blob []byte) (packEntry, error) {
	if _, err := w.f.Write(blob); err != nil {
		return packEntry{}, ioErr(err, "append to pack %s", w.name)
	}
	p := packEntry{id: id, kind: kind, offset: uint64(w.size), length: uint32(len(blob))}
	w.size += int64(len(blob))
	w.entries = append(w.entries, p)
	return p, nil
}

// finish writes the index and trailer and gives the pack its final name,
// durably.
func (w *packWriter) finish(kr *keyring) error {
	idx := kr.seal(kindPackIndex, packIndexID(w.name), encodePackIndex(w.entries))
	tr := make([]byte, 0, packTrailerSize)
	tr = binary.BigEndian.AppendUint32(tr, uint32(len(idx)))
	tr = binary.BigEndian.AppendUint32(tr, crc32.Checksum(idx, crc32c))
	tr = append(tr, packEndMagic...)
	if _, err := w.f.Write(append(idx, tr...)); err != nil {
		return ioErr(err, "write pack %s index", w.name)
	}
	if err := w.f.Sync(); err != nil {
		return ioErr(err, "fsync pack %s", w.name)
	}
	if err := w.f.Close(); err != nil {
		return ioErr(err, "close pack %s", w.name)
	}
	sub := filepath.Join(w.dir, "packs", w.name[:2])
	if err := os.Mkdir(sub, 0o700); err == nil {
		if err := syncDir(filepath.Join(w.dir, "packs")); err != nil {
			return err
		}
	} else if !os.IsExist(err) {
		return ioErr(err, "create %s", sub)
	}
	if err := os.Rename(w.f.Name(), packPath(w.dir, w.name)); err != nil {
		return ioErr(err, "rename pack %s", w.name)
	}
	return syncDir(sub)
}

// abort removes the temporary file of an unfinished pack.
func (w *packWriter) abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}

// readPackIndex reads and checks the index at the end of an open pack.
func readPackIndex(kr *keyring, f *os.File, name string) ([]packEntry, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, ioErr(err, "stat pack %s", name)
	}
	size := st.Size()
	if size < packHeaderSize+blobHeaderSize+packTrailerSize {
		return nil, corrupt("pack %s: %d bytes", name, size)
	}
	hdr := make([]byte, packHeaderSize)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return nil, ioErr(err, "read pack %s", name)
	}
	if string(hdr[:8]) != packMagic || hdr[8] != packVersion {
		return nil, corrupt("pack %s: bad header", name)
	}
	tr := make([]byte, packTrailerSize)
	if _, err := f.ReadAt(tr, size-packTrailerSize); err != nil {
		return nil, ioErr(err, "read pack %s trailer", name)
	}
	idxLen, sum, err := parsePackTrailer(tr)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", name, err)
	}
	idxAt := size - packTrailerSize - int64(idxLen)
	if idxAt < packHeaderSize {
		return nil, corrupt("pack %s: index of %d bytes does not fit", name, idxLen)
	}
	idx := make([]byte, idxLen)
	if _, err := f.ReadAt(idx, idxAt); err != nil && err != io.EOF {
		return nil, ioErr(err, "read pack %s index", name)
	}
	if crc32.Checksum(idx, crc32c) != sum {
		return nil, corrupt("pack %s: index checksum mismatch", name)
	}
	plain, err := kr.open(idx, kindPackIndex, packIndexID(name))
	if err != nil {
		return nil, fmt.Errorf("pack %s index: %w", name, err)
	}
	entries, err := decodePackIndex(plain, uint64(idxAt))
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", name, err)
	}
	return entries, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return ioErr(err, "open directory %s", dir)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return ioErr(err, "fsync directory %s", dir)
	}
	return nil
}
