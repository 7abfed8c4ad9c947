package restorejob

import (
	"strings"
	"testing"
)

func TestSpecCheck(t *testing.T) {
	tests := []struct {
		spec Spec
		want string // "" for valid
	}{
		{Spec{Session: 3, Destination: Original}, ""},
		{Spec{Session: 3, Destination: "/srv/restored", Paths: []string{"/srv/a"}, Policy: "newer"}, ""},
		{Spec{Destination: Original}, "session: missing"},
		{Spec{Session: 3, Destination: "restored"}, "absolute folder"},
		{Spec{Session: 3, Destination: Replica, ContinueIfRunning: true}, ""},
		{Spec{Session: 3, Destination: "dr01:/restore/here"}, ""},
		{Spec{Session: 3, Destination: "dr01:relative"}, "HOST:/folder"},
		{Spec{Session: 3, Destination: ":/x"}, "HOST:/folder"},
		{Spec{Tree: &Tree{Host: "fs01", Path: "/srv"}, Destination: Original}, ""},
		{Spec{Tree: &Tree{Host: "fs01", Path: "/srv/../etc"}, Destination: Original}, "clean absolute"},
		{Spec{Tree: &Tree{Path: "/srv"}, Destination: Original}, "host is missing"},
		{Spec{Session: 3, Tree: &Tree{Host: "fs01", Path: "/srv"}, Destination: Original}, "not both"},
		{Spec{Tree: &Tree{Host: "fs01", Path: "/srv"}, Paths: []string{"/srv/a"}, Destination: Original}, "takes its path in the tree"},
		{Spec{Session: 3, Destination: Original, Paths: []string{"a/b"}}, "not an absolute master path"},
		{Spec{Session: 3, Destination: Original, Policy: "maybe"}, "overwrite, skip, rename or newer"},
	}
	for _, tt := range tests {
		err := tt.spec.Check()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("Check(%+v) = %v, want %q", tt.spec, err, tt.want)
		}
	}
}

func TestSelected(t *testing.T) {
	tests := []struct {
		path  string
		paths []string
		want  bool
	}{
		{"/srv/a/b.txt", nil, true},
		{"/srv/a/b.txt", []string{"/srv/a"}, true},
		{"/srv/a/b.txt", []string{"/srv/a/"}, true},
		{"/srv/a/b.txt", []string{"/srv/a/b.txt"}, true},
		{"/srv/ab/c.txt", []string{"/srv/a"}, false},
		{"/srv/a", []string{"/srv/a/b.txt"}, false},
	}
	for _, tt := range tests {
		if got := selected(tt.path, tt.paths); got != tt.want {
			t.Errorf("selected(%q, %q) = %v, want %v", tt.path, tt.paths, got, tt.want)
		}
	}
}
