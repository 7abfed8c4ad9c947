package capture

import (
	"reflect"
	"testing"
)

func ev(k Kind, p string) Event { return Event{Kind: k, Path: p} }

func drain(q *queue) []Event {
	var out []Event
	for {
		e, ok := q.popEvent()
		if !ok {
			return out
		}
		out = append(out, e)
	}
}

func TestQueueMerge(t *testing.T) {
	ren := Event{Kind: Renamed, OldPath: "x", Path: "y"}
	cases := []struct {
		name string
		in   []Event
		want []Event
	}{
		{"modified twice", []Event{ev(Modified, "a"), ev(Modified, "a")}, []Event{ev(Modified, "a")}},
		{"attrib twice", []Event{ev(Attrib, "a"), ev(Attrib, "a")}, []Event{ev(Attrib, "a")}},
		{"created absorbs modified and attrib",
			[]Event{ev(Created, "a"), ev(Modified, "a"), ev(Attrib, "a"), ev(Modified, "a")},
			[]Event{ev(Created, "a")}},
		{"dircreated absorbs attrib", []Event{ev(DirCreated, "d"), ev(Attrib, "d")}, []Event{ev(DirCreated, "d")}},
		{"other paths between do not matter",
			[]Event{ev(Modified, "a"), ev(Created, "b"), ev(Modified, "a")},
			[]Event{ev(Modified, "a"), ev(Created, "b")}},
		{"another kind for the path in between keeps order",
			[]Event{ev(Modified, "a"), ev(Attrib, "a"), ev(Modified, "a")},
			[]Event{ev(Modified, "a"), ev(Attrib, "a"), ev(Modified, "a")}},
		{"no merging across a rename",
			[]Event{ev(Modified, "a"), ren, ev(Modified, "a")},
			[]Event{ev(Modified, "a"), ren, ev(Modified, "a")}},
		{"no merging across a removal",
			[]Event{ev(Modified, "d/a"), ev(Removed, "d"), ev(Modified, "d/a")},
			[]Event{ev(Modified, "d/a"), ev(Removed, "d"), ev(Modified, "d/a")}},
		{"renamed-to path is not a merge target",
			[]Event{{Kind: Renamed, OldPath: "a", Path: "b"}, ev(Modified, "b")},
			[]Event{{Kind: Renamed, OldPath: "a", Path: "b"}, ev(Modified, "b")}},
		{"removed then created is kept", []Event{ev(Removed, "a"), ev(Created, "a")}, []Event{ev(Removed, "a"), ev(Created, "a")}},
		{"pending overflow covers a later one",
			[]Event{ev(Overflow, ""), ev(Created, "a"), ev(Overflow, "")},
			[]Event{ev(Overflow, ""), ev(Created, "a")}},
	}
	for _, tc := range cases {
		q := newQueue(0)
		for _, e := range tc.in {
			q.push(e)
		}
		if got := drain(q); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got  %v\n want %v", tc.name, got, tc.want)
		}
	}
}

// TestQueueNoMergeIntoDelivered: once an event is taken by the consumer, a
// later change to the same path must be delivered, or a write made after the
// consumer read the file would be lost.
func TestQueueNoMergeIntoDelivered(t *testing.T) {
	q := newQueue(0)
	q.push(ev(Modified, "a"))
	if _, ok := q.popEvent(); !ok {
		t.Fatal("nothing queued")
	}
	q.push(ev(Modified, "a"))
	if got := drain(q); len(got) != 1 {
		t.Fatalf("got %v, want the second Modified", got)
	}
	// Merging works again once the barrier is delivered.
	q.push(Event{Kind: Renamed, OldPath: "x", Path: "y"})
	q.popEvent()
	q.push(ev(Modified, "a"))
	q.push(ev(Modified, "a"))
	if got := drain(q); len(got) != 1 {
		t.Fatalf("got %v, want one Modified", got)
	}
}

func TestQueueLimitOverflow(t *testing.T) {
	q := newQueue(3)
	for _, p := range []string{"a", "b", "c", "d", "e"} {
		q.push(ev(Created, p))
	}
	got := drain(q)
	if len(got) != 2 || got[0].Kind != Overflow || got[0].Path != "" || got[1] != ev(Created, "e") {
		t.Fatalf("got %v", got)
	}
}

func TestQueueErrors(t *testing.T) {
	q := newQueue(0)
	for range maxQueuedErrors + 5 {
		q.pushErr(errBadRecord)
	}
	n := 0
	var last error
	for {
		err := q.popErr()
		if err == nil {
			break
		}
		n++
		last = err
	}
	if n != maxQueuedErrors+1 || last == errBadRecord {
		t.Fatalf("got %d errors, last %v; want %d and a summary", n, last, maxQueuedErrors+1)
	}
}
