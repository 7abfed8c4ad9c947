package daemon

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/appliance/api"
)

// Size of the tree the kill test backs up: big enough that a backup
// lasts long enough to be killed part way, small enough for the suite.
const (
	killFiles    = 24
	killFileSize = 8 << 20
)

// writeKillTree (re)writes the master's files with content from seed and
// returns their hashes by path relative to the root.
func writeKillTree(t *testing.T, root string, seed uint64) map[string][32]byte {
	t.Helper()
	want := map[string][32]byte{}
	for i := range killFiles {
		rel := filepath.Join(fmt.Sprintf("d%d", i%4), fmt.Sprintf("f%02d.bin", i))
		want[rel] = randomFile(t, filepath.Join(root, rel), killFileSize, seed<<8|uint64(i))
	}
	return want
}

// waitIdenticalFor is waitIdentical with a longer deadline, for trees of
// hundreds of MiB.
func (d *testDaemon) waitIdenticalFor(t *testing.T, name string, within time.Duration) {
	t.Helper()
	var diffs []api.DifferenceEntry
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		d.getJSON(t, &diffs, "report", "difference", name)
		if len(diffs) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("master and replica still differ after %v: %d differences, first %+v", within, len(diffs), diffs[0])
}

// TestBackupSurvivesKilledDaemon SIGKILLs holdfastd while a backup job
// writes its session, at three moments (soon after the first bytes, half
// way, near the end), restarts it each time and checks the promise of
// issue 5: the job is Done/failed with the "holdfastd stopped" reason and
// reruns to completion; the earlier session stays whole; and the store and
// the catalog hold exactly the committed sessions — nothing of the killed
// runs.
func TestBackupSurvivesKilledDaemon(t *testing.T) {
	bin := buildHoldfastd(t)
	data := t.TempDir()
	d := startChildDaemon(t, bin, data)
	root, replica := masterTree(t)
	wantA := writeKillTree(t, root, 1)
	wantA[filepath.Join("docs", "a.txt")] = sha256Of("hello")
	if _, errOut, code := d.cli(t, "scenario", "create", "big", "--type", "fileserver", "--root", root, "--replica", replica,
		"--sync", "file", "--snapshots", "2"); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := d.cli(t, "scenario", "run", "big"); code != 0 {
		t.Fatal(errOut)
	}
	d.waitState(t, "big", "running")
	d.waitIdenticalFor(t, "big", 60*time.Second)

	var j api.Job
	d.getJSON(t, &j, "job", "submit", "--scenario", "big")
	if j = d.waitJobWithin(t, j.ID, 60*time.Second); j.Result != "completed" || len(j.Sessions) != 1 {
		t.Fatalf("session A: job = %+v", j)
	}
	sessA := j.Sessions[0]

	moments := []struct {
		name string
		// due says whether to kill now, from the job's progress.
		due func(p api.JobProgress) bool
	}{
		{"after the first bytes", func(p api.JobProgress) bool { return p.Done.Bytes > 0 }},
		{"half way", func(p api.JobProgress) bool { return p.Done.Bytes >= p.Total.Bytes/2 }},
		{"near the end", func(p api.JobProgress) bool { return p.Done.Files >= p.Total.Files-1 }},
	}
	killed, leftover := 0, 0
	for round, m := range moments {
		// New content everywhere, so the backup has all of it to read
		// and store.
		writeKillTree(t, root, uint64(round+2))
		d.waitIdenticalFor(t, "big", 60*time.Second)
		var sub api.Job
		d.getJSON(t, &sub, "job", "submit", "--scenario", "big", "--name", "killed "+m.name)
		id := strconv.FormatUint(sub.ID, 10)
		deadline := time.Now().Add(60 * time.Second)
		for {
			j = d.job(t, sub.ID)
			if j.State == "done" || (j.Progress != nil && j.Progress.Total.Bytes > 0 && m.due(*j.Progress)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: job %s still %s after 60 s: %+v", m.name, id, j.State, j)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if j.State == "done" {
			// Only the last moment may be missed: the end of a backup is
			// short. The earlier rounds must have killed a running job.
			if round < len(moments)-1 {
				t.Fatalf("%s: job ended (%s) before it could be killed: make the tree bigger", m.name, j.Result)
			}
			t.Logf("%s: the job ended before the kill (%s); nothing killed this round", m.name, j.Result)
			continue
		}
		t.Logf("%s: killing holdfastd at %d of %d bytes, %d of %d files", m.name,
			j.Progress.Done.Bytes, j.Progress.Total.Bytes, j.Progress.Done.Files, j.Progress.Total.Files)
		d.kill(t)
		d.start(t)

		j = d.job(t, sub.ID)
		if j.State == "done" && j.Result == "completed" && len(j.Runs) == 1 && len(j.Sessions) == 1 {
			// The run ended between the last look and the kill (the end of
			// a backup is short): not a kill of a running job. The count
			// below makes sure enough rounds were.
			t.Logf("%s: the job completed just before the kill landed; nothing killed this round", m.name)
			continue
		}
		killed++
		if j.State != "done" || j.Result != "failed" || len(j.Runs) != 1 || !strings.Contains(j.Runs[0].Reason, "holdfastd stopped") {
			t.Fatalf("%s: killed job after restart = %+v", m.name, j)
		}
		// A kill that lands after the session was recorded and before the
		// job's end leaves a whole session of a failed run: consistent, and
		// checked below with every other session. Any other kill leaves none.
		left := len(j.Sessions)
		if left > 1 {
			t.Fatalf("%s: the killed run left sessions in the catalog: %+v", m.name, j.Sessions)
		}
		leftover += left
		if !slices.ContainsFunc(d.logEntries(t, "HF-E5022"), func(e api.LogEntry) bool {
			return e.JobID == j.ID && strings.Contains(e.Message, "holdfastd stopped")
		}) {
			t.Errorf("%s: no HF-E5022 for job %s naming the stop", m.name, id)
		}
		d.waitState(t, "big", "running")
		if _, errOut, code := d.cli(t, "job", "rerun", id); code != 0 {
			t.Fatalf("%s: rerun: %s", m.name, errOut)
		}
		if j = d.waitJobWithin(t, j.ID, 60*time.Second); j.Result != "completed" || len(j.Sessions) != 1+left || len(j.Runs) != 2 {
			t.Fatalf("%s: rerun job = %+v", m.name, j)
		}
	}
	if killed < 2 {
		t.Fatalf("only %d rounds killed a running backup", killed)
	}

	// Session A restores byte for byte through a restore job.
	alt := filepath.Join(t.TempDir(), "restored-a")
	j = api.Job{}
	d.getJSON(t, &j, "restore", "run", "--session", strconv.FormatUint(sessA.ID, 10), "--to", alt)
	if j = d.waitJobWithin(t, j.ID, 60*time.Second); j.Result != "completed" {
		t.Fatalf("restore of session A = %+v", j)
	}
	checkTree(t, alt, wantA)

	// With holdfastd stopped, the store and the catalog agree on the
	// sessions: A and one per completed run, none of a killed run, and
	// every one reads back whole.
	d.stop(t)
	store := openStoreOf(t, data)
	list, err := store.ListSessions()
	if err != nil {
		t.Fatal(err)
	}
	var stored []string
	for _, s := range list {
		stored = append(stored, s.ID)
	}
	var recorded []string
	for _, s := range catalogSessions(t, data) {
		recorded = append(recorded, s.Stored)
	}
	slices.Sort(stored)
	slices.Sort(recorded)
	if want := 1 + len(moments) + leftover; len(recorded) != want || !slices.Equal(stored, recorded) {
		t.Fatalf("store sessions %v, catalog sessions %v; want the same %d", stored, recorded, want)
	}
	for _, id := range stored {
		if problems, err := store.Verify(id); err != nil || len(problems) != 0 {
			t.Errorf("Verify %s = %v, %v", id, problems, err)
		}
	}
}
