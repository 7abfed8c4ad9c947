package pki

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"sort"
	"strings"
	"time"
)

// serverRenewBefore is how close to expiry the appliance's own certificate
// may get before ServerIdentity replaces it. The check runs at every daemon
// start, so a month leaves room for an appliance that is seldom restarted.
const serverRenewBefore = 30 * 24 * time.Hour

// ServerIdentity returns the appliance's own TLS certificate for host,
// issued by ca and kept in dir (the SaveIdentity layout). It issues a new one
// when none is there, when the stored one names another host, was issued by
// another CA, or expires within a month. The certificate chain includes the
// CA certificate, so an enrolling agent that has only the CA's fingerprint
// can verify the server.
//
// When it issues a certificate, renewed says why (for the activity log);
// it is empty when the stored certificate was kept.
//
// The appliance's certificate is not recorded among the issued (agent)
// certificates: it is the CA's own, and revoking it would only cut the
// appliance off from its agents.
func (ca *CA) ServerIdentity(dir, host string) (cert tls.Certificate, renewed string, err error) {
	h, err := NormalizeHost(host)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("appliance identity: %w", err)
	}
	cert, _, err = LoadIdentity(dir)
	switch {
	case err == nil:
		renewed = ca.replaceReason(cert, h)
		if renewed == "" {
			cert.Certificate = append(cert.Certificate, ca.cert.Raw)
			return cert, "", nil
		}
	case errors.Is(err, os.ErrNotExist):
		renewed = "first start"
	default:
		// A damaged or foreign identity is replaced rather than fatal: the
		// CA can always issue a fresh one, and nothing else depends on the
		// old key.
		renewed = err.Error()
	}
	keyPEM, csrDER, err := NewKeyAndCSR(h)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("appliance identity: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("appliance identity: parse own CSR: %w", err)
	}
	der, _, _, err := ca.signLeaf(csr.PublicKey, h, ca.now())
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("appliance identity for %s: %w", h, err)
	}
	if err := SaveIdentity(dir, keyPEM, der, ca.cert.Raw); err != nil {
		return tls.Certificate{}, "", fmt.Errorf("appliance identity for %s: %w", h, err)
	}
	cert, _, err = LoadIdentity(dir)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("appliance identity for %s: reload: %w", h, err)
	}
	cert.Certificate = append(cert.Certificate, ca.cert.Raw)
	return cert, renewed, nil
}

// replaceReason says why a stored appliance certificate must be replaced,
// or returns "" when it can be kept.
func (ca *CA) replaceReason(cert tls.Certificate, host string) string {
	if cert.Leaf == nil || cert.Leaf.CheckSignatureFrom(ca.cert) != nil {
		return "the stored certificate was issued by another CA"
	}
	if h, err := hostFromCert(cert.Leaf); err != nil || h != host {
		return "the host name changed to " + host
	}
	if cert.Leaf.NotAfter.Sub(ca.now()) <= serverRenewBefore {
		return "the stored certificate expires on " + cert.Leaf.NotAfter.UTC().Format(time.DateOnly)
	}
	return ""
}

// IssuedCert describes one unexpired agent certificate the CA issued.
type IssuedCert struct {
	Host      string
	Serial    *big.Int
	NotAfter  time.Time
	RevokedAt time.Time // zero unless revoked
}

// Issued returns the unexpired certificates issued to agents, ordered by
// host and expiry.
func (ca *CA) Issued() []IssuedCert {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	now := ca.now()
	var out []IssuedCert
	for _, c := range ca.state.certs {
		if now.Before(c.notAfter) {
			out = append(out, IssuedCert{Host: c.host, Serial: new(big.Int).Set(c.serial), NotAfter: c.notAfter, RevokedAt: c.revokedAt})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Host != out[j].Host {
			return out[i].Host < out[j].Host
		}
		return out[i].NotAfter.Before(out[j].NotAfter)
	})
	return out
}

// NormalizeHost validates a host name or IP address as used for an identity
// and returns the canonical form certificates carry (lower case, no trailing
// dot), so callers compare names the way the CA does.
func NormalizeHost(host string) (string, error) { return normalizeHost(host) }

// ServerTLSClientOptional is ServerTLS for a listener that also serves
// callers without a certificate (the enrollment route): a client
// certificate, when given, must chain to roots and not be revoked, or the
// handshake fails; when none is given the handshake succeeds and PeerHost
// reports an error, which handlers must treat as "not authenticated".
func ServerTLSClientOptional(cert tls.Certificate, roots *x509.CertPool, isRevoked RevocationFunc) *tls.Config {
	verify := verifyPeer(isRevoked)
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    roots,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			return verify(cs)
		},
	}
}

// ErrFingerprintMismatch is returned by the handshake of EnrollmentClientTLS
// when the server's chain does not end in the CA the operator named.
var ErrFingerprintMismatch = errors.New("appliance CA fingerprint does not match")

// Fingerprint returns the SHA-256 (hex) of a DER certificate, the form
// (*CA).Fingerprint gives.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// NormalizeFingerprint accepts a SHA-256 fingerprint in hex, upper or lower
// case, with or without colons, and returns the form Fingerprint gives.
func NormalizeFingerprint(fp string) (string, error) {
	f := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(fp), ":", ""))
	if b, err := hex.DecodeString(f); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("CA fingerprint %q: want 64 hex digits (the SHA-256 'holdfast agent token' prints)", fp)
	}
	return f, nil
}

// EnrollmentClientTLS returns the TLS 1.3 configuration an agent uses to
// enroll, before it has the CA certificate: the server must present a chain
// holding a CA certificate whose SHA-256 is caFingerprint, and a leaf signed
// by that CA naming serverName. Anything else fails the handshake, so the
// enrollment token is never sent to an impostor. No client certificate is
// presented.
func EnrollmentClientTLS(caFingerprint, serverName string) (*tls.Config, error) {
	fp, err := NormalizeFingerprint(caFingerprint)
	if err != nil {
		return nil, err
	}
	name, err := normalizeHost(serverName)
	if err != nil {
		return nil, fmt.Errorf("appliance name: %w", err)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		MaxVersion: tls.VersionTLS13,
		ServerName: name,
		// The standard verification needs a trusted root, which the agent
		// does not have yet; VerifyConnection below does the equivalent
		// against the pinned CA, on every handshake.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPinned(cs.PeerCertificates, fp, name)
		},
	}, nil
}

// verifyPinned checks a server chain against a CA known only by its
// fingerprint.
func verifyPinned(chain []*x509.Certificate, fp, name string) error {
	if len(chain) == 0 {
		return errors.New("appliance sent no certificate")
	}
	var ca *x509.Certificate
	for _, c := range chain[1:] {
		if Fingerprint(c.Raw) == fp {
			ca = c
		}
	}
	if ca == nil || !ca.IsCA {
		return fmt.Errorf("%w: the appliance's CA is not %s; check the address and the fingerprint from 'holdfast agent token'", ErrFingerprintMismatch, fp)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := chain[0].Verify(x509.VerifyOptions{
		Roots:     roots,
		DNSName:   name,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return fmt.Errorf("appliance certificate: %w", err)
	}
	return nil
}

// CertHost returns the host name a Holdfast leaf certificate is issued to.
func CertHost(c *x509.Certificate) (string, error) { return hostFromCert(c) }
