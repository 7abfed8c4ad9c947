package diskstore

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast/holdfast/appliance/diskstore/chunker"
)

// Every decoder of bytes read from the store is fuzzed: it must return
// ErrCorrupt or a value that encodes back to the same bytes, never panic or
// allocate beyond what its input can justify.

func fuzzKeyring() *keyring {
	sec := &secrets{params: chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}}
	sec.dataKey[0], sec.idKey[0], sec.chunkerKey[0] = 1, 2, 3
	return newKeyring([16]byte{9}, sec)
}

func FuzzBlob(f *testing.F) {
	kr := fuzzKeyring()
	plain := bytes.Repeat([]byte("compressible "), 100)
	f.Add(kr.seal(kindData, kr.id(plain), plain))
	f.Add(kr.seal(kindData, kr.id([]byte("x")), []byte("x")))
	f.Add(kr.seal(kindData, kr.id(nil), nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseBlobHeader(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatal(err)
			}
			return
		}
		if !bytes.Equal(h.encode(), b[:blobHeaderSize]) {
			t.Fatal("header does not encode back")
		}
		for _, id := range []ID{kr.id(plain), kr.id([]byte("x")), kr.id(nil)} {
			got, err := kr.open(b, kindData, id)
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatal(err)
			}
			if err == nil && kr.id(got) != id {
				t.Fatal("opened a blob whose content does not match its id")
			}
		}
	})
}

func FuzzPackIndex(f *testing.F) {
	f.Add(encodePackIndex([]packEntry{{id: ID{1}, kind: kindData, offset: 16, length: 100}, {id: ID{2}, kind: kindTree, offset: 116, length: 40}}), uint64(200))
	f.Add(encodePackIndex(nil), uint64(16))
	f.Fuzz(func(t *testing.T, b []byte, dataEnd uint64) {
		entries, err := decodePackIndex(b, dataEnd)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatal(err)
			}
			return
		}
		for _, p := range entries {
			if p.offset < packHeaderSize || p.offset+uint64(p.length) > dataEnd {
				t.Fatalf("entry %+v outside %d", p, dataEnd)
			}
		}
		if !bytes.Equal(encodePackIndex(entries), b) {
			// Varints have one shortest form; a longer one is accepted
			// by binary.Uvarint and only then may the bytes differ.
			if again, err := decodePackIndex(encodePackIndex(entries), dataEnd); err != nil || len(again) != len(entries) {
				t.Fatal("index does not decode after encoding")
			}
		}
	})
}

func FuzzPackTrailer(f *testing.F) {
	f.Add([]byte("\x00\x00\x01\x00\x12\x34\x56\x78HFDSPEND"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, _, err := parsePackTrailer(b)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatal(err)
		}
		if err == nil && (n < blobHeaderSize || n > maxPackIndex) {
			t.Fatalf("index length %d accepted", n)
		}
	})
}

func FuzzSessionRoot(f *testing.F) {
	r := sessionRoot{
		info:        SessionInfo{ID: "20261125T120000Z-0123abcd", Meta: SessionMeta{Scenario: "s", Host: "h", Started: time.Unix(5, 0)}, Files: 3, Bytes: 99, Chunks: 4},
		manifestLen: 300,
		manifest:    []ID{{1}, {2}},
	}
	f.Add(r.encode())
	kr := fuzzKeyring()
	var err error
	var key []byte
	if r.lock, key, err = kr.newSessionLock(r.info.ID, "pw", minPasswordIterations); err != nil {
		f.Fatal(err)
	}
	r.pins = []ID{{1}, {2}, {3}}
	kr.sealPrivate(&r, key)
	f.Add(r.encode())
	v1root, v1man := goldenV1(f)
	f.Add(v1root)
	f.Add(v1man)
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeSessionRoot(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatal(err)
			}
			return
		}
		if _, err := decodeSessionRoot(got.encode()); err != nil {
			t.Fatalf("re-encoded root refused: %v", err)
		}
	})
}

func FuzzManifest(f *testing.F) {
	entries := []Entry{
		{Type: TypeDir, FileHeader: FileHeader{Path: "/d", Mode: fs.ModeDir | 0o755}},
		{Type: TypeFile, FileHeader: FileHeader{Path: "/d/f", Mode: 0o644, UID: 1, GID: 2, Owner: "u", Group: "g",
			ModTime: time.Unix(7, 8), Xattrs: map[string][]byte{"user.a": []byte("v")}}, Size: 10, Chunks: []ID{{3}}},
		{Type: TypeSymlink, FileHeader: FileHeader{Path: "/d/l"}, Target: "f"},
		{Type: TypeFile, FileHeader: FileHeader{Path: "/d/empty"}},
	}
	f.Add(encodeManifest("20261125T120000Z-0123abcd", SessionMeta{Label: "l"}, entries))
	f.Add(encodeManifest("x", SessionMeta{}, nil))
	_, v1man := goldenV1(f)
	f.Add(v1man)
	f.Fuzz(func(t *testing.T, b []byte) {
		id, meta, got, err := decodeManifest(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatal(err)
			}
			return
		}
		if _, _, again, err := decodeManifest(encodeManifest(id, meta, got)); err != nil || len(again) != len(got) {
			t.Fatalf("re-encoded manifest: %d entries, %v", len(again), err)
		}
	})
}

func FuzzKeyFile(f *testing.F) {
	sec := &secrets{params: chunker.DefaultParams()}
	kf := keyFile{storeID: [16]byte{1}}
	s1, _ := newSlot(kf.storeID, WithPassword("pw"), sec, minPasswordIterations)
	s2, _ := newSlot(kf.storeID, WithApplianceKey(make([]byte, 32)), sec, 0)
	kf.slots = []keySlot{s1, s2}
	full := kf.encode()
	f.Add(full[:len(full)-32])
	f.Fuzz(func(t *testing.T, body []byte) {
		// The body is fuzzed with a good checksum appended, so mutations
		// reach the parser instead of stopping at the checksum.
		sum := sha256.Sum256(body)
		b := append(bytes.Clone(body), sum[:]...)
		k, err := decodeKeyFile(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatal(err)
			}
			return
		}
		// Only the appliance slot is tried: a password slot's KDF with the
		// file's iteration count is too slow for a fuzz loop.
		_, err = k.open(WithApplianceKey(make([]byte, 32)))
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrWrongKey) {
			t.Fatal(err)
		}
	})
}

func FuzzSecrets(f *testing.F) {
	f.Add((&secrets{params: chunker.DefaultParams()}).encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSecrets(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatal(err)
			}
			return
		}
		if !bytes.Equal(s.encode(), b) {
			t.Fatal("secrets do not encode back")
		}
	})
}

// goldenV1 returns the plaintext root and manifest of the version 1
// session in testdata/store-v1.
func goldenV1(f *testing.F) (root, manifest []byte) {
	dir := filepath.Join(f.TempDir(), "store")
	if err := os.CopyFS(dir, os.DirFS("testdata/store-v1")); err != nil {
		f.Fatal(err)
	}
	s, err := Open(dir, WithPassword("golden"), Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	list, err := s.ListSessions()
	if err != nil || len(list) != 1 {
		f.Fatalf("golden store lists %v, %v", list, err)
	}
	id := list[0].ID
	b, err := os.ReadFile(filepath.Join(dir, "sessions", id))
	if err != nil {
		f.Fatal(err)
	}
	if root, err = s.kr.open(b, kindSessionRoot, rootBlobID(id)); err != nil {
		f.Fatal(err)
	}
	r, err := decodeSessionRoot(root)
	if err != nil {
		f.Fatal(err)
	}
	for _, cid := range r.manifest {
		c, err := s.get(kindTree, cid)
		if err != nil {
			f.Fatal(err)
		}
		manifest = append(manifest, c...)
	}
	return root, manifest
}
