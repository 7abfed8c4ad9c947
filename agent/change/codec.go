package change

import (
	"encoding/binary"
	"hash/crc32"

	"google.golang.org/protobuf/encoding/protowire"
)

// Encoding: magic byte, format version, then the fields as protobuf wire
// format (tag-length-value, so later versions can add fields that older
// decoders skip), then a CRC-32C of everything before it, little-endian.
const (
	magic         = 0xC7
	formatVersion = 1
	overhead      = 2 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Field numbers. Never reuse a number; add new fields at the end.
const (
	fSeq protowire.Number = iota + 1
	fOp
	fPath
	fNewPath
	fTarget
	fOffset
	fSize
	fData
	fMode
	fUID
	fGID
	fMTime
	fXattrName
	fXattrValue
	fCaptured
)

// Append appends c's encoding to b.
func (c Change) Append(b []byte) []byte {
	start := len(b)
	b = append(b, magic, formatVersion)
	b = putUint(b, fSeq, c.Seq)
	b = putUint(b, fOp, uint64(c.Op))
	b = putString(b, fPath, c.Path)
	b = putString(b, fNewPath, c.NewPath)
	b = putString(b, fTarget, c.Target)
	b = putUint(b, fOffset, uint64(c.Offset))
	b = putUint(b, fSize, uint64(c.Size))
	b = putBytes(b, fData, c.Data)
	b = putUint(b, fMode, uint64(c.Mode))
	b = putUint(b, fUID, uint64(c.UID))
	b = putUint(b, fGID, uint64(c.GID))
	b = putUint(b, fMTime, uint64(c.MTime))
	b = putString(b, fXattrName, c.XattrName)
	b = putBytes(b, fXattrValue, c.XattrValue)
	b = putUint(b, fCaptured, uint64(c.Captured))
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// Marshal returns c's encoding.
func (c Change) Marshal() []byte { return c.Append(nil) }

func putUint(b []byte, n protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func putString(b []byte, n protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func putBytes(b []byte, n protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// Decode parses and validates one encoded change. It copies what it keeps,
// so b may be reused. It never panics, whatever b holds.
func Decode(b []byte) (Change, error) {
	var c Change
	if len(b) < overhead {
		return c, invalid("record of %d bytes is too short", len(b))
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return c, invalid("checksum mismatch")
	}
	if body[0] != magic {
		return c, invalid("bad magic byte %#x", body[0])
	}
	if body[1] != formatVersion {
		return c, invalid("format version %d; this build reads %d", body[1], formatVersion)
	}
	rest := body[2:]
	for len(rest) > 0 {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return c, invalid("field tag: %v", protowire.ParseError(n))
		}
		rest = rest[n:]
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(rest)
			if n < 0 {
				return c, invalid("field %d: %v", num, protowire.ParseError(n))
			}
			rest = rest[n:]
			setUint(&c, num, v)
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(rest)
			if n < 0 {
				return c, invalid("field %d: %v", num, protowire.ParseError(n))
			}
			rest = rest[n:]
			if err := setBytes(&c, num, v); err != nil {
				return c, err
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, rest)
			if n < 0 {
				return c, invalid("field %d: %v", num, protowire.ParseError(n))
			}
			rest = rest[n:]
		}
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

func setUint(c *Change, num protowire.Number, v uint64) {
	switch num {
	case fSeq:
		c.Seq = v
	case fOp:
		if v < uint64(opLimit) {
			c.Op = Op(v)
		} else {
			c.Op = opLimit // rejected by Validate
		}
	case fOffset:
		c.Offset = int64(v)
	case fSize:
		c.Size = int64(v)
	case fMode:
		c.Mode = uint32(v)
	case fUID:
		c.UID = uint32(v)
	case fGID:
		c.GID = uint32(v)
	case fMTime:
		c.MTime = int64(v)
	case fCaptured:
		c.Captured = int64(v)
	}
}

func setBytes(c *Change, num protowire.Number, v []byte) error {
	switch num {
	case fPath, fNewPath, fTarget, fXattrName:
		if len(v) > MaxPath {
			return invalid("field %d of %d bytes is too long", num, len(v))
		}
	case fData:
		if len(v) > MaxData {
			return invalid("data of %d bytes; at most %d", len(v), MaxData)
		}
	case fXattrValue:
		if len(v) > MaxXattrVal {
			return invalid("xattr value of %d bytes; at most %d", len(v), MaxXattrVal)
		}
	}
	switch num {
	case fPath:
		c.Path = string(v)
	case fNewPath:
		c.NewPath = string(v)
	case fTarget:
		c.Target = string(v)
	case fXattrName:
		c.XattrName = string(v)
	case fData:
		c.Data = append([]byte(nil), v...)
	case fXattrValue:
		c.XattrValue = append([]byte(nil), v...)
	}
	return nil
}
