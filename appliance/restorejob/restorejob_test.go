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
