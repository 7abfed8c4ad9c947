package remote

import (
	"context"
	"log/slog"
	"time"

	"github.com/holdfast/holdfast/agent/control"
	"github.com/holdfast/holdfast/agent/replication"
	"github.com/holdfast/holdfast/agent/roles"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// Links connects assigned roles through a transport: a master role gets a
// Client towards its replica, a replica role a Server on its session.
type Links struct {
	Transport sdk.Transport
	Logger    *slog.Logger
	// Held, when set, lists the replicas that replica roles hold open.
	Held *replication.Held
	// Local, when set, is how replica roles open their directories.
	Local *replication.LocalOptions
}

var _ roles.Links = Links{}

// Replica dials the replica of role.
func (l Links) Replica(ctx context.Context, role control.MasterRole) (replication.Replica, error) {
	return Dial(ctx, Config{Transport: l.Transport, Peer: role.Peer, Session: role.Session,
		Scenario: role.Scenario, Replica: role.Session, Logger: l.Logger})
}

// Serve applies what role's master sends until ctx ends, telling applied
// how far it got every second.
func (l Links) Serve(ctx context.Context, role control.ReplicaRole, applied func(uint64)) error {
	srv, err := NewServer(ServerConfig{Transport: l.Transport, Session: role.Session, Master: role.Master,
		Scenario: role.Scenario, Replica: role.Session, Target: role.Target, Logger: l.Logger, Held: l.Held, Local: l.Local})
	if err != nil {
		return err
	}
	defer srv.Close()
	done := make(chan struct{})
	defer close(done)
	applied(srv.LastApplied())
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				applied(srv.LastApplied())
			}
		}
	}()
	return srv.Serve(ctx)
}
