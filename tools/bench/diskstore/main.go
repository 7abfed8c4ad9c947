// Command diskstore compares the disk store (appliance/diskstore) with
// restic on the same tree in the same run: a first backup of a mixed tree,
// a second after 1% of its files changed, then a full restore of that
// second backup into a fresh directory (the disk store's through
// agent/restore's Writer, as restore jobs do; restic's with "restic
// restore latest --target"), both stores encrypted. Both restores are
// checked against the source, file by file, before anything is printed.
// It prints each round and the medians.
//
//	go run ./tools/bench/diskstore -dir /var/tmp -mib 1024 -rounds 3
//
// restic must be on PATH; its password comes from RESTIC_PASSWORD, set
// here. Work happens in a temporary directory below -dir.
package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/holdfast/holdfast/agent/restore"
	"github.com/holdfast/holdfast/appliance/diskstore"
)

func main() {
	dir := flag.String("dir", os.TempDir(), "directory to work in (on the disk under test)")
	mib := flag.Int("mib", 1024, "size of the tree, MiB")
	rounds := flag.Int("rounds", 3, "rounds")
	flag.StringVar(&restoreProfile, "restore-cpuprofile", "", "write a CPU profile of our restores to this file")
	flag.Parse()
	if err := run(*dir, *mib, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "diskstore bench:", err)
		os.Exit(1)
	}
}

// result is one tool's figures for one round.
type result struct {
	first, second         time.Duration
	firstSize, secondSize int64 // store bytes after each backup
	restore               time.Duration
}

func run(dir string, mib, rounds int) error {
	work, err := os.MkdirTemp(dir, "diskstore-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "src")
	files, err := makeTree(src, int64(mib)<<20)
	if err != nil {
		return fmt.Errorf("make tree: %w", err)
	}
	fmt.Printf("tree: %d files, %d MiB (1/3 random, 1/3 text, 1/3 copies of other files)\n", len(files), mib)
	var ours, theirs []result
	for round := range rounds {
		// Each round starts from the original tree.
		if err := os.RemoveAll(src); err != nil {
			return err
		}
		if _, err := makeTree(src, int64(mib)<<20); err != nil {
			return err
		}
		var o, t result
		for step := range 2 {
			if step == 1 {
				if err := changeOnePercent(files, uint64(round)); err != nil {
					return fmt.Errorf("change tree: %w", err)
				}
			}
			// Alternate which tool runs first, so neither always finds
			// the tree warmer in the page cache.
			runs := []func() error{
				func() error { return backupOurs(work, src, round, step, &o) },
				func() error { return backupRestic(work, src, round, step, &t) },
			}
			if round%2 == 1 {
				slices.Reverse(runs)
			}
			for _, r := range runs {
				if err := r(); err != nil {
					return err
				}
			}
		}
		want, err := treeHashes(src)
		if err != nil {
			return fmt.Errorf("hash source: %w", err)
		}
		restores := []func() error{
			func() error { return restoreOurs(work, src, round, want, &o) },
			func() error { return restoreRestic(work, src, round, want, &t) },
		}
		if round%2 == 1 {
			slices.Reverse(restores)
		}
		for _, r := range restores {
			if err := r(); err != nil {
				return err
			}
		}
		fmt.Printf("round %d: diskstore first %v (%.1f MiB) second %v (+%.1f MiB) restore %v; restic first %v (%.1f MiB) second %v (+%.1f MiB) restore %v\n",
			round, o.first.Round(time.Millisecond), mb(o.firstSize), o.second.Round(time.Millisecond), mb(o.secondSize-o.firstSize), o.restore.Round(time.Millisecond),
			t.first.Round(time.Millisecond), mb(t.firstSize), t.second.Round(time.Millisecond), mb(t.secondSize-t.firstSize), t.restore.Round(time.Millisecond))
		ours, theirs = append(ours, o), append(theirs, t)
	}
	for _, x := range []struct {
		name string
		rs   []result
	}{{"diskstore", ours}, {"restic", theirs}} {
		f := median(x.rs, func(r result) int64 { return int64(r.first) })
		s := median(x.rs, func(r result) int64 { return int64(r.second) })
		rs := median(x.rs, func(r result) int64 { return int64(r.restore) })
		fmt.Printf("median %-9s first %6.2f s  %6.1f MiB/s  store %.1f MiB | second %6.2f s  added %.1f MiB | restore %6.2f s  %6.1f MiB/s\n",
			x.name, time.Duration(f).Seconds(), float64(mib)/time.Duration(f).Seconds(),
			mb(median(x.rs, func(r result) int64 { return r.firstSize })),
			time.Duration(s).Seconds(), mb(median(x.rs, func(r result) int64 { return r.secondSize - r.firstSize })),
			time.Duration(rs).Seconds(), float64(mib)/time.Duration(rs).Seconds())
	}
	return nil
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

func median(rs []result, f func(result) int64) int64 {
	v := make([]int64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// makeTree writes a deterministic tree of about size bytes: file sizes
// mostly 1 KiB to 64 KiB and one in five 64 KiB to 32 MiB, a third random, a third text-like, a third
// copies of earlier files. It returns the files' paths.
func makeTree(root string, size int64) ([]string, error) {
	rng := mrand.New(mrand.NewPCG(42, 42))
	var files []string
	var contents [][]byte
	var total int64
	for i := 0; total < size; i++ {
		var b []byte
		n := 1 << (10 + rng.IntN(7)) // most files 1 KiB .. 64 KiB
		if rng.IntN(5) == 0 {
			n = 1 << (16 + rng.IntN(10)) // some 64 KiB .. 32 MiB
		}
		n = int(min(int64(n), size-total+1))
		switch {
		case i%3 == 2 && len(contents) > 0:
			b = contents[rng.IntN(len(contents))]
		case i%3 == 1:
			var buf bytes.Buffer
			for buf.Len() < n {
				fmt.Fprintf(&buf, "%d INFO request %d served in %d ms for user%d\n", i, rng.IntN(1e6), rng.IntN(500), rng.IntN(100))
			}
			b = buf.Bytes()[:n]
		default:
			b = make([]byte, n)
			for j := 0; j < n; j += 8 {
				v := rng.Uint64()
				for k := 0; k < 8 && j+k < n; k++ {
					b[j+k] = byte(v >> (8 * k))
				}
			}
		}
		if len(b) < 4<<20 {
			contents = append(contents, b)
		}
		p := filepath.Join(root, fmt.Sprintf("d%02d", i%37), fmt.Sprintf("f%05d", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return nil, err
		}
		files = append(files, p)
		total += int64(len(b))
	}
	return files, nil
}

// changeOnePercent overwrites 4 KiB in the middle of 1% of the files.
func changeOnePercent(files []string, seed uint64) error {
	rng := mrand.New(mrand.NewPCG(seed, 7))
	for range max(len(files)/100, 1) {
		p := files[rng.IntN(len(files))]
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		st, err := f.Stat()
		if err == nil {
			junk := make([]byte, 4096)
			rand.Read(junk)
			_, err = f.WriteAt(junk, st.Size()/2)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

var applianceKey = func() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}()

func backupOurs(work, src string, round, step int, r *result) error {
	dir := filepath.Join(work, fmt.Sprintf("ours-%d", round))
	if step == 0 {
		s, err := diskstore.Create(dir, diskstore.WithApplianceKey(applianceKey), diskstore.Options{})
		if err != nil {
			return err
		}
		s.Close()
	}
	// Timed from here, like restic: open (key file, pack indexes), back up.
	start := time.Now()
	s, err := diskstore.Open(dir, diskstore.WithApplianceKey(applianceKey), diskstore.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	// The last session is the parent: files whose size and mtime match
	// its entries are not read again (restic does the same).
	parent := map[string]diskstore.Entry{}
	if list, err := s.ListSessions(); err != nil {
		return err
	} else if len(list) > 0 {
		ss, err := s.OpenSession(list[len(list)-1].ID)
		if err != nil {
			return err
		}
		for _, en := range ss.Entries() {
			parent[en.Path] = en
		}
	}
	w := s.BeginSession(diskstore.SessionMeta{Label: "bench"})
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		hdr := diskstore.FileHeader{Path: p, Mode: fi.Mode(), ModTime: fi.ModTime()}
		if d.IsDir() {
			return w.AddDir(hdr)
		}
		if prev, ok := parent[p]; ok && prev.Type == diskstore.TypeFile && prev.Size == fi.Size() && prev.ModTime.Equal(fi.ModTime()) {
			return w.AddUnchanged(hdr, prev)
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return w.AddFile(hdr, f)
	})
	if err != nil {
		return fmt.Errorf("diskstore backup: %w", err)
	}
	if _, err := w.Commit(); err != nil {
		return fmt.Errorf("diskstore commit: %w", err)
	}
	took := time.Since(start)
	if step == 0 {
		r.first, r.firstSize = took, dirSize(dir)
	} else {
		r.second, r.secondSize = took, dirSize(dir)
	}
	return nil
}

func backupRestic(work, src string, round, step int, r *result) error {
	repo := filepath.Join(work, fmt.Sprintf("restic-%d", round))
	env := append(os.Environ(), "RESTIC_PASSWORD=bench-password", "RESTIC_CACHE_DIR="+filepath.Join(work, "restic-cache"))
	if step == 0 {
		cmd := exec.Command("restic", "-r", repo, "init", "--quiet")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("restic init: %w: %s", err, out)
		}
	}
	// Timed from here: creating the repository is not part of a backup.
	// Opening it (restic derives its key with scrypt on every run) is.
	start := time.Now()
	cmd := exec.Command("restic", "-r", repo, "backup", "--quiet", src)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("restic backup: %w: %s", err, out)
	}
	took := time.Since(start)
	if step == 0 {
		r.first, r.firstSize = took, dirSize(repo)
	} else {
		r.second, r.secondSize = took, dirSize(repo)
	}
	return nil
}

// treeHashes maps every regular file below root, by its path relative to
// root, to the SHA-256 of its content.
func treeHashes(root string) (map[string][32]byte, error) {
	out := map[string][32]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		out[rel] = [32]byte(h.Sum(nil))
		return nil
	})
	return out, err
}

// sameTree fails unless got holds exactly the files of want with the same
// content.
func sameTree(tool, dir string, want map[string][32]byte) error {
	got, err := treeHashes(dir)
	if err != nil {
		return fmt.Errorf("%s restore: hash %s: %w", tool, dir, err)
	}
	if len(got) != len(want) {
		return fmt.Errorf("%s restore: %d files in %s, the source has %d", tool, len(got), dir, len(want))
	}
	for rel, h := range want {
		if got[rel] != h {
			return fmt.Errorf("%s restore: %s differs from the source", tool, rel)
		}
	}
	return nil
}

// restoreProfile names the file our restores' CPU profile goes to.
var restoreProfile string

// restoreOurs restores the store's latest session into a fresh directory
// the way a restore job does: the files' content read ahead
// (diskstore.ReadAhead), every entry through agent/restore's Writer in
// batch mode (confined names, temporary files synced a batch at a time,
// then renamed; owners and times), everything durable when Close returns.
func restoreOurs(work, src string, round int, want map[string][32]byte, r *result) error {
	dir := filepath.Join(work, fmt.Sprintf("ours-%d", round))
	target := filepath.Join(work, fmt.Sprintf("ours-restore-%d", round))
	if restoreProfile != "" {
		f, err := os.Create(fmt.Sprintf("%s.%d", restoreProfile, round))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	s, err := diskstore.Open(dir, diskstore.WithApplianceKey(applianceKey), diskstore.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	list, err := s.ListSessions()
	if err != nil {
		return err
	}
	ss, err := s.OpenSession(list[len(list)-1].ID)
	if err != nil {
		return err
	}
	w, err := restore.Open(target, restore.Options{Owners: os.Geteuid() == 0, Batch: true})
	if err != nil {
		return err
	}
	var paths []string
	for _, en := range ss.Entries() {
		paths = append(paths, en.Path)
	}
	ra := ss.ReadAhead(paths, 0)
	defer ra.Close()
	for _, en := range ss.Entries() {
		rel, err := filepath.Rel(src, en.Path)
		if err != nil {
			return err
		}
		if rel == "." {
			continue
		}
		e := restore.Entry{Path: filepath.ToSlash(rel), Mode: uint32(en.Mode.Perm()), UID: en.UID, GID: en.GID, MTime: en.ModTime}
		var content io.ReadCloser
		switch en.Type {
		case diskstore.TypeDir:
			e.Type = restore.Dir
		case diskstore.TypeSymlink:
			e.Type, e.Target = restore.Symlink, en.Target
		default:
			e.Type = restore.File
			if content, err = ra.Open(en.Path); err != nil {
				return err
			}
		}
		var rd io.Reader
		if content != nil {
			rd = content
		}
		_, err = w.Put(e, rd)
		if content != nil {
			content.Close()
		}
		if err != nil {
			return fmt.Errorf("diskstore restore: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	r.restore = time.Since(start)
	err = sameTree("diskstore", target, want)
	if rerr := os.RemoveAll(target); err == nil {
		err = rerr
	}
	return err
}

// restoreRestic restores restic's latest snapshot with its own restore
// command; restic recreates the source's absolute path below the target.
func restoreRestic(work, src string, round int, want map[string][32]byte, r *result) error {
	repo := filepath.Join(work, fmt.Sprintf("restic-%d", round))
	target := filepath.Join(work, fmt.Sprintf("restic-restore-%d", round))
	env := append(os.Environ(), "RESTIC_PASSWORD=bench-password", "RESTIC_CACHE_DIR="+filepath.Join(work, "restic-cache"))
	start := time.Now()
	cmd := exec.Command("restic", "-r", repo, "restore", "latest", "--quiet", "--target", target)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("restic restore: %w: %s", err, out)
	}
	r.restore = time.Since(start)
	err := sameTree("restic", filepath.Join(target, src), want)
	if rerr := os.RemoveAll(target); err == nil {
		err = rerr
	}
	return err
}
