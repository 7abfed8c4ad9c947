package diskstore

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeProtected(t *testing.T, s *Store, password string, files map[string][]byte) SessionInfo {
	t.Helper()
	w := s.BeginSession(SessionMeta{Scenario: "secret-sc", Host: "master", Entity: "/data", JobID: 7, JobName: "nightly",
		Consistency: "crash", ScenarioType: "fileserver", SourceKind: "scenario"}, WithSessionPassword(password))
	for p, b := range files {
		if err := w.AddFile(FileHeader{Path: p, Mode: 0o600}, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	info, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if !info.Protected {
		t.Fatal("committed info does not say protected")
	}
	return info
}

// A protected session is listed as protected with nothing else; it opens
// only with its password; its manifest and meta are not in the clear
// anywhere the store's key reaches; and Prune keeps its chunks.
func TestProtectedSession(t *testing.T) {
	dir := t.TempDir()
	s := createTestStore(t, dir)
	rng := rand.New(rand.NewPCG(5, 5))
	shared := randomData(rng, 200<<10)
	files := map[string][]byte{"/data/confidential-name.txt": shared, "/data/other": randomData(rng, 50<<10)}
	open := writeSession(t, s, map[string][]byte{"/data/shared": shared})
	prot := writeProtected(t, s, "correct horse", files)
	s.Close()
	s = openTestStore(t, dir)
	defer s.Close()

	list, err := s.ListSessions()
	if err != nil || len(list) != 2 {
		t.Fatalf("list %+v %v", list, err)
	}
	// Sessions started in the same second sort by their random suffix:
	// find the protected one by its id.
	got := list[0]
	if got.ID != prot.ID {
		got = list[1]
	}
	if got.ID != prot.ID || !got.Protected || got.Meta != (SessionMeta{}) || got.Files != 0 || got.Committed.IsZero() {
		t.Fatalf("protected session listed as %+v", got)
	}
	if _, err := s.OpenSession(prot.ID); !errors.Is(err, ErrPasswordRequired) || !strings.Contains(err.Error(), "give that password") {
		t.Fatalf("open without password: %v", err)
	}
	_, err = s.OpenSessionWithPassword(prot.ID, "wrong")
	var pe *ErrSessionPassword
	if !errors.Is(err, ErrWrongPassword) || !errors.As(err, &pe) || pe.Session != prot.ID {
		t.Fatalf("open with a wrong password: %v", err)
	}
	ss, err := s.OpenSessionWithPassword(prot.ID, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if info := ss.Info(); info.Meta.Entity != "/data" || info.Meta.JobID != 7 || info.Meta.SourceKind != "scenario" || info.Files != 2 || !info.Protected {
		t.Fatalf("info with password: %+v", info)
	}
	r, err := ss.Open("/data/confidential-name.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(b, shared) {
		t.Fatalf("read back: %d bytes, %v", len(b), err)
	}
	// The password of an open session is ignored.
	if _, err := s.OpenSessionWithPassword(open.ID, "anything"); err != nil {
		t.Fatal(err)
	}

	// No chunk the store's key opens holds the file name or the meta.
	s.mu.Lock()
	ids := make([]ID, 0, len(s.index))
	for id := range s.index {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, id := range ids {
		b, err := s.get(kindData, id)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("confidential-name")) || bytes.Contains(b, []byte("secret-sc")) {
			t.Fatalf("chunk %s holds the protected session's names in the clear", shortID(id))
		}
	}
	root, err := s.readRoot(prot.ID)
	if err != nil {
		t.Fatal(err)
	}
	if plain := root.encode(); bytes.Contains(plain, []byte("secret-sc")) || bytes.Contains(plain, []byte("nightly")) {
		t.Fatal("the root holds the protected session's meta in the clear")
	}

	// Verify without the password checks the pinned chunks.
	if problems, err := s.Verify(prot.ID); err != nil || len(problems) != 0 {
		t.Fatalf("verify: %v %v", problems, err)
	}
	// Deleting the open session and pruning keeps the shared chunk.
	if err := s.DeleteSession(open.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(); err != nil {
		t.Fatal(err)
	}
	if problems, err := s.VerifyWithPassword(prot.ID, "correct horse"); err != nil || len(problems) != 0 {
		t.Fatalf("verify after prune: %v %v", problems, err)
	}
	en, _ := ss.Entry("/data/other")
	corruptOneDataBlob(t, s, en.Chunks[0])
	problems, err := s.Verify(prot.ID)
	if err != nil || len(problems) != 1 || problems[0].Chunk != shortID(en.Chunks[0]) || problems[0].Path != "" {
		t.Fatalf("verify of a damaged protected session without password: %v %v", problems, err)
	}
	problems, err = s.VerifyWithPassword(prot.ID, "correct horse")
	if err != nil || len(problems) != 1 || problems[0].Path != "/data/other" || problems[0].Offset != 0 {
		t.Fatalf("verify of a damaged protected session with password: %v %v", problems, err)
	}
	if _, err := s.VerifyWithPassword(prot.ID, "wrong"); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("verify with a wrong password: %v", err)
	}
}

// A store written with version 1 roots and manifests (before the meta of
// version 2) still opens, lists and reads.
func TestReadsVersion1Store(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.CopyFS(dir, os.DirFS("testdata/store-v1")); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, WithPassword("golden"), testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	list, err := s.ListSessions()
	if err != nil || len(list) != 1 {
		t.Fatalf("list %+v %v", list, err)
	}
	info := list[0]
	if info.Meta.Scenario != "sc1" || info.Meta.Host != "master1" || info.Meta.Label != "job one" ||
		!info.Meta.Started.Equal(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)) || info.Files != 1 || info.Dirs != 1 || info.Protected {
		t.Fatalf("v1 session listed as %+v", info)
	}
	ss, err := s.OpenSession(info.ID)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ss.Open("/data/a.txt")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(r); err != nil || string(b) != "golden content v1\n" {
		t.Fatalf("read %q %v", b, err)
	}
	if problems, err := s.Verify(info.ID); err != nil || len(problems) != 0 {
		t.Fatalf("verify %v %v", problems, err)
	}
}

// The version 2 meta survives a round trip through the root.
func TestMetaVersion2(t *testing.T) {
	s := createTestStore(t, t.TempDir())
	defer s.Close()
	meta := SessionMeta{Scenario: "sc", Host: "m", Label: "l", Started: time.Unix(100, 0).UTC(), Entity: "/srv",
		Consistency: "application", JobID: 42, JobName: "nightly", ScenarioType: "fileserver", SourceKind: "scenario"}
	w := s.BeginSession(meta)
	info, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.ListSessions()
	if err != nil || len(list) != 1 || list[0].Meta != meta || list[0].ID != info.ID {
		t.Fatalf("list %+v %v", list, err)
	}
}
