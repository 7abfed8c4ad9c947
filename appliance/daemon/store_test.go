package daemon

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/appliance/api"
	"github.com/holdfast/holdfast/appliance/diskstore"
)

func (d *testDaemon) logText(t *testing.T, code string) string {
	t.Helper()
	var entries []api.LogEntry
	d.getJSON(t, &entries, "log", "--limit", "0", "--code", code)
	var b strings.Builder
	for _, e := range entries {
		b.WriteString(e.Message + "\n")
	}
	return b.String()
}

// TestCatalogRebuildThenRestore backs a scenario up, loses the whole
// catalog, rebuilds it from the store through the CLI, finds the file by
// name and restores it. A password-protected session written into the
// store is skipped without its password, recorded with it, and a restore
// of it (which has no password to give) fails saying why. Verify and
// prune jobs run through the CLI.
func TestCatalogRebuildThenRestore(t *testing.T) {
	data := t.TempDir()
	d := startDaemon(t, data, pluginsDir)
	root, replica := masterTree(t)
	if _, errOut, code := d.cli(t, "scenario", "create", "bk", "--type", "fileserver", "--root", root, "--replica", replica); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := d.cli(t, "scenario", "run", "bk"); code != 0 {
		t.Fatal(errOut)
	}
	d.waitState(t, "bk", "running")
	d.waitIdentical(t, "bk")
	var j api.Job
	d.getJSON(t, &j, "job", "submit", "--scenario", "bk")
	if j = d.waitJob(t, j.ID); j.Result != "completed" || len(j.Sessions) != 1 {
		t.Fatalf("backup job = %+v", j)
	}
	if _, errOut, code := d.cli(t, "scenario", "stop", "bk"); code != 0 {
		t.Fatal(errOut)
	}
	d.stop(t)

	// The catalog is lost; the store and its key are not.
	if err := os.RemoveAll(filepath.Join(data, "catalog")); err != nil {
		t.Fatal(err)
	}
	d = startDaemon(t, data, pluginsDir)
	var found []api.FileFound
	d.getJSON(t, &found, "restore", "find", "a.*")
	if len(found) != 0 {
		t.Fatalf("a fresh catalog finds %+v", found)
	}
	var res api.RebuildResult
	d.getJSON(t, &res, "catalog", "rebuild")
	if res.Stored != 1 || res.Recorded != 1 || res.Versions != 1 {
		t.Fatalf("rebuild = %+v", res)
	}
	if !d.logHas(t, "HF-W5062") { // scenario bk is gone with the catalog
		t.Error("activity log lacks HF-W5062")
	}
	d.getJSON(t, &res, "catalog", "rebuild")
	if res.Known != 1 || res.Recorded != 0 {
		t.Fatalf("second rebuild = %+v", res)
	}
	file := filepath.Join(root, "docs", "a.txt")
	d.getJSON(t, &found, "restore", "find", "a.*")
	if len(found) != 1 || found[0].Path != file {
		t.Fatalf("find a.* after rebuild = %+v", found)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	var rj api.Job
	d.getJSON(t, &rj, "restore", "run", "--session", strconv.FormatUint(found[0].Session, 10), "--path", file, "--to", "original")
	if rj = d.waitJob(t, rj.ID); rj.Result != "completed" {
		t.Fatalf("restore of a rebuilt session = %+v", rj)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "hello" {
		t.Fatalf("restored a.txt = %q, %v", b, err)
	}

	var vj api.Job
	d.getJSON(t, &vj, "store", "verify", "--all")
	if vj = d.waitJob(t, vj.ID); vj.Result != "completed" || vj.Kind != "verify" {
		t.Fatalf("verify job = %+v", vj)
	}
	if _, errOut, code := d.cli(t, "store", "verify"); code == 0 || !strings.Contains(errOut, "--all") {
		t.Fatalf("verify without sessions: exit %d %q", code, errOut)
	}
	var pj api.Job
	d.getJSON(t, &pj, "store", "prune")
	if pj = d.waitJob(t, pj.ID); pj.Result != "completed" || !d.logHas(t, "HF-I5071") {
		t.Fatalf("prune job = %+v", pj)
	}
	d.stop(t)

	// A protected session of the same master, written into the store.
	key, err := os.ReadFile(filepath.Join(data, StoreKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	store, err := diskstore.Open(filepath.Join(data, StoreDir), diskstore.WithApplianceKey(key), diskstore.Options{PasswordIterations: 1000})
	if err != nil {
		t.Fatal(err)
	}
	w := store.BeginSession(diskstore.SessionMeta{Scenario: "bk", Host: "localhost", Entity: root, Consistency: "crash", JobName: "secret backup"},
		diskstore.WithSessionPassword("s3cret"))
	if err := w.AddFile(diskstore.FileHeader{Path: filepath.Join(root, "secret.txt"), Mode: 0o600}, strings.NewReader("hush")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	store.Close()

	d = startDaemon(t, data, pluginsDir)
	d.getJSON(t, &res, "catalog", "rebuild")
	if res.Stored != 2 || res.Known != 1 || res.Skipped != 1 {
		t.Fatalf("rebuild without the password = %+v", res)
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
	d.getJSON(t, &res, "catalog", "rebuild", "--password-file", pwFile)
	if res.Recorded != 1 || res.Skipped != 0 {
		t.Fatalf("rebuild with the password = %+v", res)
	}
	d.getJSON(t, &found, "restore", "find", "secret.txt")
	if len(found) != 1 {
		t.Fatalf("find secret.txt = %+v", found)
	}
	d.getJSON(t, &rj, "restore", "run", "--session", strconv.FormatUint(found[0].Session, 10), "--to", t.TempDir())
	if rj = d.waitJob(t, rj.ID); rj.Result != "failed" {
		t.Fatalf("restore of a protected session without its password = %+v", rj)
	}
	if msg := d.logText(t, "HF-E5022"); !strings.Contains(msg, "protected by a password") {
		t.Fatalf("the failure does not say why: %q", msg)
	}
	// A wrong password is refused with a clear error; the right one restores.
	wrongFile := filepath.Join(t.TempDir(), "wrong")
	os.WriteFile(wrongFile, []byte("guess\n"), 0o600)
	d.getJSON(t, &rj, "restore", "run", "--session", strconv.FormatUint(found[0].Session, 10), "--to", t.TempDir(), "--password-file", wrongFile)
	if rj = d.waitJob(t, rj.ID); rj.Result != "failed" || !strings.Contains(rj.Runs[0].Reason, "password") {
		t.Fatalf("restore of a protected session with a wrong password = %+v", rj)
	}
	if strings.Contains(rj.Runs[0].Reason, "guess") {
		t.Fatalf("the failure shows the password: %q", rj.Runs[0].Reason)
	}
	dest := t.TempDir()
	d.getJSON(t, &rj, "restore", "run", "--session", strconv.FormatUint(found[0].Session, 10), "--to", dest, "--password-file", pwFile)
	if rj = d.waitJob(t, rj.ID); rj.Result != "completed" {
		t.Fatalf("restore of a protected session with its password = %+v", rj)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "secret.txt")); err != nil || string(b) != "hush" {
		t.Fatalf("secret.txt restored = %q, %v", b, err)
	}
	if out, _, _ := d.cli(t, "--json", "job", "show", strconv.FormatUint(rj.ID, 10)); strings.Contains(out, "s3cret") {
		t.Fatalf("job show reveals the password: %s", out)
	}

}
