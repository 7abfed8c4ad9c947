// Command catalog measures restore-by-query on a catalog of many file
// versions: how long FindByName takes to answer for one file name, for a
// prefix pattern and for a pattern starting with a wildcard, beside grep
// over a text listing of the same paths (what an operator would otherwise
// search). It prints medians.
//
//	go run ./tools/bench/catalog -files 100000 -sessions 10
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"time"

	"github.com/holdfast/holdfast/appliance/catalog"
)

func main() {
	files := flag.Int("files", 100_000, "distinct file paths")
	sessions := flag.Int("sessions", 10, "sessions holding a version of every file")
	reps := flag.Int("reps", 11, "queries of each kind; the median is printed")
	dir := flag.String("dir", "", "where to build the catalog (default: a temporary folder, removed after)")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the queries to this file")
	flag.Parse()
	cpuProfile = *profile
	if err := run(*files, *sessions, *reps, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "catalog bench:", err)
		os.Exit(1)
	}
}

var cpuProfile string

func pathOf(i int) string {
	return fmt.Sprintf("/srv/share/dept%02d/project%03d/report-%06d.txt", i%37, i%251, i)
}

func run(files, sessions, reps int, dir string) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "hf-catalog-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	cat, err := catalog.Open(filepath.Join(dir, "catalog"), catalog.Options{})
	if err != nil {
		return err
	}
	defer cat.Close()
	listing, err := os.Create(filepath.Join(dir, "listing.txt"))
	if err != nil {
		return err
	}
	lw := bufio.NewWriter(listing)
	start := time.Now()
	mtime := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for s := 1; s <= sessions; s++ {
		w := cat.NewFileVersionWriter()
		for i := range files {
			v := catalog.FileVersion{Host: "fs01", Path: pathOf(i), SessionID: uint64(s), Size: uint64(i), Mode: 0o644,
				MTime: mtime.Add(time.Duration(s) * time.Hour)}
			if err := w.Add(v); err != nil {
				return err
			}
			fmt.Fprintf(lw, "%d\tfs01\t%s\n", s, v.Path)
		}
		if err := w.Commit(true); err != nil {
			return err
		}
	}
	if err := lw.Flush(); err != nil {
		return err
	}
	listing.Close()
	fmt.Printf("catalog of %d file versions (%d paths x %d sessions) built in %s\n", files*sessions, files, sessions, time.Since(start).Round(time.Millisecond))

	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	one := fmt.Sprintf("report-%06d.txt", files/2)
	queries := []struct {
		what, pattern, grep string
		limit               int
	}{
		{"one file name", one, one, 0},
		{"prefix pattern report-0123*", "report-0123*", "report-0123", 0},
		{"leading wildcard *-000042.txt", "*-000042.txt", "-000042.txt", 0},
	}
	for _, q := range queries {
		var ours, theirs []time.Duration
		var found int
		for range reps {
			t := time.Now()
			list, err := cat.FindByName(q.pattern, q.limit)
			if err != nil {
				return err
			}
			ours = append(ours, time.Since(t))
			found = len(list)
			t = time.Now()
			if out, err := exec.Command("grep", "-F", "-c", "-e", q.grep, listing.Name()).Output(); err != nil && len(out) == 0 {
				return fmt.Errorf("grep: %w", err)
			}
			theirs = append(theirs, time.Since(t))
		}
		fmt.Printf("%-32s FindByName median %8s (%d files, latest versions)   grep -F over the listing median %8s   ratio %.3f\n",
			q.what, median(ours).Round(time.Microsecond), found, median(theirs).Round(time.Microsecond),
			float64(median(ours))/float64(median(theirs)))
	}
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
