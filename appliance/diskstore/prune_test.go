package diskstore

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

func TestPrune(t *testing.T) {
	dir := t.TempDir()
	s := createTestStore(t, dir)
	rng := rand.New(rand.NewPCG(5, 5))
	shared := randomData(rng, 600<<10)
	only1 := map[string][]byte{"/shared": shared, "/gone": randomData(rng, 2<<20)}
	keep := map[string][]byte{"/shared": shared, "/kept": randomData(rng, 500<<10)}
	first := writeSession(t, s, only1)
	second := writeSession(t, s, keep)
	w := s.BeginSession(SessionMeta{Label: "aborted"})
	if err := w.AddFile(FileHeader{Path: "/aborted"}, bytes.NewReader(randomData(rng, 300<<10))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(); !errors.Is(err, ErrBusy) {
		t.Fatalf("prune during a session: %v", err)
	}
	w.Abort()
	before := packBytes(t, dir)
	if err := s.DeleteSession(first.ID); err != nil {
		t.Fatal(err)
	}
	st, err := s.Prune()
	if err != nil {
		t.Fatal(err)
	}
	after := packBytes(t, dir)
	// /gone (2 MiB of random data) and /aborted must be freed. (The
	// aborted session's pack was unfinished in "before"; Prune finishes it
	// first, so it frees a little more than before-after.)
	if before-after < 2<<20 || st.BytesFreed < before-after || st.PacksDeleted == 0 {
		t.Fatalf("pruned %+v: %d -> %d bytes", st, before, after)
	}
	checkSession(t, s, second.ID, keep)
	s.Close()
	s = openTestStore(t, dir)
	defer s.Close()
	list, err := s.ListSessions()
	if err != nil || len(list) != 1 || list[0].ID != second.ID {
		t.Fatalf("list %v %v", list, err)
	}
	checkSession(t, s, second.ID, keep)
	// Nothing left to prune; new sessions deduplicate against what stayed.
	if st, err := s.Prune(); err != nil || st.PacksDeleted+st.PacksRewritten != 0 {
		t.Fatalf("second prune %+v %v", st, err)
	}
	third := writeSession(t, s, keep)
	if third.NewChunks != 0 {
		t.Fatalf("%d new chunks for content already stored", third.NewChunks)
	}
}
