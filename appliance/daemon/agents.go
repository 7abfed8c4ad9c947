package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/api"
	"github.com/holdfast/holdfast/appliance/config"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/pki"
	"github.com/holdfast/holdfast/internal/atomicfile"
)

// Below the data directory: the CA, the appliance's own certificate, and
// the agent listener's bound address (like AddrFile, for port 0).
const (
	CADir          = "pki"
	IdentityDir    = "identity"
	AgentsAddrFile = "run/agents.addr"
)

// agentsListener is the running agent-facing listener.
type agentsListener struct {
	routes *api.AgentListener
	hs     *http.Server
	addr   string // bound
	errc   chan error
}

// startAgents issues or renews the appliance's certificate and starts the
// agent listener on cfg.Agents.Listen. It returns nil (and no error) when
// the listener is disabled.
func startAgents(ctx context.Context, cfg config.Config, ca *pki.CA, register func(*api.AgentListener), log *activity.Log, logger *slog.Logger) (*agentsListener, string, error) {
	if cfg.Agents.Listen == "" {
		return nil, "", nil
	}
	serverName, err := pki.NormalizeHost(cfg.HostName)
	if err != nil {
		return nil, "", messages.New(messages.ConfigInvalid, "host_name", fmt.Sprintf("%v; the agent listener's certificate needs a valid host name: set host_name", err))
	}
	cert, renewed, err := ca.ServerIdentity(filepath.Join(cfg.DataDir, IdentityDir), serverName)
	if err != nil {
		return nil, "", messages.New(messages.CAUnusable, filepath.Join(cfg.DataDir, CADir), err)
	}
	if renewed != "" {
		log.Record(ctx, messages.ApplianceCertIssued, serverName, renewed, cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	ln, err := net.Listen("tcp", cfg.Agents.Listen)
	if err != nil {
		return nil, "", messages.New(messages.ConfigInvalid, "agents.listen", fmt.Sprintf("cannot listen on %s: %v", cfg.Agents.Listen, err))
	}
	addr := ln.Addr().String()
	if err := atomicfile.Write(filepath.Join(cfg.DataDir, AgentsAddrFile), []byte(addr+"\n"), 0o600); err != nil {
		ln.Close()
		return nil, "", messages.New(messages.DataDirUnusable, cfg.DataDir, err)
	}
	routes := api.NewAgentListener(ca, log, logger)
	if register != nil {
		register(routes)
	}
	hs := &http.Server{
		Handler:           routes.Handler(),
		TLSConfig:         pki.ServerTLSClientOptional(cert, ca.Pool(), ca.IsRevoked),
		ConnState:         routes.ConnState,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    16 << 10,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	l := &agentsListener{routes: routes, hs: hs, addr: addr, errc: make(chan error, 1)}
	go func() { l.errc <- hs.Serve(tls.NewListener(ln, hs.TLSConfig)) }()
	log.Record(ctx, messages.AgentListening, addr, serverName, ca.Fingerprint())
	return l, advertised(cfg, addr, serverName), nil
}

// advertised is the address agents are told to dial: agents.advertise, or
// the bound address with the host name in place of an unspecified IP.
func advertised(cfg config.Config, bound, serverName string) string {
	if cfg.Agents.Advertise != "" {
		return cfg.Agents.Advertise
	}
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return net.JoinHostPort(serverName, port)
	}
	return bound
}

func (l *agentsListener) shutdown(ctx context.Context, dataDir string, logger *slog.Logger) {
	if l == nil {
		return
	}
	if err := l.hs.Shutdown(ctx); err != nil {
		logger.Warn("agent listener shutdown cut short", "err", err)
	}
	os.Remove(filepath.Join(dataDir, AgentsAddrFile))
}
