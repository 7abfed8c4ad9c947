package diskstore

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

const (
	crashDirEnv  = "HOLDFAST_DISKSTORE_CRASH_DIR"
	crashSeedEnv = "HOLDFAST_DISKSTORE_CRASH_SEED"
	crashModeEnv = "HOLDFAST_DISKSTORE_CRASH_MODE"
	crashFiles   = 12
)

// TestMain runs the child side of the crash tests when crashDirEnv is set:
// it writes sessions (and in prune mode deletes and prunes them) until
// killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
		crashWriter(dir, seed, os.Getenv(crashModeEnv) == "prune")
	}
	os.Exit(m.Run())
}

// crashFile is file number file of the session labelled seed/session.
func crashFile(seed uint64, session, file int) []byte {
	rng := rand.New(rand.NewPCG(seed, uint64(session*1000+file)))
	b := randomData(rng, rng.IntN(200<<10))
	// Some content repeats across sessions, so dedup is crossed too.
	if file%3 == 0 {
		b = bytes.Repeat([]byte(fmt.Sprintf("file %d\n", file)), 5000)
	}
	return b
}

func crashWriter(dir string, seed uint64, prune bool) {
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(3)
	}
	s, err := Open(dir, WithPassword("secret"), testOptions)
	if err != nil {
		fail("open", err)
	}
	for session := 0; ; session++ {
		w := s.BeginSession(SessionMeta{Label: fmt.Sprintf("%d/%d", seed, session)})
		for file := range crashFiles {
			hdr := FileHeader{Path: fmt.Sprintf("/f%d", file), Mode: 0o600}
			if err := w.AddFile(hdr, bytes.NewReader(crashFile(seed, session, file))); err != nil {
				fail("add", err)
			}
			fmt.Fprintln(os.Stdout, "added")
		}
		info, err := w.Commit()
		if err != nil {
			fail("commit", err)
		}
		fmt.Fprintf(os.Stdout, "committed %s\n", info.ID)
		if !prune {
			continue
		}
		list, err := s.ListSessions()
		if err != nil {
			fail("list", err)
		}
		if len(list) > 2 {
			id := list[0].ID
			fmt.Fprintf(os.Stdout, "deleting %s\n", id)
			if err := s.DeleteSession(id); err != nil {
				fail("delete", err)
			}
			fmt.Fprintf(os.Stdout, "deleted %s\n", id)
			if _, err := s.Prune(); err != nil {
				fail("prune", err)
			}
			fmt.Fprintln(os.Stdout, "pruned")
		}
	}
}

func TestCrashKill(t *testing.T)      { crashKill(t, "") }
func TestCrashKillPrune(t *testing.T) { crashKill(t, "prune") }

// crashKill SIGKILLs a child writing sessions (and in prune mode deleting
// and pruning them) at random points, four times, then checks the store:
// it opens, lists every session reported committed and not deleted, at
// most the one session in flight besides, and each reads back whole.
func crashKill(t *testing.T, mode string) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := t.TempDir()
	createTestStore(t, dir).Close()
	committed := map[string]bool{}
	var inDoubt []string // deletions the kill may have cut short
	deleted := map[string]bool{}
	for round := range 4 {
		seed := uint64(round + 1)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashSeedEnv+"="+strconv.FormatUint(seed, 10), crashModeEnv+"="+mode)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(seed, 7))
		killAfter := crashFiles + 1 + rng.IntN(3*crashFiles)
		// Lines go on being read after the kill until the pipe ends: what
		// the child wrote before it died is part of the record.
		sc := bufio.NewScanner(out)
		lines, killed := 0, false
		kill := func() {
			if !killed {
				cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			}
		}
		for sc.Scan() {
			verb, id, _ := strings.Cut(sc.Text(), " ")
			switch verb {
			case "committed":
				committed[id] = true
			case "deleting":
				inDoubt = append(inDoubt, id)
			case "deleted":
				delete(committed, id)
				inDoubt = slices.DeleteFunc(inDoubt, func(x string) bool { return x == id })
				deleted[id] = true
				// Every other round is killed while it prunes.
				if mode == "prune" && round%2 == 0 {
					kill()
				}
			}
			if lines++; lines >= killAfter {
				kill()
			}
		}
		cmd.Wait()
		if !killed {
			t.Fatalf("round %d: child ended early: %s", round, stderr.String())
		}
	}
	s := openTestStore(t, dir)
	defer s.Close()
	list, err := s.ListSessions()
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	unreported := 0
	for _, info := range list {
		listed[info.ID] = true
		if deleted[info.ID] {
			t.Fatalf("session %s listed after it was deleted", info.ID)
		}
		if !committed[info.ID] && !slices.Contains(inDoubt, info.ID) {
			unreported++ // committed just before the kill, not yet printed
		}
		problems, err := s.Verify(info.ID)
		if err != nil || len(problems) != 0 {
			t.Fatalf("verify %s: %v %v", info.ID, problems, err)
		}
		var seed uint64
		var session int
		if _, err := fmt.Sscanf(info.Meta.Label, "%d/%d", &seed, &session); err != nil {
			t.Fatalf("label %q: %v", info.Meta.Label, err)
		}
		ss, err := s.OpenSession(info.ID)
		if err != nil {
			t.Fatal(err)
		}
		for file := range crashFiles {
			r, err := ss.Open(fmt.Sprintf("/f%d", file))
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if _, err := got.ReadFrom(r); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), crashFile(seed, session, file)) {
				t.Fatalf("session %s file %d differs", info.ID, file)
			}
		}
	}
	for id := range committed {
		// A session whose deletion the kill cut short may be gone.
		if !listed[id] && !slices.Contains(inDoubt, id) {
			t.Fatalf("committed session %s lost", id)
		}
	}
	if unreported > 4 { // at most one per kill
		t.Fatalf("%d sessions listed that were never reported", unreported)
	}
	if len(list) < 2 {
		t.Fatalf("only %d sessions", len(list))
	}
	if mode == "prune" && len(deleted)+len(inDoubt) == 0 {
		t.Fatal("no deletion happened: the test did not exercise Prune")
	}
	ents, _ := os.ReadDir(dir + "/packs")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "tmp-") {
			t.Fatalf("leftover %s after reopen", e.Name())
		}
	}
}
