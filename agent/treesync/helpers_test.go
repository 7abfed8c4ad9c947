package treesync

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/apply"
	"github.com/holdfast/holdfast/agent/blocksync"
	"github.com/holdfast/holdfast/agent/change"
)

// Tree builders. Each works on the path rel below root and fails the test
// on error.

func mkdir(t testing.TB, root, rel string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func write(t testing.TB, root, rel string, data []byte, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func symlink(t testing.TB, root, target, rel string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func hardlink(t testing.TB, root, old, rel string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, old), p); err != nil {
		t.Fatal(err)
	}
}

func remove(t testing.TB, root, rel string) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(root, rel)); err != nil {
		t.Fatal(err)
	}
}

func rename(t testing.TB, root, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(filepath.Join(root, to)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, from), filepath.Join(root, to)); err != nil {
		t.Fatal(err)
	}
}

func chown(t testing.TB, root, rel string, uid, gid int) {
	t.Helper()
	if err := os.Lchown(filepath.Join(root, rel), uid, gid); err != nil {
		t.Fatal(err)
	}
}

func chmod(t testing.TB, root, rel string, mode uint32) {
	t.Helper()
	if err := unix.Chmod(filepath.Join(root, rel), mode); err != nil {
		t.Fatal(err)
	}
}

func setMTime(t testing.TB, root, rel string, ns int64) {
	t.Helper()
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(ns)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root, rel), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
}

func setXattr(t testing.TB, root, rel, name, value string) {
	t.Helper()
	if err := unix.Lsetxattr(filepath.Join(root, rel), name, []byte(value), 0); err != nil {
		t.Fatal(err)
	}
}

func removeXattr(t testing.TB, root, rel, name string) {
	t.Helper()
	if err := unix.Lremovexattr(filepath.Join(root, rel), name); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, root, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// random returns n deterministic pseudo-random bytes: incompressible
// content that a delta cannot fake.
func random(seed uint64, n int) []byte {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

// edit changes about share of b in place, in scattered 1 KiB runs.
func edit(b []byte, share float64, seed uint64) []byte {
	b = append([]byte(nil), b...)
	const run = 1 << 10
	n := int(float64(len(b)) * share / run)
	r := rand.New(rand.NewPCG(seed, 7))
	for range max(n, 1) {
		at := r.IntN(len(b) - run)
		copy(b[at:], random(seed+uint64(at), run))
	}
	return b
}

// replica is a replica tree with its applier, fed by a planner.
type replica struct {
	root string
	a    *apply.Applier
	seq  uint64
	sent []change.Change // what the last pass emitted, without Data
}

func openReplica(t testing.TB, root string) *replica {
	t.Helper()
	a, err := apply.Open(root, apply.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return &replica{root: root, a: a, seq: a.LastApplied()}
}

// emit applies c at once, as a transport would deliver it.
func (r *replica) emit(c change.Change) error {
	r.seq++
	c.Seq = r.seq
	r.sent = append(r.sent, change.Change{Op: c.Op, Path: c.Path, NewPath: c.NewPath})
	return r.a.Apply(c)
}

// signature computes the signature of the replica's copy, as the replica
// agent would on request.
func (r *replica) signature(rel string) (blocksync.Signature, error) {
	f, err := os.Open(filepath.Join(r.root, rel))
	if err != nil {
		return blocksync.Signature{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return blocksync.Signature{}, err
	}
	return blocksync.ComputeSignature(f, blocksync.BlockSize(fi.Size()))
}

func (r *replica) planner(master string, links map[FileID]string) *Planner {
	r.sent = nil
	return &Planner{MasterRoot: master, Signature: r.signature, Emit: r.emit, Links: links}
}

// scan scans root and fails the test on any problem.
func scan(t testing.TB, root string) []Entry {
	t.Helper()
	entries, problems, err := Scan(root, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("scan %s: %v", root, p)
	}
	return entries
}

func report(diffs []Difference) string {
	var b strings.Builder
	for _, d := range diffs {
		b.WriteString("\n  " + d.String())
	}
	return b.String()
}

// tempLeft lists the applier's temporary names left in the replica.
func tempLeft(t testing.TB, root string) []string {
	t.Helper()
	var left []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".holdfast-tmp-") {
			left = append(left, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return left
}
