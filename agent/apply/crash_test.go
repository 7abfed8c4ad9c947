package apply

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/agent/change"
)

const (
	crashTargetEnv = "HOLDFAST_APPLY_CRASH_TARGET"
	crashSeedEnv   = "HOLDFAST_APPLY_CRASH_SEED"
	crashRounds    = 12
	crashFiles     = 3000 // files in the stream; paths are reused
	crashPaths     = 400
)

// TestMain runs the child side of TestCrashKill when the parent starts this
// test binary with crashTargetEnv set: it applies the crash stream in
// batches of random sizes, printing LastApplied after each, until it is
// killed. Otherwise it runs the tests.
func TestMain(m *testing.M) {
	if target := os.Getenv(crashTargetEnv); target != "" {
		seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
		crashApplier(target, seed)
	}
	os.Exit(m.Run())
}

func crashApplier(target string, seed uint64) {
	a, err := Open(target, Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "open: %v\n", err)
		os.Exit(3)
	}
	cs := crashStream()
	rng := rand.New(rand.NewPCG(seed, 2))
	fmt.Fprintln(os.Stdout, "ready")
	// Delivered again from LastApplied, as a transport does after a crash.
	i := int(a.LastApplied())
	for i < len(cs) {
		n := min(len(cs)-i, 1+rng.IntN(600))
		if err := a.ApplyBatch(cs[i : i+n]); err != nil {
			fmt.Fprintf(os.Stderr, "apply: %v\n", err)
			os.Exit(4)
		}
		i += n
		// os.Stdout is unbuffered: the line is in the pipe before the next
		// batch starts.
		fmt.Fprintf(os.Stdout, "%d\n", a.LastApplied())
	}
	fmt.Fprintln(os.Stdout, "done")
	time.Sleep(time.Hour) // until killed
	os.Exit(5)
}

// crashStream is a stream of whole files as synchronization and capture
// send them: directories first, then OpReplaceFile of reused paths with the
// owner, mode and time that finish each. A file's content names its path
// and Seq and is otherwise derived from them, so that any copy of it can be
// checked whole.
func crashStream() []change.Change {
	var cs []change.Change
	add := func(c change.Change) {
		c.Seq = uint64(len(cs) + 1)
		cs = append(cs, c)
	}
	for d := range 8 {
		add(change.Change{Op: change.OpMkdir, Path: fmt.Sprintf("d%d", d), Mode: 0o755})
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for range crashFiles {
		p := fmt.Sprintf("d%d/f%03d", rng.IntN(8), rng.IntN(crashPaths/8))
		seq := uint64(len(cs) + 1)
		add(change.Change{Op: change.OpReplaceFile, Path: p, Data: crashContent(p, seq), Mode: 0o644, MTime: int64(seq) * 1e9})
		add(change.Change{Op: change.OpChown, Path: p, UID: uint32(seq % 7), GID: 0})
		if seq%5 == 0 {
			add(change.Change{Op: change.OpChmod, Path: p, Mode: 0o600})
		}
	}
	return cs
}

// crashContent is the content change seq gives to p: a header naming them,
// then bytes derived from both, of a size that varies up to 24 KiB.
func crashContent(p string, seq uint64) []byte {
	head := fmt.Sprintf("%s@%d\n", p, seq)
	var key [32]byte
	copy(key[:], head)
	r := rand.NewChaCha8(key)
	b := make([]byte, len(head)+int(r.Uint64()%(24<<10)))
	copy(b, head)
	_, _ = r.Read(b[len(head):]) // never fails
	return b
}

// checkWhole fails unless every file below target holds exactly what one
// change of the stream gave it (old or new, never a mix or a part), and no
// file is older than what the acknowledged changes made it.
func checkWhole(t *testing.T, target string, acked map[string]uint64) {
	t.Helper()
	found := map[string]bool{}
	err := filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(target, p)
		if d.IsDir() {
			if rel == StateDir {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), tempPrefix) {
			return nil // a crashed run's; the replay removes it
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		head, _, ok := bytes.Cut(b, []byte("\n"))
		name, seqText, ok2 := strings.Cut(string(head), "@")
		seq, serr := strconv.ParseUint(seqText, 10, 64)
		if !ok || !ok2 || serr != nil || name != rel {
			t.Fatalf("%s: content does not start with its own header: %.40q", rel, b)
		}
		if !bytes.Equal(b, crashContent(rel, seq)) {
			t.Fatalf("%s: content of seq %d is not whole (%d bytes)", rel, seq, len(b))
		}
		if seq < acked[rel] {
			t.Fatalf("%s: holds seq %d, but seq %d was acknowledged", rel, seq, acked[rel])
		}
		found[rel] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p := range acked {
		if !found[p] {
			t.Fatalf("%s: acknowledged, but missing", p)
		}
	}
}

// TestCrashKill SIGKILLs a process applying whole files in batches, at a
// random moment, crashRounds times on the same replica; after each kill
// every file must be whole and at least as new as the acknowledgements
// say, and LastApplied at least the last acknowledged. At the end the
// stream is delivered again in full and must give the tree applying it
// once gives.
//
// SIGKILL ends the process, not the kernel: it proves the order of
// renames, records and acknowledgements and the replay, not that the
// syncs reach the disk.
func TestCrashKill(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	cs := crashStream()
	ref := newTreeIn(t, fastDir(t))
	if err := openT(t, ref.target).ApplyBatch(cs); err != nil {
		t.Fatal(err)
	}
	want := snapshot(t, ref.target, true)

	tr := newTree(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	acked := map[string]uint64{}
	var last uint64
	kills := 0
	for round := 1; round <= crashRounds && last < uint64(len(cs)); round++ {
		delay := time.Duration(10+rng.IntN(500)) * time.Millisecond
		lines, done := runApplierAndKill(t, tr.target, rng.Uint64(), delay)
		for _, l := range lines {
			n, err := strconv.ParseUint(l, 10, 64)
			if err != nil || n < last || n > uint64(len(cs)) {
				t.Fatalf("round %d: child printed %q after %d", round, l, last)
			}
			last = n
		}
		for _, c := range cs[:last] {
			if c.Op == change.OpReplaceFile {
				acked[c.Path] = c.Seq
			}
		}
		checkWhole(t, tr.target, acked)
		a, err := Open(tr.target, Options{})
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		if a.LastApplied() < last {
			t.Fatalf("round %d: LastApplied %d, but %d was acknowledged", round, a.LastApplied(), last)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if !done {
			kills++
		}
		t.Logf("round %d: killed after %v at acknowledged seq %d of %d", round, delay, last, len(cs))
	}
	if kills == 0 {
		t.Fatal("the child was never killed mid-stream")
	}
	a := openT(t, tr.target)
	if err := a.ApplyBatch(cs); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, tr.target, true); !reflect.DeepEqual(got, want) {
		t.Fatalf("tree after the kills and a full replay differs:\n%s", diff(got, want))
	}
	if left := tempFiles(t, tr.target); len(left) > 0 {
		t.Fatalf("temporary files left after the replay: %v", left)
	}
}

// runApplierAndKill runs the child applier on target, SIGKILLs it after
// delay, and returns the complete lines it printed before "done", and
// whether it got there.
func runApplierAndKill(t *testing.T, target string, seed uint64, delay time.Duration) ([]string, bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashTargetEnv+"="+target, crashSeedEnv+"="+strconv.FormatUint(seed, 10))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	var lines []string
	done := false
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
		line = strings.TrimSuffix(line, "\n")
		if line == "ready" {
			// The clock starts once the child is at work.
			timer = time.AfterFunc(delay, func() { _ = cmd.Process.Kill() }) // SIGKILL; a failure shows in Wait
			continue
		}
		if line == "done" {
			done = true
			_ = cmd.Process.Kill()
			continue
		}
		lines = append(lines, line)
	}
	err = cmd.Wait()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL (%v); stderr:\n%s", err, stderr.String())
	}
	return lines, done
}
