package rewind

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/agent/apply"
	"github.com/holdfast/holdfast/agent/change"
)

// Kind is what a journal record is.
type Kind uint8

const (
	KindChange      Kind = iota + 1 // a change applied (or a rewind's step): a point that can be undone
	KindBookmark                    // a label an operator put on the tree as it was then
	KindRewindBegin                 // a rewind started: its target and the points it undoes
	KindRewindEnd                   // the rewind that began last is complete
	KindVoid                        // the listed points were never applied: their change failed
	kindLimit
)

var kindNames = [...]string{"", "change", "bookmark", "rewind-begin", "rewind-end", "void"}

func (k Kind) String() string {
	if k > 0 && k < kindLimit {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Record is one journal record. Every record has an ID, increasing by one
// from record to record; the ID of a change record is its point.
type Record struct {
	ID       uint64
	Time     time.Time
	Seq      uint64 // the change's Seq; 0 for a rewind's steps
	Kind     Kind
	Op       change.Op
	Path     string
	NewPath  string
	Label    string   // bookmarks; rewind-begin: the path the rewind is limited to
	RewindOf uint64   // a rewind's step: the point it undid
	First    bool     // first record of the group written with one sync
	Target   uint64   // rewind-begin: the point rewound to
	Refs     []uint64 // void: the points voided; rewind-begin: the points to undo, in order
	Steps    []Step   // what undoes this change, in order
}

// Step is one undo step: a change with Seq 0 applied with
// apply.Applier.ApplySteps, or, with Restore set, the regular file at
// Change.Path restored with apply.Applier.RestoreFile from a blob or from
// Change.Data. A change step whose Blob is set takes its Data from it.
type Step struct {
	Change  change.Change
	Restore bool
	Meta    apply.FileMeta
	Blob    string // name in the blobs directory; "" when inline
	Linked  bool   // the blob is the old inode itself: Ino and Size say which
	Ino     uint64
	Size    int64
	CRC     uint32 // CRC-32C of a copied blob's content
}

// Encoding (format version 1), all integers unsigned varints unless said:
// version byte, ID, Time (zigzag varint, Unix ns), Seq, Kind byte, Op
// byte, Path, NewPath, Label (length-prefixed), RewindOf, flags byte
// (bit 0: First), Target, Refs (count, values), Steps (count, each: flags
// byte (bit 0 Restore, bit 1 Linked), the change's own encoding as length
// and bytes, Blob, Ino, Size (zigzag), CRC (4 bytes LE), Mode, UID, GID,
// MTime (zigzag), xattr count, each name and value).
const recordVersion = 1

// Bounds on decoded values; every length is checked against them and
// against the bytes left before anything is allocated.
const (
	maxPayload  = 64 << 20
	maxSteps    = 1 << 12
	maxXattrs   = 1 << 10
	maxRefs     = 1 << 24
	maxLabelLen = 256
)

// errBadRecord is wrapped by every decoding failure; the journal reports
// it as ErrDamaged with the segment and offset.
var errBadRecord = errors.New("bad record")

func (r *Record) marshal() []byte {
	b := []byte{recordVersion}
	b = binary.AppendUvarint(b, r.ID)
	b = binary.AppendVarint(b, r.Time.UnixNano())
	b = binary.AppendUvarint(b, r.Seq)
	b = append(b, byte(r.Kind), byte(r.Op))
	b = appendString(b, r.Path)
	b = appendString(b, r.NewPath)
	b = appendString(b, r.Label)
	b = binary.AppendUvarint(b, r.RewindOf)
	var flags byte
	if r.First {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, r.Target)
	b = binary.AppendUvarint(b, uint64(len(r.Refs)))
	for _, id := range r.Refs {
		b = binary.AppendUvarint(b, id)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Steps)))
	for i := range r.Steps {
		s := &r.Steps[i]
		var f byte
		if s.Restore {
			f |= 1
		}
		if s.Linked {
			f |= 2
		}
		b = append(b, f)
		b = appendBytes(b, s.Change.Marshal())
		b = appendString(b, s.Blob)
		b = binary.AppendUvarint(b, s.Ino)
		b = binary.AppendVarint(b, s.Size)
		b = binary.LittleEndian.AppendUint32(b, s.CRC)
		b = binary.AppendUvarint(b, uint64(s.Meta.Mode))
		b = binary.AppendUvarint(b, uint64(s.Meta.UID))
		b = binary.AppendUvarint(b, uint64(s.Meta.GID))
		b = binary.AppendVarint(b, s.Meta.MTime)
		b = binary.AppendUvarint(b, uint64(len(s.Meta.Xattrs)))
		for _, x := range s.Meta.Xattrs {
			b = appendString(b, x.Name)
			b = appendBytes(b, x.Value)
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// decoder reads a payload, remembering the first failure.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errBadRecord, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("%s: bad varint", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("%s: bad varint", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail("%s: truncated", what)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) u32(what string) uint32 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 4 {
		d.fail("%s: truncated", what)
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

// bytes returns a length-prefixed field of at most limit bytes, copied.
func (d *decoder) bytes(what string, limit int) []byte {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(limit) || n > uint64(len(d.b)) {
		d.fail("%s: length %d beyond the limit %d or the %d bytes left", what, n, limit, len(d.b))
		return nil
	}
	if n == 0 {
		return nil
	}
	v := make([]byte, n)
	copy(v, d.b)
	d.b = d.b[n:]
	return v
}

func (d *decoder) string(what string, limit int) string { return string(d.bytes(what, limit)) }

// count reads a number of items that each take at least one byte.
func (d *decoder) count(what string, limit int) int {
	n := d.uvarint(what)
	if d.err == nil && (n > uint64(limit) || n > uint64(len(d.b))) {
		d.fail("%s: count %d beyond the limit %d or the %d bytes left", what, n, limit, len(d.b))
		return 0
	}
	return int(n)
}

// decodeRecord parses one payload. It never panics and never allocates
// more than the payload's own size allows.
func decodeRecord(b []byte) (*Record, error) {
	if len(b) > maxPayload {
		return nil, fmt.Errorf("%w: payload of %d bytes", errBadRecord, len(b))
	}
	d := &decoder{b: b}
	if v := d.byte("version"); d.err == nil && v != recordVersion {
		return nil, fmt.Errorf("%w: format version %d; this build reads %d", errBadRecord, v, recordVersion)
	}
	r := &Record{}
	r.ID = d.uvarint("id")
	r.Time = time.Unix(0, d.varint("time"))
	r.Seq = d.uvarint("seq")
	r.Kind = Kind(d.byte("kind"))
	r.Op = change.Op(d.byte("op"))
	r.Path = d.string("path", change.MaxPath)
	r.NewPath = d.string("new path", change.MaxPath)
	r.Label = d.string("label", change.MaxPath)
	r.RewindOf = d.uvarint("rewind of")
	r.First = d.byte("flags")&1 != 0
	r.Target = d.uvarint("target")
	if n := d.count("refs", maxRefs); n > 0 {
		r.Refs = make([]uint64, n)
		for i := range r.Refs {
			r.Refs[i] = d.uvarint("ref")
		}
	}
	if n := d.count("steps", maxSteps); n > 0 {
		r.Steps = make([]Step, n)
		for i := range r.Steps {
			d.step(&r.Steps[i])
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last field", errBadRecord, len(d.b))
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	return r, nil
}

func (d *decoder) step(s *Step) {
	f := d.byte("step flags")
	s.Restore, s.Linked = f&1 != 0, f&2 != 0
	enc := d.bytes("step change", change.MaxData+change.MaxPath*2+change.MaxXattrVal+256)
	if d.err != nil {
		return
	}
	c, err := change.Decode(enc)
	if err != nil {
		d.fail("step change: %v", err)
		return
	}
	s.Change = c
	s.Blob = d.string("blob", 64)
	s.Ino = d.uvarint("ino")
	s.Size = d.varint("size")
	s.CRC = d.u32("crc")
	s.Meta.Mode = uint32(d.uvarint("mode"))
	s.Meta.UID = uint32(d.uvarint("uid"))
	s.Meta.GID = uint32(d.uvarint("gid"))
	s.Meta.MTime = d.varint("mtime")
	if n := d.count("xattrs", maxXattrs); n > 0 {
		s.Meta.Xattrs = make([]apply.Xattr, n)
		for i := range s.Meta.Xattrs {
			s.Meta.Xattrs[i].Name = d.string("xattr name", change.MaxXattrName)
			s.Meta.Xattrs[i].Value = d.bytes("xattr value", change.MaxXattrVal)
		}
	}
}

// validate checks what the fields mean together, so that nothing decoded
// from a damaged or hostile journal is acted on.
func (r *Record) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: record %d: %s", errBadRecord, r.ID, fmt.Sprintf(format, args...))
	}
	if r.ID == 0 {
		return bad("id 0")
	}
	if r.Kind == 0 || r.Kind >= kindLimit {
		return bad("unknown kind %d", r.Kind)
	}
	if len(r.Label) > maxLabelLen && r.Kind == KindBookmark {
		return bad("label of %d bytes", len(r.Label))
	}
	for i := range r.Steps {
		s := &r.Steps[i]
		if s.Change.Seq != 0 {
			return bad("step %d has seq %d", i, s.Change.Seq)
		}
		if s.Size < 0 {
			return bad("step %d has size %d", i, s.Size)
		}
		if s.Blob != "" && !validBlobName(s.Blob) {
			return bad("step %d names blob %q", i, s.Blob)
		}
		if s.Linked && s.Blob == "" {
			return bad("step %d is linked without a blob", i)
		}
	}
	return nil
}
