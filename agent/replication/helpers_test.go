package replication

import (
	"reflect"
	"testing"
	"time"

	"github.com/holdfast/holdfast/agent/treesync"
)

func TestCollapse(t *testing.T) {
	tests := []struct {
		in, want []string
	}{
		{in: []string{"a/b", "a", "c"}, want: []string{"a", "c"}},
		{in: []string{"a", "a", "ab"}, want: []string{"a", "ab"}},
		{in: []string{"x/y", "", "z"}, want: []string{""}},
		{in: []string{"a/b/c", "a/b"}, want: []string{"a/b"}},
		{in: nil, want: nil},
	}
	for _, tt := range tests {
		if got := collapse(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("collapse(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestBelow(t *testing.T) {
	entries := []treesync.Entry{{Path: "a"}, {Path: "a/x"}, {Path: "a/x/y"}, {Path: "ab"}, {Path: "b"}}
	var got []string
	for _, e := range below(entries, "a/x") {
		got = append(got, e.Path)
	}
	if want := []string{"a/x", "a/x/y"}; !reflect.DeepEqual(got, want) {
		t.Errorf("below a/x = %q, want %q", got, want)
	}
	got = nil
	for _, e := range below(entries, "a") {
		got = append(got, e.Path)
	}
	if want := []string{"a", "a/x", "a/x/y"}; !reflect.DeepEqual(got, want) {
		t.Errorf("below a = %q, want %q (ab is a sibling, not a child)", got, want)
	}
}

func TestLagWindow(t *testing.T) {
	var w lagWindow
	if l, p50, p99 := w.summary(); l != 0 || p50 != 0 || p99 != 0 {
		t.Fatalf("empty window = %v %v %v", l, p50, p99)
	}
	for i := 1; i <= 100; i++ {
		w.add(time.Duration(i) * time.Millisecond)
	}
	last, p50, p99 := w.summary()
	if last != 100*time.Millisecond || p50 != 51*time.Millisecond || p99 != 100*time.Millisecond {
		t.Errorf("summary = %v %v %v", last, p50, p99)
	}
	// The window keeps only the newest samples.
	for i := 0; i < len(w.samples); i++ {
		w.add(time.Millisecond)
	}
	if _, p50, p99 := w.summary(); p50 != time.Millisecond || p99 != time.Millisecond {
		t.Errorf("old samples still counted: p50 %v p99 %v", p50, p99)
	}
}
