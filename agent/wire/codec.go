package wire

import (
	"encoding/binary"
	"hash/crc32"
	"math"
	"sort"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/treesync"
)

// Encoding of a message: magic byte, format version, kind, then the fields
// as protobuf wire format (tag-length-value: a later version can add
// fields an older decoder skips), then a CRC-32C of everything before it,
// little-endian. Changes inside an Apply keep their own encoding (package
// change), checksum included.
const (
	magic         = 0xD7
	formatVersion = 1
	header        = 3
	trailer       = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Marshal encodes m.
func Marshal(m Message) []byte {
	size := 64
	if a, ok := m.(Apply); ok {
		// An Apply carries file data, up to MaxMessage bytes: growing the
		// buffer by appending would copy it several times over.
		size = a.sizeBound()
	}
	b := make([]byte, 0, header+size+trailer)
	b = append(b, magic, formatVersion, byte(m.Kind()))
	b = m.appendFields(b)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// Unmarshal decodes and checks one message. It copies what it keeps, so b
// may be reused, and never panics, whatever b holds.
func Unmarshal(b []byte) (Message, error) {
	if len(b) < header+trailer {
		return nil, invalid("message of %d bytes is too short", len(b))
	}
	if len(b) > MaxMessage {
		return nil, invalid("message of %d bytes; at most %d", len(b), MaxMessage)
	}
	body, sum := b[:len(b)-trailer], binary.LittleEndian.Uint32(b[len(b)-trailer:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, invalid("checksum mismatch")
	}
	if body[0] != magic {
		return nil, invalid("bad magic byte %#x", body[0])
	}
	if body[1] != formatVersion {
		return nil, invalid("format version %d; this build reads %d", body[1], formatVersion)
	}
	if Kind(body[2]) != KindApply && len(b) > MaxReply {
		// Only an Apply carries file data; everything else is a reply
		// (one ack's payload) or a request as small. Bounding them here
		// bounds what their decoders allocate.
		return nil, invalid("%v message of %d bytes; at most %d", Kind(body[2]), len(b), MaxReply)
	}
	fields := body[header:]
	switch Kind(body[2]) {
	case KindHello:
		return decodeHello(fields)
	case KindHelloReply:
		var m HelloReply
		return m, eachField(fields, func(num protowire.Number, v uint64, _ []byte) error {
			if num == 1 {
				m.LastApplied = v
			}
			return nil
		})
	case KindApply:
		return decodeApply(fields)
	case KindApplied:
		var m Applied
		return m, eachField(fields, func(num protowire.Number, v uint64, _ []byte) error {
			if num == 1 {
				m.LastApplied = v
			}
			return nil
		})
	case KindFailure:
		return decodeFailure(fields)
	case KindSignatureRequest:
		return decodeSignatureRequest(fields)
	case KindSignaturePage:
		return decodeSignaturePage(fields)
	case KindScanRequest:
		var m ScanRequest
		return m, eachField(fields, func(num protowire.Number, v uint64, _ []byte) error {
			switch num {
			case 1:
				m.ID = v
			case 2:
				m.From = v
			}
			return nil
		})
	case KindScanPage:
		return decodeScanPage(fields)
	}
	return nil, invalid("unknown message kind %d", body[2])
}

// eachField calls fn for every field of b: v for a varint, p for a
// length-delimited field (p is nil for a varint, non-nil otherwise). Other
// wire types are skipped.
func eachField(b []byte, fn func(num protowire.Number, v uint64, p []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return invalid("field tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return invalid("field %d: %v", num, protowire.ParseError(n))
			}
			b = b[n:]
			if err := fn(num, v, nil); err != nil {
				return err
			}
		case protowire.BytesType:
			p, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return invalid("field %d: %v", num, protowire.ParseError(n))
			}
			b = b[n:]
			if p == nil {
				p = []byte{}
			}
			if err := fn(num, 0, p); err != nil {
				return err
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return invalid("field %d: %v", num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return nil
}

func putUint(b []byte, n protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func putBool(b []byte, n protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	return putUint(b, n, 1)
}

func putBytes(b []byte, n protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func putString(b []byte, n protowire.Number, s string) []byte {
	return putBytes(b, n, []byte(s))
}

// text checks a length-delimited field for a text of at most max bytes.
func text(num protowire.Number, p []byte, max int) (string, error) {
	if p == nil {
		return "", invalid("field %d: want bytes, got a number", num)
	}
	if len(p) > max {
		return "", invalid("field %d of %d bytes; at most %d", num, len(p), max)
	}
	return string(p), nil
}

func (m Hello) appendFields(b []byte) []byte {
	b = putUint(b, 1, uint64(m.Version))
	b = putString(b, 2, cut(m.Scenario))
	return putString(b, 3, cut(m.Replica))
}

func decodeHello(b []byte) (Message, error) {
	var m Hello
	err := eachField(b, func(num protowire.Number, v uint64, p []byte) (err error) {
		switch num {
		case 1:
			m.Version = uint32(min(v, math.MaxUint32))
		case 2:
			m.Scenario, err = text(num, p, MaxText)
		case 3:
			m.Replica, err = text(num, p, MaxText)
		}
		return err
	})
	return m, err
}

func (m HelloReply) appendFields(b []byte) []byte { return putUint(b, 1, m.LastApplied) }
func (m Applied) appendFields(b []byte) []byte    { return putUint(b, 1, m.LastApplied) }

func (m Apply) appendFields(b []byte) []byte {
	var enc []byte // reused: one change's encoding, before its length
	for _, c := range m.Changes {
		enc = c.Append(enc[:0])
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, enc)
	}
	return b
}

// changeOverhead bounds what a change's encoding adds to its strings and
// bytes: magic and version, twelve numbers as tag and varint, six tags
// and lengths, the checksum, and the field tag and length around it in an
// Apply.
const changeOverhead = 2 + 12*(1+10) + 6*(1+5) + 4 + 1 + 5

// sizeBound is at least the length of m's fields.
func (m Apply) sizeBound() int {
	n := 0
	for i := range m.Changes {
		c := &m.Changes[i]
		n += changeOverhead + len(c.Path) + len(c.NewPath) + len(c.Target) + len(c.Data) + len(c.XattrName) + len(c.XattrValue)
	}
	return n
}

func decodeApply(b []byte) (Message, error) {
	var m Apply
	err := eachField(b, func(num protowire.Number, _ uint64, p []byte) error {
		if num != 1 {
			return nil
		}
		if p == nil {
			return invalid("change: want bytes, got a number")
		}
		if len(m.Changes) == MaxChanges {
			return invalid("more than %d changes in one message", MaxChanges)
		}
		c, err := change.Decode(p)
		if err != nil {
			return invalid("change %d: %v", len(m.Changes), err)
		}
		m.Changes = append(m.Changes, c)
		return nil
	})
	return m, err
}

func (m Failure) appendFields(b []byte) []byte {
	b = putUint(b, 1, uint64(m.Code))
	b = putBool(b, 2, m.Change)
	b = putUint(b, 3, m.Seq)
	b = putUint(b, 4, uint64(m.Op))
	b = putString(b, 5, m.Path)
	b = putString(b, 6, m.NewPath)
	b = putString(b, 7, cut(m.Text))
	return putUint(b, 8, m.LastApplied)
}

func decodeFailure(b []byte) (Message, error) {
	var m Failure
	err := eachField(b, func(num protowire.Number, v uint64, p []byte) (err error) {
		switch num {
		case 1:
			if v == 0 || v >= uint64(codeLimit) {
				v = uint64(CodeOther) // a newer server's code: still a failure
			}
			m.Code = Code(v)
		case 2:
			m.Change = v != 0
		case 3:
			m.Seq = v
		case 4:
			m.Op = change.Op(min(v, 255))
		case 5:
			m.Path, err = text(num, p, change.MaxPath)
		case 6:
			m.NewPath, err = text(num, p, change.MaxPath)
		case 7:
			m.Text, err = text(num, p, MaxText)
		case 8:
			m.LastApplied = v
		}
		return err
	})
	if err == nil && m.Code == 0 {
		err = invalid("failure without a code")
	}
	return m, err
}

func (m SignatureRequest) appendFields(b []byte) []byte {
	b = putString(b, 1, m.Path)
	b = putUint(b, 2, m.ID)
	return putUint(b, 3, uint64(m.Offset))
}

func decodeSignatureRequest(b []byte) (Message, error) {
	var m SignatureRequest
	err := eachField(b, func(num protowire.Number, v uint64, p []byte) (err error) {
		switch num {
		case 1:
			m.Path, err = text(num, p, change.MaxPath)
		case 2:
			m.ID = v
		case 3:
			if v > math.MaxInt64 {
				return invalid("signature offset %d", v)
			}
			m.Offset = int64(v)
		}
		return err
	})
	if err == nil {
		if perr := change.ValidPath(m.Path); perr != nil {
			err = invalid("signature path: %v", perr)
		}
	}
	return m, err
}

func (m SignaturePage) appendFields(b []byte) []byte {
	b = putUint(b, 1, m.ID)
	b = putUint(b, 2, uint64(m.Total))
	b = putUint(b, 3, uint64(m.Offset))
	return putBytes(b, 4, m.Data)
}

// maxSignature bounds an encoded signature: one sum per block of the
// largest file blocksync describes, with room for the header.
const maxSignature = (1<<24)*(4+32) + 1<<10

func decodeSignaturePage(b []byte) (Message, error) {
	var m SignaturePage
	var total, offset uint64
	err := eachField(b, func(num protowire.Number, v uint64, p []byte) error {
		switch num {
		case 1:
			m.ID = v
		case 2:
			total = v
		case 3:
			offset = v
		case 4:
			if p == nil {
				return invalid("signature data: want bytes, got a number")
			}
			if len(p) > MaxPage {
				return invalid("signature page of %d bytes; at most %d", len(p), MaxPage)
			}
			m.Data = append([]byte(nil), p...)
		}
		return nil
	})
	if err != nil {
		return m, err
	}
	if total > maxSignature || offset > total || uint64(len(m.Data)) > total-offset {
		return m, invalid("signature page [%d, +%d) of a %d-byte signature", offset, len(m.Data), total)
	}
	m.Total, m.Offset = int64(total), int64(offset)
	return m, nil
}

func (m ScanRequest) appendFields(b []byte) []byte {
	b = putUint(b, 1, m.ID)
	return putUint(b, 2, m.From)
}

func (m ScanPage) appendFields(b []byte) []byte {
	b = putUint(b, 1, m.ID)
	for i := range m.Entries {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, AppendEntry(nil, &m.Entries[i]))
	}
	for _, p := range m.Problems {
		var pb []byte
		pb = putString(pb, 1, p.Path)
		pb = putString(pb, 2, cut(p.Text))
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, pb)
	}
	b = putUint(b, 4, m.Next)
	return putBool(b, 5, m.More)
}

// maxScanItems bounds the entries and problems of one ScanPage. A server
// charges every item at least 8 bytes of a page's MaxPage (an entry
// encodes to 5 bytes at least, a problem is charged 16), so a real page
// never holds more.
const maxScanItems = MaxPage / 8

func decodeScanPage(b []byte) (Message, error) {
	// Count first, so that the slices are allocated once at their size:
	// an item in memory is many times larger than its smallest encoding,
	// and growing by appending would allocate twice that again.
	var entries, problems int
	err := eachField(b, func(num protowire.Number, _ uint64, _ []byte) error {
		switch num {
		case 2:
			entries++
		case 3:
			problems++
		}
		if entries+problems > maxScanItems {
			return invalid("more than %d entries and problems in one scan page", maxScanItems)
		}
		return nil
	})
	if err != nil {
		return ScanPage{}, err
	}
	var m ScanPage
	if entries > 0 {
		m.Entries = make([]treesync.Entry, 0, entries)
	}
	if problems > 0 {
		m.Problems = make([]Problem, 0, problems)
	}
	err = eachField(b, func(num protowire.Number, v uint64, p []byte) error {
		switch num {
		case 1:
			m.ID = v
		case 2:
			if p == nil {
				return invalid("entry: want bytes, got a number")
			}
			e, err := decodeEntry(p)
			if err != nil {
				return invalid("entry %d: %v", len(m.Entries), err)
			}
			m.Entries = append(m.Entries, e)
		case 3:
			if p == nil {
				return invalid("problem: want bytes, got a number")
			}
			var pr Problem
			err := eachField(p, func(num protowire.Number, _ uint64, p []byte) (err error) {
				switch num {
				case 1:
					pr.Path, err = text(num, p, change.MaxPath)
				case 2:
					pr.Text, err = text(num, p, MaxText)
				}
				return err
			})
			if err != nil {
				return invalid("problem %d: %v", len(m.Problems), err)
			}
			m.Problems = append(m.Problems, pr)
		case 4:
			m.Next = v
		case 5:
			m.More = v != 0
		}
		return nil
	})
	return m, err
}

// Entry field numbers. Never reuse a number; add new fields at the end.
const (
	ePath protowire.Number = iota + 1
	eType
	eSize
	eMode
	eUID
	eGID
	eMTime
	eTarget
	eDev
	eIno
	eNlink
	eBirth
	eXattr
	eXattrsUnread
	eUnlisted
)

// AppendEntry appends the encoding of one scanned entry to b. A ScanPage
// holds entries so encoded; the server uses it to measure a page.
func AppendEntry(b []byte, e *treesync.Entry) []byte {
	b = putString(b, ePath, e.Path)
	b = putUint(b, eType, uint64(e.Type))
	b = putUint(b, eSize, uint64(e.Size))
	b = putUint(b, eMode, uint64(e.Mode))
	b = putUint(b, eUID, uint64(e.UID))
	b = putUint(b, eGID, uint64(e.GID))
	b = putUint(b, eMTime, uint64(e.MTime))
	b = putString(b, eTarget, e.Target)
	b = putUint(b, eDev, e.Dev)
	b = putUint(b, eIno, e.Ino)
	b = putUint(b, eNlink, uint64(e.Nlink))
	b = putUint(b, eBirth, uint64(e.Birth))
	for _, name := range sortedNames(e.Xattrs) {
		var xb []byte
		xb = putString(xb, 1, name)
		xb = protowire.AppendTag(xb, 2, protowire.BytesType)
		xb = protowire.AppendBytes(xb, e.Xattrs[name]) // an empty value is a value
		b = protowire.AppendTag(b, eXattr, protowire.BytesType)
		b = protowire.AppendBytes(b, xb)
	}
	b = putBool(b, eXattrsUnread, e.XattrsUnread)
	return putBool(b, eUnlisted, e.Unlisted)
}

func decodeEntry(b []byte) (treesync.Entry, error) {
	var e treesync.Entry
	err := eachField(b, func(num protowire.Number, v uint64, p []byte) (err error) {
		switch num {
		case ePath:
			e.Path, err = text(num, p, change.MaxPath)
		case eType:
			if v == 0 || v > uint64(treesync.Other) {
				return invalid("entry type %d", v)
			}
			e.Type = treesync.EntryType(v)
		case eSize:
			if v > math.MaxInt64 {
				return invalid("entry size %d", v)
			}
			e.Size = int64(v)
		case eMode:
			e.Mode = uint32(v & 0o7777)
		case eUID:
			e.UID = uint32(min(v, math.MaxUint32))
		case eGID:
			e.GID = uint32(min(v, math.MaxUint32))
		case eMTime:
			e.MTime = int64(v)
		case eTarget:
			e.Target, err = text(num, p, change.MaxPath)
		case eDev:
			e.Dev = v
		case eIno:
			e.Ino = v
		case eNlink:
			e.Nlink = uint32(min(v, math.MaxUint32))
		case eBirth:
			e.Birth = int64(v)
		case eXattr:
			if p == nil {
				return invalid("extended attribute: want bytes, got a number")
			}
			if len(e.Xattrs) == treesync.MaxXattrs {
				return invalid("more than %d extended attributes", treesync.MaxXattrs)
			}
			name, value, err := decodeXattr(p)
			if err != nil {
				return err
			}
			if e.Xattrs == nil {
				e.Xattrs = map[string][]byte{}
			}
			e.Xattrs[name] = value
		case eXattrsUnread:
			e.XattrsUnread = v != 0
		case eUnlisted:
			e.Unlisted = v != 0
		}
		return err
	})
	if err != nil {
		return e, err
	}
	if err := change.ValidPath(e.Path); err != nil {
		return e, invalid("entry path: %v", err)
	}
	if e.Type == 0 {
		return e, invalid("entry %q without a type", e.Path)
	}
	return e, nil
}

func decodeXattr(b []byte) (name string, value []byte, err error) {
	seen := false
	err = eachField(b, func(num protowire.Number, _ uint64, p []byte) (err error) {
		switch num {
		case 1:
			name, err = text(num, p, change.MaxXattrName)
		case 2:
			if p == nil {
				return invalid("extended attribute value: want bytes, got a number")
			}
			if len(p) > change.MaxXattrVal {
				return invalid("extended attribute value of %d bytes; at most %d", len(p), change.MaxXattrVal)
			}
			value, seen = append([]byte{}, p...), true
		}
		return err
	})
	if err == nil && (name == "" || !seen) {
		err = invalid("extended attribute without a name or a value")
	}
	return name, value, err
}

func sortedNames(m map[string][]byte) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
