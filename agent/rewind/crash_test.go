package rewind

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/agent/change"
)

const (
	crashTargetEnv = "HOLDFAST_REWIND_CRASH_TARGET"
	crashPointEnv  = "HOLDFAST_REWIND_CRASH_POINT"
)

// TestMain runs the child side of TestCrashDuringRewind when the parent
// starts this test binary with crashTargetEnv set: it opens the replica
// and rewinds it to the point given, until it is killed.
func TestMain(m *testing.M) {
	if target := os.Getenv(crashTargetEnv); target != "" {
		point, _ := strconv.ParseUint(os.Getenv(crashPointEnv), 10, 64)
		r, err := Open(target, Options{Log: discardLog()})
		if err != nil {
			fmt.Fprintf(os.Stderr, "open: %v\n", err)
			os.Exit(3)
		}
		fmt.Fprintln(os.Stdout, "ready")
		if _, err := r.Rewind(context.Background(), Target{Point: point}, "", nil); err != nil {
			fmt.Fprintf(os.Stderr, "rewind: %v\n", err)
			os.Exit(4)
		}
		fmt.Fprintln(os.Stdout, "done")
		time.Sleep(time.Hour) // until killed
		os.Exit(5)
	}
	os.Exit(m.Run())
}

// TestCrashDuringRewind kills a rewinding process at random moments; the
// next Open must leave the tree exactly as it was before the rewind or
// exactly at the point rewound to.
func TestCrashDuringRewind(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(11, 12))
	r := openR(t, dir, Options{Log: discardLog()})
	if err := r.ApplyBatch(seqs(1,
		change.Change{Op: change.OpMkdir, Path: "d1", Mode: 0o755},
		change.Change{Op: change.OpMkdir, Path: "d2", Mode: 0o755})); err != nil {
		t.Fatal(err)
	}
	states := map[uint64]string{r.j.next - 1: digest(t, dir)}
	seq := uint64(3)
	for range 300 {
		c := randomChange(rng)
		c.Seq = seq
		seq++
		_ = r.ApplyBatch([]change.Change{c})
		states[r.j.next-1] = digest(t, dir)
	}
	r.Close()
	var ids []uint64
	for id := range states {
		ids = append(ids, id)
	}
	killed, finished, rolled := 0, 0, 0
	for round := range 12 {
		before := digest(t, dir)
		to := ids[rng.IntN(len(ids))]
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashTargetEnv+"="+dir, crashPointEnv+"="+strconv.FormatUint(to, 10))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewReader(out)
		if l, err := lines.ReadString('\n'); err != nil || l != "ready\n" {
			t.Fatalf("child: %q %v", l, err)
		}
		time.Sleep(time.Duration(rng.IntN(120)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		rest, _ := io.ReadAll(lines)
		_ = cmd.Wait()
		wasDone := string(rest) == "done\n"
		if wasDone {
			finished++
		} else {
			killed++
		}
		r := openR(t, dir, Options{Log: discardLog()})
		for _, s := range r.j.segs {
			if s.damage != nil {
				t.Fatalf("round %d: a kill damaged the journal: %v", round, s.damage)
			}
		}
		got := digest(t, dir)
		if !wasDone && got == states[to] && got != before {
			rolled++
		}
		if got != before && got != states[to] {
			t.Fatalf("round %d: after a crash rewinding to %d the tree is neither before nor after:\n%s", round, to, diffDigest(got, states[to]))
		}
		states[r.j.next-1] = got
		ids = append(ids, r.j.next-1)
		r.Close()
	}
	t.Logf("%d rewinds killed (%d of them finished by the next Open), %d finished before the kill", killed, rolled, finished)
}
