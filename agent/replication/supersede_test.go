package replication

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/treesync"
)

// Shorthands for the changes of the cases below.
func rf(p, data string) change.Change {
	return change.Change{Op: change.OpReplaceFile, Path: p, Data: []byte(data), Mode: 0o640, MTime: 1_500_000_000e9}
}
func chown(p string, uid uint32) change.Change {
	return change.Change{Op: change.OpChown, Path: p, UID: uid, GID: uid}
}
func chmod(p string, mode uint32) change.Change {
	return change.Change{Op: change.OpChmod, Path: p, Mode: mode}
}
func times(p string, t int64) change.Change {
	return change.Change{Op: change.OpSetTimes, Path: p, MTime: t}
}
func setx(p, name, v string) change.Change {
	return change.Change{Op: change.OpSetXattr, Path: p, XattrName: name, XattrValue: []byte(v)}
}
func rmx(p, name string) change.Change {
	return change.Change{Op: change.OpRemoveXattr, Path: p, XattrName: name}
}
func rename(from, to string) change.Change {
	return change.Change{Op: change.OpRename, Path: from, NewPath: to}
}
func link(from, to string) change.Change {
	return change.Change{Op: change.OpLink, Path: from, NewPath: to}
}
func remove(p string) change.Change { return change.Change{Op: change.OpRemove, Path: p} }
func mkdir(p string) change.Change  { return change.Change{Op: change.OpMkdir, Path: p, Mode: 0o755} }
func write(p, data string) change.Change {
	return change.Change{Op: change.OpWrite, Path: p, Data: []byte(data)}
}

// supersedeBase is on both replicas before each case: files with an
// owner and an extended attribute that a replacement carries over.
var supersedeBase = []change.Change{
	mkdir("d"), rf("d/f", "old"), chown("d/f", 1234), setx("d/f", "user.kept", "k"), setx("d/f", "user.a", "old"),
	rf("g", "old g"), chown("g", 1234),
	times("d", 1_400_000_000e9),
}

func TestSuperseded(t *testing.T) {
	tests := []struct {
		name  string
		batch []change.Change
		drop  []int // indexes of batch that are not sent
	}{
		{
			name:  "create then write of a new file, with its directory's time between",
			batch: []change.Change{rf("d/n", ""), chown("d/n", 7), times("d", 1), rf("d/n", "filled"), chown("d/n", 7), times("d", 2)},
			drop:  []int{0, 1},
		},
		{
			name:  "three versions keep the last",
			batch: []change.Change{rf("d/f", "1"), chown("d/f", 5), rf("d/f", "2"), chown("d/f", 6), rf("d/f", "3"), chown("d/f", 7)},
			drop:  []int{0, 1, 2, 3},
		},
		{
			name:  "unrelated files between",
			batch: []change.Change{rf("d/f", "1"), rf("g", "g2"), chown("g", 9), mkdir("e"), rf("d/f", "2"), times("d", 3)},
			drop:  []int{0},
		},
		{
			name:  "mode and times of the file are the replacement's own",
			batch: []change.Change{rf("d/f", "1"), chmod("d/f", 0o600), times("d/f", 5), rf("d/f", "2")},
			drop:  []int{0, 1, 2},
		},
		{
			name:  "metadata of the directory between",
			batch: []change.Change{rf("d/f", "1"), chmod("d", 0o700), chown("d", 3), rf("d/f", "2")},
			drop:  []int{0},
		},
		{
			name:  "owner set on the first only is inherited: kept",
			batch: []change.Change{rf("d/f", "1"), chown("d/f", 42), rf("d/f", "2")},
		},
		{
			name:  "attribute set on the first only is inherited: kept",
			batch: []change.Change{rf("d/f", "1"), setx("d/f", "user.a", "first"), rf("d/f", "2"), chown("d/f", 1)},
		},
		{
			name:  "attribute removed from the first only: kept",
			batch: []change.Change{rf("d/f", "1"), rmx("d/f", "user.kept"), rf("d/f", "2")},
		},
		{
			name:  "attribute set again after the last: dropped",
			batch: []change.Change{rf("d/f", "1"), setx("d/f", "user.a", "first"), chown("d/f", 2), rf("d/f", "2"), chown("d/f", 3), setx("d/f", "user.a", "second")},
			drop:  []int{0, 1, 2},
		},
		{
			name:  "the directory renamed between: kept",
			batch: []change.Change{rf("d/f", "1"), rename("d", "e"), mkdir("d"), rf("d/f", "2")},
		},
		{
			name:  "the file renamed away between: kept",
			batch: []change.Change{rf("d/f", "1"), rename("d/f", "d/moved"), rf("d/f", "2")},
		},
		{
			name:  "something renamed onto the file between: kept",
			batch: []change.Change{rf("d/f", "1"), rename("g", "d/f"), rf("d/f", "2")},
		},
		{
			name:  "the file linked to another name between: kept",
			batch: []change.Change{rf("d/f", "1"), link("d/f", "d/l"), rf("d/f", "2")},
		},
		{
			name:  "the file removed between: kept",
			batch: []change.Change{rf("d/f", "1"), remove("d/f"), rf("d/f", "2")},
		},
		{
			name:  "the directory removed and made again between: kept",
			batch: []change.Change{rf("d/f", "1"), remove("d"), mkdir("d"), rf("d/f", "2")},
		},
		{
			name:  "written in place between: kept",
			batch: []change.Change{rf("d/f", "1"), write("d/f", "xyz"), rf("d/f", "2")},
		},
		{
			name:  "a single replacement",
			batch: []change.Change{rf("d/f", "1"), chown("d/f", 1)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			batch := numbered(len(supersedeBase)+1, tt.batch)
			orig := append([]change.Change(nil), batch...)
			got := superseded(batch)
			if !reflect.DeepEqual(batch, orig) {
				t.Fatal("superseded modified its argument")
			}
			var want []change.Change
			for i, c := range batch {
				if !contains(tt.drop, i) {
					want = append(want, c)
				}
			}
			if !reflect.DeepEqual(seqs(got), seqs(want)) {
				t.Fatalf("sent seqs %v, want %v", seqs(got), seqs(want))
			}
			// The proof: the batch as sent leaves the replica exactly as
			// the whole batch does.
			whole, sent := replicaAfter(t, batch), replicaAfter(t, got)
			sameTrees(t, whole, sent)
		})
	}
}

func numbered(first int, cs []change.Change) []change.Change {
	out := make([]change.Change, len(cs))
	for i, c := range cs {
		c.Seq = uint64(first + i)
		out[i] = c
	}
	return out
}

func seqs(cs []change.Change) []uint64 {
	var s []uint64
	for _, c := range cs {
		s = append(s, c.Seq)
	}
	return s
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// replicaAfter applies the base, then batch, to a fresh replica and
// returns its directory. A change the replica refuses is skipped, as the
// engine does.
func replicaAfter(t *testing.T, batch []change.Change) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "replica")
	r, err := OpenLocal(dir)
	must(t, err)
	defer r.Close()
	must(t, r.ApplyBatch(numbered(1, supersedeBase)))
	for _, c := range batch {
		// One at a time, so that a refused change does not hide the rest.
		if err := r.ApplyBatch([]change.Change{c}); err != nil && !isChangeError(err) {
			t.Fatalf("apply %v %s: %v", c.Op, c.Path, err)
		}
	}
	return dir
}

// sameTrees compares everything replication carries, content included;
// directory times are left out (renames into a directory move them, and
// the cases do not always carry them after).
func sameTrees(t *testing.T, a, b string) {
	t.Helper()
	ea, _, err := treesync.Scan(a, treesync.ScanOptions{})
	must(t, err)
	eb, _, err := treesync.Scan(b, treesync.ScanOptions{})
	must(t, err)
	strip := func(es []treesync.Entry) []treesync.Entry {
		var out []treesync.Entry
		for _, e := range es {
			if e.Path == ".holdfast" || filepath.Dir(e.Path) == ".holdfast" {
				continue
			}
			e.Dev, e.Ino, e.Birth = 0, 0, 0
			if e.Type == treesync.Dir {
				e.MTime = 0
			}
			out = append(out, e)
		}
		return out
	}
	sa, sb := strip(ea), strip(eb)
	if !reflect.DeepEqual(sa, sb) {
		t.Fatalf("trees differ:\n whole batch: %+v\n as sent:    %+v", sa, sb)
	}
	for _, e := range sa {
		if e.Type != treesync.File {
			continue
		}
		ca, err := os.ReadFile(filepath.Join(a, e.Path))
		must(t, err)
		cb, err := os.ReadFile(filepath.Join(b, e.Path))
		must(t, err)
		if !bytes.Equal(ca, cb) {
			t.Fatalf("%s: %q after the whole batch, %q as sent", e.Path, ca, cb)
		}
	}
}
