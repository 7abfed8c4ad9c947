// Command rewind measures the rewind journal (agent/rewind): how long a
// rewind of many operations on a large tree takes, and what journaling
// costs a replica that applies a replication stream.
//
//	-bench rewind    build a tree of -files files of -file-mb MiB, apply
//	                 -ops mixed changes through the journaled replica,
//	                 rewind to the point before them and check the tree
//	                 equals the one they started from
//	-bench overhead  apply one stream (an initial sync of a tree as
//	                 whole-file replacements, then live writes) through
//	                 replication.LocalReplica with the journal off and on,
//	                 -rounds alternating rounds each, and print medians
//
// Work happens in a temporary directory below -dir, on the disk under test.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/apply"
	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/replication"
	"github.com/holdfast/holdfast/agent/rewind"
)

func main() {
	bench := flag.String("bench", "rewind", "rewind or overhead")
	dir := flag.String("dir", os.TempDir(), "directory to work in (on the disk under test)")
	files := flag.Int("files", 1000, "files in the tree")
	fileMB := flag.Int("file-mb", 1, "size of each file, MiB")
	ops := flag.Int("ops", 10000, "changes to rewind (-bench rewind)")
	rounds := flag.Int("rounds", 5, "rounds per setting (-bench overhead)")
	writes := flag.Int("writes", 4000, "live writes after the initial sync (-bench overhead)")
	flag.Parse()
	work, err := os.MkdirTemp(*dir, "rewind-bench-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(work)
	switch *bench {
	case "rewind":
		err = benchRewind(work, *files, *fileMB<<20, *ops)
	case "overhead":
		err = benchOverhead(work, *files, *fileMB<<20, *writes, *rounds)
	default:
		err = fmt.Errorf("unknown -bench %q", *bench)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "rewind bench:", err)
	os.Exit(1)
}

func content(n int, seed uint64) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	return b
}

// treeStream makes the directories and whole files of the tree.
func treeStream(files, size int) []change.Change {
	var cs []change.Change
	for d := range 10 {
		cs = append(cs, change.Change{Op: change.OpMkdir, Path: fmt.Sprintf("d%d", d), Mode: 0o755})
	}
	for i := range files {
		cs = append(cs, change.Change{Op: change.OpReplaceFile, Path: fmt.Sprintf("d%d/f%04d", i%10, i),
			Data: content(size, uint64(i)), Mode: 0o644, MTime: 1_700_000_000_000_000_000 + int64(i)})
	}
	return cs
}

func number(cs []change.Change, first uint64) uint64 {
	for i := range cs {
		cs[i].Seq = first
		first++
	}
	return first
}

// applyIn applies cs in batches of n.
func applyIn(apply func([]change.Change) error, cs []change.Change, n int) error {
	for len(cs) > 0 {
		k := min(n, len(cs))
		if err := apply(cs[:k]); err != nil {
			return err
		}
		cs = cs[k:]
	}
	return nil
}

// mixed makes ops changes over the tree: writes of 4-64 KiB at random
// offsets, whole-file replacements, renames, creations, removals, chmods.
func mixed(rng *rand.Rand, files, size, ops int) []change.Change {
	live := make([]string, files)
	for i := range live {
		live[i] = fmt.Sprintf("d%d/f%04d", i%10, i)
	}
	pick := func() (int, string) { i := rng.IntN(len(live)); return i, live[i] }
	var cs []change.Change
	for n := 0; len(cs) < ops; n++ {
		switch k := rng.IntN(20); {
		case k < 10:
			_, p := pick()
			l := 4<<10 + rng.IntN(60<<10)
			cs = append(cs, change.Change{Op: change.OpWrite, Path: p, Offset: int64(rng.IntN(size - l)), Data: content(l, uint64(n))})
		case k < 12:
			_, p := pick()
			cs = append(cs, change.Change{Op: change.OpReplaceFile, Path: p, Data: content(size, uint64(n)+1<<40), Mode: 0o644, MTime: int64(n)})
		case k < 14:
			i, p := pick()
			np := fmt.Sprintf("d%d/r%05d", rng.IntN(10), n)
			cs = append(cs, change.Change{Op: change.OpRename, Path: p, NewPath: np})
			live[i] = np
		case k < 16:
			p := fmt.Sprintf("d%d/c%05d", rng.IntN(10), n)
			cs = append(cs, change.Change{Op: change.OpCreate, Path: p, Mode: 0o600},
				change.Change{Op: change.OpWrite, Path: p, Data: content(4<<10, uint64(n))})
			live = append(live, p)
		case k < 18 && len(live) > files/2:
			i, p := pick()
			cs = append(cs, change.Change{Op: change.OpRemove, Path: p})
			live = slices.Delete(live, i, i+1)
		default:
			_, p := pick()
			cs = append(cs, change.Change{Op: change.OpChmod, Path: p, Mode: uint32(0o600 + rng.IntN(0o177))})
		}
	}
	return cs[:ops]
}

func benchRewind(work string, files, size, ops int) error {
	dir := filepath.Join(work, "replica")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	r, err := rewind.Open(dir, rewind.Options{MaxBytes: 64 << 30, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer r.Close()
	tree := treeStream(files, size)
	seq := number(tree, 1)
	start := time.Now()
	if err := applyIn(r.ApplyBatch, tree, 256); err != nil {
		return fmt.Errorf("build tree: %w", err)
	}
	fmt.Printf("tree: %d files of %d MiB built in %.1fs\n", files, size>>20, time.Since(start).Seconds())
	before, err := digest(dir)
	if err != nil {
		return err
	}
	mark, err := r.Bookmark("before")
	if err != nil {
		return err
	}
	u0, _ := r.Usage()
	cs := mixed(rand.New(rand.NewPCG(1, 2)), files, size, ops)
	number(cs, seq)
	start = time.Now()
	if err := applyIn(r.ApplyBatch, cs, 50); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	applied := time.Since(start)
	u1, _ := r.Usage()
	after, err := digest(dir)
	if err != nil {
		return err
	}
	if after == before {
		return fmt.Errorf("the changes changed nothing")
	}
	start = time.Now()
	res, err := r.Rewind(context.Background(), rewind.Target{Point: mark.ID}, "", nil)
	if err != nil {
		return fmt.Errorf("rewind: %w", err)
	}
	took := time.Since(start)
	got, err := digest(dir)
	if err != nil {
		return err
	}
	u2, _ := r.Usage()
	fmt.Printf("applied %d changes in %.1fs; journal grew %.1f MiB (%.0f bytes a change)\n",
		ops, applied.Seconds(), float64(u1.Bytes-u0.Bytes)/(1<<20), float64(u1.Bytes-u0.Bytes)/float64(ops))
	fmt.Printf("rewind of %d points: %.1fs wall (%.0f points/s); journal %.1f MiB after it\n",
		res.Undone, took.Seconds(), float64(res.Undone)/took.Seconds(), float64(u2.Bytes)/(1<<20))
	if got != before {
		return fmt.Errorf("after the rewind the tree differs from the one before the changes")
	}
	fmt.Println("tree digest after the rewind equals the one before the changes: ok")
	return nil
}

// digest hashes every entry below root (leaving out the state directory):
// path, type, mode, owner, mtime, content, link target.
func digest(root string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == apply.StateDir {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		mt := st.Mtim.Nano()
		if rel == "." {
			mt = 0
		}
		fmt.Fprintf(h, "%s %o %d %d %d\n", rel, st.Mode, st.Uid, st.Gid, mt)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(h, f)
			f.Close()
			return err
		case unix.S_IFLNK:
			t, err := os.Readlink(p)
			fmt.Fprintln(h, t)
			return err
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

func benchOverhead(work string, files, size, writes, rounds int) error {
	tree := treeStream(files, size)
	seq := number(tree, 1)
	rng := rand.New(rand.NewPCG(3, 4))
	live := make([]change.Change, writes)
	for i := range live {
		l := 4<<10 + rng.IntN(60<<10)
		live[i] = change.Change{Op: change.OpWrite, Path: fmt.Sprintf("d%d/f%04d", i%10, rng.IntN(files)),
			Offset: int64(rng.IntN(size - l)), Data: content(l, uint64(i))}
	}
	number(live, seq)
	var bytes int64
	for _, c := range append(slices.Clone(tree), live...) {
		bytes += int64(len(c.Data))
	}
	type result struct{ mibs, cps float64 }
	res := map[bool][]result{}
	for round := range rounds {
		for _, on := range []bool{false, true} {
			dir := filepath.Join(work, fmt.Sprintf("r%d-%v", round, on))
			opts := replication.LocalOptions{}
			if on {
				opts.Rewind = &rewind.Options{MaxBytes: 64 << 30, Log: slog.New(slog.DiscardHandler)}
			}
			r, err := replication.OpenLocalWith(dir, opts)
			if err != nil {
				return err
			}
			start := time.Now()
			err = applyIn(r.ApplyBatch, tree, 256)
			if err == nil {
				err = applyIn(r.ApplyBatch, live, 50)
			}
			took := time.Since(start).Seconds()
			if cerr := r.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			n := float64(len(tree) + len(live))
			res[on] = append(res[on], result{float64(bytes) / (1 << 20) / took, n / took})
			fmt.Printf("round %d journal %-3s %.1f MiB/s %.0f changes/s\n", round, map[bool]string{false: "off", true: "on"}[on],
				float64(bytes)/(1<<20)/took, n/took)
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
		}
	}
	med := func(rs []result, f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	mb := func(r result) float64 { return r.mibs }
	cp := func(r result) float64 { return r.cps }
	fmt.Printf("stream: %d whole files of %d MiB, then %d writes of 4-64 KiB in batches of 50 (%.0f MiB)\n",
		len(tree)-10, size>>20, writes, float64(bytes)/(1<<20))
	fmt.Printf("median journal off: %.1f MiB/s %.0f changes/s\n", med(res[false], mb), med(res[false], cp))
	fmt.Printf("median journal on:  %.1f MiB/s %.0f changes/s\n", med(res[true], mb), med(res[true], cp))
	fmt.Printf("on/off: %.2f (MiB/s) %.2f (changes/s)\n", med(res[true], mb)/med(res[false], mb), med(res[true], cp)/med(res[false], cp))
	return nil
}
