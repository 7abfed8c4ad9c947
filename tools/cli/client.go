package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/holdfast/holdfast/appliance/api"
)

// Client talks to holdfastd's API.
type Client struct {
	Base  string // e.g. http://127.0.0.1:7420
	Token string
	HTTP  *http.Client
}

// APIError is a failure the daemon explained with a message code.
type APIError struct {
	Status int
	api.ErrorDetail
}

func (e *APIError) Error() string { return e.Code + " " + e.Message }

// Connection says where the daemon is and how to prove who we are.
type Connection struct {
	DataDir   string
	API       string
	Token     string
	TokenFile string
}

// defaultDataDir mirrors holdfastd's own default so that, on one machine,
// the CLI finds the daemon without flags.
func defaultDataDir() string {
	if d := os.Getenv("HOLDFAST_DATA"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/holdfast"
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "holdfast")
	}
	return ""
}

// Dial resolves the connection into a client: explicit flags first, then the
// environment, then the files holdfastd leaves in its data directory.
func (c Connection) Dial() (*Client, error) {
	dataDir := c.DataDir
	if dataDir == "" {
		dataDir = defaultDataDir()
	}
	addr := c.API
	if addr == "" {
		addr = os.Getenv("HOLDFAST_API")
	}
	if addr == "" {
		b, err := os.ReadFile(filepath.Join(dataDir, "run", "api.addr"))
		if err != nil {
			return nil, fmt.Errorf("find the daemon: %w (is holdfastd running with data directory %s? use --data or --api)", err, dataDir)
		}
		addr = strings.TrimSpace(string(b))
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("API address %q is not HOST:PORT or a URL", addr)
	}
	token := c.Token
	if token == "" {
		token = os.Getenv("HOLDFAST_TOKEN")
	}
	if token == "" {
		tf := c.TokenFile
		if tf == "" {
			tf = filepath.Join(dataDir, "admin.token")
		}
		b, err := os.ReadFile(tf)
		if err != nil {
			return nil, fmt.Errorf("read the administrator token: %w (use --token-file or HOLDFAST_TOKEN)", err)
		}
		token = strings.TrimSpace(string(b))
	}
	return &Client{Base: strings.TrimRight(u.String(), "/"), Token: token, HTTP: &http.Client{Timeout: 2 * time.Minute}}, nil
}

// Do sends a request with an optional JSON body and decodes a JSON answer
// into out (when non-nil).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w (is holdfastd running?)", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var eb api.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return &APIError{Status: resp.StatusCode, ErrorDetail: eb.Error}
		}
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// Explain renders an error for a person: the code and message, then the
// catalog's reason and action when the daemon sent them.
func Explain(err error) string {
	var ae *APIError
	if errors.As(err, &ae) {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s", ae.Code, ae.Message)
		if ae.Reason != "" {
			fmt.Fprintf(&b, "\n  reason: %s", ae.Reason)
		}
		if ae.Action != "" {
			fmt.Fprintf(&b, "\n  action: %s", ae.Action)
		}
		return b.String()
	}
	return err.Error()
}
