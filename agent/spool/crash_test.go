package spool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"
)

const crashEnv = "HOLDFAST_SPOOL_CRASH_DIR"

var crashOpts = Options{SegmentSize: 64 << 10, MaxBytes: 1 << 30}

// TestMain runs crashWriter instead of the tests when TestCrashSIGKILL
// starts this binary as its child.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashWriter(dir)
	}
	os.Exit(m.Run())
}

// crashWriter is the writer TestCrashSIGKILL kills. It appends batches,
// syncs, and prints "ACK n" once Sync has returned for everything up to n;
// a second goroutine acknowledges 200 changes behind and prints "ACKED n"
// once Ack returned.
func crashWriter(dir string) {
	die := func(err error) {
		fmt.Printf("ERR %v\n", err)
		os.Exit(2)
	}
	s, err := Open(dir, crashOpts)
	if err != nil {
		die(err)
	}
	fmt.Println("OPEN")
	go func() {
		for {
			time.Sleep(2 * time.Millisecond)
			if d := s.Stats().DurableSeq; d > 200 {
				if err := s.Ack(d - 200); err != nil {
					die(err)
				}
				fmt.Printf("ACKED %d\n", d-200)
			}
		}
	}()
	seq := s.Stats().LastSeq
	for {
		for range 1 + rand.IntN(20) {
			seq++
			if err := s.Append(mkChange(seq)); err != nil {
				die(err)
			}
		}
		if err := s.Sync(); err != nil {
			die(err)
		}
		fmt.Printf("ACK %d\n", seq)
	}
}

// TestCrashSIGKILL kills a writer process at random moments and checks
// that every change it was told is durable survives, in order, with its
// content, and that nothing follows a gap.
func TestCrashSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes; skipped with -short")
	}
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)
	var maxSynced, maxAcked uint64
	var truncations, rounds int
	for round := range 20 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		type report struct {
			opened bool
			errs   []string
		}
		reports := make(chan report, 1)
		go func() {
			var r report
			br := bufio.NewReader(out)
			for {
				line, err := br.ReadString('\n')
				if err != nil { // a line cut by the kill is not a claim
					if !errors.Is(err, io.EOF) {
						r.errs = append(r.errs, err.Error())
					}
					reports <- r
					return
				}
				var n uint64
				switch {
				case line == "OPEN\n":
					r.opened = true
				case strings.HasPrefix(line, "ERR "):
					r.errs = append(r.errs, line)
				case strings.HasPrefix(line, "ACKED "):
					fmt.Sscanf(line, "ACKED %d", &n)
					maxAcked = max(maxAcked, n)
				case strings.HasPrefix(line, "ACK "):
					fmt.Sscanf(line, "ACK %d", &n)
					maxSynced = max(maxSynced, n)
				}
			}
		}()
		time.Sleep(time.Duration(20+rng.IntN(281)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		r := <-reports // EOF once the child is dead; Wait would close the pipe under the reader
		werr := cmd.Wait()
		if len(r.errs) > 0 {
			t.Fatalf("round %d: writer failed: %q\n%s", round, r.errs, stderr.String())
		}
		if ee := (*exec.ExitError)(nil); !errors.As(werr, &ee) || ee.ExitCode() != -1 {
			t.Fatalf("round %d: writer ended by itself before the kill: %v\n%s", round, werr, stderr.String())
		}

		s, err := Open(dir, crashOpts)
		if err != nil {
			t.Fatalf("round %d: Open after SIGKILL: %v", round, err)
		}
		rec := s.Recovery()
		truncations += len(rec.Truncated)
		if r.opened && !rec.Unclean {
			t.Errorf("round %d: Recovery().Unclean = false after SIGKILL", round)
		}
		st := s.Stats()
		if st.AckedSeq < maxAcked || st.DurableSeq < maxSynced {
			t.Fatalf("round %d: lost acknowledged state: stats %+v, child acked %d and synced %d", round, st, maxAcked, maxSynced)
		}
		// Everything after the ack is there, consecutive, with its content.
		want := st.AckedSeq + 1
		for {
			c, err := s.Next()
			if errors.Is(err, ErrEmpty) {
				break
			}
			if err != nil {
				t.Fatalf("round %d: Next: %v", round, err)
			}
			if !reflect.DeepEqual(c, mkChange(want)) {
				t.Fatalf("round %d: got seq %d %+v; want seq %d", round, c.Seq, c, want)
			}
			want++
		}
		if last := want - 1; last != st.LastSeq || last < maxSynced {
			t.Fatalf("round %d: read through %d; LastSeq %d, synced %d", round, last, st.LastSeq, maxSynced)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		rounds++
	}
	t.Logf("%d rounds: %d changes synced, %d acknowledged, %d torn tails cut", rounds, maxSynced, maxAcked, truncations)
	if maxSynced == 0 {
		t.Fatal("the writer never synced anything")
	}
}
