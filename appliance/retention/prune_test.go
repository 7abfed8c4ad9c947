package retention

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/holdfast/holdfast/appliance/activity/activitytest"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/diskstore"
	"github.com/holdfast/holdfast/appliance/diskstore/chunker"
	"github.com/holdfast/holdfast/appliance/jobs"
	"github.com/holdfast/holdfast/appliance/messages"
)

type noProgress struct{}

func (noProgress) Set(jobs.Counts, jobs.Counts) {}

// Three sessions of one entity, keep_last 1: the two older ones leave the
// catalog and the store, their space is reclaimed, the newest still reads.
// While a backup session is open the garbage collection is retried and
// the job ends Incomplete.
func TestPruneJob(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := diskstore.Create(t.TempDir(), diskstore.WithApplianceKey(make([]byte, 32)),
		diskstore.Options{Chunker: chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}, PackTarget: 64 << 10, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cat, err := catalog.Open(t.TempDir(), catalog.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	job, _ := cat.CreateJob(catalog.Job{Kind: "backup", Name: "b"})
	rng := rand.New(rand.NewPCG(3, 4))
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var ids []uint64
	var stored []string
	for i := range 3 {
		data := make([]byte, 300<<10)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		w := store.BeginSession(diskstore.SessionMeta{Scenario: "s", Host: "fs01", Entity: "/srv"})
		if err := w.AddFile(diskstore.FileHeader{Path: "/srv/f", Mode: 0o644}, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		info, err := w.Commit()
		if err != nil {
			t.Fatal(err)
		}
		s, err := cat.CreateSession(catalog.Session{JobID: job.ID, Entity: "/srv", MasterHost: "fs01", Files: 1, Bytes: uint64(len(data)),
			Stored: info.ID, Finished: now.Add(time.Duration(i-3) * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		w2 := cat.NewFileVersionWriter()
		w2.Add(catalog.FileVersion{Host: "fs01", Path: "/srv/f", SessionID: s.ID})
		w2.Commit(true)
		ids, stored = append(ids, s.ID), append(stored, info.ID)
	}

	log := &activitytest.Recorder{}
	e := &Executor{Store: store, Catalog: cat, Rules: Rules{KeepLast: 1}, Rec: log, Attempts: 2, Backoff: 10 * time.Millisecond,
		Now: func() time.Time { return now }}

	// A backup session open: sessions are deleted, space is not reclaimed.
	busy := store.BeginSession(diskstore.SessionMeta{})
	res, err := e.Run(context.Background(), catalog.Job{ID: 9, Kind: Kind, Name: "prune"}, noProgress{})
	busy.Abort()
	if err != nil || res != catalog.ResultIncomplete {
		t.Fatalf("busy prune: %s, %v", res, err)
	}
	if log.Count(messages.PruneBusy) != 1 || log.Count(messages.PruneGaveUp) != 1 || log.Count(messages.PruneSessionExpired) != 2 {
		t.Fatalf("busy prune logged %q", log.Lines())
	}
	list, _ := cat.Sessions()
	if len(list) != 1 || list[0].ID != ids[2] {
		t.Fatalf("catalog sessions after prune: %+v", list)
	}
	infos, _ := store.ListSessions()
	if len(infos) != 1 || infos[0].ID != stored[2] {
		t.Fatalf("store sessions after prune: %+v", infos)
	}

	// Not busy: the space of the deleted sessions is reclaimed.
	res, err = e.Run(context.Background(), catalog.Job{ID: 10, Kind: Kind, Name: "prune"}, noProgress{})
	if err != nil || res != catalog.ResultCompleted {
		t.Fatalf("prune: %s, %v", res, err)
	}
	st, err := store.Prune()
	if err != nil || st.BytesFreed != 0 {
		t.Fatalf("a second garbage collection still found %d bytes: %v", st.BytesFreed, err)
	}
	if problems, err := store.Verify(stored[2]); err != nil || len(problems) != 0 {
		t.Fatalf("kept session: %v, %v", problems, err)
	}
	if v, _ := cat.FileVersions("fs01", "/srv/f"); len(v) != 1 || v[0].SessionID != ids[2] {
		t.Fatalf("versions left: %+v", v)
	}
	if _, err := store.OpenSession(stored[0]); !errors.Is(err, diskstore.ErrNotFound) {
		t.Fatalf("deleted stored session: %v", err)
	}
}
