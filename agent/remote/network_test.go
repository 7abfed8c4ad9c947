package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/holdfast/holdfast/plugins/sdk"
)

// network is an in-process stand-in for transport plugins on several
// hosts, behaving as the sdk.Transport contract says: frames of a session
// arrive in order, Peer names the sending host, and the sender's acks are
// the receiving host's, replies included (sdk.FeatureReplies). Faults are
// injected on demand: a stream that breaks after some frames, frames
// delivered twice.
type network struct {
	mu        sync.Mutex
	inboxes   map[string]chan delivery // by host + "/" + session
	breakIn   int                      // >0: break the current streams after this many more frames
	duplicate bool                     // deliver every frame twice
	streams   map[*sendStream]bool
	frames    int               // frames sent
	rename    map[string]string // the sender's name as the receiver sees it: a host whose certificate changed
}

type delivery struct {
	f    sdk.Frame
	from *sendStream
}

var errBroken = errors.New("test network: connection reset")

func newNetwork() *network {
	return &network{inboxes: map[string]chan delivery{}, streams: map[*sendStream]bool{}}
}

// host returns the transport of the host called name.
func (n *network) host(name string) sdk.Transport { return &hostTransport{n: n, name: name} }

func (n *network) inbox(host, session string) chan delivery {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := host + "/" + session
	if n.inboxes[k] == nil {
		n.inboxes[k] = make(chan delivery, 256)
	}
	return n.inboxes[k]
}

// breakAfter breaks every open stream once k more frames went through.
func (n *network) breakAfter(k int) {
	n.mu.Lock()
	n.breakIn = k
	n.mu.Unlock()
}

// breakNow breaks every open stream.
func (n *network) breakNow() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for s := range n.streams {
		s.breakLocked()
	}
}

func (n *network) setDuplicate(on bool) {
	n.mu.Lock()
	n.duplicate = on
	n.mu.Unlock()
}

type hostTransport struct {
	n    *network
	name string
}

func (h *hostTransport) Describe(context.Context) (sdk.TransportInfo, error) {
	return sdk.TransportInfo{Name: "test", Version: "1", Features: []string{sdk.FeatureReplies}}, nil
}

func (h *hostTransport) Configure(context.Context, map[string]string) error { return nil }

func (h *hostTransport) Send(ctx context.Context, peer, session string) (sdk.FrameSender, error) {
	s := &sendStream{n: h.n, from: h.name, ctx: ctx, inbox: h.n.inbox(peer, session),
		acks: make(chan sdk.Ack, 1024), broken: make(chan struct{})}
	h.n.mu.Lock()
	h.n.streams[s] = true
	h.n.mu.Unlock()
	return s, nil
}

func (h *hostTransport) Receive(ctx context.Context, session, _ string) (sdk.FrameReceiver, error) {
	return &recvStream{ctx: ctx, inbox: h.n.inbox(h.name, session), closed: make(chan struct{})}, nil
}

type sendStream struct {
	n      *network
	from   string
	ctx    context.Context
	inbox  chan delivery
	acks   chan sdk.Ack
	broken chan struct{}
	once   sync.Once

	mu      sync.Mutex
	lastAck uint64
}

func (s *sendStream) breakLocked() {
	s.once.Do(func() { close(s.broken) })
	delete(s.n.streams, s)
}

func (s *sendStream) Send(f sdk.Frame) error {
	select {
	case <-s.broken:
		return errBroken
	default:
	}
	s.n.mu.Lock()
	copies := 1
	if s.n.duplicate {
		copies = 2
	}
	if s.n.breakIn > 0 {
		s.n.breakIn--
		if s.n.breakIn == 0 {
			// This frame gets through; its ack and everything after
			// it are lost with the connection.
			defer func() {
				s.n.mu.Lock()
				for st := range s.n.streams {
					st.breakLocked()
				}
				s.n.mu.Unlock()
			}()
		}
	}
	s.n.frames++
	f.Peer = s.from
	if to, ok := s.n.rename[s.from]; ok {
		f.Peer = to
	}
	s.n.mu.Unlock()
	f.Payload = append([]byte(nil), f.Payload...)
	for range copies {
		select {
		case s.inbox <- delivery{f: f, from: s}:
		case <-s.broken:
			return errBroken
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
	}
	return nil
}

func (s *sendStream) Recv() (sdk.Ack, error) {
	select {
	case a := <-s.acks:
		return a, nil
	case <-s.broken:
		return sdk.Ack{}, errBroken
	case <-s.ctx.Done():
		return sdk.Ack{}, s.ctx.Err()
	}
}

func (s *sendStream) CloseSend() error { return nil }

// ack carries the receiving host's ack back, once per frame.
func (s *sendStream) ack(a sdk.Ack) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.Seq <= s.lastAck {
		return // the ack of a duplicate
	}
	s.lastAck = a.Seq
	select {
	case <-s.broken:
	case s.acks <- a:
	}
}

type recvStream struct {
	ctx     context.Context
	inbox   chan delivery
	closed  chan struct{}
	once    sync.Once
	mu      sync.Mutex
	pending []delivery
}

func (r *recvStream) Recv() (sdk.Frame, error) {
	select {
	case d := <-r.inbox:
		r.mu.Lock()
		r.pending = append(r.pending, d)
		r.mu.Unlock()
		return d.f, nil
	case <-r.closed:
		return sdk.Frame{}, io.EOF
	case <-r.ctx.Done():
		return sdk.Frame{}, io.EOF
	}
}

// Ack routes the ack to the stream the frame came from; acks come in the
// order of the frames.
func (r *recvStream) Ack(a sdk.Ack) error {
	if len(a.Payload) > sdk.MaxFramePayload {
		return fmt.Errorf("ack payload of %d bytes", len(a.Payload))
	}
	r.mu.Lock()
	if len(r.pending) == 0 || r.pending[0].f.Seq != a.Seq {
		r.mu.Unlock()
		return fmt.Errorf("ack %d out of order", a.Seq)
	}
	d := r.pending[0]
	r.pending = r.pending[1:]
	r.mu.Unlock()
	d.from.ack(sdk.Ack{Seq: a.Seq, Payload: append([]byte(nil), a.Payload...)})
	return nil
}

func (r *recvStream) Close() error {
	r.once.Do(func() { close(r.closed) })
	return nil
}
