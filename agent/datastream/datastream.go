// Package datastream is the one wire format in which filesystem entries
// and their content travel between the appliance and an agent, in both
// directions: a restore sends a backup's entries to the agent that writes
// them, a read sends an agent's directory to the appliance that stores it.
//
// A stream is a magic prefix with a version, then frames. Every frame is
// a type byte, a big-endian 32-bit payload length, the payload and a
// CRC-32C (Castagnoli) of all three, so damage is found where it happened.
// An entry is a header frame (type, relative slash path, mode, owner,
// modification time, size, symlink target); a file's header is followed
// by its content in data frames and a file-end frame that says whether
// the sender could read the whole file. An end frame with the number of
// entries and content bytes closes the stream, so a stream cut anywhere
// is an error, never a shorter restore that looks complete.
//
// The Reader trusts nothing the sender says: every length, count and
// field is bounded and checked, and an error names the entry and the
// byte offset where the stream went wrong. It does not judge whether a
// path is safe to write: the destination's writer (agent/restore) does,
// with the descriptors in hand.
package datastream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
)

// Version is the format version written after the magic.
const Version = 1

// magic starts every stream: "HFDS", the version, three zero bytes.
var magic = [8]byte{'H', 'F', 'D', 'S', Version, 0, 0, 0}

// Frame types.
const (
	frameHeader  = 'h'
	frameData    = 'd'
	frameFileEnd = 'f'
	frameEnd     = 'z'
)

// Type is the kind of an entry.
type Type uint8

// Entry types.
const (
	Dir Type = iota + 1
	File
	Symlink
)

func (t Type) String() string {
	switch t {
	case Dir:
		return "directory"
	case File:
		return "file"
	case Symlink:
		return "symlink"
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// ModeBits are the mode bits an entry carries: permissions with setuid,
// setgid and sticky, as in the stat(2) mode's low twelve bits.
const ModeBits = 0o7777

// Header describes one entry.
type Header struct {
	Type     Type
	Path     string // slash-separated, relative to the stream's root
	Mode     uint32 // ModeBits only
	UID, GID uint32
	MTime    int64  // nanoseconds since the Unix epoch
	Size     int64  // files: exactly the content's length; others 0
	Target   string // symlinks: the target, verbatim
}

// Limits bound what a Reader accepts. Zero fields take the defaults.
type Limits struct {
	MaxPath    int   // bytes of a path or a symlink target; default 4096
	MaxFrame   int   // payload bytes of one frame; default 1 MiB
	MaxEntries int64 // entries in the stream; default 1<<32
	MaxBytes   int64 // content bytes in the stream; default 1<<50
}

// Defaults.
const (
	DefaultMaxPath    = 4096
	DefaultMaxFrame   = 1 << 20
	DefaultMaxEntries = 1 << 32
	DefaultMaxBytes   = 1 << 50
)

func (l Limits) withDefaults() Limits {
	if l.MaxPath <= 0 {
		l.MaxPath = DefaultMaxPath
	}
	if l.MaxFrame <= 0 {
		l.MaxFrame = DefaultMaxFrame
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	return l
}

// ErrTruncated is wrapped by errors about a stream that ends early.
var ErrTruncated = errors.New("stream truncated")

// FormatError is a malformed stream: where it went wrong and why.
type FormatError struct {
	Offset int64  // byte offset of the frame (or field) at fault
	Entry  int64  // 1-based number of the entry being read; 0 before the first
	Path   string // that entry's path, when its header was read
	Reason string
	Err    error // ErrTruncated, or nil
}

func (e *FormatError) Error() string {
	where := "at byte " + strconv.FormatInt(e.Offset, 10)
	if e.Entry > 0 {
		where = fmt.Sprintf("entry %d", e.Entry)
		if e.Path != "" {
			where += fmt.Sprintf(" (%q)", e.Path)
		}
		where += " at byte " + strconv.FormatInt(e.Offset, 10)
	}
	return "datastream: " + where + ": " + e.Reason
}

func (e *FormatError) Unwrap() error { return e.Err }

// SourceError is the sender's own report that it could not read a file's
// content to the end (an I/O error, a file that shrank). The stream goes
// on with the next entry; only this entry is incomplete.
type SourceError struct {
	Path string
	Text string // the sender's words
}

func (e *SourceError) Error() string {
	return fmt.Sprintf("sender could not read %q: %s", e.Path, e.Text)
}

// crcTable is CRC-32C, which CPUs compute in hardware.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Header payload layout: type(1) mode(4) uid(4) gid(4) mtime(8) size(8)
// pathLen(2) path targetLen(2) target.
const headerFixed = 1 + 4 + 4 + 4 + 8 + 8 + 2 + 2

func appendHeader(b []byte, h Header) []byte {
	b = append(b, byte(h.Type))
	b = binary.BigEndian.AppendUint32(b, h.Mode)
	b = binary.BigEndian.AppendUint32(b, h.UID)
	b = binary.BigEndian.AppendUint32(b, h.GID)
	b = binary.BigEndian.AppendUint64(b, uint64(h.MTime))
	b = binary.BigEndian.AppendUint64(b, uint64(h.Size))
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.Path)))
	b = append(b, h.Path...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.Target)))
	return append(b, h.Target...)
}

// checkHeader is the one set of rules both sides apply to a header;
// maxPath is the bound on path and target.
func checkHeader(h Header, maxPath int) error {
	switch h.Type {
	case Dir, File, Symlink:
	default:
		return fmt.Errorf("unknown entry type %d", h.Type)
	}
	if h.Path == "" {
		return errors.New("empty path")
	}
	if len(h.Path) > maxPath || len(h.Path) > 0xffff {
		return fmt.Errorf("path of %d bytes; at most %d", len(h.Path), min(maxPath, 0xffff))
	}
	if len(h.Target) > maxPath || len(h.Target) > 0xffff {
		return fmt.Errorf("symlink target of %d bytes; at most %d", len(h.Target), min(maxPath, 0xffff))
	}
	if h.Mode&^ModeBits != 0 {
		return fmt.Errorf("mode %#o has bits beyond %#o", h.Mode, ModeBits)
	}
	if h.Size < 0 || h.Type != File && h.Size != 0 {
		return fmt.Errorf("size %d for a %s", h.Size, h.Type)
	}
	if (h.Type == Symlink) != (h.Target != "") {
		return fmt.Errorf("a %s with target %q", h.Type, h.Target)
	}
	return nil
}
