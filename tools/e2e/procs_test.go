package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// proc is a program started by a test, its output kept in a file.
type proc struct {
	cmd *exec.Cmd
	log string
}

// startProc starts cmd with its output appended to logFile; the test's
// cleanup kills it if it still runs.
func startProc(t *testing.T, logFile string, cmd *exec.Cmd) *proc {
	t.Helper()
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", strings.Join(cmd.Args, " "), err)
	}
	p := &proc{cmd: cmd, log: logFile}
	t.Cleanup(func() { p.kill(syscall.SIGKILL) })
	return p
}

// startLocal runs a program on this host.
func startLocal(t *testing.T, logFile, name string, args ...string) *proc {
	t.Helper()
	return startProc(t, logFile, exec.Command(name, args...))
}

// kill sends sig and waits for the end. ip netns exec execs the program
// itself, so the signal reaches it, not a wrapper.
func (p *proc) kill(sig syscall.Signal) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	_ = p.cmd.Wait()
}

// logsDir makes the folder of a test's program logs. If the test fails, the
// end of each named log is printed, and the whole folder is copied to
// $HOLDFAST_E2E_KEEP_LOGS when that is set.
func logsDir(t *testing.T, base string, names ...string) string {
	t.Helper()
	logs := filepath.Join(base, "logs")
	if err := os.Mkdir(logs, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if keep := os.Getenv("HOLDFAST_E2E_KEEP_LOGS"); keep != "" {
			_ = exec.Command("cp", "-r", logs, keep).Run()
		}
		for _, n := range names {
			b, _ := os.ReadFile(filepath.Join(logs, n+".log"))
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("--- end of %s log:\n%s", n, b)
		}
	})
	return logs
}

// holdfastCLI returns a runner of the holdfast command against the
// appliance with data directory data; command builds the process (on this
// host, or in a lab host). A failing command fails the test.
func holdfastCLI(t *testing.T, data string, command func(name string, args ...string) *exec.Cmd) func(args ...string) []byte {
	return func(args ...string) []byte {
		t.Helper()
		cmd := command(bins.holdfast, append([]string{"--data", data}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("holdfast %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
		}
		return out
	}
}
