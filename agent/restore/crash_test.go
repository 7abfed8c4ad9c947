package restore

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

const (
	crashDestEnv = "HOLDFAST_RESTORE_CRASH_DEST"
	crashFiles   = 40
)

// TestMain runs the child side of the crash test when crashDestEnv is set:
// it restores the same files again and again, a new version each round,
// in small batches, until killed.
func TestMain(m *testing.M) {
	if dest := os.Getenv(crashDestEnv); dest != "" {
		crashRestorer(dest)
	}
	os.Exit(m.Run())
}

// crashContent is version v of file i: it names itself in its first line,
// so a file found after a crash can be checked whole against what that
// version is.
func crashContent(i, v int) []byte {
	rng := rand.New(rand.NewPCG(uint64(i), uint64(v)))
	b := fmt.Appendf(nil, "file %d version %d\n", i, v)
	filler := make([]byte, rng.IntN(128<<10))
	for j := range filler {
		filler[j] = byte('a' + rng.IntN(26))
	}
	return append(b, filler...)
}

func crashPath(i int) string { return fmt.Sprintf("d%d/f%02d", i%3, i) }

func crashRestorer(dest string) {
	batchFiles = 8 // many flushes, so the kill lands in and between them
	for v := 1; ; v++ {
		w, err := Open(dest, Options{Batch: true})
		if err != nil {
			fmt.Fprintln(os.Stderr, "open:", err)
			os.Exit(3)
		}
		for i := range crashFiles {
			if _, err := w.Put(Entry{Path: crashPath(i), Type: File, Mode: 0o644}, bytes.NewReader(crashContent(i, v))); err != nil {
				fmt.Fprintln(os.Stderr, "put:", err)
				os.Exit(3)
			}
			fmt.Println("put", i)
		}
		if err := w.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "close:", err)
			os.Exit(3)
		}
	}
}

// checkWhole fails unless every restored name holds one whole version of
// its file, and returns the temporary files it found.
func checkWhole(t *testing.T, dest string) (temps []string) {
	t.Helper()
	for i := range crashFiles {
		b, err := os.ReadFile(filepath.Join(dest, crashPath(i)))
		if err != nil {
			t.Fatalf("%s: %v", crashPath(i), err)
		}
		first, _, _ := bytes.Cut(b, []byte("\n"))
		var fi, v int
		if _, err := fmt.Sscanf(string(first), "file %d version %d", &fi, &v); err != nil || fi != i {
			t.Fatalf("%s starts with %q: not a whole version of the file", crashPath(i), first)
		}
		if !bytes.Equal(b, crashContent(i, v)) {
			t.Fatalf("%s: %d bytes, not the whole of version %d (%d bytes): torn", crashPath(i), len(b), v, len(crashContent(i, v)))
		}
	}
	filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tempPrefix) {
			temps = append(temps, p)
		}
		return err
	})
	return temps
}

// TestBatchCrashLeavesWholeFiles kills a batch restore over existing files
// at random points, in and between flushes: every name must hold a whole
// version of its file, never a part, and the next restore of the same
// entries leaves no temporary file behind.
func TestBatchCrashLeavesWholeFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dest := t.TempDir()
	w := open(t, dest, Options{})
	for i := range crashFiles {
		if _, err := w.Put(Entry{Path: crashPath(i), Type: File, Mode: 0o644}, bytes.NewReader(crashContent(i, 0))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sawTemps := false
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashDestEnv+"="+dest)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(uint64(round), 3))
		killAfter := 1 + rng.IntN(3*crashFiles)
		sc := bufio.NewScanner(out)
		for lines := 0; sc.Scan(); {
			if strings.HasPrefix(sc.Text(), "put ") {
				if lines++; lines == killAfter {
					cmd.Process.Signal(syscall.SIGKILL)
				}
			}
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: the restorer ended by itself: %v: %s", round, err, stderr.Bytes())
		}
		if temps := checkWhole(t, dest); len(temps) > 0 {
			sawTemps = true
		}
	}
	t.Logf("temporary files left by some kill: %v", sawTemps)
	// The restore run again replaces what the kills left.
	w = open(t, dest, Options{Batch: true})
	for i := range crashFiles {
		if _, err := w.Put(Entry{Path: crashPath(i), Type: File, Mode: 0o644}, bytes.NewReader(crashContent(i, 1000))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if temps := checkWhole(t, dest); len(temps) > 0 {
		t.Fatalf("temporary files survive the next restore: %v", temps)
	}
	for i := range crashFiles {
		if b, _ := os.ReadFile(filepath.Join(dest, crashPath(i))); !bytes.HasPrefix(b, []byte("file "+strconv.Itoa(i)+" version 1000\n")) {
			t.Fatalf("%s after the last restore: %.30q", crashPath(i), b)
		}
	}
}
