package runner

import "testing"

func TestReplicaDir(t *testing.T) {
	tests := []struct {
		target string
		roots  []string
		root   string
		want   string
	}{
		{"/replica/docs", []string{"/srv/docs"}, "/srv/docs", "/replica/docs"},
		{"/replica", []string{"/srv/docs", "/home"}, "/srv/docs", "/replica/srv/docs"},
		{"/replica", []string{"/srv/docs", "/home"}, "/home", "/replica/home"},
	}
	for _, tt := range tests {
		if got := ReplicaDir(tt.target, tt.roots, tt.root); got != tt.want {
			t.Errorf("ReplicaDir(%q, %q, %q) = %q, want %q", tt.target, tt.roots, tt.root, got, tt.want)
		}
	}
}
