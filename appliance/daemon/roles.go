package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/holdfast/holdfast/agent/control"
	"github.com/holdfast/holdfast/agent/remote"
	"github.com/holdfast/holdfast/agent/replication"
	"github.com/holdfast/holdfast/agent/roles"
	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/api"
	"github.com/holdfast/holdfast/appliance/config"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/pki"
	"github.com/holdfast/holdfast/appliance/pluginhost"
	"github.com/holdfast/holdfast/appliance/runner"
)

// DataAddrFile holds where the appliance's transport receives
// replication, once it listens.
const DataAddrFile = "run/data.addr"

// controlRoutes lets enrolled agents fetch their roles and report on the
// agent listener. Malformed reports are refused and recorded.
func controlRoutes(ctx context.Context, l *api.AgentListener, runs control.Appliance, log *activity.Log) {
	bad := func(host string, err error) {
		log.Record(ctx, messages.BadRequest, fmt.Sprintf("report from agent %s: %v", host, err))
	}
	h := control.Handler(runs, api.AgentHost, bad)
	serve := func(w http.ResponseWriter, r *http.Request, _ string) { h.ServeHTTP(w, r) }
	l.HandleAgent("GET "+control.AssignmentsPath, serve)
	l.HandleAgent("POST "+control.ReportPath, serve)
}

// enrolled reports whether host holds a current, unrevoked agent
// certificate.
func enrolled(ca *pki.CA, host string) bool {
	for _, c := range ca.Issued() {
		if c.Host == host && c.RevokedAt.IsZero() && time.Now().Before(c.NotAfter) {
			return true
		}
	}
	return false
}

// addressCell is the appliance's data address, known once its transport
// listens; the runner asks for it when it builds masters' assignments.
type addressCell struct {
	mu   sync.Mutex
	addr string
}

func (c *addressCell) get() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

func (c *addressCell) set(a string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.addr = a
}

// applianceRoles runs the replica roles the appliance has itself: master
// agents replicating to it.
type applianceRoles struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// startApplianceRoles configures the transport to receive on
// replication.listen and keeps the appliance's roles in line with the
// runner's assignments. It returns a no-op value when nothing is to be
// received.
func startApplianceRoles(ctx context.Context, cfg config.Config, plugins *pluginhost.Host, runs *runner.Runner, self string, addr *addressCell, held *replication.Held, local replication.LocalOptions, logger *slog.Logger) (*applianceRoles, error) {
	own := &applianceRoles{}
	if cfg.Replication.Listen == "" {
		return own, nil
	}
	if cfg.Agents.Listen == "" {
		return nil, messages.New(messages.ConfigInvalid, "replication.listen", "receiving replication needs the agent listener (agents.listen), which issues the appliance's certificate")
	}
	tr, err := plugins.Transport(cfg.Replication.Transport)
	if err != nil {
		return nil, err
	}
	addrFile := filepath.Join(cfg.DataDir, DataAddrFile)
	os.Remove(addrFile)
	err = tr.Configure(ctx, map[string]string{
		"identity_dir":     filepath.Join(cfg.DataDir, IdentityDir),
		"listen":           cfg.Replication.Listen,
		"listen_addr_file": addrFile,
	})
	if err != nil {
		return nil, messages.New(messages.ConfigInvalid, "replication.listen", fmt.Sprintf("transport %s refused it: %v", cfg.Replication.Transport, err))
	}
	run := roles.New(remote.Links{Transport: tr, Logger: logger, Held: held, Local: &local}, roles.Options{
		SpoolDir: filepath.Join(cfg.DataDir, "spool", "roles"), Logger: logger.With("component", "roles"),
	})
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	own.cancel, own.done = cancel, make(chan struct{})
	go func() {
		defer close(own.done)
		defer run.Close()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			if a := control.DataAddress(cfg.Replication.Listen, cfg.Replication.Advertise, addrFile); a != "" {
				addr.set(a)
			}
			run.Apply(rctx, runs.Assignments(self))
			rep := run.Report()
			rep.DataAddress = addr.get()
			runs.Report(rctx, self, rep)
			select {
			case <-rctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return own, nil
}

func (o *applianceRoles) stop() {
	if o == nil || o.cancel == nil {
		return
	}
	o.once.Do(func() {
		o.cancel()
		<-o.done
	})
}
