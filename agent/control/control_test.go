package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/agent/replication"
)

func goodAssignments() Assignments {
	return Assignments{
		Masters:  []MasterRole{{Scenario: "branch", Session: "s1-0-0", Root: "/srv/data", Peer: "vault@10.0.0.1:7431"}},
		Replicas: []ReplicaRole{{Scenario: "other", Session: "s2-0-0", Master: "shop1", Target: "/replicas/shop1"}},
	}
}

func TestDecodeAssignments(t *testing.T) {
	for _, c := range []struct {
		name, body, err string
	}{
		{"good", mustJSON(t, goodAssignments()), ""},
		{"empty means run nothing", `{"masters":[],"replicas":[]}`, ""},
		{"unknown field", `{"masters":[],"replicas":[],"colour":1}`, "unknown field"},
		{"trailing data", `{"masters":[],"replicas":[]} {}`, "after the JSON"},
		{"relative root", `{"masters":[{"scenario":"a","session":"s1-0-0","root":"srv","peer":"x@y:1"}]}`, "root"},
		{"unclean target", `{"replicas":[{"scenario":"a","session":"s1-0-0","master":"m","target":"/a/../etc"}]}`, "target"},
		{"session twice", `{"masters":[{"scenario":"a","session":"s1-0-0","root":"/a","peer":"x@y:1"}],"replicas":[{"scenario":"a","session":"s1-0-0","master":"m","target":"/b"}]}`, "twice"},
		{"bad session", `{"masters":[{"scenario":"a","session":"S/1","root":"/a","peer":"x@y:1"}]}`, "session"},
		{"no peer", `{"masters":[{"scenario":"a","session":"s1-0-0","root":"/a","peer":""}]}`, "peer"},
		{"no master", `{"replicas":[{"scenario":"a","session":"s1-0-0","master":"","target":"/b"}]}`, "master"},
		{"control character", `{"masters":[{"scenario":"a\u0007","session":"s1-0-0","root":"/a","peer":"x@y:1"}]}`, "control"},
		{"negative spool", `{"masters":[{"scenario":"a","session":"s1-0-0","root":"/a","peer":"x@y:1","spool_max_bytes":-1}]}`, "negative"},
		{"too large", `{"masters":[` + strings.Repeat(" ", MaxBodyBytes) + `]}`, "larger than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeAssignments(strings.NewReader(c.body))
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("DecodeAssignments = %v, want error containing %q", err, c.err)
			}
		})
	}
}

func TestDecodeReport(t *testing.T) {
	good := Report{
		DataAddress: "10.0.0.2:7431",
		Roles:       []RoleStatus{{Session: "s1-0-0", Role: "master", Status: replication.Status{Phase: replication.PhaseReplicating}}},
		Events:      []Event{EventFromNotice("s1-0-0", replication.Notice{Kind: replication.NoticeNoSpace, Err: errors.New("disk full")}, time.Unix(1, 0))},
	}
	got, err := DecodeReport(strings.NewReader(mustJSON(t, good)))
	if err != nil {
		t.Fatal(err)
	}
	if got.Events[0].Kind != EventNoSpace || got.Events[0].Error != "disk full" || got.Roles[0].Status.Phase != replication.PhaseReplicating {
		t.Fatalf("round trip lost data: %+v", got)
	}
	for _, c := range []struct{ name, body, err string }{
		{"bad role", `{"roles":[{"session":"s1-0-0","role":"boss","status":{}}]}`, "role"},
		{"bad event session", `{"roles":[],"events":[{"session":"","kind":"error"}]}`, "session"},
		{"newline in text", `{"roles":[],"events":[{"session":"s1","kind":"error","text":"a\nb"}]}`, "control"},
		{"negative dropped", `{"roles":[],"events_dropped":-3}`, "negative"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeReport(strings.NewReader(c.body))
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("DecodeReport = %v, want error containing %q", err, c.err)
			}
		})
	}
}

func TestEventFromNoticeKinds(t *testing.T) {
	for k := range eventKinds {
		if e := EventFromNotice("s1", replication.Notice{Kind: k}, time.Time{}); e.Kind != eventKinds[k] {
			t.Errorf("notice %d became %q", k, e.Kind)
		}
	}
	if e := EventFromNotice("s1", replication.Notice{Kind: 200}, time.Time{}); e.Kind != EventError {
		t.Errorf("an unknown notice became %q, want %q", e.Kind, EventError)
	}
	e := EventFromNotice("s1", replication.Notice{Kind: replication.NoticeSyncDone, Sync: replication.SyncStats{Differences: 4}}, time.Time{})
	if e.Sync == nil || e.Sync.Differences != 4 {
		t.Errorf("sync figures lost: %+v", e)
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// FuzzDecode: whatever crosses the wire, the decoders return an error or
// values that pass their own checks, and never panic.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(mustJSON(f, goodAssignments())))
	f.Add([]byte(`{"roles":[{"session":"s1-0-0","role":"replica","status":{"Phase":"replicating"}}],"events":[{"session":"s1-0-0","kind":"sync-done","sync":{"Differences":1}}]}`))
	f.Add([]byte(`{"masters":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if a, err := DecodeAssignments(bytes.NewReader(data)); err == nil {
			if err := a.Check(); err != nil {
				t.Fatalf("decoded assignments fail their check: %v", err)
			}
		}
		if r, err := DecodeReport(bytes.NewReader(data)); err == nil {
			if err := r.Check(); err != nil {
				t.Fatalf("decoded report fails its check: %v", err)
			}
		}
	})
}
