package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/agent/apply"
	"github.com/holdfast/holdfast/agent/blocksync"
	"github.com/holdfast/holdfast/agent/capture"
	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/replication"
	"github.com/holdfast/holdfast/agent/treesync"
	"github.com/holdfast/holdfast/agent/wire"
	"github.com/holdfast/holdfast/plugins/sdk"

	"github.com/holdfast/holdfast/internal/testfs"
)

const session = "scenario-7/replica-1"

// rig is a master and a replica host joined by a test network, a Server
// on the replica and a Client on the master.
type rig struct {
	t       *testing.T
	net     *network
	target  string
	server  *Server
	client  *Client
	stopSrv context.CancelFunc
	srvDone chan struct{}
}

func newRig(t *testing.T, target string) *rig {
	t.Helper()
	r := &rig{t: t, net: newNetwork(), target: target}
	srv, err := NewServer(ServerConfig{Transport: r.net.host("replica"), Session: session, Master: "master",
		Scenario: "payroll", Replica: "dr", Target: target})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.server, r.stopSrv, r.srvDone = srv, cancel, make(chan struct{})
	go func() {
		defer close(r.srvDone)
		if err := srv.Serve(ctx); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		if r.client != nil {
			r.client.Close()
		}
		cancel()
		<-r.srvDone
		srv.Close()
	})
	r.client = r.dial("master")
	return r
}

func (r *rig) dial(host string) *Client {
	r.t.Helper()
	c, err := Dial(context.Background(), r.config(host))
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

func (r *rig) config(host string) Config {
	return Config{Transport: r.net.host(host), Peer: "replica", Session: session,
		Scenario: "payroll", Replica: "dr", Timeout: 20 * time.Second, MaxBackoff: 200 * time.Millisecond}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestApplyScanSignatureAcrossPages(t *testing.T) {
	r := newRig(t, t.TempDir())
	// Small pages: a signature and a scan of several pages each.
	r.server.sigPage, r.server.scanBudget = 1000, 2000

	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MiB: several frames
	cs := []change.Change{{Seq: 1, Op: change.OpMkdir, Path: "d", Mode: 0o755}}
	for i := range 40 {
		cs = append(cs, change.Change{Seq: uint64(2 + i), Op: change.OpReplaceFile, Path: fmt.Sprintf("d/f%02d", i), Mode: 0o644, Data: []byte(strings.Repeat("x", i))})
	}
	cs = append(cs, change.Change{Seq: 42, Op: change.OpReplaceFile, Path: "big", Mode: 0o600, Data: big})
	must(t, r.client.ApplyBatch(cs))
	if got := r.client.LastApplied(); got != 42 {
		t.Fatalf("LastApplied %d, want 42", got)
	}
	if got, err := os.ReadFile(filepath.Join(r.target, "big")); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("big file on the replica: %d bytes, %v", len(got), err)
	}

	want, _, err := treesync.Scan(r.target, treesync.ScanOptions{})
	must(t, err)
	got, problems, err := r.client.Scan()
	must(t, err)
	if len(problems) != 0 || !reflect.DeepEqual(got, want) {
		t.Errorf("remote scan differs from a local one: %d entries (%v), want %d", len(got), problems, len(want))
	}

	f, err := os.Open(filepath.Join(r.target, "big"))
	must(t, err)
	defer f.Close()
	wantSig, err := blocksync.ComputeSignature(f, blocksync.BlockSize(int64(len(big))))
	must(t, err)
	gotSig, err := r.client.Signature("big")
	must(t, err)
	if !reflect.DeepEqual(gotSig, wantSig) {
		t.Error("remote signature differs from a local one")
	}
	if _, err := r.client.Signature("missing"); err == nil {
		t.Error("signature of a missing file: no error")
	}
}

func TestChangeFailuresKeepTheirType(t *testing.T) {
	r := newRig(t, t.TempDir())
	outside := t.TempDir()
	must(t, os.Symlink(outside, filepath.Join(r.target, "planted")))
	err := r.client.ApplyBatch([]change.Change{
		{Seq: 1, Op: change.OpMkdir, Path: "ok", Mode: 0o755},
		{Seq: 2, Op: change.OpReplaceFile, Path: "planted/evil", Mode: 0o644, Data: []byte("x")},
	})
	var ae *apply.Error
	if !errors.As(err, &ae) || !errors.Is(err, apply.ErrEscape) || ae.Seq != 2 || ae.Path != "planted/evil" {
		t.Fatalf("got %v; want an *apply.Error for seq 2 that is ErrEscape", err)
	}
	if r.client.LastApplied() != 1 {
		t.Errorf("LastApplied %d after the failure; want 1", r.client.LastApplied())
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("something was written outside the replica: %v", entries)
	}
}

func TestWrongPeerIsRefused(t *testing.T) {
	r := newRig(t, t.TempDir())
	_, err := Dial(context.Background(), r.config("mallory"))
	if !errors.Is(err, sdk.ErrNotAuthorized) {
		t.Fatalf("dial from another host: %v; want sdk.ErrNotAuthorized", err)
	}
	// A stream of its own, with an Apply and no Hello: nothing applied.
	snd, err := r.net.host("mallory").Send(context.Background(), "replica", session)
	must(t, err)
	msg := wire.Split(wire.Marshal(wire.Apply{Changes: []change.Change{{Seq: 1000, Op: change.OpMkdir, Path: "pwned", Mode: 0o755}}}))
	must(t, snd.Send(sdk.Frame{Seq: 1 << 40, Payload: msg[0]}))
	a, err := snd.Recv()
	must(t, err)
	reply, err := wire.Unmarshal(a.Payload)
	if f, ok := reply.(wire.Failure); err != nil || !ok || f.Code != wire.CodeNotAuthorized {
		t.Errorf("reply %#v, %v; want a not-authorized failure", reply, err)
	}
	if _, err := os.Lstat(filepath.Join(r.target, "pwned")); !os.IsNotExist(err) {
		t.Errorf("a change from another host was applied: %v", err)
	}
	if r.server.LastApplied() != 0 {
		t.Errorf("server LastApplied %d", r.server.LastApplied())
	}
}

func TestRedeliveredFramesAndBrokenStreams(t *testing.T) {
	r := newRig(t, t.TempDir())
	r.net.setDuplicate(true)
	seq := uint64(0)
	batch := func(n int) []change.Change {
		var cs []change.Change
		for range n {
			seq++
			cs = append(cs, change.Change{Seq: seq, Op: change.OpWrite, Path: "log", Offset: int64(seq-2) * 10,
				Data: fmt.Appendf(nil, "%09d\n", seq)})
		}
		return cs
	}
	seq++
	first := []change.Change{{Seq: seq, Op: change.OpCreate, Path: "log", Mode: 0o644}}
	must(t, r.client.ApplyBatch(append(first, batch(50)...)))
	r.net.setDuplicate(false)
	// Break in the middle of a multi-frame message, then retry as the
	// engine does: the same batch again.
	pending := batch(30)
	big := change.Change{Seq: seq + 1, Op: change.OpReplaceFile, Path: "big", Mode: 0o644, Data: bytes.Repeat([]byte{7}, 5<<20)}
	seq++
	pending = append(pending, big)
	r.net.breakAfter(3)
	err := r.client.ApplyBatch(pending)
	if err == nil {
		t.Fatal("a batch across a broken stream succeeded")
	}
	for tries := 0; err != nil; tries++ {
		if tries == 50 {
			t.Fatalf("batch never went through after the break: %v", err)
		}
		err = r.client.ApplyBatch(pending)
	}
	if r.client.LastApplied() != seq {
		t.Errorf("LastApplied %d, want %d", r.client.LastApplied(), seq)
	}
	var want bytes.Buffer
	for i := uint64(2); i < seq; i++ {
		fmt.Fprintf(&want, "%09d\n", i)
	}
	if got, err := os.ReadFile(filepath.Join(r.target, "log")); err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Errorf("log on the replica differs (%d bytes, want %d): %v", len(got), want.Len(), err)
	}
}

// noticeLog collects an engine's notices.
type noticeLog struct {
	mu sync.Mutex
	ns []replication.Notice
}

func (l *noticeLog) add(n replication.Notice) {
	l.mu.Lock()
	l.ns = append(l.ns, n)
	l.mu.Unlock()
}

func (l *noticeLog) count(k replication.NoticeKind) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, x := range l.ns {
		if x.Kind == k {
			n++
		}
	}
	return n
}

// engineRig runs a real replication engine on a master tree through a
// Client to a Server writing the replica tree.
type engineRig struct {
	*rig
	master  string
	eng     *replication.Engine
	notices *noticeLog
}

func newEngineRig(t *testing.T, replicaDir string, seed func(master string)) *engineRig {
	t.Helper()
	base := t.TempDir()
	master := filepath.Join(base, "master")
	must(t, os.MkdirAll(master, 0o755))
	if seed != nil {
		seed(master)
	}
	r := &engineRig{rig: newRig(t, replicaDir), master: master, notices: &noticeLog{}}
	eng, err := replication.Start(replication.Config{Root: master, Replica: r.client, SpoolDir: filepath.Join(base, "spool"),
		Backend: capture.Inotify, RetryEvery: 50 * time.Millisecond, Notify: r.notices.add})
	must(t, err)
	r.eng = eng
	t.Cleanup(func() { eng.Stop() })
	r.waitFor("replicating", func() bool { return eng.Status().Phase == replication.PhaseReplicating })
	return r
}

func (r *engineRig) waitFor(what string, ok func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			r.t.Fatalf("gave up waiting for %s; status %+v", what, r.eng.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// differences compares the two trees as treesync sees them.
func (r *engineRig) differences() []treesync.Difference {
	m, _, err := treesync.Scan(r.master, treesync.ScanOptions{})
	must(r.t, err)
	rep, _, err := treesync.Scan(r.target, treesync.ScanOptions{})
	must(r.t, err)
	return treesync.Compare(m, rep)
}

func (r *engineRig) waitIdentical() {
	r.t.Helper()
	r.waitFor("identical trees", func() bool {
		return r.eng.Status().SpoolPending == 0 && len(r.differences()) == 0
	})
}

// noResync checks that only the start's synchronization ran.
func (r *engineRig) noResync() {
	r.t.Helper()
	st := r.eng.Status()
	if n := r.notices.count(replication.NoticeSyncDone); n != 1 || st.Counters.Rescans != 0 || st.DirtyPaths != 0 {
		r.t.Errorf("resynchronized: %d synchronizations, %d rescans, %d dirty paths", n, st.Counters.Rescans, st.DirtyPaths)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(path), 0o755))
	must(t, os.WriteFile(path, data, 0o644))
}

func TestEngineThroughBrokenStreams(t *testing.T) {
	r := newEngineRig(t, t.TempDir(), func(master string) {
		writeFile(t, filepath.Join(master, "seed/large.bin"), bytes.Repeat([]byte("seed"), 1<<19)) // 2 MiB: several frames
		for i := range 20 {
			writeFile(t, filepath.Join(master, fmt.Sprintf("seed/small-%02d", i)), []byte(strings.Repeat("s", i)))
		}
	})
	r.waitIdentical()
	if st := r.eng.Status(); st.Sync.FilesWhole == 0 {
		t.Errorf("initial synchronization sent nothing: %+v", st.Sync)
	}
	// Work on the master while the network keeps failing.
	for round := range 6 {
		r.net.breakAfter(2 + round)
		if round == 3 {
			r.net.setDuplicate(true)
		}
		dir := filepath.Join(r.master, fmt.Sprintf("round-%d", round))
		for i := range 15 {
			writeFile(t, filepath.Join(dir, fmt.Sprintf("f%02d", i)), bytes.Repeat([]byte{byte(round), byte(i)}, 100*(i+1)))
		}
		must(t, os.Rename(filepath.Join(dir, "f00"), filepath.Join(dir, "renamed")))
		must(t, os.Remove(filepath.Join(dir, "f01")))
		if round > 0 {
			must(t, os.RemoveAll(filepath.Join(r.master, fmt.Sprintf("round-%d", round-1), "f02")))
		}
		writeFile(t, filepath.Join(r.master, "seed/large.bin"), bytes.Repeat([]byte{byte('a' + round)}, 3<<20))
		time.Sleep(50 * time.Millisecond)
	}
	r.net.setDuplicate(false)
	r.net.breakNow()
	r.waitIdentical()
	r.noResync()
	r.net.mu.Lock()
	defer r.net.mu.Unlock()
	if r.net.frames == 0 {
		t.Error("no frames went through the network")
	}
}

func TestEngineShowsNotAuthorized(t *testing.T) {
	r := newEngineRig(t, t.TempDir(), nil)
	r.waitIdentical()
	// The master's certificate now names another host, as after a bad
	// re-enrollment: the replica refuses what it sends.
	r.net.mu.Lock()
	r.net.rename = map[string]string{"master": "stranger"}
	r.net.mu.Unlock()
	writeFile(t, filepath.Join(r.master, "after.txt"), []byte("refused for now"))
	r.waitFor("not authorized", func() bool { return r.eng.Status().Phase == replication.PhaseNotAuthorized })
	if r.notices.count(replication.NoticeNotAuthorized) == 0 {
		t.Error("no Not Authorized notice")
	}
	if st := r.eng.Status(); st.SpoolPending == 0 {
		t.Error("the refused change left the spool")
	}
	if _, err := os.Lstat(filepath.Join(r.target, "after.txt")); !os.IsNotExist(err) {
		t.Errorf("a refused change reached the replica: %v", err)
	}
	r.net.mu.Lock()
	r.net.rename = nil
	r.net.mu.Unlock()
	r.waitIdentical()
	r.waitFor("recovered", func() bool { return r.eng.Status().Phase == replication.PhaseReplicating })
	r.noResync()
}

func TestEngineWaitsForSpaceOnTheReplica(t *testing.T) {
	replicaDir := t.TempDir()
	testfs.Tmpfs(t, replicaDir, "1m")
	r := newEngineRig(t, replicaDir, nil)
	r.waitIdentical()
	// Fill the replica's filesystem behind replication's back.
	filler := filepath.Join(replicaDir, apply.StateDir, "filler")
	f, err := os.Create(filler)
	must(t, err)
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	writeFile(t, filepath.Join(r.master, "needs-space.txt"), bytes.Repeat([]byte("s"), 64<<10))
	r.waitFor("no-space notice", func() bool { return r.notices.count(replication.NoticeNoSpace) > 0 })
	if st := r.eng.Status(); st.Phase != replication.PhaseProblem || st.SpoolPending == 0 {
		t.Errorf("while full: phase %s, spool %d; want problem with the change kept in the spool", st.Phase, st.SpoolPending)
	}
	must(t, os.Remove(filler))
	r.waitIdentical()
	r.waitFor("recovery", func() bool { return r.notices.count(replication.NoticeRecovered) > 0 })
	r.noResync()
}
