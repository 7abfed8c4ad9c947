package tcp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"

	"github.com/holdfast/holdfast/appliance/pki"
)

// certificateAlerts are the texts of TLS alerts (crypto/tls keeps their
// type unexported) by which a peer says it refused our certificate.
var certificateAlerts = []string{
	"bad certificate",
	"unsupported certificate",
	"revoked certificate",
	"expired certificate",
	"unknown certificate",
	"unknown certificate authority",
	"access denied",
	"certificate required",
}

// isCertificateError reports whether err comes from a certificate check:
// ours of the peer's, or the peer's of ours.
func isCertificateError(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		alert    tls.AlertError
		op       *net.OpError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &unknown), errors.As(err, &hostname),
		errors.As(err, &invalid), errors.Is(err, pki.ErrRevoked):
		return true
	case errors.As(err, &alert):
		return isCertificateAlert(alert.Error())
	case errors.As(err, &op) && op.Op == "remote error" && op.Err != nil:
		return isCertificateAlert(op.Err.Error())
	}
	return false
}

func isCertificateAlert(text string) bool {
	text = strings.TrimPrefix(text, "tls: ")
	for _, a := range certificateAlerts {
		if text == a {
			return true
		}
	}
	return false
}
