// Command echo is a test transport that loops frames back: every frame sent
// to peer "loopback" for a session is delivered to the receiver of that
// session, in this process.
package main

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/holdfast/holdfast/plugins/sdk"
)

type transport struct {
	mu       sync.Mutex
	sessions map[string]chan sdk.Frame
	mark     string
}

func (t *transport) queue(session string) chan sdk.Frame {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.sessions[session]
	if q == nil {
		q = make(chan sdk.Frame, 64)
		t.sessions[session] = q
	}
	return q
}

func (t *transport) Describe(context.Context) (sdk.TransportInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	features := []string{"loopback"}
	if t.mark != "" {
		features = append(features, "mark-"+t.mark)
	}
	return sdk.TransportInfo{Name: "echo", Version: "1", Features: features}, nil
}

// Configure accepts one setting, "mark", which Describe then shows as a
// feature: tests see from it whether a restarted plugin was configured.
func (t *transport) Configure(_ context.Context, settings map[string]string) error {
	for k := range settings {
		if k != "mark" {
			return fmt.Errorf("unknown setting %q: the echo transport has only \"mark\"", k)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mark = settings["mark"]
	return nil
}

func (t *transport) Send(ctx context.Context, peer, session string) (sdk.FrameSender, error) {
	if peer != "loopback" {
		return nil, fmt.Errorf("unknown peer %q: this transport only reaches \"loopback\"", peer)
	}
	return &sender{ctx: ctx, q: t.queue(session), acks: make(chan sdk.Ack, 64)}, nil
}

func (t *transport) Receive(ctx context.Context, session, _ string) (sdk.FrameReceiver, error) {
	return &receiver{ctx: ctx, q: t.queue(session), done: make(chan struct{})}, nil
}

type sender struct {
	ctx  context.Context
	q    chan sdk.Frame
	acks chan sdk.Ack
}

// Send hands the frame to the session's queue, which is "the peer" here,
// and acks it.
func (s *sender) Send(f sdk.Frame) error {
	select {
	case s.q <- f:
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
	select {
	case s.acks <- sdk.Ack{Seq: f.Seq}:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

func (s *sender) Recv() (sdk.Ack, error) {
	select {
	case a, ok := <-s.acks:
		if !ok {
			return sdk.Ack{}, io.EOF
		}
		return a, nil
	case <-s.ctx.Done():
		return sdk.Ack{}, s.ctx.Err()
	}
}

// CloseSend is called after the last Send returned, so closing is safe.
func (s *sender) CloseSend() error { close(s.acks); return nil }

type receiver struct {
	ctx  context.Context
	q    chan sdk.Frame
	once sync.Once
	done chan struct{}
}

func (r *receiver) Recv() (sdk.Frame, error) {
	select {
	case f := <-r.q:
		return f, nil
	case <-r.done:
		return sdk.Frame{}, io.EOF
	case <-r.ctx.Done():
		return sdk.Frame{}, r.ctx.Err()
	}
}

func (r *receiver) Ack(sdk.Ack) error { return nil }

func (r *receiver) Close() error {
	r.once.Do(func() { close(r.done) })
	return nil
}

func main() { sdk.ServeTransport(&transport{sessions: map[string]chan sdk.Frame{}}) }
