package diskstore

import (
	"crypto/sha256"
	"time"
)

// SessionInfo is what the session root says of a committed session. Of a
// protected session listed without its password only ID, Committed and
// Protected are known; the rest is sealed under the session's key.
type SessionInfo struct {
	ID        string
	Meta      SessionMeta
	Committed time.Time
	Protected bool // a password chosen at backup time is needed to read it
	Files     int
	Dirs      int
	Symlinks  int
	Bytes     int64 // content bytes of all files
	Chunks    int   // content chunks referenced (with repeats)
	NewChunks int   // chunks this session stored that were not stored before
}

// The session root (sessions/ID) is one sealed blob of kind session root,
// bound to its id. Version 2's plaintext:
//
//	"HFDSROOT" | version u8 | session id | committed i64 | flags u8 | body
//	body of an open session (flags 0):
//	  meta | files, dirs, symlinks, bytes, chunks, new chunks uvarint |
//	  manifest length uvarint | manifest chunks uvarint, id [32]...
//	body of a protected session (flags 1):
//	  iterations u32 | salt bytes | nonce [12] | wrapped key bytes |
//	  pins uvarint, id [32]... | private bytes
//
// A protected session's private part is "HFDSPRIV" and the open body,
// sealed (nonce [12] | AES-256-GCM) under the session key; the wrapped key
// is the session key sealed under PBKDF2-HMAC-SHA-256(password, salt,
// iterations). Pins are every chunk the session names (content and
// manifest), sorted, so Prune keeps them without the password.
//
// Version 1 (no flags, meta without the version 2 fields, committed after
// meta) is still read.
//
// It is written last and atomically: a session is committed exactly when
// its root file exists.
const (
	rootMagic        = "HFDSROOT"
	rootVersion      = 2
	rootProtected    = 1
	privateMagic     = "HFDSPRIV"
	maxRootFile      = 64 << 20
	maxManifestBytes = 16 << 30
	maxPins          = 1 << 28
)

type sessionRoot struct {
	info        SessionInfo
	manifestLen uint64
	manifest    []ID
	// Protected sessions only.
	lock    *sessionLock
	pins    []ID
	private []byte // sealed; info, manifestLen and manifest are filled by unlock
}

func rootBlobID(id string) ID { return sha256.Sum256([]byte("session root " + id)) }

func encodeBody(e *enc, info SessionInfo, manifestLen uint64, manifest []ID) {
	encodeMeta(e, info.Meta)
	for _, v := range []int64{int64(info.Files), int64(info.Dirs), int64(info.Symlinks), info.Bytes, int64(info.Chunks), int64(info.NewChunks)} {
		e.uvarint(uint64(v))
	}
	e.uvarint(manifestLen)
	e.uvarint(uint64(len(manifest)))
	for _, id := range manifest {
		e.raw(id[:])
	}
}

// decodeBody reads what encodeBody wrote (meta as of version) into r.
func decodeBody(d *dec, r *sessionRoot, version uint8) {
	r.info.Meta = decodeMeta(d, version)
	if version == 1 {
		r.info.Committed = d.time()
	}
	var stats [6]uint64
	for i := range stats {
		if stats[i] = d.uvarint(); stats[i] > 1<<62 {
			d.fail("count %d", stats[i])
		}
	}
	r.info.Files, r.info.Dirs, r.info.Symlinks = int(stats[0]), int(stats[1]), int(stats[2])
	r.info.Bytes, r.info.Chunks, r.info.NewChunks = int64(stats[3]), int(stats[4]), int(stats[5])
	if r.manifestLen = d.uvarint(); r.manifestLen > maxManifestBytes {
		d.fail("manifest length %d", r.manifestLen)
	}
	n := d.count(maxEntryChunks, 32)
	r.manifest = make([]ID, n)
	for i := range r.manifest {
		copy(r.manifest[i][:], d.take(32))
	}
	if d.err == nil && r.manifestLen > 0 && n == 0 {
		d.fail("manifest of %d bytes in no chunks", r.manifestLen)
	}
}

func (r *sessionRoot) encode() []byte {
	var e enc
	e.raw([]byte(rootMagic))
	e.u8(rootVersion)
	e.str(r.info.ID)
	e.time(r.info.Committed)
	if r.lock == nil {
		e.u8(0)
		encodeBody(&e, r.info, r.manifestLen, r.manifest)
		return e.b
	}
	e.u8(rootProtected)
	r.lock.encode(&e)
	e.uvarint(uint64(len(r.pins)))
	for _, id := range r.pins {
		e.raw(id[:])
	}
	e.bytes(r.private)
	return e.b
}

func decodeSessionRoot(b []byte) (*sessionRoot, error) {
	d := dec{b: b, what: "session root"}
	if string(d.take(len(rootMagic))) != rootMagic {
		d.fail("bad magic")
	}
	version := d.u8()
	if d.err == nil && (version < 1 || version > rootVersion) {
		d.fail("version %d not supported", version)
	}
	var r sessionRoot
	r.info.ID = d.str(maxNameLen)
	if version == 1 {
		decodeBody(&d, &r, version)
	} else {
		r.info.Committed = d.time()
		switch flags := d.u8(); {
		case d.err != nil:
		case flags == 0:
			decodeBody(&d, &r, version)
		case flags == rootProtected:
			r.info.Protected = true
			r.lock = decodeSessionLock(&d)
			n := d.count(maxPins, 32)
			r.pins = make([]ID, n)
			for i := range r.pins {
				copy(r.pins[i][:], d.take(32))
			}
			r.private = d.bytes(maxRootFile)
			if d.err == nil && len(r.private) < 12+16 {
				d.fail("private part of %d bytes", len(r.private))
			}
		default:
			d.fail("flags %#x", flags)
		}
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	if !validSessionID(r.info.ID) {
		return nil, corrupt("session root: bad session id %q", r.info.ID)
	}
	return &r, nil
}
