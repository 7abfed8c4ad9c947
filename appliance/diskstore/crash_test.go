package diskstore

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

const (
	crashDirEnv  = "HOLDFAST_DISKSTORE_CRASH_DIR"
	crashSeedEnv = "HOLDFAST_DISKSTORE_CRASH_SEED"
)

// TestMain runs the child side of TestCrashKill when crashDirEnv is set:
// it writes sessions into the store until killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
		crashWriter(dir, seed)
	}
	os.Exit(m.Run())
}

func crashFile(seed uint64, session, file int) []byte {
	rng := rand.New(rand.NewPCG(seed, uint64(session*1000+file)))
	b := randomData(rng, rng.IntN(200<<10))
	// Some content repeats across sessions, so dedup is crossed too.
	if file%3 == 0 {
		b = bytes.Repeat([]byte(fmt.Sprintf("file %d\n", file)), 5000)
	}
	return b
}

func crashWriter(dir string, seed uint64) {
	s, err := Open(dir, WithPassword("secret"), testOptions)
	if err != nil {
		fmt.Fprintf(os.Stderr, "open: %v\n", err)
		os.Exit(3)
	}
	for session := 0; ; session++ {
		w := s.BeginSession(SessionMeta{Label: strconv.Itoa(session)})
		for file := range 12 {
			hdr := FileHeader{Path: fmt.Sprintf("/f%d", file), Mode: 0o600}
			if err := w.AddFile(hdr, bytes.NewReader(crashFile(seed, session, file))); err != nil {
				fmt.Fprintf(os.Stderr, "add: %v\n", err)
				os.Exit(4)
			}
			fmt.Fprintln(os.Stdout, "added")
		}
		info, err := w.Commit()
		if err != nil {
			fmt.Fprintf(os.Stderr, "commit: %v\n", err)
			os.Exit(4)
		}
		fmt.Fprintf(os.Stdout, "committed %s %d\n", info.ID, session)
	}
}

func TestCrashKill(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := t.TempDir()
	createTestStore(t, dir).Close()
	committed := map[string]int{}
	for round := range 4 {
		seed := uint64(round + 1)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashSeedEnv+"="+strconv.FormatUint(seed, 10))
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
		killAfter := 12 + 1 + rng.IntN(11) // the second session, part way
		sc := bufio.NewScanner(out)
		added := 0
		for sc.Scan() {
			line := sc.Text()
			if id, ok := strings.CutPrefix(line, "committed "); ok {
				f := strings.Fields(id)
				n, _ := strconv.Atoi(f[1])
				committed[f[0]] = int(seed)*1000 + n
				continue
			}
			if added++; added == killAfter {
				break
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if added < killAfter {
			t.Fatalf("round %d: child ended early: %s", round, stderr.String())
		}
	}
	s := openTestStore(t, dir)
	defer s.Close()
	list, err := s.ListSessions()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(committed) {
		t.Fatalf("%d sessions listed, %d committed", len(list), len(committed))
	}
	for _, info := range list {
		tag, ok := committed[info.ID]
		if !ok {
			t.Fatalf("session %s listed but never committed", info.ID)
		}
		problems, err := s.Verify(info.ID)
		if err != nil || len(problems) != 0 {
			t.Fatalf("verify %s: %v %v", info.ID, problems, err)
		}
		ss, err := s.OpenSession(info.ID)
		if err != nil {
			t.Fatal(err)
		}
		for file := range 12 {
			r, err := ss.Open(fmt.Sprintf("/f%d", file))
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if _, err := got.ReadFrom(r); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), crashFile(uint64(tag/1000), tag%1000, file)) {
				t.Fatalf("session %s file %d differs", info.ID, file)
			}
		}
	}
	if n := len(list); n < 4 {
		t.Fatalf("only %d sessions committed", n)
	}
	leftovers, _ := os.ReadDir(dir + "/packs")
	for _, e := range leftovers {
		if strings.HasPrefix(e.Name(), "tmp-") {
			t.Fatalf("leftover %s after reopen", e.Name())
		}
	}
}
