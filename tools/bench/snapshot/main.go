// Command snapshot measures how long agent/snapshot takes to create a
// snapshot of trees of growing size, beside cp -a doing the same copy: on
// an XFS loop filesystem with reflink (snapshot.Create against
// cp -a --reflink=always) and on the ordinary disk (snapshot.Create, which
// then copies, against cp -a). Each figure is the median of -reps runs. It
// needs root (loop mount) and mkfs.xfs (tools/install-deps.sh test).
//
// What it shows: with reflink, creation time follows the number of files,
// not the amount of data; a copy grows with the data.
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast/agent/snapshot"
)

func main() {
	base := flag.String("dir", os.TempDir(), "directory on the ordinary disk for the work files")
	sizes := flag.String("sizes", "1,8", "tree sizes in GiB (4 MiB files), comma-separated")
	small := flag.Int("small", 1000, "small files (4 KiB) added to each tree")
	reps := flag.Int("reps", 3, "runs per figure (the median is printed)")
	image := flag.Int64("xfs-gib", 20, "size of the sparse XFS image in GiB")
	flag.Parse()
	if err := run(*base, *sizes, *small, *reps, *image); err != nil {
		fmt.Fprintln(os.Stderr, "snapshot bench:", err)
		os.Exit(1)
	}
}

func run(base, sizeList string, small, reps int, imageGiB int64) error {
	work, err := os.MkdirTemp(base, "snapshot-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	xfs, unmount, err := mountXFS(work, imageGiB)
	if err != nil {
		return err
	}
	defer unmount()
	disk := filepath.Join(work, "disk")
	if err := os.Mkdir(disk, 0o700); err != nil {
		return err
	}

	fmt.Printf("%-6s %-8s %7s %9s  %-28s %9s  %s\n", "tree", "files", "GiB", "where", "method", "median s", "runs s")
	for _, s := range strings.Split(sizeList, ",") {
		gib, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("size %q: %w", s, err)
		}
		big := gib * 256
		for _, place := range []struct{ name, root, cp string }{
			{"xfs", xfs, "cp -a --reflink=always"},
			{"disk", disk, "cp -a"},
		} {
			src := filepath.Join(place.root, "src")
			if err := generate(src, big, small); err != nil {
				return err
			}
			store, err := snapshot.OpenStore(filepath.Join(place.root, "snapshots"))
			if err != nil {
				return err
			}
			var method snapshot.Method
			create := func() (time.Duration, error) {
				start := time.Now()
				in, err := store.Create(context.Background(), src, snapshot.Meta{}, nil)
				d := time.Since(start)
				if err != nil {
					return 0, err
				}
				method = in.Method
				return d, store.Release(in.ID)
			}
			cp := func() (time.Duration, error) {
				dst := filepath.Join(place.root, "cp")
				args := append(strings.Fields(place.cp)[1:], src, dst)
				start := time.Now()
				if out, err := exec.Command("cp", args...).CombinedOutput(); err != nil {
					return 0, fmt.Errorf("%s: %w: %s", place.cp, err, out)
				}
				// Create ends with syncfs; so does this, to compare like with like.
				if out, err := exec.Command("sync", "-f", dst).CombinedOutput(); err != nil {
					return 0, fmt.Errorf("sync: %w: %s", err, out)
				}
				d := time.Since(start)
				return d, os.RemoveAll(dst)
			}
			files := big + small
			label := fmt.Sprintf("%dGiB", gib)
			for _, m := range []struct {
				name string
				f    func() (time.Duration, error)
			}{{"snapshot.Create", create}, {place.cp + " + sync", cp}} {
				runs, err := measure(reps, m.f)
				if err != nil {
					return fmt.Errorf("%s on %s: %w", m.name, place.name, err)
				}
				name := m.name
				if m.name == "snapshot.Create" {
					name += " (" + string(method) + ")"
				}
				fmt.Printf("%-6s %-8d %7.2f %9s  %-28s %9.2f  %s\n", label, files, float64(big)*4/1024+float64(small)*4/1024/1024, place.name, name, median(runs), fmtRuns(runs))
			}
			if err := os.RemoveAll(src); err != nil {
				return err
			}
		}
	}
	return nil
}

func measure(reps int, f func() (time.Duration, error)) ([]time.Duration, error) {
	var out []time.Duration
	for range reps {
		// Dirty pages of the previous step are not this one's work.
		if err := exec.Command("sync").Run(); err != nil {
			return nil, err
		}
		d, err := f()
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func median(ds []time.Duration) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Seconds()
}

func fmtRuns(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%.2f", d.Seconds()))
	}
	return strings.Join(parts, " ")
}

// generate writes big files of 4 MiB (64 to a directory) and small files
// of 4 KiB (100 to a directory), each with its own content.
func generate(root string, big, small int) error {
	buf := make([]byte, 4<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(buf); i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], r.Uint64())
	}
	write := func(dir string, i int, data []byte) error {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		// Every file differs from the others in its first and last bytes.
		binary.LittleEndian.PutUint64(data, uint64(i))
		binary.LittleEndian.PutUint64(data[len(data)-8:], uint64(i))
		return os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), data, 0o644)
	}
	for i := range big {
		if err := write(filepath.Join(root, fmt.Sprintf("big%03d", i/64)), i, buf); err != nil {
			return err
		}
	}
	for i := range small {
		if err := write(filepath.Join(root, fmt.Sprintf("small%03d", i/100)), i, buf[:4096]); err != nil {
			return err
		}
	}
	return exec.Command("sync").Run()
}

// mountXFS makes a sparse image of gib GiB in dir, formats it XFS with
// reflink and loop-mounts it.
func mountXFS(dir string, gib int64) (string, func(), error) {
	img := filepath.Join(dir, "xfs.img")
	f, err := os.Create(img)
	if err != nil {
		return "", nil, err
	}
	if err := f.Truncate(gib << 30); err != nil {
		return "", nil, err
	}
	if err := f.Close(); err != nil {
		return "", nil, err
	}
	if out, err := exec.Command("mkfs.xfs", "-q", "-m", "reflink=1", img).CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("mkfs.xfs (install xfsprogs: tools/install-deps.sh test): %w: %s", err, out)
	}
	mnt := filepath.Join(dir, "xfs")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		return "", nil, err
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("mount -o loop (needs root): %w: %s", err, out)
	}
	return mnt, func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "umount %s: %v: %s\n", mnt, err, out)
		}
	}, nil
}
