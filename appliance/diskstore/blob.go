package diskstore

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/holdfast/holdfast/appliance/diskstore/chunker"
	"github.com/klauspost/compress/zstd"
)

// ID names a chunk: HMAC-SHA-256 of its plaintext under the store's id key,
// so equal content gets one id in one store and ids say nothing about
// content to someone without the key.
type ID [32]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// A blob is one sealed chunk (or pack index, or session root):
//
//	"HFB1" | version u8 | kind u8 | flags u8 | 0 u8 |
//	plain length u32 | stored length u32 | sealed length u32 | nonce [12] |
//	AES-256-GCM(stored bytes) [sealed length]
//
// The stored bytes are the zstd frame of the plaintext, or the plaintext
// itself when zstd does not shrink it (flag blobZstd says which). The
// header, the store id and the chunk id are the AEAD's additional data: a
// blob cannot be moved to another id, store or kind without failing to open.
const (
	blobMagic      = "HFB1"
	blobVersion    = 1
	blobHeaderSize = 32
	blobZstd       = 1
	// maxBlobPlain bounds what a header may claim, so a damaged length
	// cannot make a reader allocate without limit.
	maxBlobPlain = 80 << 20
)

type blobKind uint8

const (
	kindData blobKind = iota + 1
	kindTree
	kindPackIndex
	kindSessionRoot
)

func (k blobKind) String() string {
	switch k {
	case kindData:
		return "data"
	case kindTree:
		return "tree"
	case kindPackIndex:
		return "pack index"
	case kindSessionRoot:
		return "session root"
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

type blobHeader struct {
	kind      blobKind
	flags     uint8
	plainLen  uint32
	storedLen uint32
	sealedLen uint32
	nonce     [12]byte
}

func (h *blobHeader) encode() []byte {
	b := make([]byte, 0, blobHeaderSize)
	b = append(b, blobMagic...)
	b = append(b, blobVersion, byte(h.kind), h.flags, 0)
	b = binary.BigEndian.AppendUint32(b, h.plainLen)
	b = binary.BigEndian.AppendUint32(b, h.storedLen)
	b = binary.BigEndian.AppendUint32(b, h.sealedLen)
	return append(b, h.nonce[:]...)
}

// parseBlobHeader checks a header's fields against each other; the sealed
// bytes are checked by the AEAD.
func parseBlobHeader(b []byte) (blobHeader, error) {
	var h blobHeader
	if len(b) < blobHeaderSize {
		return h, corrupt("blob header: %d bytes", len(b))
	}
	if string(b[:4]) != blobMagic {
		return h, corrupt("blob header: bad magic %q", b[:4])
	}
	if b[4] != blobVersion {
		return h, corrupt("blob header: version %d not supported", b[4])
	}
	h.kind = blobKind(b[5])
	h.flags = b[6]
	h.plainLen = binary.BigEndian.Uint32(b[8:])
	h.storedLen = binary.BigEndian.Uint32(b[12:])
	h.sealedLen = binary.BigEndian.Uint32(b[16:])
	copy(h.nonce[:], b[20:32])
	switch {
	case h.kind < kindData || h.kind > kindSessionRoot:
		return h, corrupt("blob header: unknown kind %d", h.kind)
	case h.flags&^blobZstd != 0 || b[7] != 0:
		return h, corrupt("blob header: unknown flags %#x", h.flags)
	case h.plainLen > maxBlobPlain:
		return h, corrupt("blob header: plain length %d too large", h.plainLen)
	case h.flags&blobZstd == 0 && h.storedLen != h.plainLen:
		return h, corrupt("blob header: uncompressed blob stores %d of %d bytes", h.storedLen, h.plainLen)
	case h.flags&blobZstd != 0 && h.storedLen >= h.plainLen:
		return h, corrupt("blob header: compressed blob stores %d of %d bytes", h.storedLen, h.plainLen)
	case h.sealedLen != h.storedLen+16:
		return h, corrupt("blob header: sealed length %d for %d stored bytes", h.sealedLen, h.storedLen)
	}
	return h, nil
}

// keyring holds one open store's keys and codecs.
type keyring struct {
	storeID [16]byte
	sec     *secrets
	aead    cipher.AEAD
	gear    *chunker.Gear
	zenc    *zstd.Encoder
	zdec    *zstd.Decoder
}

func newKeyring(storeID [16]byte, sec *secrets) *keyring {
	zenc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		panic(err) // only bad options fail
	}
	zdec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxBlobPlain))
	if err != nil {
		panic(err)
	}
	return &keyring{storeID: storeID, sec: sec, aead: newGCM(sec.dataKey[:]), gear: chunker.NewGear(sec.chunkerKey[:]), zenc: zenc, zdec: zdec}
}

func (k *keyring) id(plain []byte) ID {
	m := hmac.New(sha256.New, k.sec.idKey[:])
	m.Write(plain)
	var id ID
	m.Sum(id[:0])
	return id
}

func (k *keyring) aad(header []byte, id ID) []byte {
	a := make([]byte, 0, len(header)+16+32)
	a = append(a, header...)
	a = append(a, k.storeID[:]...)
	return append(a, id[:]...)
}

// seal makes the blob of plain. id is the chunk id for data and tree blobs
// and the zero ID otherwise.
func (k *keyring) seal(kind blobKind, id ID, plain []byte) []byte {
	h := blobHeader{kind: kind, plainLen: uint32(len(plain))}
	stored := plain
	if len(plain) > 0 {
		if z := k.zenc.EncodeAll(plain, make([]byte, 0, len(plain))); len(z) < len(plain) {
			stored, h.flags = z, blobZstd
		}
	}
	h.storedLen = uint32(len(stored))
	h.sealedLen = h.storedLen + 16
	rand.Read(h.nonce[:])
	hdr := h.encode()
	out := make([]byte, 0, blobHeaderSize+int(h.sealedLen))
	out = append(out, hdr...)
	return k.aead.Seal(out, h.nonce[:], stored, k.aad(hdr, id))
}

// open checks and opens a whole blob; for data and tree blobs it checks
// the plaintext's id again.
func (k *keyring) open(b []byte, kind blobKind, id ID) ([]byte, error) {
	h, err := parseBlobHeader(b)
	if err != nil {
		return nil, err
	}
	if h.kind != kind {
		return nil, corrupt("blob is %v, want %v", h.kind, kind)
	}
	if len(b) != blobHeaderSize+int(h.sealedLen) {
		return nil, corrupt("blob has %d bytes, header says %d", len(b), blobHeaderSize+int(h.sealedLen))
	}
	stored, err := k.aead.Open(nil, h.nonce[:], b[blobHeaderSize:], k.aad(b[:blobHeaderSize], id))
	if err != nil {
		return nil, corrupt("%v blob %s does not authenticate", kind, shortID(id))
	}
	plain := stored
	if h.flags&blobZstd != 0 {
		plain, err = k.zdec.DecodeAll(stored, make([]byte, 0, h.plainLen))
		if err != nil {
			return nil, corrupt("%v blob %s: zstd: %v", kind, shortID(id), err)
		}
	}
	if len(plain) != int(h.plainLen) {
		return nil, corrupt("%v blob %s: %d bytes, header says %d", kind, shortID(id), len(plain), h.plainLen)
	}
	if (kind == kindData || kind == kindTree) && k.id(plain) != id {
		return nil, corrupt("%v blob %s: content does not match its id", kind, shortID(id))
	}
	return plain, nil
}

func shortID(id ID) string { return id.String()[:12] }
