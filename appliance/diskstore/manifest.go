package diskstore

import (
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"time"
)

// SessionMeta describes a backup session; it is kept in the manifest and
// in the session root, so the catalog can be rebuilt from the store alone.
type SessionMeta struct {
	Scenario string
	Host     string // the master host the session's paths belong to
	Label    string
	Started  time.Time
	// Since version 2 of the root and manifest encodings (sessions of
	// version 1 decode with these empty):
	Entity       string // the master root the session holds
	Consistency  string // "application" or "crash"
	JobID        uint64
	JobName      string
	ScenarioType string // the scenario handler's type, e.g. "fileserver"
	SourceKind   string // "scenario" or "directory"
}

// EntryType is the kind of a manifest entry.
type EntryType uint8

const (
	TypeFile EntryType = iota + 1
	TypeDir
	TypeSymlink
)

func (t EntryType) String() string {
	switch t {
	case TypeFile:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// FileHeader is what a session records of a file, directory or symlink
// besides its content. Path is the path as recorded on the master.
type FileHeader struct {
	Path    string
	Mode    fs.FileMode
	UID     uint32
	GID     uint32
	Owner   string // user name, when the master knows it
	Group   string
	ModTime time.Time
	Xattrs  map[string][]byte // optional
}

// Entry is one manifest entry.
type Entry struct {
	Type EntryType
	FileHeader
	Size   int64  // bytes of content (files)
	Target string // symlink target
	Chunks []ID   // content chunks in order (files)
}

// The manifest is the session's whole description, stored as tree chunks:
//
//	"HFDSMAN1" | version u8 | session id | meta | count uvarint | entries
//	entry: type u8 | path | mode u32 | uid u32 | gid u32 | owner | group |
//	  mtime i64 | size uvarint | target |
//	  xattrs uvarint, (name, value)... | chunks uvarint, id [32]...
//
// Strings and byte values are uvarint-length-prefixed; times are
// nanoseconds since 1970 (the zero time.Time is stored as the smallest
// int64, since UnixNano cannot express it).
//
// Version 2 appends to meta: entity, consistency, job id (uvarint), job
// name, scenario type and source kind; version 1 is still read.
const (
	manifestMagic   = "HFDSMAN1"
	manifestVersion = 2
	maxPathLen      = 64 << 10
	maxNameLen      = 4 << 10
	maxXattrs       = 1 << 10
	maxXattrValue   = 64 << 10
	maxEntries      = 1 << 28
	maxEntryChunks  = 1 << 28
	entryMinSize    = 1 + 1 + 12 + 2 + 8 + 1 + 1 + 1 + 1
)

// encodeMeta writes meta in the current (version 2) form.
func encodeMeta(e *enc, m SessionMeta) {
	e.str(m.Scenario)
	e.str(m.Host)
	e.str(m.Label)
	e.time(m.Started)
	e.str(m.Entity)
	e.str(m.Consistency)
	e.uvarint(m.JobID)
	e.str(m.JobName)
	e.str(m.ScenarioType)
	e.str(m.SourceKind)
}

// decodeMeta reads meta as written by the given encoding version.
func decodeMeta(d *dec, version uint8) SessionMeta {
	m := SessionMeta{
		Scenario: d.str(maxNameLen),
		Host:     d.str(maxNameLen),
		Label:    d.str(maxNameLen),
		Started:  d.time(),
	}
	if version >= 2 {
		m.Entity = d.str(maxPathLen)
		m.Consistency = d.str(maxNameLen)
		m.JobID = d.uvarint()
		m.JobName = d.str(maxNameLen)
		m.ScenarioType = d.str(maxNameLen)
		m.SourceKind = d.str(maxNameLen)
	}
	return m
}

func encodeManifest(id string, meta SessionMeta, entries []Entry) []byte {
	var e enc
	e.raw([]byte(manifestMagic))
	e.u8(manifestVersion)
	e.str(id)
	encodeMeta(&e, meta)
	e.uvarint(uint64(len(entries)))
	for i := range entries {
		en := &entries[i]
		e.u8(uint8(en.Type))
		e.str(en.Path)
		e.u32(uint32(en.Mode))
		e.u32(en.UID)
		e.u32(en.GID)
		e.str(en.Owner)
		e.str(en.Group)
		e.time(en.ModTime)
		e.uvarint(uint64(en.Size))
		e.str(en.Target)
		e.uvarint(uint64(len(en.Xattrs)))
		for _, k := range slices.Sorted(maps.Keys(en.Xattrs)) {
			e.str(k)
			e.bytes(en.Xattrs[k])
		}
		e.uvarint(uint64(len(en.Chunks)))
		for _, c := range en.Chunks {
			e.raw(c[:])
		}
	}
	return e.b
}

func decodeManifest(b []byte) (id string, meta SessionMeta, entries []Entry, err error) {
	d := dec{b: b, what: "manifest"}
	if string(d.take(len(manifestMagic))) != manifestMagic {
		d.fail("bad magic")
	}
	version := d.u8()
	if d.err == nil && (version < 1 || version > manifestVersion) {
		d.fail("version %d not supported", version)
	}
	id = d.str(maxNameLen)
	meta = decodeMeta(&d, version)
	n := d.count(maxEntries, entryMinSize)
	seen := make(map[string]bool, n)
	entries = make([]Entry, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		var en Entry
		en.Type = EntryType(d.u8())
		en.Path = d.str(maxPathLen)
		en.Mode = fs.FileMode(d.u32())
		en.UID = d.u32()
		en.GID = d.u32()
		en.Owner = d.str(maxNameLen)
		en.Group = d.str(maxNameLen)
		en.ModTime = d.time()
		size := d.uvarint()
		en.Target = d.str(maxPathLen)
		if nx := d.count(maxXattrs, 2); nx > 0 {
			en.Xattrs = make(map[string][]byte, nx)
			for range nx {
				k := d.str(maxNameLen)
				en.Xattrs[k] = d.bytes(maxXattrValue)
			}
		}
		nc := d.count(maxEntryChunks, 32)
		if nc > 0 {
			en.Chunks = make([]ID, nc)
			for j := range en.Chunks {
				copy(en.Chunks[j][:], d.take(32))
			}
		}
		if d.err != nil {
			break
		}
		switch {
		case en.Type < TypeFile || en.Type > TypeSymlink:
			d.fail("entry %d: %v", i, en.Type)
		case en.Path == "":
			d.fail("entry %d: empty path", i)
		case seen[en.Path]:
			d.fail("entry %d: path %q twice", i, en.Path)
		case size > 1<<62:
			d.fail("entry %q: size %d", en.Path, size)
		case en.Type != TypeFile && (size != 0 || nc != 0):
			d.fail("entry %q: a %v with content", en.Path, en.Type)
		case en.Type == TypeFile && size == 0 && nc != 0:
			d.fail("entry %q: empty file with chunks", en.Path)
		case en.Type == TypeFile && size > 0 && nc == 0:
			d.fail("entry %q: %d bytes and no chunks", en.Path, size)
		}
		en.Size = int64(size)
		seen[en.Path] = true
		entries = append(entries, en)
	}
	if err := d.done(); err != nil {
		return "", SessionMeta{}, nil, err
	}
	return id, meta, entries, nil
}
