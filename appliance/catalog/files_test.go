package catalog

import (
	"errors"
	"fmt"
	"path"
	"reflect"
	"testing"
	"time"
)

func addVersions(t *testing.T, c *Catalog, vs ...FileVersion) {
	t.Helper()
	w := c.NewFileVersionWriter()
	for _, v := range vs {
		if err := w.Add(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(false); err != nil {
		t.Fatal(err)
	}
	if err := c.SyncPoint(); err != nil {
		t.Fatal(err)
	}
}

func fv(host, path string, session uint64) FileVersion {
	return FileVersion{Host: host, Path: path, SessionID: session, Size: session * 10, Mode: 0o644,
		MTime: sampleTime.Add(time.Duration(session) * time.Hour), MediaID: 1, Offset: session}
}

func paths(vs []FileVersion) []string {
	out := []string{}
	for _, v := range vs {
		out = append(out, fmt.Sprintf("%s@%d", v.Path, v.SessionID))
	}
	return out
}

func TestFileVersionsTreeAndFind(t *testing.T) {
	c := openTest(t, t.TempDir())
	addVersions(t, c,
		fv("fs01", "/", 1),
		fv("fs01", "/srv", 1),
		fv("fs01", "/srv/a.txt", 1),
		fv("fs01", "/srv/a.txt", 3),
		fv("fs01", "/srv/a.txt", 2),
		fv("fs01", "/srv/a-b.txt", 2),
		fv("fs01", "/srv/sub", 1),
		fv("fs01", "/srv/sub/deep/x.txt", 2),
		fv("fs01", "/srv/sub/y.txt", 2),
		fv("fs01", "/srv/implied/z.txt", 4),
		fv("fs01", "/srv/nul\x00name", 1),
		fv("fs01", "/srvother/q.txt", 1),
		fv("fs02", "/srv/a.txt", 5),
		fv("fs01", "/report.doc", 1),
		fv("fs01", "/srv/report-2025.doc", 2),
	)

	got, err := c.FileVersions("fs01", "/srv/a.txt")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/srv/a.txt@3", "/srv/a.txt@2", "/srv/a.txt@1"}; !reflect.DeepEqual(paths(got), want) {
		t.Fatalf("FileVersions = %v, want %v", paths(got), want)
	}
	if !reflect.DeepEqual(got[0], fv("fs01", "/srv/a.txt", 3)) {
		t.Fatalf("FileVersions[0] = %+v", got[0])
	}
	if got, err := c.FileVersions("fs01", "/srv/missing"); err != nil || len(got) != 0 {
		t.Fatalf("FileVersions(missing) = %v, %v", got, err)
	}

	tree := []struct {
		host, dir string
		want      []string
	}{
		{"fs01", "/srv", []string{"/srv/a-b.txt@2", "/srv/a.txt@3", "/srv/implied@0", "/srv/nul\x00name@1", "/srv/report-2025.doc@2", "/srv/sub@1"}},
		{"fs01", "/srv/", []string{"/srv/a-b.txt@2", "/srv/a.txt@3", "/srv/implied@0", "/srv/nul\x00name@1", "/srv/report-2025.doc@2", "/srv/sub@1"}},
		{"fs01", "/", []string{"/report.doc@1", "/srv@1", "/srvother@0"}},
		{"fs01", "/srv/sub", []string{"/srv/sub/deep@0", "/srv/sub/y.txt@2"}},
		{"fs02", "/srv", []string{"/srv/a.txt@5"}},
		{"fs03", "/", []string{}},
		{"fs01", "/srv/a.txt", []string{}},
	}
	for _, tc := range tree {
		got, err := c.FileTree(tc.host, tc.dir)
		if err != nil {
			t.Fatalf("FileTree(%s, %s): %v", tc.host, tc.dir, err)
		}
		if !reflect.DeepEqual(paths(got), tc.want) {
			t.Errorf("FileTree(%s, %s) = %q, want %q", tc.host, tc.dir, paths(got), tc.want)
		}
	}
	if _, err := c.FileTree("fs01", "relative"); !errors.Is(err, ErrInvalid) {
		t.Errorf("FileTree(relative): %v, want ErrInvalid", err)
	}

	find := []struct {
		pattern string
		limit   int
		want    []string
	}{
		{"a.txt", 0, []string{"/srv/a.txt@3", "/srv/a.txt@5"}}, // fs01's, then fs02's
		{"*.txt", 0, []string{"/srv/a-b.txt@2", "/srv/a.txt@3", "/srv/a.txt@5", "/srvother/q.txt@1", "/srv/sub/deep/x.txt@2", "/srv/sub/y.txt@2", "/srv/implied/z.txt@4"}},
		{"*.txt", 2, []string{"/srv/a-b.txt@2", "/srv/a.txt@3"}},
		{"rep*", 0, []string{"/srv/report-2025.doc@2", "/report.doc@1"}}, // by base name
		{"report-20[0-9][0-9].doc", 0, []string{"/srv/report-2025.doc@2"}},
		{"?.txt", 0, []string{"/srv/a.txt@3", "/srv/a.txt@5", "/srvother/q.txt@1", "/srv/sub/deep/x.txt@2", "/srv/sub/y.txt@2", "/srv/implied/z.txt@4"}},
		{"nul\x00*", 0, []string{"/srv/nul\x00name@1"}},
		{"nothing*", 0, []string{}},
	}
	for _, tc := range find {
		got, err := c.FindByName(tc.pattern, tc.limit)
		if err != nil {
			t.Fatalf("FindByName(%q): %v", tc.pattern, err)
		}
		if !reflect.DeepEqual(paths(got), tc.want) {
			t.Errorf("FindByName(%q, %d) = %q, want %q", tc.pattern, tc.limit, paths(got), tc.want)
		}
	}
	if _, err := c.FindByName("[", 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("FindByName(bad pattern): %v, want ErrInvalid", err)
	}
}

func TestFileVersionWriter(t *testing.T) {
	c := openTest(t, t.TempDir())
	w := c.NewFileVersionWriter()
	for _, bad := range []FileVersion{
		{Path: "/a", SessionID: 1},
		{Host: "h", Path: "a", SessionID: 1},
		{Host: "h", Path: "/a/../b", SessionID: 1},
		{Host: "h", Path: "/a/", SessionID: 1},
		{Host: "h", Path: "/a"},
	} {
		if err := w.Add(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Add(%+v): %v, want ErrInvalid", bad, err)
		}
	}
	// Enough versions to cross the automatic batch limit several times.
	const n = 30000
	for i := 0; i < n; i++ {
		if err := w.Add(fv("h", fmt.Sprintf("/d%03d/f%05d", i%100, i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(true); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(true); err != nil { // nothing pending: still a sync point
		t.Fatal(err)
	}
	if got := countPrefix(t, c, []byte(prefixFile)); got != n {
		t.Fatalf("%d file versions stored, want %d", got, n)
	}
	tree, err := c.FileTree("h", "/")
	if err != nil || len(tree) != 100 {
		t.Fatalf("FileTree(/) has %d entries, %v; want 100", len(tree), err)
	}

	if err := w.Add(fv("h", "/discarded", 1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Discard(); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(true); err != nil {
		t.Fatal(err)
	}
	if got, err := c.FileVersions("h", "/discarded"); err != nil || len(got) != 0 {
		t.Fatalf("discarded version stored: %v, %v", got, err)
	}
}

func TestNameMatcherAgreesWithPathMatch(t *testing.T) {
	patterns := []string{"*.pdf", "report*", "*", "**", "a*b*c", "*-000042.txt", "exact.txt", "x*x", "r?port", "[a-c]*", "*a*", ""}
	names := []string{"a.pdf", ".pdf", "report", "report-1.txt", "abc", "aXbYc", "acb", "x", "xx", "xax", "report-000042.txt", "exact.txt", "", "b", "caab"}
	for _, p := range patterns {
		m := nameMatcher(p)
		for _, n := range names {
			want, _ := path.Match(p, n)
			if got := m(n); got != want {
				t.Errorf("nameMatcher(%q)(%q) = %v, path.Match says %v", p, n, got, want)
			}
		}
	}
}

func FuzzNameMatcher(f *testing.F) {
	f.Add("*-000042.txt", "report-000042.txt")
	f.Add("a*b*a", "aba")
	f.Add("**x*", "x")
	f.Fuzz(func(t *testing.T, pattern, name string) {
		want, err := path.Match(pattern, name)
		if err != nil {
			return // FindByName refuses such patterns before it scans
		}
		if got := nameMatcher(pattern)(name); got != want {
			t.Fatalf("nameMatcher(%q)(%q) = %v, path.Match says %v", pattern, name, got, want)
		}
	})
}
