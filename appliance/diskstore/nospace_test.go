package diskstore

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast/internal/testfs"
)

func TestDiskFull(t *testing.T) {
	mnt := testfs.Tmpfs(t, t.TempDir(), "8m")
	dir := filepath.Join(mnt, "store")
	s := createTestStore(t, dir)
	files := map[string][]byte{"/small": randomData(rand.New(rand.NewPCG(1, 1)), 1<<20)}
	info := writeSession(t, s, files)

	w := s.BeginSession(SessionMeta{Label: "too big"})
	rng := rand.New(rand.NewPCG(2, 2))
	var err error
	for i := 0; i < 40 && err == nil; i++ {
		err = w.AddFile(FileHeader{Path: "/big" + string(rune('a'+i))}, bytes.NewReader(randomData(rng, 1<<20)))
	}
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("filling the disk: %v", err)
	}
	if _, err := w.Commit(); err == nil {
		t.Fatal("commit after a failed write succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir)
	defer s.Close()
	list, err := s.ListSessions()
	if err != nil || len(list) != 1 || list[0].ID != info.ID {
		t.Fatalf("list %v %v", list, err)
	}
	checkSession(t, s, info.ID, files)
}
