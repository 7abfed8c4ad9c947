package replication

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/rewind"
)

func TestLocalReplicaJournal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		journal bool
	}{{"on", true}, {"off", false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := LocalOptions{}
			if tc.journal {
				opts.Rewind = &rewind.Options{}
			}
			r, err := OpenLocalWith(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if (r.Journal() != nil) != tc.journal {
				t.Fatalf("Journal() = %v with the journal %s", r.Journal(), tc.name)
			}
			cs := []change.Change{
				{Seq: 1, Op: change.OpReplaceFile, Path: "f", Data: []byte("one"), Mode: 0o600},
				{Seq: 2, Op: change.OpReplaceFile, Path: "f", Data: []byte("two"), Mode: 0o600},
			}
			if err := r.ApplyBatch(cs); err != nil {
				t.Fatal(err)
			}
			froze := false
			if err := r.Freeze(func() error { froze = true; return nil }); err != nil || !froze {
				t.Fatalf("Freeze: %v", err)
			}
			if !tc.journal {
				return
			}
			if _, err := r.Journal().Rewind(context.Background(), rewind.Target{Point: 1}, "", nil); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != "one" {
				t.Errorf("after rewind f holds %q", b)
			}
		})
	}
}

// TestFreezeHoldsBatchesBack: a batch arriving while fn runs waits for it,
// so a snapshot taken in fn sees the tree between two batches.
func TestFreezeHoldsBatchesBack(t *testing.T) {
	dir := t.TempDir()
	r, err := OpenLocalWith(dir, LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done := make(chan error, 1)
	err = r.Freeze(func() error {
		go func() {
			done <- r.ApplyBatch([]change.Change{{Seq: 1, Op: change.OpReplaceFile, Path: "f", Data: []byte("late"), Mode: 0o600}})
		}()
		// Give the batch every chance to run; it must not.
		for range 50 {
			runtime.Gosched()
			time.Sleep(time.Millisecond)
			if _, err := os.Stat(filepath.Join(dir, "f")); err == nil {
				return errors.New("a batch was applied during Freeze")
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(b) != "late" {
		t.Fatalf("after Freeze f = %q, %v", b, err)
	}
}
