package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
)

// These tests run the real go-plugin gRPC server and client in-process, so
// the conversions and error classification are checked end to end.

type fakeHandler struct {
	mu       sync.Mutex
	lastCfg  ScenarioConfig
	released []string
}

func (h *fakeHandler) Describe(context.Context) (ScenarioInfo, error) {
	return ScenarioInfo{Type: "fake", DisplayName: "Fake", Version: "0.1", EntityKind: "thing", Capabilities: []string{CapabilityGranularRestore}}, nil
}

func (h *fakeHandler) ListEntities(_ context.Context, cfg ScenarioConfig) ([]Entity, error) {
	h.mu.Lock()
	h.lastCfg = cfg
	h.mu.Unlock()
	if cfg.Name == "broken" {
		return nil, fmt.Errorf("root %s: permission denied\x1b[2J", cfg.Roots[0])
	}
	return []Entity{{Name: "e1", Kind: "thing", Paths: cfg.Roots, Detail: map[string]string{"k": "v"}}}, nil
}

func (h *fakeHandler) PrepareBackup(_ context.Context, _ ScenarioConfig, entity string) (PrepareResult, error) {
	return PrepareResult{HoldID: "hold-" + entity, Consistency: ConsistencyCrash}, nil
}

func (h *fakeHandler) ReleaseBackup(_ context.Context, id string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.released = append(h.released, id)
	return nil
}

func (h *fakeHandler) Verify(_ context.Context, req VerifyRequest) (VerifyResult, error) {
	return VerifyResult{Passed: false, Checked: 7, Problems: []string{req.Root + "/x: unreadable"}, Duration: 3 * time.Millisecond}, nil
}

func (h *fakeHandler) BeforeRestore(_ context.Context, req RestoreRequest) error {
	if req.Destination == "" {
		return errors.New("destination is empty")
	}
	return nil
}

func (h *fakeHandler) AfterRestore(ctx context.Context, _ RestoreRequest) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestScenarioRoundTrip(t *testing.T) {
	impl := &fakeHandler{}
	client, server := plugin.TestPluginGRPCConn(t, false, plugin.PluginSet{ScenarioPluginName: &ScenarioPlugin{Impl: impl}})
	defer server.Stop()
	defer func() { _ = client.Close() }()
	raw, err := client.Dispense(ScenarioPluginName)
	if err != nil {
		t.Fatal(err)
	}
	h := raw.(ScenarioHandler)
	ctx := context.Background()

	info, err := h.Describe(ctx)
	if err != nil || info.Type != "fake" || info.Capabilities[0] != CapabilityGranularRestore {
		t.Fatalf("Describe = %+v, %v", info, err)
	}
	cfg := ScenarioConfig{ID: 9, Name: "s", MasterHost: "m", Roots: []string{"/a", "/b"}, Options: map[string]string{"o": "1"}}
	ents, err := h.ListEntities(ctx, cfg)
	if err != nil || len(ents) != 1 || !reflect.DeepEqual(ents[0].Paths, cfg.Roots) || ents[0].Detail["k"] != "v" {
		t.Fatalf("ListEntities = %+v, %v", ents, err)
	}
	impl.mu.Lock()
	got := impl.lastCfg
	impl.mu.Unlock()
	if !reflect.DeepEqual(got, cfg) {
		t.Fatalf("plugin saw config %+v, want %+v", got, cfg)
	}
	pr, err := h.PrepareBackup(ctx, cfg, "e1")
	if err != nil || pr.HoldID != "hold-e1" || pr.Consistency != ConsistencyCrash {
		t.Fatalf("PrepareBackup = %+v, %v", pr, err)
	}
	if err := h.ReleaseBackup(ctx, pr.HoldID); err != nil {
		t.Fatal(err)
	}
	vr, err := h.Verify(ctx, VerifyRequest{Scenario: cfg, Entity: "e1", Root: "/snap"})
	if err != nil || vr.Passed || vr.Checked != 7 || vr.Problems[0] != "/snap/x: unreadable" || vr.Duration != 3*time.Millisecond {
		t.Fatalf("Verify = %+v, %v", vr, err)
	}
	if err := h.BeforeRestore(ctx, RestoreRequest{Destination: "/r"}); err != nil {
		t.Fatal(err)
	}

	// A handler's error arrives as a HandlerError, sanitized.
	err = h.BeforeRestore(ctx, RestoreRequest{})
	var he *HandlerError
	if !errors.As(err, &he) || he.Method != "BeforeRestore" || he.Message != "destination is empty" {
		t.Fatalf("BeforeRestore error = %#v", err)
	}
	_, err = h.ListEntities(ctx, ScenarioConfig{Name: "broken", Roots: []string{"/r"}})
	if !errors.As(err, &he) || he.Message != "root /r: permission denied\uFFFD[2J" {
		t.Fatalf("ListEntities error = %#v", err)
	}

	// A deadline is not a handler error.
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err = h.AfterRestore(tctx, RestoreRequest{})
	if err == nil || IsHandlerError(err) {
		t.Fatalf("AfterRestore past its deadline = %v, want a non-handler error", err)
	}
}

// loopTransport delivers every frame sent to a session to the receiver of
// that session, in-process.
type loopTransport struct {
	mu       sync.Mutex
	sessions map[string]chan Frame
	settings map[string]string
}

func (l *loopTransport) Configure(_ context.Context, settings map[string]string) error {
	for k := range settings {
		if k != "listen" {
			return fmt.Errorf("unknown setting %q", k)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.settings = settings
	return nil
}

func (l *loopTransport) queue(session string) chan Frame {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sessions == nil {
		l.sessions = map[string]chan Frame{}
	}
	if l.sessions[session] == nil {
		l.sessions[session] = make(chan Frame, 16)
	}
	return l.sessions[session]
}

func (l *loopTransport) Describe(context.Context) (TransportInfo, error) {
	return TransportInfo{Name: "loop", Version: "1", Features: []string{"loopback"}}, nil
}

func (l *loopTransport) Send(ctx context.Context, peer, session string) (FrameSender, error) {
	switch peer {
	case "self":
	case "stranger":
		return nil, fmt.Errorf("handshake with %s: %w", peer, ErrNotAuthorized)
	default:
		return nil, fmt.Errorf("unknown peer %q", peer)
	}
	return &loopSender{ctx: ctx, q: l.queue(session), acks: make(chan Ack, 16)}, nil
}

func (l *loopTransport) Receive(ctx context.Context, session, peer string) (FrameReceiver, error) {
	if peer != "" && peer != "self.example" {
		return nil, fmt.Errorf("session %s expects %s, but only self.example sends here: %w", session, peer, ErrNotAuthorized)
	}
	return &loopReceiver{ctx: ctx, q: l.queue(session), done: make(chan struct{})}, nil
}

type loopSender struct {
	ctx  context.Context
	q    chan Frame
	acks chan Ack
}

func (s *loopSender) Send(f Frame) error {
	select {
	case s.q <- Frame{Seq: f.Seq, Payload: f.Payload, Peer: "self.example"}:
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
	s.acks <- Ack{Seq: f.Seq, Payload: []byte(fmt.Sprint("reply ", f.Seq))}
	return nil
}

func (s *loopSender) Recv() (Ack, error) {
	select {
	case a, ok := <-s.acks:
		if !ok {
			return Ack{}, io.EOF
		}
		return a, nil
	case <-s.ctx.Done():
		return Ack{}, s.ctx.Err()
	}
}

func (s *loopSender) CloseSend() error { close(s.acks); return nil }

type loopReceiver struct {
	ctx  context.Context
	q    chan Frame
	once sync.Once
	done chan struct{}
}

func (r *loopReceiver) Recv() (Frame, error) {
	select {
	case f := <-r.q:
		return f, nil
	case <-r.done:
		return Frame{}, io.EOF
	case <-r.ctx.Done():
		return Frame{}, r.ctx.Err()
	}
}

func (r *loopReceiver) Ack(Ack) error { return nil }
func (r *loopReceiver) Close() error  { r.once.Do(func() { close(r.done) }); return nil }

func TestTransportRoundTrip(t *testing.T) {
	client, server := plugin.TestPluginGRPCConn(t, false, plugin.PluginSet{TransportPluginName: &TransportPlugin{Impl: &loopTransport{}}})
	defer server.Stop()
	defer func() { _ = client.Close() }()
	raw, err := client.Dispense(TransportPluginName)
	if err != nil {
		t.Fatal(err)
	}
	tr := raw.(Transport)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := tr.Describe(ctx)
	if err != nil || info.Name != "loop" {
		t.Fatalf("Describe = %+v, %v", info, err)
	}
	if err := tr.Configure(ctx, map[string]string{"listen": "127.0.0.1:0"}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if err := tr.Configure(ctx, map[string]string{"colour": "blue"}); !IsHandlerError(err) || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("Configure with an unknown key = %v, want the plugin's error naming it", err)
	}
	// The peer crosses to the plugin; its refusal arrives as the stream's
	// error, as ErrNotAuthorized.
	refused, err := tr.Receive(ctx, "s0", "stranger.example")
	if err == nil {
		_, err = refused.Recv()
	}
	if !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("Receive naming a peer the plugin refuses = %v, want ErrNotAuthorized", err)
	}
	rx, err := tr.Receive(ctx, "s1", "self.example")
	if err != nil {
		t.Fatal(err)
	}
	tx, err := tr.Send(ctx, "self", "s1")
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if err := tx.Send(Frame{Seq: seq, Payload: []byte(fmt.Sprint("frame ", seq))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		a, err := tx.Recv()
		if err != nil || a.Seq != seq || string(a.Payload) != fmt.Sprint("reply ", seq) {
			t.Fatalf("ack %d = %+v, %v", seq, a, err)
		}
		f, err := rx.Recv()
		if err != nil || f.Seq != seq || string(f.Payload) != fmt.Sprint("frame ", seq) || f.Peer != "self.example" {
			t.Fatalf("frame %d = %+v, %v", seq, f, err)
		}
		if err := rx.Ack(Ack{Seq: f.Seq}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tx.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last ack Recv = %v, want io.EOF", err)
	}
	if err := rx.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := rx.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after Close Recv = %v, want io.EOF", err)
	}

	// An error opening a session is the transport's own.
	bad, err := tr.Send(ctx, "elsewhere", "s2")
	if err == nil {
		_, err = bad.Recv()
	}
	if !IsHandlerError(err) || errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("Send to unknown peer = %v, want a HandlerError that is not ErrNotAuthorized", err)
	}
	// A refused certificate crosses the plugin boundary as ErrNotAuthorized.
	bad, err = tr.Send(ctx, "stranger", "s3")
	if err == nil {
		_, err = bad.Recv()
	}
	if !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("Send to a peer refusing us = %v, want ErrNotAuthorized", err)
	}
}
