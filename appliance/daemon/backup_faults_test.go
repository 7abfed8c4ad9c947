package daemon

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/appliance/api"
	"github.com/holdfast/holdfast/internal/testfs"
)

// backedUp runs a scenario over root and replica and one backup job of
// it, and returns the job's only session.
func (d *testDaemon) backedUp(t *testing.T, name, root, replica string) api.JobSession {
	t.Helper()
	if _, errOut, code := d.cli(t, "scenario", "create", name, "--type", "fileserver", "--root", root, "--replica", replica, "--sync", "file"); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := d.cli(t, "scenario", "run", name); code != 0 {
		t.Fatal(errOut)
	}
	d.waitState(t, name, "running")
	d.waitIdentical(t, name)
	var j api.Job
	d.getJSON(t, &j, "job", "submit", "--scenario", name)
	if j = d.waitJobWithin(t, j.ID, 60*time.Second); j.Result != "completed" || len(j.Sessions) != 1 {
		t.Fatalf("backup job = %+v", j)
	}
	return j.Sessions[0]
}

// restoreTo runs a restore job of a whole session to dest and waits for it.
func (d *testDaemon) restoreTo(t *testing.T, session uint64, dest string, extra ...string) api.Job {
	t.Helper()
	var j api.Job
	d.getJSON(t, &j, append([]string{"restore", "run", "--session", strconv.FormatUint(session, 10), "--to", dest}, extra...)...)
	return d.waitJobWithin(t, j.ID, 60*time.Second)
}

// jobEntries returns a job's activity-log entries with the given code.
func (d *testDaemon) jobEntries(t *testing.T, job uint64, code string) []api.LogEntry {
	t.Helper()
	var out []api.LogEntry
	for _, e := range d.logEntries(t, code) {
		if e.JobID == job {
			out = append(out, e)
		}
	}
	return out
}

// TestRestoreJobCorruptChunk flips one byte of a pack holding file content
// and restores the whole session: the job ends Incomplete, the activity
// log names the session, the file and the offset, every other file comes
// back byte for byte and the damaged one is not left half-written.
func TestRestoreJobCorruptChunk(t *testing.T) {
	data := t.TempDir()
	d := startDaemon(t, data, pluginsDir)
	root, replica := masterTree(t)
	// Walk order puts a.bin first, so the first blob of the first pack
	// is one of its chunks.
	want := map[string][32]byte{
		"a.bin":                        randomFile(t, filepath.Join(root, "a.bin"), 3<<20, 11),
		filepath.Join("b", "c.bin"):    randomFile(t, filepath.Join(root, "b", "c.bin"), 2<<20, 12),
		filepath.Join("b", "d.bin"):    randomFile(t, filepath.Join(root, "b", "d.bin"), 100<<10, 13),
		filepath.Join("docs", "a.txt"): sha256Of("hello"),
	}
	s := d.backedUp(t, "corrupt", root, replica)

	packs, err := filepath.Glob(filepath.Join(data, StoreDir, "packs", "*", "*.pack"))
	if err != nil || len(packs) != 1 {
		t.Fatalf("packs = %v, %v; want one", packs, err)
	}
	f, err := os.OpenFile(packs[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, 4096); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, 4096); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	dest := filepath.Join(t.TempDir(), "restored")
	j := d.restoreTo(t, s.ID, dest)
	if j.Result != "incomplete" {
		t.Fatalf("restore with a corrupt chunk = %+v", j)
	}
	entries := d.jobEntries(t, j.ID, "HF-W6011")
	if len(entries) != 1 {
		t.Fatalf("HF-W6011 entries of job %d = %+v; want one, for a.bin", j.ID, entries)
	}
	msg := entries[0].Message
	t.Logf("HF-W6011: %s", msg)
	for _, part := range []string{filepath.Join(root, "a.bin"), "session " + s.Stored, "offset ", "corrupt"} {
		if !strings.Contains(msg, part) {
			t.Errorf("HF-W6011 %q does not name %q", msg, part)
		}
	}
	delete(want, "a.bin")
	checkTree(t, dest, want) // also fails on a.bin or a temporary file left behind
}

// TestRestoreJobPlantedSymlinks restores into folders where symlinks
// pointing outside stand at names the session writes: nothing is written
// outside, whatever the overwrite policy.
func TestRestoreJobPlantedSymlinks(t *testing.T) {
	d := startDaemon(t, "", pluginsDir)
	root, replica := masterTree(t)
	s := d.backedUp(t, "hostile", root, replica)
	tests := []struct {
		name    string
		plant   string // the symlink's name below the destination
		policy  string
		result  string
		problem string // what the HF-W6011 entry says, when the job is incomplete
		real    bool   // the restored docs/a.txt is in the destination
	}{
		// Overwrite replaces the planted link by the directory itself.
		{"directory link, overwrite", "docs", "overwrite", "completed", "", true},
		// Skip keeps the link, so nothing can be written below it.
		{"directory link, skip", "docs", "skip", "incomplete", "in the way", false},
		// A link at the file's own name is replaced, never followed.
		{"file link, overwrite", "docs/a.txt", "overwrite", "completed", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outside := t.TempDir()
			victim := filepath.Join(outside, "a.txt")
			if err := os.WriteFile(victim, []byte("outside"), 0o644); err != nil {
				t.Fatal(err)
			}
			dest := filepath.Join(t.TempDir(), "dest")
			link := filepath.Join(dest, tt.plant)
			target := outside
			if tt.plant != "docs" {
				target = victim
			}
			if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			j := d.restoreTo(t, s.ID, dest, "--policy", tt.policy)
			if j.Result != tt.result {
				t.Fatalf("restore = %+v, want %s", j, tt.result)
			}
			// Outside: only the victim, unchanged.
			if ents, err := os.ReadDir(outside); err != nil || len(ents) != 1 {
				t.Errorf("outside holds %v, %v", ents, err)
			}
			if b, err := os.ReadFile(victim); err != nil || string(b) != "outside" {
				t.Errorf("file outside = %q, %v", b, err)
			}
			entries := d.jobEntries(t, j.ID, "HF-W6011")
			if tt.problem == "" && len(entries) != 0 {
				t.Errorf("unexpected HF-W6011: %+v", entries)
			}
			if tt.problem != "" {
				if len(entries) != 1 || !strings.Contains(entries[0].Message, filepath.Join(root, "docs", "a.txt")) ||
					!strings.Contains(entries[0].Message, tt.problem) {
					t.Errorf("HF-W6011 entries = %+v; want one naming docs/a.txt and %q", entries, tt.problem)
				}
			}
			fi, err := os.Lstat(filepath.Join(dest, "docs", "a.txt"))
			if tt.real {
				if err != nil || !fi.Mode().IsRegular() {
					t.Fatalf("restored docs/a.txt: %v, %v", fi, err)
				}
				if b, err := os.ReadFile(filepath.Join(dest, "docs", "a.txt")); err != nil || string(b) != "hello" {
					t.Errorf("restored docs/a.txt = %q, %v", b, err)
				}
			} else if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("the planted link should be kept by %s: %v, %v", tt.policy, fi, err)
			}
		})
	}
}

// TestBackupJobDiskFull backs up to a store on a 32 MiB tmpfs: a 64 MiB
// session fails naming the lack of space, the earlier session stays whole,
// and once the tree is small again a rerun completes.
func TestBackupJobDiskFull(t *testing.T) {
	data := t.TempDir()
	storeDir := filepath.Join(data, StoreDir)
	if err := os.MkdirAll(storeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	testfs.Tmpfs(t, storeDir, "32m")
	d := startDaemon(t, data, pluginsDir)
	root, replica := masterTree(t)
	wantA := map[string][32]byte{
		"small.bin":                    randomFile(t, filepath.Join(root, "small.bin"), 1<<20, 21),
		filepath.Join("docs", "a.txt"): sha256Of("hello"),
	}
	a := d.backedUp(t, "full", root, replica)

	var big []string
	for i := range 8 {
		p := filepath.Join(root, "big", "f"+strconv.Itoa(i))
		randomFile(t, p, 8<<20, uint64(30+i))
		big = append(big, p)
	}
	d.waitIdentical(t, "full")
	var j api.Job
	d.getJSON(t, &j, "job", "submit", "--scenario", "full")
	if j = d.waitJobWithin(t, j.ID, 60*time.Second); j.Result != "failed" || len(j.Sessions) != 0 {
		t.Fatalf("backup of 64 MiB into 32 MiB = %+v", j)
	}
	failed := d.jobEntries(t, j.ID, "HF-E5023")
	if len(failed) != 1 || !strings.Contains(failed[0].Message, "no space") {
		t.Errorf("HF-E5023 entries = %+v; want one naming the lack of space", failed)
	}
	t.Logf("HF-E5023: %+v", failed)
	// What 'holdfast job show' gives as the reason must say why, too.
	if reason := j.Runs[len(j.Runs)-1].Reason; !strings.Contains(reason, "no space") {
		t.Errorf("BUG (appliance/backup Executor.Run): the failed run's reason %q does not name the lack of space; "+
			"only the activity log's HF-E5023 does", reason)
	}

	// Session A is whole.
	alt := filepath.Join(t.TempDir(), "a")
	if rj := d.restoreTo(t, a.ID, alt); rj.Result != "completed" {
		t.Fatalf("restore of session A after the failure = %+v", rj)
	}
	checkTree(t, alt, wantA)

	// Smaller again: the rerun completes, with what is left of the
	// filesystem.
	for _, p := range big {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	d.waitIdentical(t, "full")
	if _, errOut, code := d.cli(t, "job", "rerun", strconv.FormatUint(j.ID, 10)); code != 0 {
		t.Fatal(errOut)
	}
	if j = d.waitJobWithin(t, j.ID, 60*time.Second); j.Result != "completed" || len(j.Sessions) != 1 {
		t.Fatalf("rerun after freeing space = %+v", j)
	}
	d.stop(t)
	store := openStoreOf(t, data)
	for _, id := range []string{a.Stored, j.Sessions[0].Stored} {
		if problems, err := store.Verify(id); err != nil || len(problems) != 0 {
			t.Errorf("Verify %s = %v, %v", id, problems, err)
		}
	}
}
