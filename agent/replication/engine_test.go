package replication

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/agent/capture"
	"github.com/holdfast/holdfast/agent/treesync"

	"github.com/holdfast/holdfast/internal/testfs"
)

type noticeLog struct {
	mu sync.Mutex
	ns []Notice
}

func (l *noticeLog) add(n Notice) {
	l.mu.Lock()
	l.ns = append(l.ns, n)
	l.mu.Unlock()
}

func (l *noticeLog) has(k NoticeKind) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.ns {
		if n.Kind == k {
			return true
		}
	}
	return false
}

type harness struct {
	t               *testing.T
	master, replica string
	spool           string
	eng             *Engine
	rep             *LocalReplica
	notices         *noticeLog
	backend         capture.Backend
}

func newHarness(t *testing.T, backend capture.Backend) *harness {
	t.Helper()
	base := t.TempDir()
	h := &harness{t: t, master: filepath.Join(base, "master"), replica: filepath.Join(base, "replica"),
		spool: filepath.Join(base, "spool"), notices: &noticeLog{}, backend: backend}
	if err := os.MkdirAll(h.master, 0o755); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) start() {
	h.t.Helper()
	rep, err := OpenLocal(h.replica)
	if err != nil {
		h.t.Fatal(err)
	}
	eng, err := Start(Config{Root: h.master, Replica: rep, SpoolDir: h.spool, Backend: h.backend,
		RetryEvery: 100 * time.Millisecond, Notify: h.notices.add})
	if err != nil {
		rep.Close()
		if h.backend == capture.Fanotify && strings.Contains(err.Error(), "fanotify") {
			h.t.Skipf("fanotify cannot be used here: %v", err)
		}
		h.t.Fatal(err)
	}
	h.eng, h.rep = eng, rep
	h.t.Cleanup(h.stop)
	h.waitPhase(PhaseReplicating)
}

func (h *harness) stop() {
	if h.eng == nil {
		return
	}
	if err := h.eng.Stop(); err != nil {
		h.t.Errorf("stop: %v", err)
	}
	if err := h.rep.Close(); err != nil {
		h.t.Errorf("close replica: %v", err)
	}
	h.eng, h.rep = nil, nil
}

func (h *harness) waitPhase(p Phase) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if h.eng.Status().Phase == p {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("engine phase %s, want %s (%s)", h.eng.Status().Phase, p, h.eng.Status().Problem)
}

// differences compares the trees the way the difference report does.
func (h *harness) differences() []treesync.Difference {
	h.t.Helper()
	m, _, err := treesync.Scan(h.master, treesync.ScanOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	r, _, err := treesync.Scan(h.replica, treesync.ScanOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return treesync.Compare(m, r)
}

// waitIdentical polls until the replica equals the master: replication is
// asynchronous, so the bound is generous and nothing is timed.
func (h *harness) waitIdentical() {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var d []treesync.Difference
	for time.Now().Before(deadline) {
		if d = h.differences(); len(d) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	var b strings.Builder
	for _, x := range d {
		b.WriteString("\n  " + x.String())
	}
	h.t.Fatalf("replica still differs after 20 s:%s\nstatus: %+v", b.String(), h.eng.Status())
}

func (h *harness) path(p string) string { return filepath.Join(h.master, filepath.FromSlash(p)) }

func (h *harness) write(p, content string) {
	h.t.Helper()
	if err := os.MkdirAll(filepath.Dir(h.path(p)), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(h.path(p), []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func backends(t *testing.T, f func(t *testing.T, b capture.Backend)) {
	for _, b := range []capture.Backend{capture.Inotify, capture.Fanotify} {
		t.Run(b.String(), func(t *testing.T) { f(t, b) })
	}
}

func TestInitialSyncAndLiveChanges(t *testing.T) {
	steps := []struct {
		name string
		do   func(h *harness)
	}{
		{"create", func(h *harness) { h.write("docs/new.txt", "hello") }},
		{"overwrite", func(h *harness) { h.write("docs/a.txt", "changed content") }},
		{"append", func(h *harness) {
			f, err := os.OpenFile(h.path("docs/a.txt"), os.O_APPEND|os.O_WRONLY, 0)
			must(h.t, err)
			_, err = f.WriteString(" and more")
			must(h.t, err)
			must(h.t, f.Close())
		}},
		{"truncate", func(h *harness) { must(h.t, os.Truncate(h.path("docs/a.txt"), 3)) }},
		{"rename in dir", func(h *harness) { must(h.t, os.Rename(h.path("docs/a.txt"), h.path("docs/b.txt"))) }},
		{"rename across dirs", func(h *harness) { must(h.t, os.Rename(h.path("docs/b.txt"), h.path("other/b.txt"))) }},
		{"rename dir", func(h *harness) { must(h.t, os.Rename(h.path("other"), h.path("renamed"))) }},
		{"write in renamed dir", func(h *harness) { h.write("renamed/c.txt", "in renamed") }},
		{"remove", func(h *harness) { must(h.t, os.Remove(h.path("docs/new.txt"))) }},
		{"mkdir -p and file", func(h *harness) { h.write("x/y/z/deep.txt", "deep") }},
		{"symlink", func(h *harness) { must(h.t, os.Symlink("../renamed/c.txt", h.path("docs/link"))) }},
		{"hard link", func(h *harness) { must(h.t, os.Link(h.path("renamed/c.txt"), h.path("docs/hard"))) }},
		{"chmod", func(h *harness) { must(h.t, os.Chmod(h.path("renamed/c.txt"), 0o600)) }},
		{"mtime", func(h *harness) {
			must(h.t, os.Chtimes(h.path("x/y/z/deep.txt"), time.Now(), time.Unix(1700000000, 123456789)))
		}},
		{"remove tree", func(h *harness) { must(h.t, os.RemoveAll(h.path("x"))) }},
		{"large file", func(h *harness) {
			h.write("big.bin", strings.Repeat("0123456789abcdef", 1<<17)) // 2 MiB: block-level
		}},
		{"large file edit", func(h *harness) {
			f, err := os.OpenFile(h.path("big.bin"), os.O_WRONLY, 0)
			must(h.t, err)
			_, err = f.WriteAt([]byte("EDITED"), 1<<20)
			must(h.t, err)
			must(h.t, f.Close())
		}},
	}
	backends(t, func(t *testing.T, b capture.Backend) {
		h := newHarness(t, b)
		h.write("docs/a.txt", "original")
		h.write("other/keep.txt", "keep")
		h.start()
		h.waitIdentical()
		if !h.notices.has(NoticeSyncDone) {
			t.Error("no synchronization notice")
		}
		for _, s := range steps {
			s.do(h)
			t.Run(s.name, func(t *testing.T) {
				h.t = t
				h.waitIdentical()
			})
			h.t = t
		}
		st := h.eng.Status()
		if st.Counters.Changes == 0 || st.LagP99 <= 0 {
			t.Errorf("status has no figures: %+v", st)
		}
	})
}

func TestSuspendSpoolsAndResumeDrains(t *testing.T) {
	h := newHarness(t, capture.Inotify)
	h.start()
	h.eng.Suspend()
	h.waitPhase(PhaseSuspended)
	for i := 0; i < 20; i++ {
		h.write(filepath.Join("s", strings.Repeat("f", i+1)), strings.Repeat("x", i))
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.eng.Status().SpoolPending < 20 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := h.eng.Status().SpoolPending; got < 20 {
		t.Fatalf("spool holds %d changes while suspended, want at least 20", got)
	}
	if len(h.differences()) == 0 {
		t.Fatal("replica changed while suspended")
	}
	h.eng.Resume()
	h.waitIdentical()
	// The files are visible on the replica before ApplyBatch returns (it
	// still syncs their directories), and acknowledgements are written
	// behind the sender: the spool drains a little after.
	deadline = time.Now().Add(10 * time.Second)
	for h.eng.Status().SpoolPending != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := h.eng.Status(); st.SpoolPending != 0 {
		t.Errorf("spool not drained: %+v", st)
	}
}

func TestRestartDrainsSpoolWithoutResending(t *testing.T) {
	h := newHarness(t, capture.Inotify)
	big := bytes.Repeat([]byte("data block "), 400000) // 4.4 MB
	must(t, os.WriteFile(h.path("big.bin"), big, 0o644))
	h.start()
	h.waitIdentical()
	h.eng.Suspend()
	h.waitPhase(PhaseSuspended)
	h.write("while-suspended.txt", "spooled")
	// Wait until capture has spooled everything the write caused (its
	// creation and its content arrive as separate events).
	deadline := time.Now().Add(10 * time.Second)
	last, quietSince := int64(-1), time.Now()
	for time.Now().Before(deadline) {
		n := h.eng.Status().SpoolPending
		if n != last {
			last, quietSince = n, time.Now()
		} else if n > 0 && time.Since(quietSince) > 500*time.Millisecond {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.stop()
	h.start()
	h.waitIdentical()
	st := h.eng.Status()
	if st.Sync.FilesWhole != 0 || st.Sync.FilesBlock != 0 {
		t.Errorf("restart resent file contents: %+v (the spool should have carried the change)", st.Sync)
	}
}

func TestReplicaPathEscapeIsRefusedAndRepaired(t *testing.T) {
	h := newHarness(t, capture.Inotify)
	h.write("docs/a.txt", "a")
	h.start()
	h.waitIdentical()
	// Someone with access to the replica swaps a replicated directory for
	// a symlink pointing outside: replication must not write through it.
	outside := t.TempDir()
	must(t, os.RemoveAll(filepath.Join(h.replica, "docs")))
	must(t, os.Symlink(outside, filepath.Join(h.replica, "docs")))
	h.write("docs/b.txt", "must not escape")
	deadline := time.Now().Add(10 * time.Second)
	for !h.notices.has(NoticeEscape) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !h.notices.has(NoticeEscape) {
		t.Error("the refused change was not reported")
	}
	h.waitIdentical() // the resync replaces the symlink with the directory
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("replication wrote outside the replica: %v", entries)
	}
}

func TestSpoolOverflowFallsBackToResync(t *testing.T) {
	h := newHarness(t, capture.Inotify)
	rep, err := OpenLocal(h.replica)
	must(t, err)
	eng, err := Start(Config{Root: h.master, Replica: rep, SpoolDir: h.spool, Backend: capture.Inotify,
		SpoolMaxBytes: 16 << 10, RetryEvery: 100 * time.Millisecond, Notify: h.notices.add})
	must(t, err)
	h.eng, h.rep = eng, rep
	t.Cleanup(h.stop)
	h.waitPhase(PhaseReplicating)
	h.eng.Suspend()
	h.waitPhase(PhaseSuspended)
	// Far more than 16 KiB of changes while the replica does not apply.
	for i := 0; i < 40; i++ {
		h.write(filepath.Join("burst", strings.Repeat("n", i%7+1)+string(rune('a'+i%26))+".bin"), strings.Repeat("z", 2000+i))
	}
	deadline := time.Now().Add(10 * time.Second)
	for !h.notices.has(NoticeSpoolOverflow) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !h.notices.has(NoticeSpoolOverflow) {
		t.Fatalf("no overflow notice; status %+v", h.eng.Status())
	}
	if st := h.eng.Status(); st.DirtyPaths == 0 {
		t.Errorf("overflow recorded no dirty paths: %+v", st)
	}
	h.eng.Resume()
	h.waitIdentical() // nothing lost: what the spool could not hold is resynchronized
	if st := h.eng.Status(); st.DirtyPaths != 0 {
		t.Errorf("dirty paths left after the resync: %+v", st)
	}
}

func TestReplicaDiskFullWaitsAndResumes(t *testing.T) {
	h := newHarness(t, capture.Inotify)
	must(t, os.MkdirAll(h.replica, 0o700))
	testfs.Tmpfs(t, h.replica, "512k")
	h.start()
	// Fill the replica's filesystem behind replication's back.
	filler := filepath.Join(h.replica, ".holdfast", "filler")
	f, err := os.Create(filler)
	must(t, err)
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	h.write("docs/needs-space.txt", strings.Repeat("s", 64<<10))
	deadline := time.Now().Add(10 * time.Second)
	for !h.notices.has(NoticeNoSpace) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !h.notices.has(NoticeNoSpace) {
		t.Fatalf("no out-of-space notice; status %+v", h.eng.Status())
	}
	if st := h.eng.Status(); st.Phase != PhaseProblem || st.SpoolPending == 0 {
		t.Errorf("while full: phase %s, spool %d; want problem with the change kept in the spool", st.Phase, st.SpoolPending)
	}
	must(t, os.Remove(filler))
	h.waitIdentical()
	// The notice follows the acknowledgement, a moment after the replica
	// shows the file.
	deadline = time.Now().Add(10 * time.Second)
	for !h.notices.has(NoticeRecovered) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !h.notices.has(NoticeRecovered) {
		t.Error("recovery not reported")
	}
}

// TestTouchedTimes: which modification times a change makes the engine
// carry to the replica afterwards.
func TestTouchedTimes(t *testing.T) {
	now := time.Unix(1700000000, 0)
	for _, c := range []struct {
		name string
		ev   capture.Event
		want []string
	}{
		{"new file moves its directory", capture.Event{Kind: capture.Modified, Path: "a/f"}, []string{"a"}},
		{"new directory: parent and itself", capture.Event{Kind: capture.DirCreated, Path: "a/new"}, []string{"a", "a/new"}},
		{"new symlink: parent and itself", capture.Event{Kind: capture.Created, Path: "a/l"}, []string{"a", "a/l"}},
		{"rename: both parents", capture.Event{Kind: capture.Renamed, Path: "b/f", OldPath: "a/f"}, []string{"a", "b"}},
		{"top level: the root's time is not carried", capture.Event{Kind: capture.DirCreated, Path: "top"}, []string{"top"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.ev.Time = now
			dirs := map[string]time.Time{}
			touchedTimes(c.ev, dirs)
			var got []string
			for d := range dirs {
				got = append(got, d)
			}
			sort.Strings(got)
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Fatalf("carried %v, want %v", got, c.want)
			}
		})
	}
}

// TestRefusedRenameRepairsItsDestination: a rename whose source the
// replica lacks is refused; the destination must still arrive, by a
// resynchronization of both ends.
func TestRefusedRenameRepairsItsDestination(t *testing.T) {
	h := newHarness(t, capture.Inotify)
	h.write("docs/a.txt", "content that must arrive")
	h.start()
	h.waitIdentical()
	// The replica lost the source (as when the stage saw a file only
	// after it had been renamed, and so never sent its creation).
	must(t, os.Remove(filepath.Join(h.replica, "docs", "a.txt")))
	must(t, os.Rename(h.path("docs/a.txt"), h.path("docs/b.txt")))
	h.waitIdentical()
	if !h.notices.has(NoticeError) {
		t.Error("the refused rename was not reported")
	}
}

// TestSyncModeChoosesHowFilesAreSent: with the replica holding an older
// version of a small file, auto and file send it whole, block sends only
// what changed; an unknown mode is refused before anything starts.
func TestSyncModeChoosesHowFilesAreSent(t *testing.T) {
	for _, c := range []struct {
		mode         string
		whole, block int64
	}{
		{"", 1, 0},
		{treesync.ModeAuto, 1, 0},
		{treesync.ModeFile, 1, 0},
		{treesync.ModeBlock, 0, 1},
	} {
		t.Run("mode "+c.mode, func(t *testing.T) {
			h := newHarness(t, capture.Inotify)
			old := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB
			cur := append([]byte{}, old...)
			copy(cur[100<<10:], "changed in the middle")
			must(t, os.WriteFile(h.path("doc.bin"), cur, 0o644))
			must(t, os.MkdirAll(h.replica, 0o700))
			must(t, os.WriteFile(filepath.Join(h.replica, "doc.bin"), old, 0o644))
			// An older time, as a real earlier version has: within one
			// clock tick the two files would look the same to Compare.
			earlier := time.Now().Add(-time.Hour)
			must(t, os.Chtimes(filepath.Join(h.replica, "doc.bin"), earlier, earlier))
			rep, err := OpenLocal(h.replica)
			must(t, err)
			eng, err := Start(Config{Root: h.master, Replica: rep, SpoolDir: h.spool, Backend: capture.Inotify, SyncMode: c.mode, Notify: h.notices.add})
			must(t, err)
			h.eng, h.rep = eng, rep
			t.Cleanup(h.stop)
			h.waitIdentical()
			h.waitPhase(PhaseReplicating)
			st := eng.Status().Sync
			if st.FilesWhole != c.whole || st.FilesBlock != c.block {
				t.Fatalf("sync sent %d whole, %d block-level; want %d and %d (%s)", st.FilesWhole, st.FilesBlock, c.whole, c.block, st)
			}
		})
	}
	h := newHarness(t, capture.Inotify)
	rep, err := OpenLocal(h.replica)
	must(t, err)
	defer rep.Close()
	if _, err := Start(Config{Root: h.master, Replica: rep, SpoolDir: h.spool, SyncMode: "rsync"}); err == nil || !strings.Contains(err.Error(), "rsync") {
		t.Fatalf("Start with an unknown mode = %v", err)
	}
}
