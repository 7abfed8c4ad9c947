package restore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// step is one Put of a sequence.
type step struct {
	entry   Entry
	content string
}

func fileAt(p, content string, mtime time.Time) step {
	return step{Entry{Path: p, Type: File, Mode: 0o644, MTime: mtime}, content}
}

// result is what a sequence of Puts did: each Put's outcome or the
// error's kind, and the tree left.
type result struct {
	outcomes []string
	tree     map[string]string
}

func runSteps(t *testing.T, dest string, opts Options, steps []step) result {
	t.Helper()
	w := open(t, dest, opts)
	var r result
	for _, s := range steps {
		var content *strings.Reader
		if s.entry.Type == File {
			content = strings.NewReader(s.content)
		}
		out, err := w.Put(s.entry, content)
		switch {
		case errors.Is(err, ErrInTheWay):
			r.outcomes = append(r.outcomes, "in the way")
		case err != nil:
			r.outcomes = append(r.outcomes, "error: "+err.Error())
		default:
			r.outcomes = append(r.outcomes, out.Action.String()+" "+out.Path)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r.tree = map[string]string{}
	err := filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dest {
			return err
		}
		rel, _ := filepath.Rel(dest, p)
		switch {
		case d.IsDir():
			r.tree[rel] = "dir"
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			r.tree[rel] = "-> " + target
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			r.tree[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestBatchBehavesAsOneByOne runs sequences whose entries meet names
// still queued (the same path twice, a rename's free name, a file below a
// queued file, an entry named like a queued file's temporary name) with
// and without Batch: outcomes and trees must be the same.
func TestBatchBehavesAsOneByOne(t *testing.T) {
	old := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	mid := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	late := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	existing := map[string]string{"docs/report.txt": "current", "keep": "current"}
	tests := []struct {
		name   string
		policy Policy
		steps  []step
	}{
		{"same path twice, overwrite", Overwrite, []step{fileAt("a/x", "one", mid), fileAt("a/x", "two", mid)}},
		{"same path twice, skip", Skip, []step{fileAt("a/x", "one", mid), fileAt("a/x", "two", mid), fileAt("keep", "new", mid)}},
		{"newer then older", IfNewer, []step{fileAt("a/x", "newer", late), fileAt("a/x", "older", old)}},
		{"older then newer", IfNewer, []step{fileAt("a/x", "older", old), fileAt("a/x", "newer", late), fileAt("docs/report.txt", "newer", late)}},
		{"rename twice", Rename, []step{fileAt("docs/report.txt", "r1", mid), fileAt("docs/report.txt", "r2", mid)}},
		{"rename past a queued name", Rename, []step{fileAt("docs/report~1.txt", "queued", mid), fileAt("docs/report.txt", "renamed", mid), fileAt("docs/report~2.txt", "third", mid)}},
		{"file below a queued file", Overwrite, []step{fileAt("a", "a file", mid), fileAt("a/b", "below", mid), {Entry{Path: "a/c", Type: Dir, Mode: 0o755}, ""}}},
		{"directory over a queued file", Overwrite, []step{fileAt("d", "a file", mid), {Entry{Path: "d", Type: Dir, Mode: 0o755}, ""}, fileAt("d/in", "inside", mid)}},
		{"symlink over a queued file", Overwrite, []step{fileAt("l", "a file", mid), {Entry{Path: "l", Type: Symlink, Target: "elsewhere"}, ""}}},
		{"named like a temporary name", Overwrite, []step{fileAt("x", "x", mid), fileAt(tempPrefix+"x", "not a temp", mid), fileAt("y", "y", mid)}},
		{"temporary name first", Overwrite, []step{fileAt(tempPrefix+"z", "not a temp", mid), fileAt("z", "z", mid)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got [2]result
			for i, batch := range []bool{false, true} {
				dest := t.TempDir()
				for p, c := range existing {
					if err := os.MkdirAll(filepath.Dir(filepath.Join(dest, p)), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(dest, p), []byte(c), 0o644); err != nil {
						t.Fatal(err)
					}
					if err := os.Chtimes(filepath.Join(dest, p), mid, mid); err != nil {
						t.Fatal(err)
					}
				}
				got[i] = runSteps(t, dest, Options{Policy: tt.policy, Batch: batch}, tt.steps)
			}
			one, batched := got[0], got[1]
			if strings.Join(one.outcomes, "\n") != strings.Join(batched.outcomes, "\n") {
				t.Errorf("outcomes one by one:\n%s\nbatched:\n%s", strings.Join(one.outcomes, "\n"), strings.Join(batched.outcomes, "\n"))
			}
			if len(one.tree) != len(batched.tree) {
				t.Errorf("tree one by one %v, batched %v", one.tree, batched.tree)
			}
			for p, c := range one.tree {
				if batched.tree[p] != c {
					t.Errorf("%s: one by one %q, batched %q", p, c, batched.tree[p])
				}
			}
		})
	}
}

// TestBatchFailureNamesTheEntry: a queued file whose name is taken by a
// directory before its flush fails at Close, named with its entry, and
// leaves no temporary file; with Options.Failed it goes there instead.
func TestBatchFailureNamesTheEntry(t *testing.T) {
	for _, callback := range []bool{false, true} {
		t.Run(map[bool]string{false: "in Close's error", true: "to Failed"}[callback], func(t *testing.T) {
			dest := t.TempDir()
			var reported []*EntryError
			opts := Options{Batch: true}
			if callback {
				opts.Failed = func(e *EntryError) { reported = append(reported, e) }
			}
			w := open(t, dest, opts)
			for _, p := range []string{"ok1", "blocked", "ok2"} {
				e, r := file(p, "content of "+p)
				if out, err := w.Put(e, r); err != nil || out.Action != Written {
					t.Fatalf("Put %s: %+v, %v", p, out, err)
				}
			}
			// Someone else makes a directory where a queued file goes.
			if err := os.MkdirAll(filepath.Join(dest, "blocked", "inside"), 0o755); err != nil {
				t.Fatal(err)
			}
			err := w.Close()
			if !callback {
				reported = Failed(err)
			} else if err != nil {
				t.Fatalf("Close with Failed set: %v", err)
			}
			if len(reported) != 1 || reported[0].Entry.Path != "blocked" || !errors.Is(reported[0], ErrInTheWay) {
				t.Fatalf("failures %v (Close: %v), want blocked, in the way", reported, err)
			}
			for _, p := range []string{"ok1", "ok2"} {
				if b, err := os.ReadFile(filepath.Join(dest, p)); err != nil || string(b) != "content of "+p {
					t.Fatalf("%s = %q, %v", p, b, err)
				}
			}
			if leftovers, _ := filepath.Glob(filepath.Join(dest, tempPrefix+"*")); len(leftovers) > 0 {
				t.Fatalf("temporary files left: %v", leftovers)
			}
		})
	}
}

// TestBatchManyFiles crosses several flushes (by count) and checks every
// file is in place, with its metadata, and nothing temporary is left.
func TestBatchManyFiles(t *testing.T) {
	dest := t.TempDir()
	w := open(t, dest, Options{Batch: true})
	n := batchFiles*2 + 7
	for i := range n {
		e, r := file(fmt.Sprintf("d%d/f%s-%d", i%5, strings.Repeat("x", i%7), i), fmt.Sprint("content ", i))
		if _, err := w.Put(e, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	count := 0
	filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), tempPrefix) {
			t.Errorf("temporary file left: %s", p)
		}
		if d.Type().IsRegular() {
			count++
			fi, _ := d.Info()
			if fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)) {
				t.Errorf("%s: mode %v, time %v", p, fi.Mode(), fi.ModTime())
			}
		}
		return nil
	})
	if count != n {
		t.Fatalf("%d files restored, want %d", count, n)
	}
}
