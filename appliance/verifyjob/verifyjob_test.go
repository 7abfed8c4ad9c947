package verifyjob

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/appliance/activity/activitytest"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/diskstore"
	"github.com/holdfast/holdfast/appliance/diskstore/chunker"
	"github.com/holdfast/holdfast/appliance/jobs"
	"github.com/holdfast/holdfast/appliance/messages"
)

type counts struct{ done, total jobs.Counts }

func (c *counts) Set(done, total jobs.Counts) { c.done, c.total = done, total }

// A clean session verifies Completed; after one byte of its pack is
// flipped the job ends Incomplete and the log names session, file and
// offset.
func TestVerifyJob(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	store, err := diskstore.Create(dir, diskstore.WithApplianceKey(make([]byte, 32)),
		diskstore.Options{Chunker: chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cat, err := catalog.Open(t.TempDir(), catalog.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()

	// Below the chunker's minimum: one chunk, the first blob of the pack.
	data := make([]byte, 3000)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	w := store.BeginSession(diskstore.SessionMeta{Scenario: "s", Host: "fs01", Entity: "/srv"})
	if err := w.AddFile(diskstore.FileHeader{Path: "/srv/big.bin", Mode: 0o644}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	info, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	job, _ := cat.CreateJob(catalog.Job{Kind: "backup", Name: "b"})
	sess, err := cat.CreateSession(catalog.Session{JobID: job.ID, Entity: "/srv", MasterHost: "fs01", Files: 1, Bytes: uint64(len(data)), Stored: info.ID})
	if err != nil {
		t.Fatal(err)
	}

	log := &activitytest.Recorder{}
	e := &Executor{Store: store, Catalog: cat, Rec: log}
	run := func(spec Spec) (catalog.JobResult, *counts) {
		t.Helper()
		b, _ := json.Marshal(spec)
		c := &counts{}
		res, err := e.Run(context.Background(), catalog.Job{ID: 5, Kind: Kind, Name: "verify", Spec: b}, c)
		if err != nil {
			t.Fatal(err)
		}
		return res, c
	}
	if res, c := run(Spec{All: true}); res != catalog.ResultCompleted || c.done.Bytes != int64(len(data)) || c.total.Bytes != int64(len(data)) {
		t.Fatalf("clean store: %s, progress %+v", res, c)
	}

	// Flip one byte inside the first blob of the pack (its content chunk).
	var pack string
	filepath.WalkDir(filepath.Join(dir, "packs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".pack") {
			pack = p
		}
		return err
	})
	f, err := os.OpenFile(pack, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, 100)
	b[0] ^= 1
	f.WriteAt(b, 100)
	f.Close()

	res, _ := run(Spec{Sessions: []uint64{sess.ID}})
	if res != catalog.ResultIncomplete {
		t.Fatalf("damaged store: %s", res)
	}
	lines := log.With(messages.VerifyProblem)
	if len(lines) != 1 || !strings.Contains(lines[0], "file /srv/big.bin, offset 0") || !strings.Contains(lines[0], info.ID) {
		t.Fatalf("problems logged: %q", lines)
	}
	b2, _ := json.Marshal(Spec{Scenario: "nope"})
	if res, err := e.Run(context.Background(), catalog.Job{ID: 6, Kind: Kind, Spec: b2}, &counts{}); res != catalog.ResultFailed || err == nil {
		t.Fatalf("unknown scenario: %s, %v", res, err)
	}
}

func TestSpecCheck(t *testing.T) {
	for _, tc := range []struct {
		spec Spec
		ok   bool
	}{
		{Spec{}, false},
		{Spec{All: true}, true},
		{Spec{Sessions: []uint64{1}}, true},
		{Spec{Scenario: "s"}, true},
		{Spec{All: true, Scenario: "s"}, false},
	} {
		if err := tc.spec.Check(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.spec, err)
		}
	}
}
