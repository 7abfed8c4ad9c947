package control

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"path/filepath"

	"encoding/json"
	"errors"
	"github.com/holdfast/holdfast/appliance/pki"
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

// fakeAppliance answers from fixed assignments and keeps reports.
type fakeAppliance struct {
	roles   map[string]Assignments
	reports map[string]Report
}

func (f *fakeAppliance) Assignments(host string) Assignments { return f.roles[host] }
func (f *fakeAppliance) Report(_ context.Context, host string, r Report) {
	f.reports[host] = r
}

// TestClientAndHandler runs both ends over real mutual TLS with
// certificates from a real appliance CA.
func TestClientAndHandler(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.OpenCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	identity := func(host string) (tls.Certificate, *x509.CertPool) {
		tok, err := ca.NewEnrollmentToken(host, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		key, csr, err := pki.NewKeyAndCSR(host)
		if err != nil {
			t.Fatal(err)
		}
		cert, caDER, err := ca.Enroll(tok, csr)
		if err != nil {
			t.Fatal(err)
		}
		d := filepath.Join(dir, host)
		if err := pki.SaveIdentity(d, key, cert, caDER); err != nil {
			t.Fatal(err)
		}
		c, pool, err := pki.LoadIdentity(d)
		if err != nil {
			t.Fatal(err)
		}
		return c, pool
	}
	appCert, pool := identity("vault")
	agentCert, _ := identity("shop1")

	app := &fakeAppliance{roles: map[string]Assignments{"shop1": goodAssignments()}, reports: map[string]Report{}}
	caller := func(r *http.Request) (string, error) {
		if r.TLS == nil {
			return "", errors.New("no TLS")
		}
		return pki.PeerHost(*r.TLS)
	}
	srv := httptest.NewUnstartedServer(Handler(app, caller, nil))
	srv.TLS = pki.ServerTLS(appCert, pool, nil)
	srv.StartTLS()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "https://")

	c := NewClient(addr, pki.ClientTLS(agentCert, pool, "vault", nil))
	defer c.Close()
	ctx := context.Background()
	a, err := c.Assignments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if mustJSON(t, a) != mustJSON(t, goodAssignments()) {
		t.Fatalf("assignments = %+v", a)
	}
	if err := c.Report(ctx, Report{DataAddress: "10.0.0.2:1", Roles: []RoleStatus{}}); err != nil {
		t.Fatal(err)
	}
	if app.reports["shop1"].DataAddress != "10.0.0.2:1" {
		t.Fatalf("the appliance did not file the report under the certificate's host: %+v", app.reports)
	}
	// A malformed report is refused with the reason.
	err = c.Report(ctx, Report{Roles: []RoleStatus{{Session: "s1", Role: "boss"}}})
	var refused *RefusedError
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "boss") {
		t.Fatalf("bad report = %v, want a RefusedError (400) naming the field", err)
	}
	// A client with a certificate from another CA gets nothing.
	other, err := pki.OpenCA(filepath.Join(dir, "other-ca"))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := other.NewEnrollmentToken("shop1", time.Hour)
	key, csr, _ := pki.NewKeyAndCSR("shop1")
	cert, caDER, err := other.Enroll(tok, csr)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.SaveIdentity(filepath.Join(dir, "stranger"), key, cert, caDER); err != nil {
		t.Fatal(err)
	}
	strangerCert, _, err := pki.LoadIdentity(filepath.Join(dir, "stranger"))
	if err != nil {
		t.Fatal(err)
	}
	s := NewClient(addr, pki.ClientTLS(strangerCert, pool, "vault", nil))
	defer s.Close()
	if _, err := s.Assignments(ctx); err == nil {
		t.Fatal("a certificate from another CA got assignments")
	}
}

func TestPrintable(t *testing.T) {
	long := strings.Repeat("é", maxText)
	for _, in := range []string{"plain/name.txt", "new\nline", "bad\xffbyte", "tab\there", "\x1b[31mred", long} {
		out := Printable(in)
		if err := checkText("x", out); err != nil || len(out) > maxText {
			t.Errorf("Printable(%q) = %q: %v (len %d)", in, out, err, len(out))
		}
	}
	if Printable("plain/name.txt") != "plain/name.txt" {
		t.Error("a printable name was changed")
	}
	if got := Printable("new\nline"); got != `new\nline` {
		t.Errorf("Printable(new\\nline) = %q", got)
	}
	// A notice about a file with a newline in its name still makes an
	// acceptable report.
	e := EventFromNotice("s1-0-0", replication.Notice{Kind: replication.NoticeError, Path: "a\nb", Err: errors.New("x\ny")}, time.Time{})
	if err := (Report{Roles: []RoleStatus{}, Events: []Event{e}}).Check(); err != nil {
		t.Fatalf("report with an odd file name refused: %v", err)
	}
}
