package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for expiry tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func mustOpenCA(t *testing.T, dir string) *CA {
	t.Helper()
	ca, err := OpenCA(dir)
	if err != nil {
		t.Fatalf("OpenCA: %v", err)
	}
	return ca
}

// enrollIdentity runs the whole agent-side flow: token, key+CSR, Enroll,
// SaveIdentity, LoadIdentity.
func enrollIdentity(t *testing.T, ca *CA, host string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	token, err := ca.NewEnrollmentToken(host, time.Hour)
	if err != nil {
		t.Fatalf("NewEnrollmentToken(%s): %v", host, err)
	}
	keyPEM, csrDER, err := NewKeyAndCSR(host)
	if err != nil {
		t.Fatalf("NewKeyAndCSR(%s): %v", host, err)
	}
	certDER, caDER, err := ca.Enroll(token, csrDER)
	if err != nil {
		t.Fatalf("Enroll(%s): %v", host, err)
	}
	dir := t.TempDir()
	if err := SaveIdentity(dir, keyPEM, certDER, caDER); err != nil {
		t.Fatalf("SaveIdentity: %v", err)
	}
	for name, want := range map[string]os.FileMode{identityKeyFile: 0o600, identityCertFile: 0o644, identityCAFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %04o, want %04o", name, fi.Mode().Perm(), want)
		}
	}
	cert, pool, err := LoadIdentity(dir)
	if err != nil {
		t.Fatalf("LoadIdentity: %v", err)
	}
	return cert, pool
}

type handshakeResult struct {
	serverErr  error
	clientErr  error
	clientData string // what the client read after the handshake
	serverPeer string // PeerHost on the server side
	clientPeer string // PeerHost on the client side
}

const appData = "backup catalog"

// runHandshake serves one connection on 127.0.0.1 with srv and dials it with
// cli. The server writes appData only after a successful handshake, so
// clientData shows whether a refused client got any application data.
func runHandshake(t *testing.T, srv, cli *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var res handshakeResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		raw, err := ln.Accept()
		if err != nil {
			res.serverErr = err
			return
		}
		conn := tls.Server(raw, srv)
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if err := conn.Handshake(); err != nil {
			res.serverErr = err
			return
		}
		if res.serverPeer, err = PeerHost(conn.ConnectionState()); err != nil {
			res.serverErr = err
			return
		}
		if _, err := conn.Write([]byte(appData)); err != nil {
			res.serverErr = err
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn := tls.Client(raw, cli)
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	// In TLS 1.3 the client finishes its handshake before the server has
	// checked the client certificate; a refusal shows up on the first read.
	if err := conn.Handshake(); err != nil {
		res.clientErr = err
	} else {
		res.clientPeer, _ = PeerHost(conn.ConnectionState())
		data, err := io.ReadAll(conn)
		res.clientData = string(data)
		if err != nil {
			res.clientErr = err
		}
	}
	conn.Close()
	<-done
	return res
}

func TestMutualTLS(t *testing.T) {
	ca := mustOpenCA(t, t.TempDir())
	other := mustOpenCA(t, t.TempDir()) // a different appliance's CA

	srvCert, srvPool := enrollIdentity(t, ca, "appliance.test")
	agentCert, agentPool := enrollIdentity(t, ca, "agent1.test")
	revokedCert, _ := enrollIdentity(t, ca, "gone.test")
	if err := ca.Revoke("gone.test"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	foreignAgent, _ := enrollIdentity(t, other, "agent1.test")
	foreignSrv, _ := enrollIdentity(t, other, "appliance.test")

	server := ServerTLS(srvCert, srvPool, ca.IsRevoked)
	client := func(c tls.Certificate) *tls.Config { return ClientTLS(c, agentPool, "appliance.test", nil) }

	tls12 := client(agentCert)
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	noCert := client(agentCert)
	noCert.Certificates = nil
	// Go's client only offers a certificate whose issuer the server lists
	// as acceptable, so a plain foreign client sends none. forcedForeign
	// sends it anyway, to exercise the server's own chain verification.
	forcedForeign := client(foreignAgent)
	forcedForeign.Certificates = nil
	forcedForeign.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &foreignAgent, nil
	}
	denyServer := func(s *big.Int) bool { return s.Cmp(srvCert.Leaf.SerialNumber) == 0 }

	tests := []struct {
		name   string
		srv    *tls.Config
		cli    *tls.Config
		wantOK bool
	}{
		{"enrolled agent", server, client(agentCert), true},
		{"client cert from another CA", server, client(foreignAgent), false},
		{"client forcing cert from another CA", server, forcedForeign, false},
		{"server cert from another CA", ServerTLS(foreignSrv, srvPool, nil), client(agentCert), false},
		{"client without certificate", server, noCert, false},
		{"TLS 1.2 only client", server, tls12, false},
		{"wrong server name", server, ClientTLS(agentCert, agentPool, "other.test", nil), false},
		{"revoked client", server, client(revokedCert), false},
		{"revoked server (client-side hook)", server, ClientTLS(agentCert, agentPool, "appliance.test", denyServer), false},
		{"client-side hook allowing", server, ClientTLS(agentCert, agentPool, "appliance.test", ca.IsRevoked), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := runHandshake(t, tc.srv, tc.cli)
			if tc.wantOK {
				if res.serverErr != nil || res.clientErr != nil {
					t.Fatalf("handshake failed: server %v, client %v", res.serverErr, res.clientErr)
				}
				if res.serverPeer != "agent1.test" {
					t.Errorf("server PeerHost = %q, want agent1.test", res.serverPeer)
				}
				if res.clientPeer != "appliance.test" {
					t.Errorf("client PeerHost = %q, want appliance.test", res.clientPeer)
				}
				if res.clientData != appData {
					t.Errorf("client read %q, want %q", res.clientData, appData)
				}
				return
			}
			if res.serverErr == nil && res.clientErr == nil {
				t.Fatal("handshake succeeded, want failure")
			}
			if res.clientData != "" {
				t.Errorf("refused client read application data %q", res.clientData)
			}
			t.Logf("server: %v; client: %v", res.serverErr, res.clientErr)
		})
	}
}

func TestEnrollTokens(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	ca, err := openCA(t.TempDir(), clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	_, goodCSR, err := NewKeyAndCSR("agent1.test")
	if err != nil {
		t.Fatal(err)
	}
	_, otherCSR, err := NewKeyAndCSR("agent2.test")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		setup func(t *testing.T) string // returns the token to present
		csr   []byte
		want  error
	}{
		{"valid", func(t *testing.T) string { return newToken(t, ca, "agent1.test", time.Hour) }, goodCSR, nil},
		{"host name case and trailing dot normalised", func(t *testing.T) string { return newToken(t, ca, "Agent1.Test.", time.Hour) }, goodCSR, nil},
		{"reused", func(t *testing.T) string {
			tok := newToken(t, ca, "agent1.test", time.Hour)
			if _, _, err := ca.Enroll(tok, goodCSR); err != nil {
				t.Fatalf("first Enroll: %v", err)
			}
			return tok
		}, goodCSR, ErrTokenUsed},
		{"expired", func(t *testing.T) string {
			tok := newToken(t, ca, "agent1.test", time.Minute)
			clock.Advance(time.Minute)
			return tok
		}, goodCSR, ErrTokenExpired},
		{"unknown", func(t *testing.T) string { return tokenPrefix + strings.Repeat("A", 43) }, goodCSR, ErrTokenUnknown},
		{"empty", func(t *testing.T) string { return "" }, goodCSR, ErrTokenUnknown},
		{"CSR for another host", func(t *testing.T) string { return newToken(t, ca, "agent1.test", time.Hour) }, otherCSR, ErrHostMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.setup(t)
			certDER, caDER, err := ca.Enroll(tok, tc.csr)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Enroll: %v", err)
				}
				checkLeaf(t, certDER, caDER, "agent1.test")
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Enroll error = %v, want %v", err, tc.want)
			}
			if tok != "" && strings.Contains(err.Error(), tok) {
				t.Fatalf("error message leaks the token: %v", err)
			}
		})
	}

	// A CSR rejected for its host name must not burn the token.
	tok := newToken(t, ca, "agent1.test", time.Hour)
	if _, _, err := ca.Enroll(tok, otherCSR); !errors.Is(err, ErrHostMismatch) {
		t.Fatalf("wrong-host Enroll: %v", err)
	}
	if _, _, err := ca.Enroll(tok, goodCSR); err != nil {
		t.Fatalf("Enroll after rejected CSR: %v", err)
	}

	if _, err := ca.NewEnrollmentToken("agent1.test", 0); err == nil {
		t.Error("zero TTL accepted")
	}
	if _, err := ca.NewEnrollmentToken("bad_host!", time.Hour); err == nil {
		t.Error("invalid host accepted")
	}
	if _, _, err := ca.Enroll(newToken(t, ca, "agent1.test", time.Hour), []byte("not a CSR")); err == nil {
		t.Error("garbage CSR accepted")
	}
}

func newToken(t *testing.T, ca *CA, host string, ttl time.Duration) string {
	t.Helper()
	tok, err := ca.NewEnrollmentToken(host, ttl)
	if err != nil {
		t.Fatalf("NewEnrollmentToken: %v", err)
	}
	return tok
}

func checkLeaf(t *testing.T, certDER, caDER []byte, host string) {
	t.Helper()
	leaf, err := x509.ParseCertificate(certDER)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != host || leaf.Subject.CommonName != host {
		t.Errorf("leaf names CN=%q SAN=%v, want %s", leaf.Subject.CommonName, leaf.DNSNames, host)
	}
	if leaf.IsCA {
		t.Error("leaf is a CA")
	}
	if leaf.SerialNumber.BitLen() < 64 {
		t.Errorf("serial %x suspiciously short", leaf.SerialNumber)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < leafValidity || d > leafValidity+clockSkew {
		t.Errorf("leaf validity %s", d)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{eku}}); err != nil {
			t.Errorf("verify for EKU %v: %v", eku, err)
		}
	}
}

func TestCAFiles(t *testing.T) {
	dir := t.TempDir()
	ca := mustOpenCA(t, dir)
	for name, want := range map[string]os.FileMode{caKeyFile: 0o600, caCertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %04o, want %04o", name, fi.Mode().Perm(), want)
		}
	}
	c := ca.Certificate()
	if !strings.HasPrefix(c.Subject.CommonName, "Holdfast appliance CA ") || !c.IsCA {
		t.Errorf("CA subject %q IsCA=%t", c.Subject.CommonName, c.IsCA)
	}
	if d := c.NotAfter.Sub(c.NotBefore); d < caValidity {
		t.Errorf("CA validity %s", d)
	}

	// State survives reopening: a used token stays used, a pending one stays
	// usable, a revocation stays in force.
	used := newToken(t, ca, "agent1.test", time.Hour)
	pending := newToken(t, ca, "agent2.test", time.Hour)
	_, csr1, _ := NewKeyAndCSR("agent1.test")
	_, csr2, _ := NewKeyAndCSR("agent2.test")
	certDER, _, err := ca.Enroll(used, csr1)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Revoke("agent1.test"); err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(certDER)

	re := mustOpenCA(t, dir)
	if !re.Certificate().Equal(c) || re.Fingerprint() != ca.Fingerprint() || len(ca.Fingerprint()) != 64 {
		t.Error("reopened CA has a different certificate")
	}
	if _, _, err := re.Enroll(used, csr1); !errors.Is(err, ErrTokenUsed) {
		t.Errorf("used token after reopen: %v, want ErrTokenUsed", err)
	}
	if !re.IsRevoked(leaf.SerialNumber) {
		t.Error("revocation lost on reopen")
	}
	if _, _, err := re.Enroll(pending, csr2); err != nil {
		t.Errorf("pending token after reopen: %v", err)
	}
	if err := re.Revoke("never.test"); !errors.Is(err, ErrHostUnknown) {
		t.Errorf("Revoke unknown host: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, stateFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v mode %v", err, fi)
	}
	data, _ := os.ReadFile(filepath.Join(dir, stateFileName))
	if strings.Contains(string(data), used[len(tokenPrefix):]) {
		t.Error("state file holds a plaintext token")
	}
}

func TestRevokeDropsPendingTokens(t *testing.T) {
	ca := mustOpenCA(t, t.TempDir())
	tok := newToken(t, ca, "agent1.test", time.Hour)
	if err := ca.Revoke("agent1.test"); err != nil {
		t.Fatal(err)
	}
	_, csr, _ := NewKeyAndCSR("agent1.test")
	if _, _, err := ca.Enroll(tok, csr); !errors.Is(err, ErrTokenUnknown) {
		t.Fatalf("Enroll with token of revoked host: %v, want ErrTokenUnknown", err)
	}
}

func TestOpenCARefuses(t *testing.T) {
	tests := []struct {
		name    string
		break_  func(t *testing.T, dir string)
		wantErr string
		is      error
	}{
		{"key readable by others", func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, caKeyFile), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "chmod 600", ErrKeyPermissions},
		{"key readable by group", func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, caKeyFile), 0o640); err != nil {
				t.Fatal(err)
			}
		}, "chmod 600", ErrKeyPermissions},
		{"certificate of another CA", func(t *testing.T, dir string) {
			other := t.TempDir()
			mustOpenCA(t, other)
			data, err := os.ReadFile(filepath.Join(other, caCertFile))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, caCertFile), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "does not match", nil},
		{"certificate missing after use", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, caCertFile)); err != nil {
				t.Fatal(err)
			}
		}, "incomplete CA", nil},
		{"corrupt state", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, stateFileName), []byte(`{"version":1,"tokens":[{"sha256":"zz"}]}`), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "corrupt", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ca := mustOpenCA(t, dir)
			newToken(t, ca, "agent1.test", time.Hour) // creates the state file
			tc.break_(t, dir)
			_, err := OpenCA(dir)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("OpenCA error = %v, want mention of %q", err, tc.wantErr)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("OpenCA error = %v, want errors.Is %v", err, tc.is)
			}
		})
	}
}

func TestOpenCARecoversInterruptedCreate(t *testing.T) {
	// A first run that crashed after writing the key but before the
	// certificate: nothing can have been issued, so OpenCA starts over.
	dir := t.TempDir()
	mustOpenCA(t, dir)
	if err := os.Remove(filepath.Join(dir, caCertFile)); err != nil {
		t.Fatal(err)
	}
	mustOpenCA(t, dir)
}

func TestLoadIdentityRefusesOpenKey(t *testing.T) {
	ca := mustOpenCA(t, t.TempDir())
	token := newToken(t, ca, "agent1.test", time.Hour)
	keyPEM, csr, err := NewKeyAndCSR("agent1.test")
	if err != nil {
		t.Fatal(err)
	}
	certDER, caDER, err := ca.Enroll(token, csr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := SaveIdentity(dir, keyPEM, certDER, caDER); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, identityKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadIdentity(dir); !errors.Is(err, ErrKeyPermissions) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("LoadIdentity with 0644 key: %v", err)
	}

	// SaveIdentity refuses a key that does not belong to the certificate.
	otherKey, _, err := NewKeyAndCSR("agent1.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := SaveIdentity(t.TempDir(), otherKey, certDER, caDER); err == nil {
		t.Fatal("SaveIdentity accepted a mismatched key")
	}
}
