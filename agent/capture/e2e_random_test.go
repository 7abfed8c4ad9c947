//go:build linux

package capture

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReplicateRandom runs seeded random operations on a small namespace, so
// that names are reused all the time while the consumer lags, and checks
// that the replica ends up equal to the master.
func TestReplicateRandom(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8}
	if testing.Short() {
		seeds = seeds[:2]
	}
	for _, b := range backends(t) {
		for _, seed := range seeds {
			t.Run(fmt.Sprintf("%v/seed%d", b, seed), func(t *testing.T) {
				for attempt := 1; ; attempt++ {
					err := replicateRandom(t, b, seed)
					if err == nil {
						return
					}
					if !errors.Is(err, errOverflowed) || attempt == 3 {
						t.Fatal(err)
					}
					t.Logf("attempt %d: %v; again", attempt, err)
				}
			})
		}
	}
}

func replicateRandom(t *testing.T, b Backend, seed uint64) error {
	master, replica, outside := t.TempDir(), t.TempDir(), t.TempDir()
	w, err := Watch(master, Options{Backend: b})
	if err != nil {
		return err
	}
	defer w.Close()
	st, err := NewStage(master)
	if err != nil {
		return err
	}
	defer st.Close()
	st.MaxInline = 32

	finished := make(chan error, 1)
	var trace strings.Builder
	var rebuilds []string // read after finished
	go func() {
		var errs []error
		for {
			select {
			case ev, ok := <-w.Events():
				if !ok {
					finished <- errors.New("events closed")
					return
				}
				if ev.Kind == Overflow || ev.Kind == Unwatched {
					finished <- fmt.Errorf("%w: %v", errOverflowed, ev)
					return
				}
				items, err := st.Convert(ev)
				fmt.Fprintf(&trace, "%v\n", ev)
				for _, it := range items {
					fmt.Fprintf(&trace, "    %s\n", summary([]Item{it}))
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("convert %v: %w", ev, err))
				}
				for _, it := range items {
					err := applyItem(master, replica, it)
					if errors.Is(err, errSyncGone) {
						st.SyncFailed(it.Sync)
						continue
					}
					if err == nil {
						continue
					}
					// The replica diverged from what the Stage assumed:
					// rebuild the paths involved from the master's state,
					// as the caller's contract says.
					rebuilds = append(rebuilds, fmt.Sprintf("%v: %v", ev, err))
					fmt.Fprintf(&trace, "    !! %v: rebuilding\n", err)
					for _, p := range []string{it.Change.Path, it.Change.NewPath} {
						if p == "" {
							continue
						}
						fixes, err := st.Rebuild(p)
						if err != nil {
							errs = append(errs, fmt.Errorf("rebuild %s: %w", p, err))
						}
						for _, fix := range fixes {
							fmt.Fprintf(&trace, "    !! %s\n", summary([]Item{fix}))
							if err := applyItem(master, replica, fix); err != nil && !errors.Is(err, errSyncGone) {
								errs = append(errs, fmt.Errorf("event %v: rebuild %s: %w", ev, p, err))
							}
						}
					}
				}
				if ev.Kind == Created && ev.Path == ".end" {
					finished <- errors.Join(errs...)
					return
				}
			case err := <-w.Errors():
				errs = append(errs, err)
			}
		}
	}()

	rng := rand.New(rand.NewPCG(seed, seed))
	dirs := []string{"", "d1", "d2", "d1/e"}
	names := []string{"a", "b", "c"}
	pick := func() string {
		d := dirs[rng.IntN(len(dirs))]
		return joinRel(d, names[rng.IntN(len(names))])
	}
	m := func(rel string) string { return filepath.Join(master, rel) }
	var log strings.Builder
	for i := 0; i < 300; i++ {
		p, q := pick(), pick()
		var err error
		op := rng.IntN(13)
		switch op {
		case 0, 1:
			err = os.WriteFile(m(p), []byte(strings.Repeat(string(rune('a'+i%26)), rng.IntN(64))), 0o644)
		case 2:
			var f *os.File
			if f, err = os.OpenFile(m(p), os.O_WRONLY|os.O_APPEND, 0); err == nil {
				_, err = f.WriteString(fmt.Sprint(i))
				f.Close()
			}
		case 3:
			err = os.Truncate(m(p), int64(rng.IntN(8)))
		case 4:
			err = unix.Rename(m(p), m(q))
		case 5:
			d := dirs[1+rng.IntN(len(dirs)-1)]
			d2 := dirs[1+rng.IntN(len(dirs)-1)]
			err = unix.Rename(m(d), m(d2))
		case 6:
			err = os.MkdirAll(m(dirs[1+rng.IntN(len(dirs)-1)]), 0o755)
		case 7:
			err = os.Remove(m(p))
		case 8:
			err = os.Chmod(m(p), os.FileMode(0o600+rng.IntN(0o100)))
		case 9:
			err = os.Link(m(p), m(q))
		case 10:
			err = os.Symlink(names[rng.IntN(3)], m(p))
		case 11:
			// Through a directory outside: move in, or out.
			if rng.IntN(2) == 0 {
				err = unix.Rename(m(p), filepath.Join(outside, fmt.Sprint(i)))
			} else {
				o := filepath.Join(outside, "in"+fmt.Sprint(i))
				if err = os.MkdirAll(filepath.Join(o, "sub"), 0o755); err == nil {
					if err = os.WriteFile(filepath.Join(o, "sub/f"), []byte("in"), 0o644); err == nil {
						err = unix.Rename(o, m(p))
					}
				}
			}
		case 12:
			err = os.RemoveAll(m(dirs[1+rng.IntN(len(dirs)-1)]))
		}
		fmt.Fprintf(&log, "%d: op %d %s %s: %v\n", i, op, p, q, err)
	}
	must(t, os.WriteFile(m(".end"), nil, 0o644))
	select {
	case err := <-finished:
		if err != nil {
			return fmt.Errorf("%w\nops:\n%s\ntrace:\n%s", err, log.String(), trace.String())
		}
	case <-time.After(3 * waitLimit):
		return errors.New("timed out waiting for the end marker")
	}
	want, got := treeState(t, master), treeState(t, replica)
	if want != got {
		return fmt.Errorf("replica differs from master:\n%s\nops:\n%s\ntrace:\n%s", lineDiff(want, got), log.String(), trace.String())
	}
	t.Logf("replica matches master; %d applier failures needed a rebuild", len(rebuilds))
	for _, r := range rebuilds {
		t.Logf("rebuilt after: %s", r)
	}
	if dir := os.Getenv("CAPTURE_TRACE_DIR"); dir != "" && len(rebuilds) > 0 {
		name := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".trace")
		if err := os.WriteFile(name, []byte(log.String()+"\ntrace:\n"+trace.String()), 0o644); err != nil {
			t.Log(err)
		}
	}
	return nil
}
