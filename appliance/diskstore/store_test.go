package diskstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/appliance/diskstore/chunker"
)

// testOptions keep chunks and packs small so tests exercise many of both.
var testOptions = Options{
	Chunker:            chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10},
	PasswordIterations: 1000,
	PackTarget:         256 << 10,
}

func createTestStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Create(dir, WithPassword("secret"), testOptions)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openTestStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, WithPassword("secret"), testOptions)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randomData(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// testTree is a set of files: random, compressible, empty, large.
func testTree(seed uint64) map[string][]byte {
	rng := rand.New(rand.NewPCG(seed, 9))
	files := map[string][]byte{
		"/data/empty":        {},
		"/data/small":        []byte("hello"),
		"/data/text.log":     bytes.Repeat([]byte("2026-11-25 backup line of text\n"), 20000),
		"/data/big.bin":      randomData(rng, 900<<10),
		"/data/sub/dup-of-b": nil,
	}
	files["/data/sub/dup-of-b"] = files["/data/big.bin"]
	for i := range 20 {
		files[fmt.Sprintf("/data/sub/f%02d", i)] = randomData(rng, rng.IntN(100<<10))
	}
	return files
}

func writeSession(t *testing.T, s *Store, files map[string][]byte) SessionInfo {
	t.Helper()
	w := s.BeginSession(SessionMeta{Scenario: "s1", Host: "master", Label: "test"})
	if err := w.AddDir(FileHeader{Path: "/data", Mode: fs.ModeDir | 0o755}); err != nil {
		t.Fatal(err)
	}
	if err := w.AddSymlink(FileHeader{Path: "/data/link", Mode: fs.ModeSymlink | 0o777}, "big.bin"); err != nil {
		t.Fatal(err)
	}
	for p, b := range files {
		hdr := FileHeader{Path: p, Mode: 0o640, UID: 1000, GID: 100, Owner: "alice", Group: "users",
			ModTime: time.Unix(1700000000, 5).UTC(), Xattrs: map[string][]byte{"user.tag": []byte(p)}}
		if err := w.AddFile(hdr, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	info, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func checkSession(t *testing.T, s *Store, id string, files map[string][]byte) {
	t.Helper()
	ss, err := s.OpenSession(id)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ss.Entries()); n != len(files)+2 {
		t.Fatalf("%d entries, want %d", n, len(files)+2)
	}
	for p, want := range files {
		en, ok := ss.Entry(p)
		if !ok || en.Size != int64(len(want)) || en.Owner != "alice" || en.UID != 1000 || string(en.Xattrs["user.tag"]) != p ||
			!en.ModTime.Equal(time.Unix(1700000000, 5)) || en.Mode != 0o640 {
			t.Fatalf("entry %s: %+v", p, en)
		}
		r, err := ss.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: content differs (%d bytes, want %d)", p, len(got), len(want))
		}
	}
	if en, _ := ss.Entry("/data/link"); en.Type != TypeSymlink || en.Target != "big.bin" {
		t.Fatalf("symlink entry %+v", en)
	}
	problems, err := s.Verify(id)
	if err != nil || len(problems) != 0 {
		t.Fatalf("verify: %v %v", problems, err)
	}
}

func TestSessionRoundTripAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s := createTestStore(t, dir)
	files := testTree(1)
	info := writeSession(t, s, files)
	if info.Files != len(files) || info.Dirs != 1 || info.Symlinks != 1 {
		t.Fatalf("info %+v", info)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir)
	defer s.Close()
	list, err := s.ListSessions()
	if err != nil || len(list) != 1 {
		t.Fatalf("list %v %v", list, err)
	}
	if got := list[0]; got.ID != info.ID || got.Meta.Scenario != "s1" || got.Bytes != info.Bytes || got.Files != info.Files {
		t.Fatalf("listed %+v, committed %+v", got, info)
	}
	checkSession(t, s, info.ID, files)
}

func packBytes(t *testing.T, dir string) int64 {
	var n int64
	filepath.WalkDir(filepath.Join(dir, "packs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, _ := d.Info()
			n += fi.Size()
		}
		return err
	})
	return n
}

func TestDedupAcrossSessions(t *testing.T) {
	dir := t.TempDir()
	s := createTestStore(t, dir)
	defer s.Close()
	files := testTree(2)
	first := writeSession(t, s, files)
	size1 := packBytes(t, dir)
	// The same tree with a few bytes changed in the middle of one file.
	changed := map[string][]byte{}
	for p, b := range files {
		changed[p] = b
	}
	big := bytes.Clone(files["/data/big.bin"])
	copy(big[400<<10:], "changed")
	changed["/data/big.bin"] = big
	second := writeSession(t, s, changed)
	grown := packBytes(t, dir) - size1
	if second.NewChunks > 3 || grown > 200<<10 {
		t.Fatalf("second session stored %d new chunks, %d bytes", second.NewChunks, grown)
	}
	// big.bin and dup-of-b share their chunks in the first session.
	if first.NewChunks >= first.Chunks {
		t.Fatalf("first session: %d new of %d chunks, want dedup within it", first.NewChunks, first.Chunks)
	}
	checkSession(t, s, first.ID, files)
	checkSession(t, s, second.ID, changed)
}

func TestUnlock(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{7}, 32)
	s, err := Create(dir, WithApplianceKey(key), testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddUnlock(WithPassword("pw")); err != nil {
		t.Fatal(err)
	}
	info := writeSession(t, s, map[string][]byte{"/a": []byte("a")})
	s.Close()

	tests := []struct {
		name string
		u    Unlock
		want error
	}{
		{"appliance key", WithApplianceKey(key), nil},
		{"password", WithPassword("pw"), nil},
		{"wrong password", WithPassword("pW"), ErrWrongPassword},
		{"wrong key", WithApplianceKey(bytes.Repeat([]byte{8}, 32)), ErrWrongKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(dir, tt.u, testOptions)
			if !errors.Is(err, tt.want) {
				t.Fatalf("open: %v, want %v", err, tt.want)
			}
			if err != nil {
				return
			}
			defer s.Close()
			checkSession(t, s, info.ID, map[string][]byte{"/a": []byte("a")})
		})
	}
	if _, err := Open(dir, WithPassword("pW"), testOptions); err == nil || !strings.Contains(err.Error(), "wrong password") {
		t.Fatalf("message %v", err)
	}
}

func TestOpenTwiceIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := createTestStore(t, dir)
	defer s.Close()
	if _, err := Open(dir, WithPassword("secret"), testOptions); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
}

func TestUncommittedSessionLeavesNoTrace(t *testing.T) {
	dir := t.TempDir()
	s := createTestStore(t, dir)
	info := writeSession(t, s, testTree(3))
	w := s.BeginSession(SessionMeta{Scenario: "s2"})
	if err := w.AddFile(FileHeader{Path: "/x"}, bytes.NewReader(bytes.Repeat([]byte("x"), 1<<20))); err != nil {
		t.Fatal(err)
	}
	s.Close() // without Commit
	s = openTestStore(t, dir)
	defer s.Close()
	list, err := s.ListSessions()
	if err != nil || len(list) != 1 || list[0].ID != info.ID {
		t.Fatalf("list %v %v", list, err)
	}
	checkSession(t, s, info.ID, testTree(3))
}

// corruptOneDataBlob flips a byte inside the sealed part of a data blob.
func corruptOneDataBlob(t *testing.T, s *Store, id ID) {
	l := s.index[id]
	p := packPath(s.dir, s.packs[l.pack])
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	at := int64(l.offset) + blobHeaderSize + 10
	f.ReadAt(b, at)
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptionIsNamed(t *testing.T) {
	dir := t.TempDir()
	s := createTestStore(t, dir)
	files := map[string][]byte{"/f": randomData(rand.New(rand.NewPCG(4, 4)), 300<<10)}
	info := writeSession(t, s, files)
	s.Close()
	s = openTestStore(t, dir)
	defer s.Close()
	ss, err := s.OpenSession(info.ID)
	if err != nil {
		t.Fatal(err)
	}
	en, _ := ss.Entry("/f")
	if len(en.Chunks) < 3 {
		t.Fatalf("%d chunks", len(en.Chunks))
	}
	corruptOneDataBlob(t, s, en.Chunks[1])
	r, _ := ss.Open("/f")
	n, err := io.Copy(io.Discard, r)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read: %v", err)
	}
	want := fmt.Sprintf("session %s, file /f, offset %d", info.ID, n)
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
	problems, err := s.Verify(info.ID)
	if err != nil || len(problems) != 1 || problems[0].Path != "/f" || problems[0].Offset != n || !errors.Is(problems[0].Err, ErrCorrupt) {
		t.Fatalf("verify: %v %v", problems, err)
	}
}

func TestDamagedRootAndKeyFile(t *testing.T) {
	dir := t.TempDir()
	s := createTestStore(t, dir)
	a := writeSession(t, s, map[string][]byte{"/a": []byte("a")})
	b := writeSession(t, s, map[string][]byte{"/b": []byte("b")})
	s.Close()
	root := filepath.Join(dir, "sessions", b.ID)
	raw, _ := os.ReadFile(root)
	raw[len(raw)-1] ^= 1
	os.WriteFile(root, raw, 0o600)
	s = openTestStore(t, dir)
	list, err := s.ListSessions()
	if !errors.Is(err, ErrCorrupt) || len(list) != 1 || list[0].ID != a.ID || !strings.Contains(err.Error(), b.ID) {
		t.Fatalf("list %v %v", list, err)
	}
	s.Close()
	kf := filepath.Join(dir, "store.key")
	raw, _ = os.ReadFile(kf)
	raw[20] ^= 1
	os.WriteFile(kf, raw, 0o600)
	if _, err := Open(dir, WithPassword("secret"), testOptions); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with damaged key file: %v", err)
	}
}

func TestSessionWriterRefusals(t *testing.T) {
	s := createTestStore(t, t.TempDir())
	defer s.Close()
	w := s.BeginSession(SessionMeta{})
	if err := w.AddDir(FileHeader{Path: "/d"}); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		w.AddDir(FileHeader{Path: "/d"}),
		w.AddFile(FileHeader{Path: "/d"}, strings.NewReader("x")),
		w.AddFile(FileHeader{Path: ""}, strings.NewReader("x")),
	} {
		if err == nil {
			t.Fatal("accepted")
		}
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(); err == nil {
		t.Fatal("second commit accepted")
	}
	if _, err := s.OpenSession("nonsense"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	ss, err := s.OpenSession(w.ID())
	if err != nil || !reflect.DeepEqual(ss.Entries()[0].Path, "/d") {
		t.Fatal(ss, err)
	}
}

func TestAddUnchanged(t *testing.T) {
	s := createTestStore(t, t.TempDir())
	defer s.Close()
	files := map[string][]byte{"/a": randomData(rand.New(rand.NewPCG(6, 6)), 200<<10)}
	first := writeSession(t, s, files)
	ss, err := s.OpenSession(first.ID)
	if err != nil {
		t.Fatal(err)
	}
	prev, _ := ss.Entry("/a")
	w := s.BeginSession(SessionMeta{})
	if err := w.AddUnchanged(FileHeader{Path: "/a", Mode: 0o600}, prev); err != nil {
		t.Fatal(err)
	}
	bogus := prev
	bogus.Chunks = []ID{{1, 2, 3}}
	if err := w.AddUnchanged(FileHeader{Path: "/b"}, bogus); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unchanged entry with a missing chunk: %v", err)
	}
	info, err := w.Commit()
	if err != nil || info.NewChunks != 0 || info.Bytes != int64(len(files["/a"])) {
		t.Fatalf("commit %+v %v", info, err)
	}
	ss, err = s.OpenSession(info.ID)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := ss.Open("/a")
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, files["/a"]) {
		t.Fatalf("read back: %v", err)
	}
}

func TestZeroTimesSurvive(t *testing.T) {
	s := createTestStore(t, t.TempDir())
	defer s.Close()
	w := s.BeginSession(SessionMeta{})
	if err := w.AddDir(FileHeader{Path: "/d"}); err != nil {
		t.Fatal(err)
	}
	info, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	ss, err := s.OpenSession(info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if en, _ := ss.Entry("/d"); !en.ModTime.IsZero() {
		t.Fatalf("zero mtime read back as %v", en.ModTime)
	}
}

func TestConcurrentSessions(t *testing.T) {
	s := createTestStore(t, t.TempDir())
	defer s.Close()
	trees := []map[string][]byte{testTree(10), testTree(11), testTree(10)}
	infos := make([]SessionInfo, len(trees))
	errs := make(chan error, len(trees))
	for i, tree := range trees {
		go func() {
			w := s.BeginSession(SessionMeta{Label: fmt.Sprint(i)})
			for p, b := range tree {
				if err := w.AddFile(FileHeader{Path: p}, bytes.NewReader(b)); err != nil {
					w.Abort()
					errs <- err
					return
				}
			}
			var err error
			infos[i], err = w.Commit()
			errs <- err
		}()
	}
	for range trees {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, tree := range trees {
		ss, err := s.OpenSession(infos[i].ID)
		if err != nil {
			t.Fatal(err)
		}
		for p, want := range tree {
			r, err := ss.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("session %d %s: %v", i, p, err)
			}
		}
		if problems, err := s.Verify(infos[i].ID); err != nil || len(problems) != 0 {
			t.Fatalf("verify: %v %v", problems, err)
		}
	}
	// Sessions 0 and 2 hold the same tree: together they stored it once.
	if infos[0].NewChunks+infos[2].NewChunks > infos[0].Chunks {
		t.Fatalf("same tree twice stored %d+%d chunks of %d", infos[0].NewChunks, infos[2].NewChunks, infos[0].Chunks)
	}
}

func TestDamagedPackIndexIsLeftOut(t *testing.T) {
	dir := t.TempDir()
	s := createTestStore(t, dir)
	files := map[string][]byte{"/f": randomData(rand.New(rand.NewPCG(12, 12)), 600<<10)}
	info := writeSession(t, s, files)
	ss, err := s.OpenSession(info.ID)
	if err != nil {
		t.Fatal(err)
	}
	en, _ := ss.Entry("/f")
	pack := packPath(dir, s.packs[s.index[en.Chunks[0]].pack])
	s.Close()
	raw, _ := os.ReadFile(pack)
	raw[len(raw)-packTrailerSize-5] ^= 1 // inside the sealed index
	os.WriteFile(pack, raw, 0o600)

	s = openTestStore(t, dir) // opens: the pack is left out, not fatal
	defer s.Close()
	problems, err := s.Verify(info.ID)
	if err != nil || len(problems) == 0 || problems[0].Path != "/f" || problems[0].Offset != 0 ||
		!strings.Contains(problems[0].Err.Error(), "in no pack") {
		t.Fatalf("verify: %v %v", problems, err)
	}
	// Prune deletes only packs the index knows: the left-out pack stays,
	// for whoever repairs the store.
	if _, err := s.Prune(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pack); err != nil {
		t.Fatalf("prune touched the damaged pack: %v", err)
	}
}
