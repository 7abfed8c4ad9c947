// Package tcp is the TCP transport plugin: it carries replication frames
// between two appliances (a master's agent sending, a replica's receiving)
// over mutually authenticated TLS 1.3 with the hosts' enrolled identities
// (appliance/pki), compresses payloads with zstd, limits the sending side's
// bandwidth by the weekly schedule of agent/throttle, and survives broken
// connections: after a reconnect it resumes from what the receiving host
// acknowledged, so every frame gets exactly one ack carrying the receiving
// host's reply. docs/plugins.md describes its settings, wire format and
// guarantees.
package tcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/holdfast/holdfast/appliance/version"
	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// Name is the transport's name, which its manifest's type must equal.
const Name = "tcp"

// FeatureCompression is declared because payloads are compressed on the wire.
const FeatureCompression = "compression"

// Transport implements sdk.Transport over TCP. The zero value is not
// usable; call New.
type Transport struct {
	log *slog.Logger
	// clock is what the bandwidth schedule is evaluated at; tests replace it.
	clock func() time.Time

	mu       sync.Mutex
	cfg      *settings
	ln       net.Listener
	listen   string // the listen setting ln was opened for
	sessions map[string]*inSession
}

var _ sdk.Transport = (*Transport)(nil)

// New returns an unconfigured transport logging to log.
func New(log *slog.Logger) *Transport {
	return &Transport{log: log, clock: time.Now, sessions: make(map[string]*inSession)}
}

// Describe implements sdk.Transport.
func (t *Transport) Describe(context.Context) (sdk.TransportInfo, error) {
	return sdk.TransportInfo{
		Name:     Name,
		Version:  version.Version,
		Features: []string{sdk.FeatureReplies, FeatureCompression},
	}, nil
}

// Configure implements sdk.Transport. Streams already open pick up the new
// identity, compression and bandwidth at their next connection.
func (t *Transport) Configure(_ context.Context, m map[string]string) error {
	cfg, err := parseSettings(m)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ln == nil || cfg.listen != t.listen {
		if t.ln != nil {
			t.ln.Close()
			t.ln, t.listen = nil, ""
		}
		if cfg.listen != "" {
			ln, err := net.Listen("tcp", cfg.listen)
			if err != nil {
				return fmt.Errorf("setting %s: %w", keyListen, err)
			}
			t.ln, t.listen = ln, cfg.listen
			t.log.Info("listening", "address", ln.Addr().String())
			go t.accept(ln)
		}
	}
	if cfg.listenAddrFile != "" {
		addr := t.ln.Addr().String() + "\n"
		if err := atomicfile.Write(cfg.listenAddrFile, []byte(addr), 0o644); err != nil {
			return fmt.Errorf("setting %s: %w", keyListenAddrFile, err)
		}
	}
	t.cfg = cfg
	return nil
}

// ListenAddr returns the address the receiving side is bound to, or "" if
// it does not listen.
func (t *Transport) ListenAddr() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ln == nil {
		return ""
	}
	return t.ln.Addr().String()
}

// Close stops listening. Open streams end with their contexts.
func (t *Transport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ln == nil {
		return nil
	}
	err := t.ln.Close()
	t.ln, t.listen = nil, ""
	return err
}

func (t *Transport) config() (*settings, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cfg == nil {
		return nil, errors.New("tcp transport: not configured (Configure must come first)")
	}
	return t.cfg, nil
}

// accept serves ln until it is closed.
func (t *Transport) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			t.log.Error("accept failed; listener stopped", "address", ln.Addr().String(), "error", err)
			return
		}
		if err := tuneLiveness(c); err != nil {
			t.log.Warn("connection refused: cannot tune it", "remote", c.RemoteAddr().String(), "error", err)
			c.Close()
			continue
		}
		go t.serveConn(c)
	}
}
