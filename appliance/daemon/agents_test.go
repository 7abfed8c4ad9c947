package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/agent/enroll"
	"github.com/holdfast/holdfast/appliance/api"
	"github.com/holdfast/holdfast/appliance/pki"
)

// whoamiPath is a test route for enrolled agents: it answers the verified
// host name.
const whoamiPath = "/agent/v1/test/whoami"

func startAgentDaemon(t *testing.T) *testDaemon {
	t.Helper()
	return startDaemonWith(t, "", Options{AgentRoutes: func(l *api.AgentListener) {
		l.HandleAgent("GET "+whoamiPath, func(w http.ResponseWriter, r *http.Request, host string) {
			fmt.Fprint(w, host)
		})
	}})
}

// newToken creates an enrollment token through the API, as the CLI does.
func (d *testDaemon) newToken(t *testing.T, host, ttl string) api.AgentToken {
	t.Helper()
	var tok api.AgentToken
	args := []string{"agent", "token", host}
	if ttl != "" {
		args = append(args, "--ttl", ttl)
	}
	d.getJSON(t, &tok, args...)
	return tok
}

func enrollOpts(tok api.AgentToken, host, state string) enroll.Options {
	return enroll.Options{
		Appliance: tok.Appliance, ServerName: tok.ServerName, Token: tok.Token,
		Fingerprint: tok.CAFingerprint, Host: host, StateDir: state, Timeout: 20 * time.Second,
	}
}

// whoami calls the test route with the identity in state (or none), on a
// fresh connection.
func (d *testDaemon) whoami(t *testing.T, state string) (string, error) {
	t.Helper()
	var cfg *tls.Config
	if state != "" {
		cert, roots, err := pki.LoadIdentity(state)
		if err != nil {
			t.Fatal(err)
		}
		cfg = pki.ClientTLS(cert, roots, testHostName, nil)
	} else {
		ca, err := os.ReadFile(filepath.Join(d.data, CADir, "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		cfg = &tls.Config{MinVersion: tls.VersionTLS13, ServerName: testHostName, RootCAs: poolFromPEM(t, ca)}
	}
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Get("https://" + d.agents + whoamiPath)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	return string(body), nil
}

func poolFromPEM(t *testing.T, pemData []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemData) {
		t.Fatal("CA certificate does not parse")
	}
	return p
}

func TestAgentEnrollment(t *testing.T) {
	d := startAgentDaemon(t)
	ctx := context.Background()
	tok := d.newToken(t, "web1.example", "")
	if tok.ServerName != testHostName || tok.Appliance != d.agents || len(tok.CAFingerprint) != 64 {
		t.Fatalf("token answer = %+v", tok)
	}

	// Wrong fingerprint: refused during the handshake, so the token is
	// never sent and still works afterwards.
	state := filepath.Join(t.TempDir(), "state")
	bad := enrollOpts(tok, "web1.example", state)
	bad.Fingerprint = strings.Repeat("ab", 32)
	if _, err := enroll.Enroll(ctx, bad); !errors.Is(err, pki.ErrFingerprintMismatch) {
		t.Fatalf("wrong fingerprint: %v, want ErrFingerprintMismatch", err)
	}
	for _, code := range []string{"HF-E8010", "HF-E8011", "HF-I8003"} {
		if d.logHas(t, code) {
			t.Errorf("a refused handshake reached the enrollment route (%s logged)", code)
		}
	}

	res, err := enroll.Enroll(ctx, enrollOpts(tok, "web1.example", state))
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	if res.Host != "web1.example" || res.ApplianceName != testHostName {
		t.Errorf("result = %+v", res)
	}
	fi, err := os.Stat(state)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode = %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	app, err := enroll.LoadAppliance(state)
	if err != nil || app.Address != d.agents || app.HostName != testHostName || app.CAFingerprint != tok.CAFingerprint {
		t.Errorf("appliance.json = %+v, %v", app, err)
	}
	if !d.logHas(t, "HF-I8003") || !d.logHas(t, "HF-I8002") || !d.logHas(t, "HF-I8001") {
		t.Error("token, enrollment or listener start missing from the activity log")
	}

	// mTLS with the issued certificate reaches agent routes, which see
	// the verified host name; without a certificate they refuse.
	if host, err := d.whoami(t, state); err != nil || host != "web1.example" {
		t.Fatalf("whoami = %q, %v", host, err)
	}
	if _, err := d.whoami(t, ""); err == nil || !strings.Contains(err.Error(), "HF-E8016") {
		t.Errorf("whoami without a certificate: %v, want HTTP 401 HF-E8016", err)
	}

	// Enrolling again into the same directory needs --force.
	if _, err := enroll.Enroll(ctx, enrollOpts(tok, "web1.example", state)); !errors.Is(err, enroll.ErrAlreadyEnrolled) {
		t.Errorf("second enroll into the same state: %v, want ErrAlreadyEnrolled", err)
	}

	refusals := []struct {
		name string
		opts func() enroll.Options
		code string
	}{
		{"token reuse", func() enroll.Options {
			o := enrollOpts(tok, "web1.example", filepath.Join(t.TempDir(), "s"))
			return o
		}, "HF-E8011"},
		{"wrong host", func() enroll.Options {
			t2 := d.newToken(t, "db1.example", "")
			return enrollOpts(t2, "web2.example", filepath.Join(t.TempDir(), "s"))
		}, "HF-E8013"},
		{"expired token", func() enroll.Options {
			t3 := d.newToken(t, "old.example", "1ms")
			time.Sleep(20 * time.Millisecond)
			return enrollOpts(t3, "old.example", filepath.Join(t.TempDir(), "s"))
		}, "HF-E8012"},
		{"unknown token", func() enroll.Options {
			o := enrollOpts(tok, "web1.example", filepath.Join(t.TempDir(), "s"))
			o.Token = "hfe1_" + strings.Repeat("A", 43)
			return o
		}, "HF-E8010"},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			_, err := enroll.Enroll(ctx, r.opts())
			var re *enroll.RefusedError
			if !errors.As(err, &re) || re.Code != r.code || re.Action == "" {
				t.Fatalf("err = %v, want a refusal %s with its action", err, r.code)
			}
			if !d.logHas(t, r.code) {
				t.Errorf("%s not in the activity log", r.code)
			}
		})
	}

	// Revocation: the next handshake with the certificate fails.
	if _, errOut, code := d.cli(t, "agent", "revoke", "web1.example"); code != 0 {
		t.Fatal(errOut)
	}
	if host, err := d.whoami(t, state); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("revoked agent: served as %q, err %v; want a handshake refusal", host, err)
	} else {
		t.Logf("revoked agent refused: %v", err)
	}
	if !d.logHas(t, "HF-I8004") {
		t.Error("revocation not in the activity log")
	}

	// No token ever reaches the activity log.
	var entries []api.LogEntry
	d.getJSON(t, &entries, "log", "--limit", "0")
	for _, e := range entries {
		if strings.Contains(e.Message, tok.Token) || strings.Contains(e.Message, "hfe1_A") {
			t.Errorf("activity entry leaks a token: %s %s", e.Code, e.Message)
		}
	}
}

func TestEnrollRateLimited(t *testing.T) {
	d := startAgentDaemon(t)
	tok := d.newToken(t, "web1.example", "")
	cfg, err := pki.EnrollmentClientTLS(tok.CAFingerprint, tok.ServerName)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 20 * time.Second}
	body := `{"token":"hfe1_guess","csr":"AAAA"}`
	limited := 0
	for i := 0; i < 3*api.DefaultEnrollBurst && limited == 0; i++ {
		resp, err := client.Post("https://"+d.agents+enroll.Path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var eb api.ErrorBody
		_ = json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusTooManyRequests && eb.Error.Code == "HF-W8015":
			limited = i + 1
		case resp.StatusCode != http.StatusBadRequest || eb.Error.Code != "HF-E8014":
			t.Fatalf("attempt %d: %d %s, want 400 HF-E8014 or 429 HF-W8015", i+1, resp.StatusCode, eb.Error.Code)
		}
	}
	if limited == 0 || limited <= api.DefaultEnrollBurst {
		t.Fatalf("first refusal at attempt %d, want after the burst of %d", limited, api.DefaultEnrollBurst)
	}
	// While limited, even a valid token is not looked at.
	_, err = enroll.Enroll(context.Background(), enrollOpts(tok, "web1.example", filepath.Join(t.TempDir(), "s")))
	var re *enroll.RefusedError
	if !errors.As(err, &re) || re.Code != "HF-W8015" {
		t.Fatalf("valid token while limited: %v, want HF-W8015", err)
	}
	if !d.logHas(t, "HF-W8015") {
		t.Error("rate limiting not in the activity log")
	}
}

func TestAgentCLI(t *testing.T) {
	d := startAgentDaemon(t)
	out, errOut, code := d.cli(t, "agent", "token", "web1.example", "--ttl", "30m")
	if code != 0 {
		t.Fatalf("agent token: %s", errOut)
	}
	var line string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "holdfast-agent enroll ") {
			line = l
		}
	}
	if line == "" || !strings.Contains(line, "--server-name "+testHostName) {
		t.Fatalf("no usable command line in:\n%s", out)
	}
	// Run the printed command, as the operator would, with the state
	// directory moved out of /var/lib (the last --state wins).
	state := filepath.Join(t.TempDir(), "agent")
	args := append(strings.Fields(line)[1:], "--state", state)
	cmd := exec.Command(agentBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("holdfast-agent %v: %v\n%s", args, err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "enrolled web1.example") {
		t.Errorf("holdfast-agent output: %s", stdout.String())
	}
	// The same command again: refused locally, with what to do.
	cmd = exec.Command(agentBin, args...)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "--force") {
		t.Errorf("second run: %v %s, want a refusal naming --force", err, out)
	}

	var agents []api.Agent
	d.getJSON(t, &agents, "agent", "list")
	if len(agents) != 1 || agents[0].Host != "web1.example" || agents[0].Revoked || agents[0].Serial == "" {
		t.Fatalf("list = %+v", agents)
	}
	if out, _, _ := d.cli(t, "agent", "list"); !strings.Contains(out, "web1.example") || !strings.Contains(out, "valid") {
		t.Errorf("list table:\n%s", out)
	}
	if _, errOut, code := d.cli(t, "agent", "revoke", "web1.example"); code != 0 {
		t.Fatal(errOut)
	}
	d.getJSON(t, &agents, "agent", "list")
	if len(agents) != 1 || !agents[0].Revoked || agents[0].RevokedAt == nil {
		t.Errorf("after revoke: %+v", agents)
	}

	refusals := []struct {
		name string
		args []string
		code string
	}{
		{"revoke unknown", []string{"agent", "revoke", "nobody.example"}, "HF-E8017"},
		{"appliance's own name", []string{"agent", "token", testHostName}, "HF-E8020"},
		{"ttl too long", []string{"agent", "token", "web2", "--ttl", "200h"}, "HF-E8020"},
		{"bad host", []string{"agent", "token", "bad_host"}, "HF-E8020"},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			_, errOut, code := d.cli(t, r.args...)
			if code == 0 || !strings.Contains(errOut, r.code) || !strings.Contains(errOut, "action:") {
				t.Errorf("exit %d, stderr %q; want %s with its action", code, errOut, r.code)
			}
		})
	}
}
