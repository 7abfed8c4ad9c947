// Command vtl measures the tape path on the virtual library: the write
// throughput of drivers/tape onto a VTL drive whose tape file is on
// tmpfs, beside dd bs=256k to a file on the same tmpfs in the same run;
// and the time to LOCATE to the middle of a tape and read one block at
// two fill levels, to show that seeking does not grow with the tape's
// used length (the VTL indexes its blocks). It prints medians.
//
//	go run ./tools/bench/vtl -dir /dev/shm/hfvtl -mib 1024
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/holdfast/holdfast/drivers/scsi"
	"github.com/holdfast/holdfast/drivers/tape"
	"github.com/holdfast/holdfast/drivers/vtl"
)

func main() {
	dir := flag.String("dir", "/dev/shm/hfvtl-bench", "where the library and dd's file go (tmpfs); removed after")
	mib := flag.Int("mib", 1024, "MiB to write in the throughput runs")
	reps := flag.Int("reps", 3, "throughput runs of each kind; the median is printed")
	small := flag.Int("small", 10_000, "blocks on the lightly filled tape")
	large := flag.Int("large", 1_000_000, "blocks on the heavily filled tape")
	flag.Parse()
	if err := run(*dir, *mib, *reps, *small, *large); err != nil {
		fmt.Fprintln(os.Stderr, "vtl bench:", err)
		os.Exit(1)
	}
}

func run(dir string, mib, reps, small, large int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	total := int64(mib) << 20
	var tapeRates, ddRates []float64
	for i := range reps {
		// Interleaved, so both see the same machine.
		secs, err := writeTape(ctx, filepath.Join(dir, fmt.Sprintf("w%d", i)), total)
		if err != nil {
			return err
		}
		tapeRates = append(tapeRates, float64(total)/secs/(1<<20))
		secs, err = dd(filepath.Join(dir, "dd.img"), mib*4)
		if err != nil {
			return err
		}
		ddRates = append(ddRates, float64(total)/secs/(1<<20))
	}
	fmt.Printf("write %d MiB in 256 KiB blocks, median of %d:\n", mib, reps)
	fmt.Printf("  drivers/tape -> VTL drive (tmpfs): %8.0f MiB/s\n", median(tapeRates))
	fmt.Printf("  dd bs=256k conv=fsync (tmpfs):     %8.0f MiB/s\n", median(ddRates))
	fmt.Printf("  ratio: %.2f\n", median(tapeRates)/median(ddRates))
	for _, n := range []int{small, large} {
		mount, loc, both, err := locateBench(ctx, filepath.Join(dir, fmt.Sprintf("l%d", n)), n)
		if err != nil {
			return err
		}
		fmt.Printf("tape of %d blocks (512 B each, a filemark per 1000): load+index %v; from BOT, medians: LOCATE to a middle block %v, LOCATE + READ it %v\n",
			n, mount.Round(time.Millisecond), loc, both)
	}
	return nil
}

// library opens a one-drive library with a tape loaded and ready.
func library(ctx context.Context, dir string, capacity int64) (*vtl.Library, *tape.Drive, error) {
	l, err := vtl.Open(dir, vtl.Config{Slots: 1, Drives: 1, Capacity: capacity})
	if err != nil {
		return nil, nil, err
	}
	if err := l.CreateTape("BENCH1", 0); err != nil {
		return nil, nil, err
	}
	if _, err := l.Stock("BENCH1"); err != nil {
		return nil, nil, err
	}
	cdb := make([]byte, 12)
	cdb[0] = 0xA5 // MOVE MEDIUM
	binary.BigEndian.PutUint16(cdb[4:], vtl.FirstSlot)
	binary.BigEndian.PutUint16(cdb[6:], vtl.FirstDrive)
	if res, err := l.Changer().Do(ctx, &scsi.Command{CDB: cdb}); err != nil || res.Status != 0 {
		return nil, nil, fmt.Errorf("load: %v % x", err, res.Sense)
	}
	d, err := tape.Open(ctx, l.Drive(0), tape.Timeouts{})
	if err != nil {
		return nil, nil, err
	}
	if err := d.WaitReady(ctx, time.Minute); err != nil {
		return nil, nil, err
	}
	return l, d, nil
}

func writeTape(ctx context.Context, dir string, total int64) (float64, error) {
	l, d, err := library(ctx, dir, 2*total)
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	defer l.Close()
	if err := d.SetBlockSize(ctx, 0); err != nil {
		return 0, err
	}
	blk := make([]byte, tape.DefaultBlockSize)
	for i := range blk {
		blk[i] = byte(i * 7)
	}
	start := time.Now()
	for n := int64(0); n < total; n += int64(len(blk)) {
		binary.BigEndian.PutUint64(blk, uint64(n))
		if _, err := d.Write(ctx, blk); err != nil {
			return 0, err
		}
	}
	if err := d.WriteFilemarks(ctx, 1); err != nil { // syncs, as dd's conv=fsync
		return 0, err
	}
	return time.Since(start).Seconds(), nil
}

func dd(path string, blocks int) (float64, error) {
	defer os.Remove(path)
	start := time.Now()
	out, err := exec.Command("dd", "if=/dev/zero", "of="+path, "bs=256k", fmt.Sprint("count=", blocks), "conv=fsync").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("dd: %v: %s", err, out)
	}
	return time.Since(start).Seconds(), nil
}

// locateBench fills a tape with n small blocks, reloads it (the VTL
// indexes the tape file on load) and times LOCATE + READ of blocks
// around the middle.
func locateBench(ctx context.Context, dir string, n int) (mount, locate, both time.Duration, err error) {
	defer os.RemoveAll(dir)
	l, d, err := library(ctx, dir, int64(n)*600+1<<20)
	if err != nil {
		return 0, 0, 0, err
	}
	blk := make([]byte, 512)
	var objects []uint64 // object number of every 97th block
	var obj uint64
	for i := range n {
		binary.BigEndian.PutUint64(blk, uint64(i))
		if i%97 == 0 {
			objects = append(objects, obj)
		}
		if _, err := d.Write(ctx, blk); err != nil {
			return 0, 0, 0, err
		}
		obj++
		if i%1000 == 999 {
			if err := d.WriteFilemarks(ctx, 1); err != nil {
				return 0, 0, 0, err
			}
			obj++
		}
	}
	if err := d.Unload(ctx); err != nil {
		return 0, 0, 0, err
	}
	if err := l.Close(); err != nil {
		return 0, 0, 0, err
	}
	// Reopen: the drive indexes the tape file as it mounts it.
	start := time.Now()
	l, err = vtl.Open(dir, vtl.Config{Slots: 1, Drives: 1, Capacity: int64(n)*600 + 1<<20})
	if err != nil {
		return 0, 0, 0, err
	}
	defer l.Close()
	mount = time.Since(start)
	if d, err = tape.Open(ctx, l.Drive(0), tape.Timeouts{}); err != nil {
		return 0, 0, 0, err
	}
	if err := d.Load(ctx); err != nil {
		return 0, 0, 0, err
	}
	// Blocks in the middle fifth of the tape, 101 of them.
	mid := objects[len(objects)*2/5 : len(objects)*3/5]
	var locTimes, times []float64
	buf := make([]byte, 512)
	for k := 0; k < 101; k++ {
		o := mid[k*len(mid)/101]
		if err := d.Rewind(ctx); err != nil {
			return 0, 0, 0, err
		}
		t0 := time.Now()
		if err := d.Locate(ctx, o); err != nil {
			return 0, 0, 0, err
		}
		locTimes = append(locTimes, float64(time.Since(t0)))
		if _, err := d.Read(ctx, buf); err != nil {
			return 0, 0, 0, fmt.Errorf("read object %d: %w", o, err)
		}
		times = append(times, float64(time.Since(t0)))
		if want := uint64((k*len(mid)/101 + len(objects)*2/5) * 97); binary.BigEndian.Uint64(buf) != want {
			return 0, 0, 0, fmt.Errorf("object %d holds block %d, want %d", o, binary.BigEndian.Uint64(buf), want)
		}
	}
	return mount, time.Duration(median(locTimes)).Round(100 * time.Nanosecond), time.Duration(median(times)).Round(100 * time.Nanosecond), nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
