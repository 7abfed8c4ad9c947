package snapshot

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	crashStoreEnv = "HOLDFAST_SNAPSHOT_CRASH_STORE"
	crashSrcEnv   = "HOLDFAST_SNAPSHOT_CRASH_SRC"
)

// TestMain runs the child of TestCreateKilled when started with
// crashStoreEnv set: it creates a snapshot and says when it is half-way,
// and the parent kills it there.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashStoreEnv); dir != "" {
		s, err := OpenStore(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		_, err = s.Create(context.Background(), os.Getenv(crashSrcEnv), Meta{}, func(files, _ int64) {
			if files == 50 {
				fmt.Println("half-way")
				time.Sleep(time.Hour) // until killed
			}
		})
		fmt.Fprintln(os.Stderr, "Create returned", err)
		os.Exit(4)
	}
	os.Exit(m.Run())
}

func TestCreateKilled(t *testing.T) {
	src := t.TempDir()
	for i := range 100 {
		must(t, os.WriteFile(filepath.Join(src, fmt.Sprintf("f%03d", i)), []byte("data"), 0o644))
	}
	dir := filepath.Join(t.TempDir(), "snapshots")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashStoreEnv+"="+dir, crashSrcEnv+"="+src)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "half-way" {
		_ = cmd.Process.Kill()
		t.Fatalf("child said %q, %v", line, err)
	}
	must(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	ents, err := os.ReadDir(dir)
	must(t, err)
	if len(ents) != 1 || !strings.HasSuffix(ents[0].Name(), partialSuffix) {
		t.Fatalf("after the kill the store holds %v, want one partial snapshot", ents)
	}
	s, err := OpenStore(dir)
	must(t, err)
	list, err := s.List()
	must(t, err)
	if len(list) != 0 {
		t.Errorf("List = %v after a crashed Create", list)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the store still holds %v", ents)
	}
	// And the store works on.
	if _, err := s.Create(context.Background(), src, Meta{}, nil); err != nil {
		t.Fatal(err)
	}
}
