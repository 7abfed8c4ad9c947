package catalog

import (
	"fmt"
	"testing"
)

func TestVersionsBelow(t *testing.T) {
	c := openTest(t, t.TempDir())
	w := c.NewFileVersionWriter()
	add := func(host, p string, session uint64) {
		if err := w.Add(FileVersion{Host: host, Path: p, SessionID: session, Size: session}); err != nil {
			t.Fatal(err)
		}
	}
	add("fs01", "/srv/a", 1)
	add("fs01", "/srv/a", 2)
	add("fs01", "/srv/b/c", 1)
	add("fs01", "/srv/b/c", 3)
	add("fs01", "/srv/bb", 2) // a sibling that shares the prefix "/srv/b"
	add("fs01", "/srv", 4)    // odd but legal: a file where a directory was
	add("fs02", "/srv/a", 9)
	add("fs01", "/other", 1)
	if err := w.Commit(true); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host, path string
		want       string
	}{
		{"fs01", "/srv", "[/srv@4 /srv/a@2 /srv/a@1 /srv/b/c@3 /srv/b/c@1 /srv/bb@2]"},
		{"fs01", "/srv/b", "[/srv/b/c@3 /srv/b/c@1]"},
		{"fs01", "/srv/a", "[/srv/a@2 /srv/a@1]"},
		{"fs01", "/", "[/other@1 /srv@4 /srv/a@2 /srv/a@1 /srv/b/c@3 /srv/b/c@1 /srv/bb@2]"},
		{"fs02", "/srv", "[/srv/a@9]"},
		{"fs03", "/srv", "[]"},
	}
	for _, tt := range tests {
		got := []string{}
		err := c.VersionsBelow(tt.host, tt.path, func(v FileVersion) error {
			got = append(got, fmt.Sprintf("%s@%d", v.Path, v.SessionID))
			return nil
		})
		if err != nil {
			t.Fatalf("VersionsBelow(%s, %s): %v", tt.host, tt.path, err)
		}
		if fmt.Sprint(got) != tt.want {
			t.Errorf("VersionsBelow(%s, %s) = %v, want %s", tt.host, tt.path, got, tt.want)
		}
	}
	if err := c.VersionsBelow("fs01", "srv/../x", func(FileVersion) error { return nil }); err == nil {
		t.Error("a relative path was accepted")
	}
}
