package catalog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Every stored value is an envelope:
//
//	[magic][envelope version][record kind][payload...][CRC32C, 4 bytes big-endian]
//
// The CRC covers everything before it. The payload is protowire
// tag-length-value fields, so fields can be added without breaking older
// readers (they skip what they do not know).
const (
	envelopeMagic   = 0xCA
	envelopeVersion = 1
	envelopeHeader  = 3
	envelopeTrailer = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordKind is the third envelope byte. Values are part of the on-disk
// format: never renumber, only add.
type recordKind uint8

const (
	kindMeta         recordKind = 1
	kindSequence     recordKind = 2
	kindScenario     recordKind = 3
	kindScenarioRef  recordKind = 4
	kindEntity       recordKind = 5
	kindHost         recordKind = 6
	kindJob          recordKind = 7
	kindSession      recordKind = 8
	kindMedia        recordKind = 9
	kindFileVersion  recordKind = 10
	kindActivity     recordKind = 11
	kindMarker       recordKind = 12
	kindRecoveryTest recordKind = 13
)

func (k recordKind) String() string {
	names := [...]string{"", "meta", "sequence", "scenario", "scenario-ref", "entity", "host",
		"job", "session", "media", "file-version", "activity", "marker", "recovery-test"}
	if int(k) < len(names) && k != 0 {
		return names[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// seal wraps a payload in the envelope.
func seal(kind recordKind, payload []byte) []byte {
	b := make([]byte, 0, envelopeHeader+len(payload)+envelopeTrailer)
	b = append(b, envelopeMagic, envelopeVersion, byte(kind))
	b = append(b, payload...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// open checks the envelope of a value stored under key and returns its
// payload. want is the kind the key family promises; a mismatch means the
// value was written under the wrong key or is damaged.
func open(key, value []byte, want recordKind) ([]byte, error) {
	if len(value) < envelopeHeader+envelopeTrailer {
		return nil, corruptf(key, "value is %d bytes, shorter than an empty envelope", len(value))
	}
	body := value[:len(value)-envelopeTrailer]
	stored := binary.BigEndian.Uint32(value[len(value)-envelopeTrailer:])
	if sum := crc32.Checksum(body, castagnoli); sum != stored {
		return nil, corruptf(key, "checksum mismatch: stored %08x, computed %08x", stored, sum)
	}
	if value[0] != envelopeMagic {
		return nil, corruptf(key, "bad magic byte 0x%02x", value[0])
	}
	if value[1] != envelopeVersion {
		return nil, corruptf(key, "envelope version %d not supported (this build reads %d)", value[1], envelopeVersion)
	}
	if got := recordKind(value[2]); got != want {
		return nil, corruptf(key, "record kind %s where the key expects %s", got, want)
	}
	return body[envelopeHeader:], nil
}

// field is one decoded protowire field. Only the member matching typ is set.
type field struct {
	num protowire.Number
	typ protowire.Type
	u   uint64 // varint, fixed32 and fixed64 values
	b   []byte // length-delimited values; aliases the input
}

var errWireType = errors.New("wrong wire type")

// nextField reads one field from b. Groups are skipped as unknown fields
// would be; the caller sees them only to ignore them.
func nextField(b []byte) (field, []byte, error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return field{}, nil, fmt.Errorf("field tag: %w", protowire.ParseError(n))
	}
	b = b[n:]
	f := field{num: num, typ: typ}
	switch typ {
	case protowire.VarintType:
		f.u, n = protowire.ConsumeVarint(b)
	case protowire.Fixed32Type:
		var v uint32
		v, n = protowire.ConsumeFixed32(b)
		f.u = uint64(v)
	case protowire.Fixed64Type:
		f.u, n = protowire.ConsumeFixed64(b)
	case protowire.BytesType:
		f.b, n = protowire.ConsumeBytes(b)
	default:
		n = protowire.ConsumeFieldValue(num, typ, b)
	}
	if n < 0 {
		return field{}, nil, fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
	}
	return f, b[n:], nil
}

func (f field) wantType(t protowire.Type) error {
	if f.typ != t {
		return fmt.Errorf("field %d: %w %d, want %d", f.num, errWireType, f.typ, t)
	}
	return nil
}

func (f field) uint64() (uint64, error) {
	return f.u, f.wantType(protowire.VarintType)
}

func (f field) uint32() (uint32, error) {
	if err := f.wantType(protowire.VarintType); err != nil {
		return 0, err
	}
	if f.u > 1<<32-1 {
		return 0, fmt.Errorf("field %d: value %d overflows uint32", f.num, f.u)
	}
	return uint32(f.u), nil
}

func (f field) bool() (bool, error) {
	return f.u != 0, f.wantType(protowire.VarintType)
}

func (f field) str() (string, error) {
	return string(f.b), f.wantType(protowire.BytesType)
}

// bytes copies, because f.b aliases a buffer Pebble may reuse.
func (f field) bytes() ([]byte, error) {
	if err := f.wantType(protowire.BytesType); err != nil {
		return nil, err
	}
	return append([]byte(nil), f.b...), nil
}

// Encoders. Zero values are omitted, as in proto3, so an unset field costs
// nothing and decodes back to the zero value.

func putUint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func putBool(b []byte, num protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	return putUint(b, num, 1)
}

func putString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func putBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// putStrings writes one field per element, so empty strings inside the list
// survive (putString would drop them).
func putStrings(b []byte, num protowire.Number, ss []string) []byte {
	for _, s := range ss {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	return b
}

func putMessage(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}

// putUints writes a packed repeated varint field.
func putUints(b []byte, num protowire.Number, vs []uint64) []byte {
	if len(vs) == 0 {
		return b
	}
	var packed []byte
	for _, v := range vs {
		packed = protowire.AppendVarint(packed, v)
	}
	return putMessage(b, num, packed)
}

// appendUints decodes a repeated varint field in either packed or unpacked
// form, as protobuf readers do, so a future writer may choose either.
func (f field) appendUints(vs []uint64) ([]uint64, error) {
	switch f.typ {
	case protowire.VarintType:
		return append(vs, f.u), nil
	case protowire.BytesType:
		b := f.b
		for len(b) > 0 {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, fmt.Errorf("field %d: packed value: %w", f.num, protowire.ParseError(n))
			}
			vs = append(vs, v)
			b = b[n:]
		}
		return vs, nil
	}
	return nil, fmt.Errorf("field %d: %w %d for repeated varint", f.num, errWireType, f.typ)
}

// Times are embedded messages shaped like google.protobuf.Timestamp:
// 1 = seconds since the Unix epoch (int64 as varint), 2 = nanoseconds
// (0..999999999). The zero time.Time is omitted and decodes back to zero.
func putTime(b []byte, num protowire.Number, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	var msg []byte
	msg = putUint(msg, 1, uint64(t.Unix()))
	msg = putUint(msg, 2, uint64(t.Nanosecond()))
	return putMessage(b, num, msg)
}

func (f field) time() (time.Time, error) {
	if err := f.wantType(protowire.BytesType); err != nil {
		return time.Time{}, err
	}
	var sec int64
	var nsec uint64
	b := f.b
	for len(b) > 0 {
		sub, rest, err := nextField(b)
		if err != nil {
			return time.Time{}, fmt.Errorf("field %d: timestamp: %w", f.num, err)
		}
		b = rest
		switch sub.num {
		case 1:
			v, err := sub.uint64()
			if err != nil {
				return time.Time{}, fmt.Errorf("field %d: timestamp: %w", f.num, err)
			}
			sec = int64(v)
		case 2:
			v, err := sub.uint64()
			if err != nil {
				return time.Time{}, fmt.Errorf("field %d: timestamp: %w", f.num, err)
			}
			nsec = v
		}
	}
	if nsec >= 1e9 {
		return time.Time{}, fmt.Errorf("field %d: timestamp nanoseconds %d out of range", f.num, nsec)
	}
	return time.Unix(sec, int64(nsec)).UTC(), nil
}

// putStringMap writes a map as repeated {1: key, 2: value} messages sorted by
// key, so equal maps always encode to equal bytes.
func putStringMap(b []byte, num protowire.Number, m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var msg []byte
		msg = putString(msg, 1, k)
		msg = putString(msg, 2, m[k])
		b = putMessage(b, num, msg)
	}
	return b
}

// pair decodes an embedded {1: string, 2: string} message, the shape of map
// entries and replicas.
func (f field) pair() (string, string, error) {
	if err := f.wantType(protowire.BytesType); err != nil {
		return "", "", err
	}
	var k, v string
	b := f.b
	for len(b) > 0 {
		sub, rest, err := nextField(b)
		if err != nil {
			return "", "", fmt.Errorf("field %d: %w", f.num, err)
		}
		b = rest
		var s string
		switch sub.num {
		case 1:
			s, err = sub.str()
			k = s
		case 2:
			s, err = sub.str()
			v = s
		}
		if err != nil {
			return "", "", fmt.Errorf("field %d: %w", f.num, err)
		}
	}
	return k, v, nil
}

// decodeFields calls fn for every field of payload, stopping at the first
// error. fn ignores numbers it does not know, which is how newer fields pass
// through older builds.
func decodeFields(payload []byte, fn func(f field) error) error {
	for len(payload) > 0 {
		f, rest, err := nextField(payload)
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			return err
		}
		payload = rest
	}
	return nil
}
