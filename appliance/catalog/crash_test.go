package catalog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

const (
	crashRounds   = 20
	crashDirEnv   = "HOLDFAST_CATALOG_CRASH_DIR"
	crashTagEnv   = "HOLDFAST_CATALOG_CRASH_TAG"
	crashMinDelay = 30 * time.Millisecond
	crashMaxDelay = 400 * time.Millisecond
)

// TestMain runs the child side of TestCrashSIGKILL when the parent starts
// this test binary with crashDirEnv set: it writes to the catalog and prints
// each acknowledgement until it is killed. Otherwise it runs the tests.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashWriter(dir)
	}
	os.Exit(m.Run())
}

func crashWriter(dir string) {
	c, err := Open(dir, Options{Logger: quietLogger})
	if err != nil {
		fmt.Fprintf(os.Stderr, "open: %v\n", err)
		os.Exit(3)
	}
	// os.Stdout is unbuffered: each line is one write(2) into the pipe, so
	// it has reached the parent before the next catalog call starts.
	emit := func(line string) {
		if _, err := fmt.Fprintln(os.Stdout, line); err != nil {
			os.Exit(4)
		}
	}
	err = crashWorkload(c, os.Getenv(crashTagEnv), emit, nil)
	fmt.Fprintf(os.Stderr, "workload: %v\n", err)
	os.Exit(5)
}

// TestCrashSIGKILL kills a writing process with SIGKILL at a random moment,
// crashRounds times on the same catalog, and checks after each kill that
// every acknowledged write survived whole, that no multi-key write survived
// in part, and that sequences carry on without reusing IDs.
//
// SIGKILL ends the process but not the kernel: data written to the page
// cache survives it even without fsync. So this test proves atomicity of
// batches, that acknowledgements come after the write reached Pebble's WAL,
// and that recovery replays correctly; it cannot prove fsync. That is what
// TestPowerLoss is for.
func TestCrashSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	m := newCrashModel()
	for round := 1; round <= crashRounds; round++ {
		delay := randomDelay(rng, crashMinDelay, crashMaxDelay)
		lines := runAndKill(t, dir, fmt.Sprintf("r%d", round), delay)
		for _, line := range lines {
			if err := m.apply(line); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		c, err := Open(dir, Options{Logger: quietLogger})
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		m.verify(t, c)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: killed after %v, %d lines", round, delay, len(lines))
	}
	if m.acks < crashRounds*5 {
		t.Fatalf("only %d acknowledged writes in %d rounds: the child is not getting to work", m.acks, crashRounds)
	}
	t.Logf("%d acknowledged writes checked over %d kills", m.acks, crashRounds)
}

// runAndKill runs the child writer on dir, SIGKILLs it after delay, and
// returns the complete lines it printed.
func runAndKill(t *testing.T, dir, tag string, delay time.Duration) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashTagEnv+"="+tag)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(delay, func() { _ = cmd.Process.Kill() }) // SIGKILL; a failure shows in Wait
	var lines []string
	r := bufio.NewReader(out)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			// A line cut short by the kill was never acknowledged.
			if !errors.Is(err, io.EOF) {
				t.Fatalf("read child output: %v", err)
			}
			break
		}
		lines = append(lines, strings.TrimSuffix(line, "\n"))
	}
	timer.Stop()
	err = cmd.Wait()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL (%v); stderr:\n%s", err, stderr.String())
	}
	return lines
}

// TestPowerLoss runs the same workload in-process on Pebble's crash-testing
// in-memory filesystem and takes a crash image at a random moment: the image
// holds what was fsynced plus a random share of what was not, as after a
// power cut. Every write acknowledged before the image must be in it. Unlike
// TestCrashSIGKILL this fails if an acknowledged write was not synced.
func TestPowerLoss(t *testing.T) {
	const rounds = 10
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	for round := 1; round <= rounds; round++ {
		fs := vfs.NewCrashableMem()
		const dir = "/catalog"
		m := newCrashModel()
		var image *vfs.MemFS
		for phase := 1; phase <= 2; phase++ { // crash, recover, crash again
			if image != nil {
				fs = image
			}
			c, err := Open(dir, Options{Logger: quietLogger, fs: fs})
			if err != nil {
				t.Fatalf("round %d phase %d: open: %v", round, phase, err)
			}
			if image != nil {
				m.verify(t, c)
			}
			var (
				mu    sync.Mutex
				lines []string
				stop  = make(chan struct{})
				wg    sync.WaitGroup
				errs  = make(chan error, 2)
			)
			emit := func(line string) {
				mu.Lock()
				lines = append(lines, line)
				mu.Unlock()
			}
			for w := 0; w < 2; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					errs <- crashWorkload(c, fmt.Sprintf("p%d-%d-%d", round, phase, w), emit, stop)
				}(w)
			}
			time.Sleep(randomDelay(rng, 5*time.Millisecond, 150*time.Millisecond))
			// Hold the line lock while imaging: an ACK in the copy finished
			// before the image, and a BEGIN not in it starts after.
			mu.Lock()
			unsynced := 0
			if rng.IntN(3) > 0 {
				unsynced = rng.IntN(101)
			}
			image = fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: unsynced, RNG: rand.New(rand.NewPCG(rng.Uint64(), 3))})
			acked := append([]string(nil), lines...)
			mu.Unlock()
			close(stop)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("round %d: workload: %v", round, err)
				}
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			for _, line := range acked {
				if err := m.apply(line); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
			}
		}
		c, err := Open(dir, Options{Logger: quietLogger, fs: image})
		if err != nil {
			t.Fatalf("round %d: open crash image: %v", round, err)
		}
		m.verify(t, c)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %d acknowledged writes survived", round, m.acks)
	}
}
