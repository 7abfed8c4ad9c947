// Package activitytest keeps, for tests, what code under test records in
// the activity log, so a test can check which message codes were
// recorded and what they said.
package activitytest

import (
	"context"
	"strings"
	"sync"

	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/messages"
)

// Recorder is an activity.Recorder that keeps every entry as the line
// "CODE text", text formatted as the activity log formats it. It is safe
// for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	lines []string
}

var _ activity.Recorder = (*Recorder)(nil)

// Record keeps one entry.
func (r *Recorder) Record(_ context.Context, code messages.Code, args ...any) {
	line := string(code) + " " + messages.Format(code, args...)
	r.mu.Lock()
	r.lines = append(r.lines, line)
	r.mu.Unlock()
}

// Lines returns every entry kept, in order.
func (r *Recorder) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

// With returns the entries of one code, in order.
func (r *Recorder) With(code messages.Code) []string {
	var out []string
	for _, l := range r.Lines() {
		if strings.HasPrefix(l, string(code)+" ") {
			out = append(out, l)
		}
	}
	return out
}

// Has reports whether an entry of the code was kept.
func (r *Recorder) Has(code messages.Code) bool { return len(r.With(code)) > 0 }

// Count returns how many entries of the code were kept.
func (r *Recorder) Count(code messages.Code) int { return len(r.With(code)) }

// Reset forgets every entry.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.lines = nil
	r.mu.Unlock()
}
