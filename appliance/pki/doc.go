// Package pki is the appliance's small private PKI: it lets agents (on
// master and replica hosts) enroll with holdfastd once, with a one-time
// enrollment token, and from then on authenticate both ways with mutual TLS
// using certificates issued by the appliance's own certificate authority. No
// password crosses the wire after enrollment, and a peer whose certificate
// was not issued by this CA (or was revoked) fails the handshake before any
// application data is exchanged.
//
// Appliance side: OpenCA creates or loads the CA in a directory,
// (*CA).NewEnrollmentToken issues a single-use token bound to a host name,
// (*CA).Enroll consumes the token and signs the agent's CSR, and
// (*CA).Revoke puts a host's certificates on a persisted deny list that
// (*CA).IsRevoked exposes to the TLS configurations.
//
// Agent side: NewKeyAndCSR makes the key pair and CSR (the private key never
// leaves the agent), SaveIdentity/LoadIdentity persist the result.
//
// Both sides: ServerTLS and ClientTLS build TLS 1.3-only mutual TLS
// configurations; PeerHost extracts the verified peer's host name for
// authorization decisions.
//
// The transport that carries the token and CSR to the appliance is not part
// of this package. See docs/enrollment.md for the operator's view and the
// threat model.
package pki
