package enroll

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/holdfast/holdfast/appliance/pki"
)

// Options are what the operator gives holdfast-agent enroll.
type Options struct {
	// Appliance is the HOST:PORT of the appliance's agent listener.
	Appliance string
	// ServerName is the host name in the appliance's certificate; empty
	// means the HOST of Appliance. Needed when dialing by IP address.
	ServerName string
	// Token is the one-time enrollment token from 'holdfast agent token'.
	Token string
	// Fingerprint is the SHA-256 of the appliance CA's certificate, given
	// with the token; the token is sent only to a server whose CA has it.
	Fingerprint string
	// Host is this agent's host name, the one the token was created for.
	Host string
	// StateDir receives the identity and the appliance's address.
	StateDir string
	// Force replaces an identity already in StateDir.
	Force bool
	// Timeout bounds the whole exchange; zero means one minute.
	Timeout time.Duration
}

// Result describes a completed enrollment.
type Result struct {
	Host          string
	ApplianceName string
	ApplianceAddr string
	Serial        string
	NotAfter      time.Time
}

// ErrAlreadyEnrolled: StateDir already holds an identity and Force is off.
var ErrAlreadyEnrolled = errors.New("state directory already holds an agent identity")

// RefusedError is the appliance's explained refusal of an enrollment.
type RefusedError struct {
	Status                        int
	Code, Message, Reason, Action string
}

func (e *RefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the appliance refused the enrollment: %s %s", e.Code, e.Message)
	if e.Reason != "" {
		fmt.Fprintf(&b, "\n  reason: %s", e.Reason)
	}
	if e.Action != "" {
		fmt.Fprintf(&b, "\n  action: %s", e.Action)
	}
	return b.String()
}

// Enroll runs the whole enrollment: checks the options and the state
// directory, generates the key and CSR, posts them with the token to the
// appliance over a connection pinned to the CA fingerprint, and saves the
// identity and the appliance's address in StateDir.
func Enroll(ctx context.Context, o Options) (Result, error) {
	host, err := pki.NormalizeHost(o.Host)
	if err != nil {
		return Result{}, fmt.Errorf("--host: %w", err)
	}
	fp, err := pki.NormalizeFingerprint(o.Fingerprint)
	if err != nil {
		return Result{}, fmt.Errorf("--fingerprint: %w", err)
	}
	if o.Token == "" {
		return Result{}, errors.New("--token is required: create one on the appliance with 'holdfast agent token " + host + "'")
	}
	addrHost, port, err := net.SplitHostPort(o.Appliance)
	if err != nil || addrHost == "" || port == "" {
		return Result{}, fmt.Errorf("--appliance %q: want HOST:PORT of the appliance's agent listener", o.Appliance)
	}
	serverName := o.ServerName
	if serverName == "" {
		serverName = addrHost
	}
	if serverName, err = pki.NormalizeHost(serverName); err != nil {
		return Result{}, fmt.Errorf("appliance name: %w", err)
	}
	if o.StateDir == "" {
		return Result{}, errors.New("--state is required: the directory that keeps the agent's identity")
	}
	if err := prepareStateDir(o.StateDir, o.Force); err != nil {
		return Result{}, err
	}

	tlsCfg, err := pki.EnrollmentClientTLS(fp, serverName)
	if err != nil {
		return Result{}, err
	}
	keyPEM, csrDER, err := pki.NewKeyAndCSR(host)
	if err != nil {
		return Result{}, err
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := post(ctx, tlsCfg, o.Appliance, Request{Token: o.Token, CSR: csrDER})
	if err != nil {
		return Result{}, err
	}
	if pki.Fingerprint(resp.CA) != fp {
		return Result{}, fmt.Errorf("the appliance answered with a CA certificate whose fingerprint is %s, not %s; nothing was saved", pki.Fingerprint(resp.CA), fp)
	}
	if err := pki.SaveIdentity(o.StateDir, keyPEM, resp.Certificate, resp.CA); err != nil {
		return Result{}, fmt.Errorf("enrolled, but the identity could not be saved (enroll again with a new token): %w", err)
	}
	app := Appliance{Address: o.Appliance, HostName: serverName, CAFingerprint: fp, Enrolled: time.Now().UTC()}
	if err := saveAppliance(o.StateDir, app); err != nil {
		return Result{}, fmt.Errorf("enrolled, but %w", err)
	}
	cert, _, err := pki.LoadIdentity(o.StateDir)
	if err != nil {
		return Result{}, fmt.Errorf("enrolled, but the saved identity does not load: %w", err)
	}
	return Result{
		Host: host, ApplianceName: serverName, ApplianceAddr: o.Appliance,
		Serial: cert.Leaf.SerialNumber.Text(16), NotAfter: cert.Leaf.NotAfter,
	}, nil
}

// prepareStateDir creates dir (0700) or checks that an existing one is
// private and, unless force, holds no identity yet.
func prepareStateDir(dir string, force bool) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create state directory: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("state directory: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("state directory %s is not a directory", dir)
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("state directory %s has mode %04o; it will hold a private key, so run: chmod 700 %s", dir, fi.Mode().Perm(), dir)
	}
	has, err := pki.HasIdentity(dir)
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if has && !force {
		return fmt.Errorf("%s: %w; to replace it (new key, new certificate) add --force, or use another --state", dir, ErrAlreadyEnrolled)
	}
	return nil
}

// post sends the request and returns the decoded answer. The token is
// written only after the TLS handshake has verified the appliance.
func post(ctx context.Context, tlsCfg *tls.Config, addr string, req Request) (Response, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return Response{}, fmt.Errorf("encode request: %w", err)
	}
	tr := &http.Transport{
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: 15 * time.Second,
		DisableKeepAlives:   true,
		Proxy:               nil, // the token goes to the appliance and nowhere else
	}
	defer tr.CloseIdleConnections()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+Path, bytes.NewReader(body))
	if err != nil {
		return Response{}, fmt.Errorf("build request: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hresp, err := (&http.Client{Transport: tr}).Do(hreq)
	if err != nil {
		if errors.Is(err, pki.ErrFingerprintMismatch) {
			return Response{}, fmt.Errorf("connect to %s: %w (the token was not sent)", addr, err)
		}
		return Response{}, fmt.Errorf("connect to %s: %w (is holdfastd's agent listener reachable there? 'holdfast agent token' prints its address)", addr, err)
	}
	defer hresp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(hresp.Body, 1<<20))
	if err != nil {
		return Response{}, fmt.Errorf("read the appliance's answer: %w", err)
	}
	if hresp.StatusCode != http.StatusOK {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return Response{}, &RefusedError{Status: hresp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message, Reason: eb.Error.Reason, Action: eb.Error.Action}
		}
		return Response{}, fmt.Errorf("the appliance answered HTTP %d: %.200s", hresp.StatusCode, data)
	}
	var resp Response
	if err := json.Unmarshal(data, &resp); err != nil {
		return Response{}, fmt.Errorf("decode the appliance's answer: %w", err)
	}
	if len(resp.Certificate) == 0 || len(resp.CA) == 0 {
		return Response{}, errors.New("the appliance's answer lacks the certificate or the CA")
	}
	return resp, nil
}
