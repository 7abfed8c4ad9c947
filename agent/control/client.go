package control

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Client is an agent's side of the conversation.
type Client struct {
	base string // https://HOST:PORT
	http *http.Client
	// stream carries task streams: no overall timeout, since a stream
	// lasts as long as its data; the task's deadline bounds it.
	stream *http.Client
}

// NewClient talks to the appliance listening at addr (HOST:PORT) with the
// given mutual-TLS configuration (pki.ClientTLS).
func NewClient(addr string, tlsConf *tls.Config) *Client {
	tr := &http.Transport{
		TLSClientConfig:     tlsConf,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     time.Minute,
		TLSHandshakeTimeout: 10 * time.Second,
		// After the request was sent whole: a task stream's upload ends
		// only once the appliance took all of it.
		ResponseHeaderTimeout: 30 * time.Second,
	}
	return &Client{
		base:   "https://" + addr,
		http:   &http.Client{Transport: tr, Timeout: 30 * time.Second},
		stream: &http.Client{Transport: tr},
	}
}

// Assignments asks the appliance which roles this host has.
func (c *Client) Assignments(ctx context.Context) (Assignments, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+AssignmentsPath, nil)
	if err != nil {
		return Assignments{}, err
	}
	resp, err := c.do(req)
	if err != nil {
		return Assignments{}, err
	}
	defer resp.Body.Close()
	return DecodeAssignments(resp.Body)
}

// Report tells the appliance how this host's roles stand.
func (c *Client) Report(ctx context.Context, r Report) error {
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+ReportPath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// TaskStream fetches the stream of restore task id. The caller closes
// it; ctx bounds the whole transfer.
func (c *Client) TaskStream(ctx context.Context, id string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+TaskStreamPath(id), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.doWith(c.stream, req)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// SendTaskStream uploads the stream of read task id from body, chunked,
// and returns once the appliance took it all (or refused it).
func (c *Client) SendTaskStream(ctx context.Context, id string, body io.Reader) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+TaskStreamPath(id), body)
	if err != nil {
		return err
	}
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.doWith(c.stream, req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// TaskResult posts the outcome of task id.
func (c *Client) TaskResult(ctx context.Context, id string, r TaskResult) error {
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode task result: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+TaskResultPath(id), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// RefusedError is the appliance's answer to a request it understood and
// would not take (4xx): sending the same again will not help.
type RefusedError struct {
	Status  string
	Message string
}

func (e *RefusedError) Error() string {
	return "appliance answered " + e.Status + ": " + e.Message
}

// do sends req and turns any answer but 2xx into an error carrying the
// appliance's own words; 4xx answers are *RefusedError.
func (c *Client) do(req *http.Request) (*http.Response, error) {
	return c.doWith(c.http, req)
}

func (c *Client) doWith(hc *http.Client, req *http.Request) (*http.Response, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode/100 == 4 {
			return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, &RefusedError{Status: resp.Status, Message: string(bytes.TrimSpace(msg))})
		}
		return nil, fmt.Errorf("%s %s: appliance answered %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(msg))
	}
	return resp, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }
