// Package enroll is the agent's side of enrollment with a Holdfast
// appliance, and the wire format both sides share: the agent generates its
// key and CSR, dials the appliance's agent listener over TLS 1.3 accepting
// only a server whose CA has the fingerprint the operator gave it, sends the
// one-time token with the CSR, and stores the certificate it gets back with
// the appliance's address for later connections.
//
// The appliance's handler (appliance/api) decodes requests with
// DecodeRequest, which is why the wire types live here and not in the
// daemon: the agent binary must not depend on the appliance's packages
// beyond pki.
package enroll

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Path is the enrollment route on the appliance's agent listener.
const Path = "/agent/v1/enroll"

// Limits of a request. A P-256 CSR is about 300 bytes and a token 48
// characters; the margins allow other accepted key types without letting a
// caller make the appliance parse megabytes before it checks the token.
const (
	MaxRequestBytes = 16 << 10
	maxTokenLen     = 256
	maxCSRLen       = 8 << 10
)

// Request is the body of POST Path. CSR is DER; JSON carries it as base64.
type Request struct {
	Token string `json:"token"`
	CSR   []byte `json:"csr"`
}

// Response is the body of a successful enrollment: the agent's certificate
// and the CA certificate, both DER (base64 in JSON).
type Response struct {
	Certificate []byte `json:"certificate"`
	CA          []byte `json:"ca"`
}

// ErrorBody is the JSON of a refusal, the same shape as every appliance
// API error: a message code with its text, reason and action.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Reason  string `json:"reason,omitempty"`
		Action  string `json:"action,omitempty"`
	} `json:"error"`
}

// DecodeRequest reads one enrollment request from untrusted bytes: one JSON
// object with exactly the known fields, within the size limits, with a
// token of printable ASCII. It checks shape only; the CSR's content and the
// token's validity are the CA's to judge.
func DecodeRequest(r io.Reader) (Request, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxRequestBytes+1))
	if err != nil {
		return Request{}, fmt.Errorf("read request: %w", err)
	}
	if len(data) > MaxRequestBytes {
		return Request{}, fmt.Errorf("request larger than %d bytes", MaxRequestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var req Request
	if err := dec.Decode(&req); err != nil {
		return Request{}, fmt.Errorf("request is not valid JSON of the expected shape: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Request{}, errors.New("request holds more than one JSON value")
	}
	switch {
	case req.Token == "":
		return Request{}, errors.New("request has no token")
	case len(req.Token) > maxTokenLen:
		return Request{}, fmt.Errorf("token longer than %d characters", maxTokenLen)
	case len(req.CSR) == 0:
		return Request{}, errors.New("request has no csr")
	case len(req.CSR) > maxCSRLen:
		return Request{}, fmt.Errorf("csr longer than %d bytes", maxCSRLen)
	}
	for i := 0; i < len(req.Token); i++ {
		if c := req.Token[i]; c <= ' ' || c > '~' {
			return Request{}, errors.New("token holds characters other than printable ASCII")
		}
	}
	return req, nil
}
