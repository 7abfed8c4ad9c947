// Package tapeformat is how Holdfast lays data on tape, independent of the
// drive that writes it: a labelled volume, then one tape file per backup
// session between filemarks. Every block carries a small header — magic,
// version, kind, flags, the session's stream id, the block's sequence
// number in its session, the payload length — and a CRC-32C over header
// and payload, so a tape read alone tells what it holds, in order, and
// where it is damaged. A session that reaches the end of a tape goes on
// on the next one: its last block there says "continued", the next
// volume's first session block says "continuation", and sequence numbers
// run on across volumes. Labels and session headers are small JSON
// documents inside blocks: self-describing, and enough for 'holdfast
// media scan' to rebuild the catalog from tapes alone.
//
// The format does not encrypt: a session's payload is what the caller
// writes, and the disk store's sealed data can be written as it is.
package tapeformat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Version is the block format version.
const Version = 1

// HeaderSize is the size of a block's header; a block's payload is at
// most its block size minus this.
const HeaderSize = 40

// DefaultBlockSize is the block size written: 256 KiB, large enough for
// streaming drives, small enough for every HBA.
const DefaultBlockSize = 256 << 10

// MaxBlockSize bounds what a reader accepts.
const MaxBlockSize = 4 << 20

var magic = [4]byte{'H', 'F', 'T', 'P'}

// Kind is what a block holds.
type Kind uint8

// Block kinds.
const (
	KindLabel Kind = iota + 1
	KindSessionHeader
	KindData
	KindSessionTrailer
)

func (k Kind) String() string {
	switch k {
	case KindLabel:
		return "label"
	case KindSessionHeader:
		return "session header"
	case KindData:
		return "data"
	case KindSessionTrailer:
		return "session trailer"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Block flags.
const (
	// FlagContinuation: the session began on an earlier volume.
	FlagContinuation = 1 << iota
	// FlagContinued: the session goes on on the next volume.
	FlagContinued
)

// Block is one decoded block.
type Block struct {
	Kind    Kind
	Flags   uint8
	Stream  [16]byte // the session's stream id; zero in a label
	Seq     uint64   // the block's number in its session, from 0 (the header)
	Payload []byte
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrNotHoldfast is returned for a block that is not of this format (a
// tape written by something else, or garbage).
var ErrNotHoldfast = errors.New("not a Holdfast tape block")

// ErrDamaged is wrapped by every error about a block that is of this
// format but does not check.
var ErrDamaged = errors.New("damaged tape block")

// AppendBlock encodes b after dst.
func AppendBlock(dst []byte, b Block) []byte {
	start := len(dst)
	dst = append(dst, magic[:]...)
	dst = append(dst, Version, byte(b.Kind), b.Flags, 0)
	dst = append(dst, b.Stream[:]...)
	dst = binary.BigEndian.AppendUint64(dst, b.Seq)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b.Payload)))
	crc := crc32.Update(crc32.Checksum(dst[start:], castagnoli), castagnoli, b.Payload)
	dst = binary.BigEndian.AppendUint32(dst, crc)
	return append(dst, b.Payload...)
}

// DecodeBlock decodes one block as read from tape. Payload aliases raw.
func DecodeBlock(raw []byte) (Block, error) {
	if len(raw) < HeaderSize {
		if len(raw) >= 4 && [4]byte(raw[:4]) == magic {
			return Block{}, fmt.Errorf("%w: %d bytes, shorter than a block header", ErrDamaged, len(raw))
		}
		return Block{}, fmt.Errorf("%w: %d bytes", ErrNotHoldfast, len(raw))
	}
	if [4]byte(raw[:4]) != magic {
		return Block{}, fmt.Errorf("%w: magic %q", ErrNotHoldfast, raw[:4])
	}
	if raw[4] != Version {
		return Block{}, fmt.Errorf("%w: format version %d, this build reads %d", ErrDamaged, raw[4], Version)
	}
	b := Block{Kind: Kind(raw[5]), Flags: raw[6]}
	copy(b.Stream[:], raw[8:24])
	b.Seq = binary.BigEndian.Uint64(raw[24:32])
	n := binary.BigEndian.Uint32(raw[32:36])
	if int64(n) != int64(len(raw)-HeaderSize) {
		return Block{}, fmt.Errorf("%w: header says %d payload bytes, the block holds %d", ErrDamaged, n, len(raw)-HeaderSize)
	}
	want := binary.BigEndian.Uint32(raw[36:40])
	got := crc32.Update(crc32.Checksum(raw[:36], castagnoli), castagnoli, raw[HeaderSize:])
	if got != want {
		return Block{}, fmt.Errorf("%w: %s block %d: checksum %08x, header says %08x", ErrDamaged, b.Kind, b.Seq, got, want)
	}
	if b.Kind < KindLabel || b.Kind > KindSessionTrailer {
		return Block{}, fmt.Errorf("%w: unknown kind %d", ErrDamaged, raw[5])
	}
	if raw[7] != 0 || b.Flags&^(FlagContinuation|FlagContinued) != 0 {
		return Block{}, fmt.Errorf("%w: unknown flags %#x %#x", ErrDamaged, b.Flags, raw[7])
	}
	b.Payload = raw[HeaderSize:]
	return b, nil
}
