//go:build linux

package capture

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/change"
)

// waitLimit bounds every wait for an event. It is generous because the
// machine is shared; no test asserts how fast anything arrives.
const waitLimit = 15 * time.Second

// backends lists the backends that work here. fanotify needs CAP_SYS_ADMIN;
// without it its tests are skipped with the reason.
func backends(t *testing.T) []Backend {
	bs := []Backend{Inotify}
	w, err := Watch(t.TempDir(), Options{Backend: Fanotify})
	if err != nil {
		t.Logf("fanotify not available here, testing inotify only: %v", err)
		return bs
	}
	w.Close()
	return append(bs, Fanotify)
}

// recorder collects what a Watcher delivers.
type recorder struct {
	t    *testing.T
	w    Watcher
	root string

	mu     sync.Mutex
	events []Event
	errs   []error
	cond   chan struct{} // closed and replaced on every arrival
	done   chan struct{}
	marker int
}

func watchT(t *testing.T, root string, opts Options) *recorder {
	t.Helper()
	w, err := Watch(root, opts)
	if err != nil {
		t.Fatalf("Watch(%s): %v", opts.Backend, err)
	}
	if got := w.Backend().Backend; opts.Backend != Auto && got != opts.Backend {
		t.Fatalf("backend %v, want %v", got, opts.Backend)
	}
	r := &recorder{t: t, w: w, root: root, cond: make(chan struct{}), done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ev := range w.Events() {
			if err := checkEvent(ev); err != nil {
				r.addErr(err)
			}
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.wakeLocked()
			r.mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		for err := range w.Errors() {
			r.addErr(err)
		}
	}()
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		wg.Wait()
	})
	return r
}

// checkEvent checks the path guarantees of every delivered event.
func checkEvent(ev Event) error {
	if ev.Time.IsZero() {
		return fmt.Errorf("event %v without a time", ev)
	}
	if ev.Path == "" && (ev.Kind == Overflow || ev.Kind == Unwatched) {
		return nil
	}
	if err := change.ValidPath(ev.Path); err != nil {
		return fmt.Errorf("event %v: %v", ev, err)
	}
	if ev.Kind == Renamed {
		if err := change.ValidPath(ev.OldPath); err != nil {
			return fmt.Errorf("event %v: old path: %v", ev, err)
		}
	} else if ev.OldPath != "" {
		return fmt.Errorf("event %v has an old path", ev)
	}
	return nil
}

func (r *recorder) addErr(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.wakeLocked()
	r.mu.Unlock()
}

func (r *recorder) wakeLocked() {
	close(r.cond)
	r.cond = make(chan struct{})
}

var errOverflowed = errors.New("overflow during the case")

// want describes an expected event; IsDir is compared too.
type want struct {
	Kind    Kind
	Path    string
	OldPath string
	IsDir   bool
}

func (w want) String() string {
	return Event{Kind: w.Kind, Path: w.Path, OldPath: w.OldPath, IsDir: w.IsDir}.String()
}

func (w want) match(ev Event) bool {
	return ev.Kind == w.Kind && ev.Path == w.Path && ev.OldPath == w.OldPath && ev.IsDir == w.IsDir
}

// waitSeq waits until the events from index from on contain wants in order
// (other events may come between), and returns the index after the last
// match. An Overflow for the whole root returns errOverflowed unless
// tolerate is set: events may have been lost, legitimately.
func (r *recorder) waitSeq(from int, wants []want, tolerate bool) (int, error) {
	deadline := time.After(waitLimit)
	i := 0
	pos := from
	for {
		r.mu.Lock()
		evs := r.events
		cond := r.cond
		r.mu.Unlock()
		for ; pos < len(evs) && i < len(wants); pos++ {
			if evs[pos].Kind == Overflow && !tolerate {
				return pos, fmt.Errorf("%w: %v", errOverflowed, evs[pos])
			}
			if wants[i].match(evs[pos]) {
				i++
			}
		}
		if i == len(wants) {
			return pos, nil
		}
		select {
		case <-cond:
		case <-deadline:
			return pos, fmt.Errorf("timed out waiting for %v (matched %d of %d); got:\n%s", wants[i], i, len(wants), r.dump(from))
		}
	}
}

// sync creates a marker file and waits for its event: everything the
// kernel reported before it has then been delivered.
func (r *recorder) sync(from int) (int, error) {
	r.marker++
	name := fmt.Sprintf(".marker-%d", r.marker)
	if err := os.WriteFile(filepath.Join(r.root, name), nil, 0o644); err != nil {
		return from, err
	}
	return r.waitSeq(from, []want{{Kind: Created, Path: name}}, false)
}

func (r *recorder) dump(from int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, ev := range r.events[from:] {
		fmt.Fprintf(&b, "  %v\n", ev)
	}
	for _, err := range r.errs {
		fmt.Fprintf(&b, "  error: %v\n", err)
	}
	return b.String()
}

func (r *recorder) errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// waitErr waits for the first error.
func (r *recorder) waitErr() error {
	errs := r.waitErrs(1)
	if len(errs) == 0 {
		return errors.New("timed out waiting for an error")
	}
	return errs[0]
}

// waitErrs waits until n errors have arrived and returns them all (fewer
// on timeout).
func (r *recorder) waitErrs(n int) []error {
	deadline := time.After(waitLimit)
	for {
		r.mu.Lock()
		cond := r.cond
		errs := append([]error(nil), r.errs...)
		r.mu.Unlock()
		if len(errs) >= n {
			return errs
		}
		select {
		case <-cond:
		case <-deadline:
			return errs
		}
	}
}

func (r *recorder) snapshot() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// fsCase is one filesystem operation and what it must produce.
type fsCase struct {
	name   string
	setup  func(t *testing.T, root, outside string) // before Watch
	act    func(t *testing.T, root, outside string)
	want   []want
	forbid []want // must not be delivered (checked up to a sync marker)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, root, rel, data string) {
	t.Helper()
	p := filepath.Join(root, rel)
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, []byte(data), 0o644))
}

func appendTo(t *testing.T, root, rel, data string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(root, rel), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.WriteString(data)
	must(t, err)
	must(t, f.Close())
}

func mkdirs(t *testing.T, root string, rels ...string) {
	t.Helper()
	for _, rel := range rels {
		must(t, os.MkdirAll(filepath.Join(root, rel), 0o755))
	}
}

var fsCases = []fsCase{
	{
		name: "create file",
		act:  func(t *testing.T, root, _ string) { write(t, root, "a", "hello") },
		want: []want{{Kind: Created, Path: "a"}},
	},
	{
		name:  "write",
		setup: func(t *testing.T, root, _ string) { write(t, root, "a", "hello") },
		act:   func(t *testing.T, root, _ string) { appendTo(t, root, "a", " world") },
		want:  []want{{Kind: Modified, Path: "a"}},
	},
	{
		name:  "truncate",
		setup: func(t *testing.T, root, _ string) { write(t, root, "a", "hello") },
		act:   func(t *testing.T, root, _ string) { must(t, os.Truncate(filepath.Join(root, "a"), 1)) },
		want:  []want{{Kind: Modified, Path: "a"}},
	},
	{
		name:  "chmod",
		setup: func(t *testing.T, root, _ string) { write(t, root, "a", "hello") },
		act:   func(t *testing.T, root, _ string) { must(t, os.Chmod(filepath.Join(root, "a"), 0o600)) },
		want:  []want{{Kind: Attrib, Path: "a"}},
	},
	{
		name:  "chown",
		setup: func(t *testing.T, root, _ string) { write(t, root, "a", "hello") },
		act:   func(t *testing.T, root, _ string) { must(t, os.Lchown(filepath.Join(root, "a"), 1234, 5678)) },
		want:  []want{{Kind: Attrib, Path: "a"}},
	},
	{
		name:  "touch mtime",
		setup: func(t *testing.T, root, _ string) { write(t, root, "a", "hello") },
		act: func(t *testing.T, root, _ string) {
			ts := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
			must(t, os.Chtimes(filepath.Join(root, "a"), ts, ts))
		},
		want: []want{{Kind: Attrib, Path: "a"}},
	},
	{
		name:  "setxattr and removexattr",
		setup: func(t *testing.T, root, _ string) { write(t, root, "a", "hello") },
		act: func(t *testing.T, root, _ string) {
			must(t, unix.Setxattr(filepath.Join(root, "a"), "user.holdfast", []byte("v1"), 0))
			must(t, unix.Removexattr(filepath.Join(root, "a"), "user.holdfast"))
		},
		// Two distinct changes of the same kind may merge while queued (the
		// consumer reads the current state once): one Attrib is the
		// guarantee.
		want: []want{{Kind: Attrib, Path: "a"}},
	},
	{
		name: "chmod directory",
		setup: func(t *testing.T, root, _ string) {
			mkdirs(t, root, "d")
		},
		act:  func(t *testing.T, root, _ string) { must(t, os.Chmod(filepath.Join(root, "d"), 0o700)) },
		want: []want{{Kind: Attrib, Path: "d", IsDir: true}},
	},
	{
		name: "mkdir",
		act:  func(t *testing.T, root, _ string) { must(t, os.Mkdir(filepath.Join(root, "d"), 0o755)) },
		want: []want{{Kind: DirCreated, Path: "d", IsDir: true}},
	},
	{
		name: "mkdir -p then create inside at once",
		act: func(t *testing.T, root, _ string) {
			must(t, os.MkdirAll(filepath.Join(root, "a/b/c"), 0o755))
			must(t, os.WriteFile(filepath.Join(root, "a/b/c/f"), []byte("x"), 0o644))
		},
		want: []want{
			{Kind: DirCreated, Path: "a", IsDir: true},
			{Kind: DirCreated, Path: "a/b", IsDir: true},
			{Kind: DirCreated, Path: "a/b/c", IsDir: true},
			{Kind: Created, Path: "a/b/c/f"},
		},
	},
	{
		name:  "rename within a directory",
		setup: func(t *testing.T, root, _ string) { write(t, root, "a", "x") },
		act: func(t *testing.T, root, _ string) {
			must(t, os.Rename(filepath.Join(root, "a"), filepath.Join(root, "b")))
		},
		want: []want{{Kind: Renamed, OldPath: "a", Path: "b"}},
		forbid: []want{
			{Kind: Removed, Path: "a"},
			{Kind: Created, Path: "b"},
		},
	},
	{
		name: "rename onto an existing file",
		setup: func(t *testing.T, root, _ string) {
			write(t, root, "a", "x")
			write(t, root, "b", "y")
		},
		act: func(t *testing.T, root, _ string) {
			must(t, os.Rename(filepath.Join(root, "a"), filepath.Join(root, "b")))
		},
		want:   []want{{Kind: Renamed, OldPath: "a", Path: "b"}},
		forbid: []want{{Kind: Removed, Path: "a"}},
	},
	{
		name: "rename across directories",
		setup: func(t *testing.T, root, _ string) {
			write(t, root, "d1/a", "x")
			mkdirs(t, root, "d2")
		},
		act: func(t *testing.T, root, _ string) {
			must(t, os.Rename(filepath.Join(root, "d1/a"), filepath.Join(root, "d2/b")))
		},
		want:   []want{{Kind: Renamed, OldPath: "d1/a", Path: "d2/b"}},
		forbid: []want{{Kind: Removed, Path: "d1/a"}, {Kind: Created, Path: "d2/b"}},
	},
	{
		name: "rename a directory with contents",
		setup: func(t *testing.T, root, _ string) {
			write(t, root, "d/x", "x")
			write(t, root, "d/sub/y", "y")
		},
		act: func(t *testing.T, root, _ string) {
			must(t, os.Rename(filepath.Join(root, "d"), filepath.Join(root, "e")))
			appendTo(t, root, "e/x", "more")
			appendTo(t, root, "e/sub/y", "more")
			write(t, root, "e/sub/z", "z")
		},
		want: []want{
			{Kind: Renamed, OldPath: "d", Path: "e", IsDir: true},
			{Kind: Modified, Path: "e/x"},
			{Kind: Modified, Path: "e/sub/y"},
			{Kind: Created, Path: "e/sub/z"},
		},
		forbid: []want{
			{Kind: Modified, Path: "d/x"},
			{Kind: Modified, Path: "d/sub/y"},
			{Kind: Created, Path: "d/sub/z"},
			{Kind: Removed, Path: "d", IsDir: true},
		},
	},
	{
		name: "rename a directory onto an empty directory",
		setup: func(t *testing.T, root, _ string) {
			write(t, root, "d/x", "x")
			mkdirs(t, root, "e")
		},
		act: func(t *testing.T, root, _ string) {
			// os.Rename refuses an existing directory as the target; the
			// system call replaces an empty one.
			must(t, unix.Rename(filepath.Join(root, "d"), filepath.Join(root, "e")))
			appendTo(t, root, "e/x", "more")
		},
		want: []want{
			{Kind: Renamed, OldPath: "d", Path: "e", IsDir: true},
			{Kind: Modified, Path: "e/x"},
		},
	},
	{
		name:  "rename a deep ancestor",
		setup: func(t *testing.T, root, _ string) { write(t, root, "a/b/c/f", "x") },
		act: func(t *testing.T, root, _ string) {
			must(t, os.Rename(filepath.Join(root, "a"), filepath.Join(root, "z")))
			appendTo(t, root, "z/b/c/f", "more")
		},
		want: []want{
			{Kind: Renamed, OldPath: "a", Path: "z", IsDir: true},
			{Kind: Modified, Path: "z/b/c/f"},
		},
		forbid: []want{{Kind: Modified, Path: "a/b/c/f"}},
	},
	{
		name:  "move in from outside the root",
		setup: func(t *testing.T, _, outside string) { write(t, outside, "m/n/f", "x") },
		act: func(t *testing.T, root, outside string) {
			must(t, os.Rename(filepath.Join(outside, "m"), filepath.Join(root, "m")))
			// The new subtree must be watched, not only listed. (A write to
			// m/n/f now would merge into its pending Created.)
			write(t, root, "m/n/g", "g")
		},
		want: []want{
			{Kind: DirCreated, Path: "m", IsDir: true},
			{Kind: DirCreated, Path: "m/n", IsDir: true},
			{Kind: Created, Path: "m/n/f"},
			{Kind: Created, Path: "m/n/g"},
		},
	},
	{
		name:  "move a file in from outside the root",
		setup: func(t *testing.T, _, outside string) { write(t, outside, "f", "x") },
		act: func(t *testing.T, root, outside string) {
			must(t, os.Rename(filepath.Join(outside, "f"), filepath.Join(root, "f")))
		},
		want: []want{{Kind: Created, Path: "f"}},
	},
	{
		name:  "move a directory out of the root",
		setup: func(t *testing.T, root, _ string) { write(t, root, "d/f", "x") },
		act: func(t *testing.T, root, outside string) {
			must(t, os.Rename(filepath.Join(root, "d"), filepath.Join(outside, "d")))
			// Changes out there are none of the root's business.
			appendTo(t, outside, "d/f", "more")
			write(t, outside, "d/g", "g")
		},
		want: []want{{Kind: Removed, Path: "d", IsDir: true}},
		forbid: []want{
			{Kind: Modified, Path: "d/f"},
			{Kind: Created, Path: "d/g"},
		},
	},
	{
		name:  "move a file out of the root",
		setup: func(t *testing.T, root, _ string) { write(t, root, "f", "x") },
		act: func(t *testing.T, root, outside string) {
			must(t, os.Rename(filepath.Join(root, "f"), filepath.Join(outside, "f")))
		},
		want: []want{{Kind: Removed, Path: "f"}},
	},
	{
		name:  "delete file",
		setup: func(t *testing.T, root, _ string) { write(t, root, "a", "x") },
		act:   func(t *testing.T, root, _ string) { must(t, os.Remove(filepath.Join(root, "a"))) },
		want:  []want{{Kind: Removed, Path: "a"}},
	},
	{
		name:  "rmdir",
		setup: func(t *testing.T, root, _ string) { mkdirs(t, root, "d") },
		act:   func(t *testing.T, root, _ string) { must(t, os.Remove(filepath.Join(root, "d"))) },
		want:  []want{{Kind: Removed, Path: "d", IsDir: true}},
	},
	{
		name:  "remove a tree",
		setup: func(t *testing.T, root, _ string) { write(t, root, "t/u/v/f", "x") },
		act:   func(t *testing.T, root, _ string) { must(t, os.RemoveAll(filepath.Join(root, "t"))) },
		want: []want{
			{Kind: Removed, Path: "t/u/v/f"},
			{Kind: Removed, Path: "t/u/v", IsDir: true},
			{Kind: Removed, Path: "t/u", IsDir: true},
			{Kind: Removed, Path: "t", IsDir: true},
		},
	},
	{
		name: "recreate a removed directory",
		setup: func(t *testing.T, root, _ string) {
			mkdirs(t, root, "d")
		},
		act: func(t *testing.T, root, _ string) {
			must(t, os.Remove(filepath.Join(root, "d")))
			must(t, os.Mkdir(filepath.Join(root, "d"), 0o755))
			write(t, root, "d/f", "x")
		},
		want: []want{
			{Kind: Removed, Path: "d", IsDir: true},
			{Kind: DirCreated, Path: "d", IsDir: true},
			{Kind: Created, Path: "d/f"},
		},
	},
	{
		name: "symlink",
		act: func(t *testing.T, root, _ string) {
			must(t, os.Symlink("somewhere/else", filepath.Join(root, "s")))
		},
		want: []want{{Kind: Created, Path: "s"}},
	},
	{
		name:  "hard link",
		setup: func(t *testing.T, root, _ string) { write(t, root, "d/a", "x") },
		act: func(t *testing.T, root, _ string) {
			must(t, os.Link(filepath.Join(root, "d/a"), filepath.Join(root, "h")))
		},
		want: []want{{Kind: Created, Path: "h"}},
	},
	{
		name:  "writes to one file stay in order with its rename",
		setup: func(t *testing.T, root, _ string) { write(t, root, "a", "x") },
		act: func(t *testing.T, root, _ string) {
			appendTo(t, root, "a", "1")
			must(t, os.Rename(filepath.Join(root, "a"), filepath.Join(root, "b")))
			appendTo(t, root, "b", "2")
			must(t, os.Remove(filepath.Join(root, "b")))
		},
		want: []want{
			{Kind: Modified, Path: "a"},
			{Kind: Renamed, OldPath: "a", Path: "b"},
			{Kind: Modified, Path: "b"},
			{Kind: Removed, Path: "b"},
		},
	},
}

func TestWatchCases(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.String(), func(t *testing.T) {
			for _, tc := range fsCases {
				t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
					// A filesystem mark sees every change on the filesystem,
					// other people's included; should that overflow the queue
					// while a case runs, the case is run again.
					for attempt := 1; ; attempt++ {
						err := runCase(t, b, tc)
						if err == nil {
							return
						}
						if !errors.Is(err, errOverflowed) || attempt == 3 {
							t.Fatal(err)
						}
						t.Logf("attempt %d: %v; running the case again", attempt, err)
					}
				})
			}
		})
	}
}

func runCase(t *testing.T, b Backend, tc fsCase) error {
	root, outside := t.TempDir(), t.TempDir()
	if tc.setup != nil {
		tc.setup(t, root, outside)
	}
	r := watchT(t, root, Options{Backend: b})
	tc.act(t, root, outside)
	if _, err := r.waitSeq(0, tc.want, false); err != nil {
		return err
	}
	end, err := r.sync(0)
	if err != nil {
		return err
	}
	evs := r.snapshot()[:end]
	for _, f := range tc.forbid {
		for _, ev := range evs {
			if f.match(ev) {
				return fmt.Errorf("got forbidden event %v; all events:\n%s", ev, r.dump(0))
			}
		}
	}
	if errs := r.errors(); len(errs) > 0 {
		return fmt.Errorf("errors: %v", errs)
	}
	return nil
}

// TestAutoPicksBackend checks that Auto reports what it chose.
func TestAutoPicksBackend(t *testing.T) {
	w, err := Watch(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	info := w.Backend()
	t.Logf("auto chose %v (fallback reason: %v)", info.Backend, info.Fallback)
	switch info.Backend {
	case Fanotify:
		if info.Fallback != nil {
			t.Errorf("fanotify chosen with a fallback reason: %v", info.Fallback)
		}
	case Inotify:
		if !errors.Is(info.Fallback, ErrFanotifyUnavailable) {
			t.Errorf("inotify chosen without saying why: %v", info.Fallback)
		}
	default:
		t.Errorf("unexpected backend %v", info.Backend)
	}
}

// queueSysctl shrinks a kernel queue length sysctl for the moment a queue is
// created (the kernel reads it then) and restores it at once, so that other
// processes on the machine are affected for as short a time as possible.
// It returns nil when the sysctl cannot be written (not root, or a
// read-only /proc).
func queueSysctl(t *testing.T, path string, n int) func() func() {
	old, err := os.ReadFile(path)
	if err != nil {
		t.Logf("%s: %v", path, err)
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Logf("%s not writable: %v", path, err)
		return nil
	}
	f.Close()
	return func() func() {
		if err := os.WriteFile(path, []byte(strconv.Itoa(n)), 0); err != nil {
			t.Errorf("shrinking %s: %v", path, err)
		}
		return func() {
			if err := os.WriteFile(path, old, 0); err != nil {
				t.Errorf("restoring %s to %s: %v", path, strings.TrimSpace(string(old)), err)
			}
		}
	}
}

func TestOverflow(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.String(), func(t *testing.T) {
			root := t.TempDir()
			sysctl := "/proc/sys/fs/inotify/max_queued_events"
			if b == Fanotify {
				sysctl = "/proc/sys/fs/fanotify/max_queued_events"
			}
			const small = 64
			burst := 300 // well past the shrunken queue
			shrink := queueSysctl(t, sysctl, small)
			if shrink == nil {
				burst = 20000 // past the default queue of 16384
				t.Logf("cannot shrink %s; generating %d events instead", sysctl, burst)
			}
			pause := make(chan struct{})
			r := watchT(t, root, Options{Backend: b, testPause: pause, testShrinkQueue: shrink})
			// The reader is held before its first read, so the kernel queue
			// fills. Each event names a new file: the kernels merge events
			// for the same object while they are queued (fanotify not only
			// consecutive ones), which would keep the queue short.
			for i := 0; i < burst; i++ {
				f, err := os.Create(filepath.Join(root, fmt.Sprintf("f%05d", i)))
				must(t, err)
				must(t, f.Close())
			}
			close(pause)
			end, err := r.waitSeq(0, []want{{Kind: Overflow}}, true)
			if err != nil {
				t.Fatal(err)
			}
			ev := r.snapshot()[end-1]
			if !strings.Contains(ev.Reason, "overflow") {
				t.Errorf("overflow reason %q does not say overflow", ev.Reason)
			}
			t.Logf("got %v", ev)
			// Capture goes on after the rescan signal, new directories
			// included.
			must(t, os.MkdirAll(filepath.Join(root, "after/deep"), 0o755))
			write(t, root, "after/deep/f", "x")
			if _, err := r.waitSeq(end, []want{{Kind: Created, Path: "after/deep/f"}}, true); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestQueueLimit checks that a consumer too slow for MaxPending gets one
// Overflow instead of unbounded memory use.
func TestQueueLimit(t *testing.T) {
	root := t.TempDir()
	w, err := Watch(root, Options{Backend: Inotify, MaxPending: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	go func() {
		for range w.Errors() {
		}
	}()
	for i := range 50 {
		write(t, root, fmt.Sprintf("f%02d", i), "x")
	}
	deadline := time.After(waitLimit)
	for {
		select {
		case ev := <-w.Events():
			if ev.Kind == Overflow && ev.Path == "" && strings.Contains(ev.Reason, "consumer fell behind") {
				return
			}
		case <-deadline:
			t.Fatal("no Overflow from a full capture queue")
		}
	}
}

// TestWatchLimit simulates the inotify watch limit (lowering the real
// fs.inotify.max_user_watches would break other watchers on the machine).
func TestWatchLimit(t *testing.T) {
	root := t.TempDir()
	write(t, root, "deep/er/f", "x")
	full := func(rel string) error {
		if strings.HasPrefix(rel, "deep") {
			return unix.ENOSPC
		}
		return nil
	}
	r := watchT(t, root, Options{Backend: Inotify, testAddWatch: full})
	end, err := r.waitSeq(0, []want{{Kind: Unwatched, Path: "deep"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	// A directory created later hits the limit too.
	must(t, os.Mkdir(filepath.Join(root, "deeper"), 0o755))
	if _, err := r.waitSeq(end, []want{{Kind: DirCreated, Path: "deeper", IsDir: true}, {Kind: Unwatched, Path: "deeper"}}, false); err != nil {
		t.Fatal(err)
	}
	errs := r.waitErrs(2)
	if len(errs) != 2 {
		t.Fatalf("want 2 errors, got %v", errs)
	}
	for _, err := range errs {
		if !errors.Is(err, ErrWatchLimit) || !strings.Contains(err.Error(), "max_user_watches") {
			t.Errorf("error %q does not explain the watch limit", err)
		}
	}
}

func TestUnrepresentableName(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.String(), func(t *testing.T) {
			root := t.TempDir()
			r := watchT(t, root, Options{Backend: b})
			write(t, root, "bad\xff", "x")
			if _, err := r.sync(0); err != nil {
				t.Fatal(err)
			}
			for _, ev := range r.snapshot() {
				if strings.HasPrefix(ev.Path, "bad") {
					t.Errorf("event for an unrepresentable name: %v", ev)
				}
			}
			// Errors travel on their own channel: no ordering with events.
			err := r.waitErr()
			if !errors.Is(err, ErrUnrepresentable) {
				t.Errorf("want an ErrUnrepresentable error, got %v", err)
			}
		})
	}
}

func TestRootGone(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.String(), func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			mkdirs(t, root, "")
			r := watchT(t, root, Options{Backend: b})
			must(t, os.Remove(root))
			if err := r.waitErr(); !errors.Is(err, ErrRootGone) {
				t.Fatalf("want ErrRootGone after removing the root, got %v", err)
			}
		})
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	for _, b := range backends(t) {
		w, err := Watch(t.TempDir(), Options{Backend: b})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if _, ok := <-w.Events(); ok {
			t.Error("Events not closed")
		}
		if _, ok := <-w.Errors(); ok {
			t.Error("Errors not closed")
		}
	}
}
