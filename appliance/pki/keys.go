package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
)

// All keys this package generates are ECDSA P-256: it is supported by every
// TLS 1.3 stack, by TPMs/HSMs and FIPS modules an appliance may later use for
// the CA key, and by common inspection tools (openssl, browsers), whereas
// Ed25519 certificates still are not everywhere. Security-wise both are ample.
func generateKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ECDSA P-256 key: %w", err)
	}
	return k, nil
}

func encodeKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func decodeKeyPEM(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PKCS#8 \"PRIVATE KEY\" PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#8 private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", k)
	}
	return s, nil
}

func encodeCertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func decodeCertPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no \"CERTIFICATE\" PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return c, nil
}

// keyMatches reports whether pub is the public half of key.
func keyMatches(key crypto.Signer, pub any) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := key.Public().(equaler)
	return ok && e.Equal(pub)
}

// checkPublicKey accepts the key types an agent may reasonably use. RSA is
// refused so that every Holdfast certificate has a modern, small key.
func checkPublicKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("unsupported ECDSA curve %s", k.Curve.Params().Name)
		}
		return nil
	case ed25519.PublicKey:
		return nil
	default:
		return fmt.Errorf("unsupported public key type %T (want ECDSA P-256/P-384 or Ed25519)", pub)
	}
}

// randomSerial returns a positive random 128-bit serial number. Random
// serials make certificates unpredictable to an attacker and need no
// persisted counter.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generate serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// normalizeHost validates a host name (or IP address) as used for an agent
// identity and returns its canonical form (lower case, no trailing dot).
// Being strict here keeps odd names out of certificates and makes the
// CSR-versus-token comparison an exact string match.
func normalizeHost(host string) (string, error) {
	h := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(host)), ".")
	if h == "" {
		return "", errors.New("empty host name")
	}
	if ip := net.ParseIP(h); ip != nil {
		return ip.String(), nil
	}
	if len(h) > 253 {
		return "", fmt.Errorf("host name %q longer than 253 characters", host)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("invalid host name %q: empty or over-long label", host)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("invalid host name %q: label starts or ends with '-'", host)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return "", fmt.Errorf("invalid host name %q: character %q not allowed", host, c)
			}
		}
	}
	return h, nil
}

// hostFromCert returns the single identity a Holdfast leaf certificate
// carries in its SAN (a DNS name or an IP address).
func hostFromCert(c *x509.Certificate) (string, error) {
	var ids []string
	ids = append(ids, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		ids = append(ids, ip.String())
	}
	if len(ids) != 1 {
		return "", fmt.Errorf("certificate %x has %d host names in its SAN, want exactly 1", c.SerialNumber, len(ids))
	}
	h, err := normalizeHost(ids[0])
	if err != nil {
		return "", fmt.Errorf("certificate %x: %w", c.SerialNumber, err)
	}
	return h, nil
}
