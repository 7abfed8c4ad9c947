package pki

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/holdfast/holdfast/internal/atomicfile"
)

// Files in an agent's identity directory.
const (
	identityKeyFile  = "agent.key" // PKCS#8 PEM, 0600
	identityCertFile = "agent.crt" // PEM, 0644
	identityCAFile   = "ca.crt"    // the appliance CA, PEM, 0644
)

// NewKeyAndCSR generates the agent's private key (ECDSA P-256) and a CSR for
// host. The key stays on the agent; only the CSR (public key + host name,
// signed with the key to prove possession) is sent with the token.
func NewKeyAndCSR(host string) (keyPEM []byte, csrDER []byte, err error) {
	h, err := normalizeHost(host)
	if err != nil {
		return nil, nil, fmt.Errorf("new CSR: %w", err)
	}
	key, err := generateKey()
	if err != nil {
		return nil, nil, fmt.Errorf("new CSR for %s: %w", h, err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: h}}
	if ip := net.ParseIP(h); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{h}
	}
	csrDER, err = x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, nil, fmt.Errorf("new CSR for %s: %w", h, err)
	}
	keyPEM, err = encodeKeyPEM(key)
	if err != nil {
		return nil, nil, fmt.Errorf("new CSR for %s: %w", h, err)
	}
	return keyPEM, csrDER, nil
}

// SaveIdentity checks and stores the agent's enrollment result in dir: the
// key (0600), its certificate and the appliance CA certificate (0644). It
// refuses a certificate that does not match the key or does not chain to the
// CA, so a mix-up is caught at enrollment, not at the first connection.
func SaveIdentity(dir string, keyPEM, certDER, caDER []byte) error {
	if _, _, err := checkIdentity(keyPEM, certDER, caDER, time.Now()); err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save identity: create directory: %w", err)
	}
	// CA and key before the certificate: the certificate is what makes the
	// identity complete, mirroring the CA's own files.
	if err := atomicfile.Write(filepath.Join(dir, identityCAFile), encodeCertPEM(caDER), 0o644); err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, identityKeyFile), keyPEM, 0o600); err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, identityCertFile), encodeCertPEM(certDER), 0o644); err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	return nil
}

// LoadIdentity loads what SaveIdentity stored and returns the TLS
// certificate (with Leaf set) and a pool holding only the appliance CA, ready
// for ServerTLS/ClientTLS. A key file readable by group or others is refused.
func LoadIdentity(dir string) (tls.Certificate, *x509.CertPool, error) {
	keyPath := filepath.Join(dir, identityKeyFile)
	keyPEM, err := readPrivateKeyFile(keyPath)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("load identity: %w", err)
	}
	certPEM, err := readFileLimited(filepath.Join(dir, identityCertFile))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("load identity: %w", err)
	}
	caPEM, err := readFileLimited(filepath.Join(dir, identityCAFile))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("load identity: %w", err)
	}
	leaf, err := decodeCertPEM(certPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("load identity %s: %w", identityCertFile, err)
	}
	caCert, err := decodeCertPEM(caPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("load identity %s: %w", identityCAFile, err)
	}
	cert, pool, err := checkIdentity(keyPEM, leaf.Raw, caCert.Raw, time.Now())
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("load identity from %s: %w", dir, err)
	}
	return cert, pool, nil
}

// checkIdentity verifies that key, certificate and CA belong together and
// are currently valid, and builds the TLS objects.
func checkIdentity(keyPEM, certDER, caDER []byte, now time.Time) (tls.Certificate, *x509.CertPool, error) {
	key, err := decodeKeyPEM(keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("private key: %w", err)
	}
	leaf, err := x509.ParseCertificate(certDER)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !caCert.IsCA {
		return tls.Certificate{}, nil, fmt.Errorf("CA certificate %q is not a CA", caCert.Subject.CommonName)
	}
	if !keyMatches(key, leaf.PublicKey) {
		return tls.Certificate{}, nil, fmt.Errorf("certificate for %q does not match the private key", leaf.Subject.CommonName)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:       pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("certificate for %q: %w", leaf.Subject.CommonName, err)
	}
	if _, err := hostFromCert(leaf); err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{certDER}, PrivateKey: key, Leaf: leaf}, pool, nil
}

// HasIdentity reports whether dir already holds (part of) an identity, so
// that enrolling again does not silently replace a working one.
func HasIdentity(dir string) (bool, error) {
	for _, name := range []string{identityKeyFile, identityCertFile} {
		ok, err := fileExists(filepath.Join(dir, name))
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}
