package agenttasks

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/agent/datastream"
	"github.com/holdfast/holdfast/appliance/messages"
)

// A task nobody fetches fails with the pickup message, is gone from the
// assignments, and its source was never read.
func TestPickupTimeout(t *testing.T) {
	h := New(Options{PickupTimeout: 300 * time.Millisecond})
	called := false
	src := func(put func(datastream.Header, io.Reader) error) error {
		called = true
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-done:
				return
			default:
			}
			if ts := h.Tasks("web1.example"); len(ts) == 1 {
				if ts[0].Kind != "restore" || ts[0].Dir != "/srv/restore" || ts[0].Policy != "skip" {
					t.Errorf("assigned %+v", ts[0])
				}
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	_, err := h.Restore(context.Background(), "web1.example", "/srv/restore", "skip", src, nil)
	<-done
	if messages.CodeOf(err) != messages.TaskNotPickedUp {
		t.Fatalf("err = %v, want %s", err, messages.TaskNotPickedUp)
	}
	for _, want := range []string{"agent web1.example did not pick up restore task t", "within 300ms", "is holdfast-agent running there?", "holdfast agent list"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if called {
		t.Error("the source was read for a task nobody fetched")
	}
	if ts := h.Tasks("web1.example"); len(ts) != 0 {
		t.Errorf("task still assigned after the call: %+v", ts)
	}

	_, err = h.Read(context.Background(), "web1.example", "/srv", nil, func(datastream.Header, io.Reader) error { return nil }, nil)
	if messages.CodeOf(err) != messages.TaskNotPickedUp || !strings.Contains(err.Error(), "read task") {
		t.Fatalf("read: %v, want %s", err, messages.TaskNotPickedUp)
	}
}

func TestRefusedBeforeRegistering(t *testing.T) {
	h := New(Options{Known: func(host string) bool { return host == "web1.example" }})
	nop := func(func(datastream.Header, io.Reader) error) error { return nil }
	tests := []struct {
		name, host, dir, policy string
		code                    messages.Code
	}{
		{"unknown host", "nobody.example", "/srv", "overwrite", messages.AgentUnknown},
		{"relative dir", "web1.example", "srv", "overwrite", messages.BadRequest},
		{"unclean dir", "web1.example", "/srv/../etc", "overwrite", messages.BadRequest},
		{"bad policy", "web1.example", "/srv", "merge", messages.BadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.Restore(context.Background(), tt.host, tt.dir, tt.policy, nop, nil)
			if messages.CodeOf(err) != tt.code {
				t.Fatalf("err = %v, want %s", err, tt.code)
			}
			if ts := h.Tasks(tt.host); len(ts) != 0 {
				t.Errorf("refused task assigned: %+v", ts)
			}
		})
	}
}

// A caller that gives up ends the wait at once.
func TestCallerGivesUp(t *testing.T) {
	h := New(Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := h.Read(ctx, "web1.example", "/srv", []string{"a"}, func(datastream.Header, io.Reader) error { return nil }, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
}
