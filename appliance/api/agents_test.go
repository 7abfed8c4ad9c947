package api

import (
	"testing"
	"time"
)

func TestSourceKey(t *testing.T) {
	tests := map[string]string{
		"192.0.2.7:5000":              "192.0.2.7",
		"[::ffff:192.0.2.7]:5000":     "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:5000": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ff::1]:1":      "2001:db8:1:2::/64",
		"garbage":                     "garbage",
	}
	for in, want := range tests {
		if got := sourceKey(in); got != want {
			t.Errorf("sourceKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSourceLimiter(t *testing.T) {
	var l sourceLimiter
	l.init(3, time.Minute)
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	for i := 0; i < 3; i++ {
		if !l.allow("a", now) {
			t.Fatalf("attempt %d of the burst refused", i+1)
		}
	}
	if l.allow("a", now) {
		t.Fatal("attempt past the burst allowed")
	}
	if !l.allow("b", now) {
		t.Fatal("another source is limited by the first one's attempts")
	}
	if l.allow("a", now.Add(59*time.Second)) {
		t.Fatal("refilled before the interval")
	}
	if !l.allow("a", now.Add(61*time.Second)) {
		t.Fatal("not refilled after the interval")
	}

	// A spray of sources cannot grow the map without bound.
	l.init(1, time.Hour)
	for i := 0; i < maxSources+100; i++ {
		l.allow(time.Duration(i).String(), now)
	}
	if len(l.buckets) > maxSources+1 {
		t.Fatalf("%d buckets, want at most %d", len(l.buckets), maxSources+1)
	}
	if l.allow("one more", now) {
		t.Error("the shared overflow bucket let a new source through after it was spent")
	}
}
