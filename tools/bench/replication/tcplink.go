package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/holdfast/holdfast/agent/remote"
	"github.com/holdfast/holdfast/agent/replication"
	"github.com/holdfast/holdfast/appliance/pki"
	"github.com/holdfast/holdfast/plugins/transport/tcp"
)

// Host names and session of the two ends of the benchmark's TCP link.
const (
	masterHost  = "master.bench"
	replicaHost = "replica.bench"
	session     = "bench"
)

// tcpLink is a replica on the other side of the real TCP transport over
// loopback, as production wires it (agent/remote/links.go): a CA enrolls
// two hosts, each gets its own tcp.Transport (TLS 1.3 with the enrolled
// identities, zstd, the default window), the replica host runs a
// remote.Server and the engine writes through a remote.Client. Both ends
// live in this process, so the figures include the transport's work on
// both sides but no real network.
type tcpLink struct {
	*remote.Client
	send, recv *tcp.Transport
	srv        *remote.Server
	cancel     context.CancelFunc
	served     chan error
	pkiDir     string
}

// dialTCP sets up the link to a replica in replicaDir; identities and the
// CA go to a fresh temporary directory beside it, removed by Close.
func dialTCP(replicaDir string) (_ *tcpLink, err error) {
	pkiDir, err := os.MkdirTemp(filepath.Dir(filepath.Clean(replicaDir)), "pki-")
	if err != nil {
		return nil, fmt.Errorf("tcp link: %w", err)
	}
	l := &tcpLink{pkiDir: pkiDir}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.closeEnds())
		}
	}()
	ca, err := pki.OpenCA(filepath.Join(pkiDir, "ca"))
	if err != nil {
		return nil, fmt.Errorf("tcp link: open CA: %w", err)
	}
	masterID, err := enroll(ca, masterHost, pkiDir)
	if err != nil {
		return nil, err
	}
	replicaID, err := enroll(ca, replicaHost, pkiDir)
	if err != nil {
		return nil, err
	}
	// Warnings only: the transports and the remote ends log every stream
	// they open at Info, which would drown the benchmark's own output.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx := context.Background()
	l.recv = tcp.New(log)
	if err := l.recv.Configure(ctx, map[string]string{"identity_dir": replicaID, "listen": "127.0.0.1:0"}); err != nil {
		return nil, fmt.Errorf("tcp link: configure the replica's transport: %w", err)
	}
	l.send = tcp.New(log)
	if err := l.send.Configure(ctx, map[string]string{"identity_dir": masterID}); err != nil {
		return nil, fmt.Errorf("tcp link: configure the master's transport: %w", err)
	}
	l.srv, err = remote.NewServer(remote.ServerConfig{Transport: l.recv, Session: session, Master: masterHost,
		Scenario: session, Replica: session, Target: replicaDir, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("tcp link: replica server: %w", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	l.cancel, l.served = cancel, make(chan error, 1)
	go func() { l.served <- l.srv.Serve(sctx) }()
	dctx, dcancel := context.WithTimeout(ctx, time.Minute)
	defer dcancel()
	l.Client, err = remote.Dial(dctx, remote.Config{Transport: l.send, Peer: replicaHost + "@" + l.recv.ListenAddr(),
		Session: session, Scenario: session, Replica: session, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("tcp link: dial the replica: %w", err)
	}
	return l, nil
}

// enroll gives host an identity from ca, as an agent's enrollment does,
// and returns its directory.
func enroll(ca *pki.CA, host, dir string) (string, error) {
	keyPEM, csr, err := pki.NewKeyAndCSR(host)
	if err != nil {
		return "", fmt.Errorf("enroll %s: %w", host, err)
	}
	token, err := ca.NewEnrollmentToken(host, time.Hour)
	if err != nil {
		return "", fmt.Errorf("enroll %s: %w", host, err)
	}
	certDER, caDER, err := ca.Enroll(token, csr)
	if err != nil {
		return "", fmt.Errorf("enroll %s: %w", host, err)
	}
	idDir := filepath.Join(dir, host)
	if err := pki.SaveIdentity(idDir, keyPEM, certDER, caDER); err != nil {
		return "", fmt.Errorf("enroll %s: %w", host, err)
	}
	return idDir, nil
}

// Close closes the client, then the server and both transports.
func (l *tcpLink) Close() error {
	var errs []error
	if l.Client != nil {
		if err := l.Client.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close replica client: %w", err))
		}
	}
	return errors.Join(append(errs, l.closeEnds())...)
}

// closeEnds stops what dialTCP started other than the client.
func (l *tcpLink) closeEnds() error {
	var errs []error
	if l.cancel != nil {
		l.cancel()
		if err := <-l.served; err != nil {
			errs = append(errs, fmt.Errorf("replica server: %w", err))
		}
	}
	if l.srv != nil {
		if err := l.srv.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close replica server: %w", err))
		}
	}
	for _, t := range []*tcp.Transport{l.send, l.recv} {
		if t != nil {
			if err := t.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close transport: %w", err))
			}
		}
	}
	if err := os.RemoveAll(l.pkiDir); err != nil {
		errs = append(errs, fmt.Errorf("remove identities: %w", err))
	}
	return errors.Join(errs...)
}

var _ replication.Replica = (*tcpLink)(nil)
