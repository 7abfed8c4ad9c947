package pki

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestServerIdentity(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	ca, err := openCA(t.TempDir(), clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "identity")
	first, why, err := ca.ServerIdentity(dir, "Appliance.example")
	if err != nil || why != "first start" {
		t.Fatalf("first: %q, %v", why, err)
	}
	if len(first.Certificate) != 2 || Fingerprint(first.Certificate[1]) != ca.Fingerprint() {
		t.Fatal("chain does not end in the CA certificate")
	}
	if h, err := hostFromCert(first.Leaf); err != nil || h != "appliance.example" {
		t.Fatalf("host %q, %v", h, err)
	}
	kept, why, err := ca.ServerIdentity(dir, "appliance.example")
	if err != nil || why != "" || kept.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0 {
		t.Fatalf("second start replaced a good certificate: %q, %v", why, err)
	}
	renamed, why, err := ca.ServerIdentity(dir, "other.example")
	if err != nil || !strings.Contains(why, "host name changed") || renamed.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Fatalf("rename: %q, %v", why, err)
	}
	clock.Advance(leafValidity - 10*24*time.Hour)
	if why := ca.replaceReason(renamed, "other.example"); !strings.Contains(why, "expires") {
		t.Fatalf("near expiry: %q, want a renewal", why)
	}
	other := mustOpenCA(t, t.TempDir())
	if _, why, err := other.ServerIdentity(dir, "other.example"); err != nil || why == "" {
		t.Fatalf("identity of another CA kept: %q, %v", why, err)
	}
	if len(ca.Issued()) != 0 {
		t.Error("the appliance's own certificate is listed among agents")
	}
}

func TestEnrollmentClientTLSPinsTheCA(t *testing.T) {
	ca := mustOpenCA(t, t.TempDir())
	srvCert, _, err := ca.ServerIdentity(t.TempDir(), "appliance")
	if err != nil {
		t.Fatal(err)
	}
	// An enrolled agent's certificate is valid for server authentication
	// too; it must not pass for the appliance.
	agentCert, _ := enrollIdentity(t, ca, "agent1")
	agentCert.Certificate = append(agentCert.Certificate, ca.Certificate().Raw)
	other := mustOpenCA(t, t.TempDir())

	tests := []struct {
		name      string
		serverKey func() ([]byte, error)
		fp, sname string
		wantErr   string
	}{
		{"right CA and name", nil, ca.Fingerprint(), "appliance", ""},
		{"fingerprint with colons, upper case", nil, colons(strings.ToUpper(ca.Fingerprint())), "appliance", ""},
		{"another CA's fingerprint", nil, other.Fingerprint(), "appliance", "fingerprint does not match"},
		{"wrong server name", nil, ca.Fingerprint(), "agent1", "appliance certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cli, err := EnrollmentClientTLS(tt.fp, tt.sname)
			if err != nil {
				t.Fatal(err)
			}
			// The client presents no certificate, so the test server's
			// PeerHost fails after the handshake and it sends no data;
			// what counts is the client's handshake.
			res := runHandshake(t, ServerTLSClientOptional(srvCert, ca.Pool(), ca.IsRevoked), cli)
			if tt.wantErr == "" {
				if res.clientErr != nil {
					t.Fatalf("refused: %v", res.clientErr)
				}
				return
			}
			if res.clientErr == nil || !strings.Contains(res.clientErr.Error(), tt.wantErr) || res.clientData != "" {
				t.Fatalf("err %v data %q, want %q", res.clientErr, res.clientData, tt.wantErr)
			}
		})
	}
	t.Run("agent certificate posing as the appliance", func(t *testing.T) {
		cli, err := EnrollmentClientTLS(ca.Fingerprint(), "appliance")
		if err != nil {
			t.Fatal(err)
		}
		res := runHandshake(t, ServerTLSClientOptional(agentCert, ca.Pool(), nil), cli)
		if res.clientErr == nil || res.clientData != "" {
			t.Fatal("an agent's certificate was accepted as the appliance's")
		}
	})
	if _, err := EnrollmentClientTLS("abc", "appliance"); err == nil {
		t.Error("short fingerprint accepted")
	}
}

func colons(hex string) string {
	var b strings.Builder
	for i := 0; i < len(hex); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(hex[i : i+2])
	}
	return b.String()
}

func TestIssuedAndBadCSR(t *testing.T) {
	ca := mustOpenCA(t, t.TempDir())
	enrollIdentity(t, ca, "b-host")
	enrollIdentity(t, ca, "a-host")
	if err := ca.Revoke("b-host"); err != nil {
		t.Fatal(err)
	}
	got := ca.Issued()
	if len(got) != 2 || got[0].Host != "a-host" || !got[0].RevokedAt.IsZero() || got[1].Host != "b-host" || got[1].RevokedAt.IsZero() {
		t.Fatalf("Issued = %+v", got)
	}
	tok := newToken(t, ca, "c-host", time.Hour)
	if _, _, err := ca.Enroll(tok, []byte("not a CSR")); !errors.Is(err, ErrBadCSR) {
		t.Fatalf("garbage CSR: %v, want ErrBadCSR", err)
	}
}
