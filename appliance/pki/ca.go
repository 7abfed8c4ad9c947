package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/atomicfile"
)

// Files in the CA directory.
const (
	caKeyFile     = "ca.key"          // PKCS#8 PEM, 0600
	caCertFile    = "ca.crt"          // PEM, 0644
	stateFileName = "enrollment.json" // token hashes + issued certificates, 0600
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	// clockSkew backdates NotBefore so that a peer whose clock is a little
	// behind the appliance's does not reject a fresh certificate.
	clockSkew = 5 * time.Minute
	// MaxTokenTTL caps enrollment token lifetime: a token is a bearer
	// secret, and a short life limits what a leaked one is worth.
	MaxTokenTTL = 7 * 24 * time.Hour

	tokenPrefix = "hfe1_" // makes tokens recognisable in logs and secret scanners
	tokenBytes  = 32      // 256 bits
)

// Token errors. Enroll wraps them with context; test with errors.Is. The
// token itself never appears in an error message.
var (
	ErrTokenUnknown = errors.New("enrollment token unknown")
	ErrTokenUsed    = errors.New("enrollment token already used")
	ErrTokenExpired = errors.New("enrollment token expired")
	// ErrHostMismatch: the CSR names a host other than the token's.
	ErrHostMismatch = errors.New("CSR host name does not match the enrollment token")
	// ErrHostUnknown: Revoke found neither certificates nor tokens for a host.
	ErrHostUnknown = errors.New("no certificates or tokens for host")
	// ErrBadCSR: the CSR does not parse, its signature is wrong or its key
	// type is not accepted. Such a request does not consume the token.
	ErrBadCSR = errors.New("invalid certificate signing request")
)

// CA is the appliance's certificate authority. It is safe for concurrent use
// by one process; two processes must not open the same directory at once.
type CA struct {
	dir  string
	cert *x509.Certificate
	key  crypto.Signer

	// now is the clock; tests replace it to exercise expiry.
	now func() time.Time

	mu    sync.RWMutex
	state *state // replaced wholesale (copy-on-write) after a durable write
	// revoked indexes the revoked serials (hex) of state, because IsRevoked
	// runs on every TLS handshake.
	revoked map[string]struct{}
}

// setState makes s current. Called with ca.mu held (or before ca is shared).
func (ca *CA) setState(s *state) {
	ca.state = s
	ca.revoked = make(map[string]struct{})
	for _, c := range s.certs {
		if !c.revokedAt.IsZero() {
			ca.revoked[c.serial.Text(16)] = struct{}{}
		}
	}
}

// OpenCA opens the CA stored in dir, creating the directory, the CA key and
// certificate on first use.
func OpenCA(dir string) (*CA, error) {
	return openCA(dir, time.Now)
}

func openCA(dir string, now func() time.Time) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open CA: create directory: %w", err)
	}
	keyPath := filepath.Join(dir, caKeyFile)
	certPath := filepath.Join(dir, caCertFile)
	statePath := filepath.Join(dir, stateFileName)
	haveKey, err := fileExists(keyPath)
	if err != nil {
		return nil, fmt.Errorf("open CA: %w", err)
	}
	haveCert, err := fileExists(certPath)
	if err != nil {
		return nil, fmt.Errorf("open CA: %w", err)
	}
	haveState, err := fileExists(statePath)
	if err != nil {
		return nil, fmt.Errorf("open CA: %w", err)
	}

	ca := &CA{dir: dir, now: now}
	switch {
	case haveKey && haveCert:
		if err := ca.load(keyPath, certPath); err != nil {
			return nil, fmt.Errorf("open CA in %s: %w", dir, err)
		}
	case !haveCert && !haveState:
		// Fresh directory, or a first run that crashed after writing the key
		// but before the certificate. In the latter case nothing can have
		// been issued (issuing needs the certificate), so starting over is
		// safe.
		if err := ca.create(keyPath, certPath); err != nil {
			return nil, fmt.Errorf("create CA in %s: %w", dir, err)
		}
	default:
		return nil, fmt.Errorf("open CA in %s: incomplete CA (key present: %t, certificate present: %t, state present: %t); restore %s and %s from backup",
			dir, haveKey, haveCert, haveState, caKeyFile, caCertFile)
	}

	st := &state{}
	if haveState {
		data, err := readFileLimited(statePath)
		if err != nil {
			return nil, fmt.Errorf("open CA: read enrollment state: %w", err)
		}
		if st, err = decodeState(data); err != nil {
			return nil, fmt.Errorf("open CA: enrollment state %s is corrupt: %w", statePath, err)
		}
	}
	ca.setState(st)
	return ca, nil
}

func (ca *CA) create(keyPath, certPath string) error {
	key, err := generateKey()
	if err != nil {
		return err
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return fmt.Errorf("generate CA id: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The random id makes every appliance's CA distinguishable, e.g. in
		// a trust store or when an agent was enrolled with a different box.
		Subject:               pkix.Name{CommonName: "Holdfast appliance CA " + hex.EncodeToString(id[:])},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		// Path length 0: this CA signs leaf certificates only.
		MaxPathLen:     0,
		MaxPathLenZero: true,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("self-sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("parse new CA certificate: %w", err)
	}
	keyPEM, err := encodeKeyPEM(key)
	if err != nil {
		return err
	}
	// Key first: the certificate's presence is what marks the CA complete.
	if err := atomicfile.Write(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("write CA key: %w", err)
	}
	if err := atomicfile.Write(certPath, encodeCertPEM(der), 0o644); err != nil {
		return fmt.Errorf("write CA certificate: %w", err)
	}
	ca.key, ca.cert = key, cert
	return nil
}

func (ca *CA) load(keyPath, certPath string) error {
	keyPEM, err := readPrivateKeyFile(keyPath)
	if err != nil {
		return fmt.Errorf("read CA key: %w", err)
	}
	key, err := decodeKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("CA key %s: %w", keyPath, err)
	}
	certPEM, err := readFileLimited(certPath)
	if err != nil {
		return fmt.Errorf("read CA certificate: %w", err)
	}
	cert, err := decodeCertPEM(certPEM)
	if err != nil {
		return fmt.Errorf("CA certificate %s: %w", certPath, err)
	}
	if !keyMatches(key, cert.PublicKey) {
		return fmt.Errorf("CA key %s does not match certificate %s", keyPath, certPath)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("certificate %s is not a CA certificate", certPath)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return fmt.Errorf("CA certificate %s is not validly self-signed: %w", certPath, err)
	}
	now := ca.now()
	if now.After(cert.NotAfter) {
		return fmt.Errorf("CA certificate %s expired on %s", certPath, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("CA certificate %s not valid before %s (check the system clock)", certPath, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	ca.key, ca.cert = key, cert
	return nil
}

// Certificate returns the CA certificate (what agents must trust).
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Fingerprint returns the SHA-256 of the CA certificate (hex), for the
// operator to confirm out of band that an agent talks to the right appliance
// before it sends its enrollment token.
func (ca *CA) Fingerprint() string {
	sum := sha256.Sum256(ca.cert.Raw)
	return hex.EncodeToString(sum[:])
}

// Pool returns a certificate pool holding only this CA, for ServerTLS and
// ClientTLS on the appliance.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// commit persists next and makes it current. Called with ca.mu held.
func (ca *CA) commit(next *state) error {
	data, err := encodeState(next)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(ca.dir, stateFileName), data, 0o600); err != nil {
		return fmt.Errorf("persist enrollment state: %w", err)
	}
	ca.setState(next)
	return nil
}

// NewEnrollmentToken returns a fresh single-use token that lets host enroll
// once within ttl. Only the token's SHA-256 is stored, so reading the CA
// directory does not reveal usable tokens. The token is returned to be shown
// to the operator (or handed to the agent installer); it cannot be
// retrieved again.
func (ca *CA) NewEnrollmentToken(host string, ttl time.Duration) (string, error) {
	h, err := normalizeHost(host)
	if err != nil {
		return "", fmt.Errorf("new enrollment token: %w", err)
	}
	if ttl <= 0 || ttl > MaxTokenTTL {
		return "", fmt.Errorf("new enrollment token for %s: ttl %s outside (0, %s]", h, ttl, MaxTokenTTL)
	}
	var raw [tokenBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("new enrollment token for %s: %w", h, err)
	}
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])

	ca.mu.Lock()
	defer ca.mu.Unlock()
	now := ca.now()
	next := ca.state.clone()
	next.prune(now)
	if len(next.tokens) >= maxTokens {
		return "", fmt.Errorf("new enrollment token for %s: %d tokens outstanding, the limit; let some expire", h, len(next.tokens))
	}
	next.tokens = append(next.tokens, tokenRecord{
		hash:    sha256.Sum256([]byte(token)),
		host:    h,
		created: now,
		expires: now.Add(ttl),
	})
	if err := ca.commit(next); err != nil {
		return "", fmt.Errorf("new enrollment token for %s: %w", h, err)
	}
	return token, nil
}

// Enroll redeems token for the CSR (DER) and returns the issued certificate
// and the CA certificate, both DER. The CSR must be validly self-signed and
// name exactly the host the token was issued for (CommonName, and any
// SAN). The token is marked used, durably, before the certificate is
// returned, so a crash cannot let it be redeemed twice. A CSR that fails
// validation does not consume the token: holding the token is what grants
// enrollment, and a rejected request gains its holder nothing.
func (ca *CA) Enroll(token string, csrDER []byte) (certDER, caDER []byte, err error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, nil, fmt.Errorf("enroll: parse CSR: %w: %w", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, fmt.Errorf("enroll: CSR signature: %w: %w", ErrBadCSR, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, nil, fmt.Errorf("enroll: CSR key: %w: %w", ErrBadCSR, err)
	}
	hash := sha256.Sum256([]byte(token))

	ca.mu.Lock()
	defer ca.mu.Unlock()
	now := ca.now()

	// Scan every record with a constant-time compare rather than a map
	// lookup, so response timing does not depend on how much of a guessed
	// hash matches a stored one.
	idx := -1
	for i := range ca.state.tokens {
		if subtle.ConstantTimeCompare(ca.state.tokens[i].hash[:], hash[:]) == 1 {
			idx = i
		}
	}
	if idx < 0 {
		return nil, nil, fmt.Errorf("enroll: %w", ErrTokenUnknown)
	}
	rec := ca.state.tokens[idx]
	switch {
	case !rec.usedAt.IsZero():
		return nil, nil, fmt.Errorf("enroll host %s: token used at %s: %w", rec.host, rec.usedAt.UTC().Format(time.RFC3339), ErrTokenUsed)
	case !now.Before(rec.expires):
		return nil, nil, fmt.Errorf("enroll host %s: token expired at %s: %w", rec.host, rec.expires.UTC().Format(time.RFC3339), ErrTokenExpired)
	}
	if err := csrMatchesHost(csr, rec.host); err != nil {
		return nil, nil, fmt.Errorf("enroll host %s: %w", rec.host, err)
	}

	// Only the host and public key come from the CSR; its requested
	// extensions are ignored, so an agent cannot ask for CA rights or extra
	// names.
	certDER, serial, notAfter, err := ca.signLeaf(csr.PublicKey, rec.host, now)
	if err != nil {
		return nil, nil, fmt.Errorf("enroll host %s: %w", rec.host, err)
	}

	next := ca.state.clone()
	next.tokens[idx].usedAt = now
	next.tokens[idx].serial = serial
	next.certs = append(next.certs, certRecord{serial: serial, host: rec.host, notAfter: notAfter})
	next.prune(now)
	if err := ca.commit(next); err != nil {
		// Nothing is returned, so the unrecorded certificate never leaves
		// the process and the token stays unused.
		return nil, nil, fmt.Errorf("enroll host %s: %w", rec.host, err)
	}
	return certDER, ca.cert.Raw, nil
}

// signLeaf issues a certificate for host and pub, valid from now (less the
// clock skew allowance) for leafValidity, capped by the CA's own expiry.
func (ca *CA) signLeaf(pub any, host string, now time.Time) (der []byte, serial *big.Int, notAfter time.Time, err error) {
	serial, err = randomSerial()
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	notAfter = now.Add(leafValidity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter // a leaf must not outlive its issuer
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Both: an agent dials the appliance (client) and may also accept
		// connections, e.g. a replica receiving from its master (server).
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("sign certificate: %w", err)
	}
	return der, serial, notAfter, nil
}

// csrMatchesHost requires the CSR to name host and nothing else.
func csrMatchesHost(csr *x509.CertificateRequest, host string) error {
	cn, err := normalizeHost(csr.Subject.CommonName)
	if err != nil || cn != host {
		return fmt.Errorf("CSR common name %q: %w", csr.Subject.CommonName, ErrHostMismatch)
	}
	for _, d := range csr.DNSNames {
		if n, err := normalizeHost(d); err != nil || n != host {
			return fmt.Errorf("CSR DNS name %q: %w", d, ErrHostMismatch)
		}
	}
	for _, ip := range csr.IPAddresses {
		if ip.String() != host {
			return fmt.Errorf("CSR IP address %s: %w", ip, ErrHostMismatch)
		}
	}
	if len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		return fmt.Errorf("CSR carries e-mail or URI names: %w", ErrHostMismatch)
	}
	return nil
}

// Revoke puts every unexpired certificate issued to host on the deny list
// and discards host's unused enrollment tokens (so a leaked pending token
// cannot re-enroll it). The host can be enrolled again later with a new
// token. Connections already established are not affected; the daemon must
// close them itself.
func (ca *CA) Revoke(host string) error {
	h, err := normalizeHost(host)
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	now := ca.now()
	next := ca.state.clone()
	next.prune(now)
	found := false
	for i := range next.certs {
		if next.certs[i].host == h {
			found = true
			if next.certs[i].revokedAt.IsZero() {
				next.certs[i].revokedAt = now
			}
		}
	}
	kept := next.tokens[:0]
	for _, t := range next.tokens {
		if t.host == h && t.usedAt.IsZero() {
			found = true
			continue
		}
		kept = append(kept, t)
	}
	next.tokens = kept
	if !found {
		return fmt.Errorf("revoke %s: %w", h, ErrHostUnknown)
	}
	if err := ca.commit(next); err != nil {
		return fmt.Errorf("revoke %s: %w", h, err)
	}
	return nil
}

// IsRevoked reports whether serial is on the deny list. Its signature is the
// revocation hook ServerTLS and ClientTLS take.
func (ca *CA) IsRevoked(serial *big.Int) bool {
	if serial == nil {
		return false
	}
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	_, ok := ca.revoked[serial.Text(16)]
	return ok
}

// RedactToken returns a loggable reference to a token (its prefix and the
// first 8 hex digits of its SHA-256), so that a caller logging an enrollment
// attempt never writes the bearer secret itself.
func RedactToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	p := ""
	if strings.HasPrefix(token, tokenPrefix) {
		p = tokenPrefix
	}
	return p + "sha256:" + hex.EncodeToString(sum[:4])
}
