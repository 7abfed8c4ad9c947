package restore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fixture is a destination with a sibling folder that no restore may
// touch, whatever the names say.
type fixture struct {
	dest, outside string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	base := t.TempDir()
	f := fixture{dest: filepath.Join(base, "dest"), outside: filepath.Join(base, "outside")}
	if err := os.MkdirAll(f.outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.outside, "secret"), []byte("untouched"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// checkOutside fails if anything below outside changed.
func (f fixture) checkOutside(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir(f.outside)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("the restore wrote outside its destination: %v", entries)
	}
	if b, err := os.ReadFile(filepath.Join(f.outside, "secret")); err != nil || string(b) != "untouched" {
		t.Fatalf("outside/secret = %q, %v", b, err)
	}
}

func open(t *testing.T, dest string, opts Options) *Writer {
	t.Helper()
	w, err := Open(dest, opts)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func file(p, content string) (Entry, *strings.Reader) {
	return Entry{Path: p, Type: File, Mode: 0o640, MTime: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}, strings.NewReader(content)
}

func TestHostileNamesNeverLeaveTheDestination(t *testing.T) {
	tests := []struct {
		name  string
		entry Entry
		want  error
	}{
		{"climbing", Entry{Path: "../outside/secret", Type: File}, ErrUnsafePath},
		{"climbing inside", Entry{Path: "a/../../outside/secret", Type: File}, ErrUnsafePath},
		{"absolute", Entry{Path: "/etc/passwd", Type: File}, ErrUnsafePath},
		{"empty", Entry{Path: "", Type: File}, ErrUnsafePath},
		{"dot", Entry{Path: ".", Type: Dir}, ErrUnsafePath},
		{"double slash", Entry{Path: "a//b", Type: File}, ErrUnsafePath},
		{"nul", Entry{Path: "a\x00b", Type: File}, ErrUnsafePath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			w := open(t, f.dest, Options{})
			_, err := w.Put(tt.entry, strings.NewReader("evil"))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Put(%q) = %v, want %v", tt.entry.Path, err, tt.want)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			f.checkOutside(t)
		})
	}
}

func TestSymlinksAreNeverFollowed(t *testing.T) {
	f := newFixture(t)
	// Planted in the destination before the restore.
	if err := os.MkdirAll(f.dest, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(f.outside, filepath.Join(f.dest, "planted")); err != nil {
		t.Fatal(err)
	}
	w := open(t, f.dest, Options{})
	e, r := file("planted/secret", "evil")
	if _, err := w.Put(e, r); !errors.Is(err, ErrInTheWay) {
		t.Fatalf("write through a planted symlink: %v, want ErrInTheWay", err)
	}
	// A link in the backup itself, then a file through it.
	if _, err := w.Put(Entry{Path: "inbackup", Type: Symlink, Target: f.outside}, nil); err != nil {
		t.Fatal(err)
	}
	e, r = file("inbackup/secret", "evil")
	if _, err := w.Put(e, r); !errors.Is(err, ErrInTheWay) {
		t.Fatalf("write through the backup's own symlink: %v, want ErrInTheWay", err)
	}
	e, r = file("inbackup/deeper/x", "evil")
	if _, err := w.Put(e, r); !errors.Is(err, ErrInTheWay) {
		t.Fatalf("mkdir through the backup's own symlink: %v, want ErrInTheWay", err)
	}
	// Restoring a file over the planted link replaces the link itself.
	e, r = file("planted", "the restored file")
	if out, err := w.Put(e, r); err != nil || out.Action != Written {
		t.Fatalf("file over a symlink: %+v, %v", out, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.checkOutside(t)
	if fi, err := os.Lstat(filepath.Join(f.dest, "planted")); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("planted is now %v, %v; want a regular file", fi, err)
	}
	if target, err := os.Readlink(filepath.Join(f.dest, "inbackup")); err != nil || target != f.outside {
		t.Fatalf("restored symlink = %q, %v", target, err)
	}
}

func TestPolicies(t *testing.T) {
	old := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	newer := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		policy     Policy
		existingAt time.Time
		want       Action
		wantPath   string
		wantFile   string // content of report.txt afterwards
	}{
		{Overwrite, newer, Written, "docs/report.txt", "restored"},
		{Skip, old, Skipped, "docs/report.txt", "current"},
		{Rename, old, Renamed, "docs/report~1.txt", "current"},
		{IfNewer, old, Written, "docs/report.txt", "restored"},
		{IfNewer, newer, Skipped, "docs/report.txt", "current"},
	}
	for _, tt := range tests {
		t.Run(string(tt.policy)+"/"+tt.existingAt.Format("2006"), func(t *testing.T) {
			dest := t.TempDir()
			cur := filepath.Join(dest, "docs", "report.txt")
			if err := os.MkdirAll(filepath.Dir(cur), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cur, []byte("current"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(cur, tt.existingAt, tt.existingAt); err != nil {
				t.Fatal(err)
			}
			w := open(t, dest, Options{Policy: tt.policy})
			e, r := file("docs/report.txt", "restored")
			out, err := w.Put(e, r)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if out.Action != tt.want || out.Path != tt.wantPath {
				t.Fatalf("Put = %+v, want %v at %s", out, tt.want, tt.wantPath)
			}
			if b, _ := os.ReadFile(cur); string(b) != tt.wantFile {
				t.Fatalf("report.txt = %q, want %q", b, tt.wantFile)
			}
			if tt.want == Renamed {
				if b, _ := os.ReadFile(filepath.Join(dest, tt.wantPath)); string(b) != "restored" {
					t.Fatalf("%s = %q", tt.wantPath, b)
				}
			}
			if leftovers, _ := filepath.Glob(filepath.Join(dest, "docs", tempPrefix+"*")); len(leftovers) > 0 {
				t.Fatalf("temporary files left: %v", leftovers)
			}
		})
	}
	if _, err := ParsePolicy("sometimes"); err == nil || !strings.Contains(err.Error(), "overwrite, skip, rename or newer") {
		t.Fatalf("ParsePolicy of a bad name: %v", err)
	}
}

func TestMetadataAndDirectoryTimes(t *testing.T) {
	dest := t.TempDir()
	w := open(t, dest, Options{Owners: os.Geteuid() == 0})
	dirTime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	if _, err := w.Put(Entry{Path: "a", Type: Dir, Mode: 0o750, MTime: dirTime, UID: 1234, GID: 5678}, nil); err != nil {
		t.Fatal(err)
	}
	e, r := file("a/b/c.txt", "deep")
	e.Mode = 0o4750
	if _, err := w.Put(e, r); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dest, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(dirTime) || fi.Mode().Perm() != 0o750 {
		t.Fatalf("a: time %v mode %v; want %v 0750 (set after its content)", fi.ModTime(), fi.Mode(), dirTime)
	}
	fi, err = os.Stat(filepath.Join(dest, "a", "b", "c.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSetuid == 0 || fi.Mode().Perm() != 0o750 || !fi.ModTime().Equal(e.MTime) {
		t.Fatalf("c.txt: mode %v time %v", fi.Mode(), fi.ModTime())
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "a", "b", "c.txt")); string(b) != "deep" {
		t.Fatalf("c.txt = %q", b)
	}
}

func TestDirectoryInTheWayOfAFile(t *testing.T) {
	dest := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dest, "x", "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	w := open(t, dest, Options{})
	e, r := file("x", "a file")
	if _, err := w.Put(e, r); !errors.Is(err, ErrInTheWay) {
		t.Fatalf("file over a directory: %v, want ErrInTheWay", err)
	}
	w.Close()
	if _, err := os.Stat(filepath.Join(dest, "x", "inside")); err != nil {
		t.Fatalf("the directory's content is gone: %v", err)
	}
}
