package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
)

// RevocationFunc reports whether a certificate serial is revoked. On the
// appliance pass (*CA).IsRevoked; where no deny list is available (an agent)
// pass nil.
type RevocationFunc func(serial *big.Int) bool

// ErrRevoked is returned (and sent as a TLS alert) when a peer presents a
// revoked certificate.
var ErrRevoked = errors.New("peer certificate revoked")

// ServerTLS returns a TLS 1.3-only server configuration presenting cert and
// requiring a client certificate that chains to roots (the appliance CA, and
// only it). A client without one, with one from another CA, or with a
// revoked one fails the handshake, so it never reaches application data.
// Use PeerHost on the connection state for authorization.
func ServerTLS(cert tls.Certificate, roots *x509.CertPool, isRevoked RevocationFunc) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        roots,
		VerifyConnection: verifyPeer(isRevoked),
	}
}

// ClientTLS returns a TLS 1.3-only client configuration presenting cert,
// trusting only roots and requiring the server's certificate to name
// serverName.
func ClientTLS(cert tls.Certificate, roots *x509.CertPool, serverName string, isRevoked RevocationFunc) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		RootCAs:          roots,
		ServerName:       serverName,
		VerifyConnection: verifyPeer(isRevoked),
	}
}

// verifyPeer runs after the standard chain (and, on the client, name)
// verification. VerifyConnection rather than VerifyPeerCertificate because it
// also runs on resumed sessions, so a revoked peer cannot slip in with an old
// session ticket.
func verifyPeer(isRevoked RevocationFunc) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
			return errors.New("peer certificate not verified")
		}
		leaf := cs.VerifiedChains[0][0]
		if _, err := hostFromCert(leaf); err != nil {
			return fmt.Errorf("peer certificate: %w", err)
		}
		if isRevoked != nil && isRevoked(leaf.SerialNumber) {
			return fmt.Errorf("serial %x: %w", leaf.SerialNumber, ErrRevoked)
		}
		return nil
	}
}

// PeerHost returns the host name in the verified peer certificate of a
// completed handshake made with ServerTLS or ClientTLS. It is the identity to
// authorize (e.g. "is this host a member of the scenario it asks about?").
func PeerHost(state tls.ConnectionState) (string, error) {
	if !state.HandshakeComplete {
		return "", errors.New("peer host: handshake not complete")
	}
	if len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return "", errors.New("peer host: no verified peer certificate")
	}
	h, err := hostFromCert(state.VerifiedChains[0][0])
	if err != nil {
		return "", fmt.Errorf("peer host: %w", err)
	}
	return h, nil
}
