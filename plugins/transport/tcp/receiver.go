package tcp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/holdfast/holdfast/appliance/pki"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// handshakeTimeout bounds a connection's TLS handshake and hello, so a peer
// that connects and says nothing does not hold a goroutine forever.
const handshakeTimeout = 30 * time.Second

// errReplaced ends a connection whose session was taken over by a newer one.
var errReplaced = errors.New("connection replaced by a newer one for the same session")

// inFrame is a received frame and the stream generation it came with.
type inFrame struct {
	sdk.Frame
	gen uint64
}

// inSession is the receiving side's state of one session. It outlives
// connections (that is what makes resuming possible) and host receivers
// (frames arriving while nobody receives are held, within the window).
type inSession struct {
	name string

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	window  int64

	gen          uint64 // bumped for every new stream id
	stream       streamID
	retired      []streamID // replaced streams, refused if they come back
	receivedNext uint64     // one more than the highest seq held for the stream
	queue        []inFrame
	queueBytes   int64
	delivered    []inFrame // given to the host, not yet acked, in order
	pending      []sdk.Ack // host acks the sender has not confirmed

	// sender is the only peer the receiving host allows on the session,
	// "" for any trusted peer (or while no host receives it yet).
	sender   string
	connPeer string // the sender of the current connection

	conn      uint64 // id of the current connection, 0 if none
	connCount uint64
	connStop  context.CancelFunc
	receiver  *receiver
}

func (s *inSession) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// wait unlocks s.mu until s changes or ctx ends, and locks it again.
func (s *inSession) wait(ctx context.Context) error {
	ch := s.changed
	s.mu.Unlock()
	defer s.mu.Lock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *Transport) session(name string, window int64) *inSession {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.sessions[name]
	if s == nil {
		s = &inSession{name: name, changed: make(chan struct{})}
		t.sessions[name] = s
	}
	s.mu.Lock()
	s.window = window
	s.mu.Unlock()
	return s
}

// maxRetired bounds the replaced stream ids a session remembers.
const maxRetired = 16

// errRetired refuses a stream that a newer one for its session replaced:
// without it, a sending side that is still alive would reconnect and take
// the session back, and the two would take turns forever.
var errRetired = errors.New("a newer stream replaced this one")

// otherSenderError refuses a peer the receiving host did not name for the
// session.
type otherSenderError struct{ session, allowed string }

func (e *otherSenderError) Error() string {
	return fmt.Sprintf("session %s takes frames from %s only", e.session, e.allowed)
}

// attach makes a new connection from peer the session's current one,
// ending the previous one. A new stream id starts the session over. A peer
// other than the one the host allows is refused first, so it cannot
// replace the right sender's stream.
func (s *inSession) attach(h hello, peer string, stop context.CancelFunc) (id, receivedNext uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sender != "" && s.sender != peer {
		return 0, 0, &otherSenderError{session: s.name, allowed: s.sender}
	}
	if slices.Contains(s.retired, h.stream) {
		return 0, 0, errRetired
	}
	if s.connStop != nil {
		s.connStop()
	}
	if h.stream != s.stream {
		if s.gen > 0 {
			s.retired = append(s.retired, s.stream)
			if len(s.retired) > maxRetired {
				s.retired = s.retired[1:]
			}
		}
		s.gen++
		s.stream = h.stream
		s.receivedNext = 0
		s.queue, s.queueBytes, s.pending = nil, 0, nil
	}
	s.dropPendingLocked(h.ackNext)
	s.connCount++
	s.conn, s.connStop, s.connPeer = s.connCount, stop, peer
	s.notifyLocked()
	return s.conn, s.receivedNext, nil
}

func (s *inSession) detachConn(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == id {
		s.conn, s.connStop = 0, nil
		s.notifyLocked()
	}
}

func (s *inSession) dropPendingLocked(ackNext uint64) {
	i := 0
	for i < len(s.pending) && s.pending[i].Seq < ackNext {
		i++
	}
	s.pending = s.pending[i:]
}

// push queues a frame from connection id, waiting for room in the window.
func (s *inSession) push(ctx context.Context, id uint64, f sdk.Frame) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.conn != id {
			return errReplaced
		}
		if f.Seq < s.receivedNext {
			return fmt.Errorf("frame %d: already received up to %d", f.Seq, s.receivedNext-1)
		}
		n := int64(len(f.Payload))
		if len(s.queue) == 0 || s.queueBytes+n <= s.window {
			s.queue = append(s.queue, inFrame{Frame: f, gen: s.gen})
			s.queueBytes += n
			s.receivedNext = f.Seq + 1
			s.notifyLocked()
			return nil
		}
		if err := s.wait(ctx); err != nil {
			return err
		}
	}
}

func (s *inSession) ackSeen(id, ackNext uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == id {
		s.dropPendingLocked(ackNext)
	}
}

// serveConn runs one incoming connection: handshake, hello, then frames in
// and acks out until it breaks or is replaced.
func (t *Transport) serveConn(raw net.Conn) {
	defer raw.Close()
	remote := raw.RemoteAddr().String()
	cfg, err := t.config()
	if err != nil {
		return
	}
	raw.SetDeadline(time.Now().Add(handshakeTimeout))
	tc := tls.Server(raw, pki.ServerTLS(cfg.cert, cfg.roots, nil))
	if err := tc.Handshake(); err != nil {
		t.log.Warn("incoming connection refused", "remote", remote, "error", err)
		return
	}
	peer, err := pki.PeerHost(tc.ConnectionState())
	if err != nil {
		t.log.Warn("incoming connection refused", "remote", remote, "error", err)
		return
	}
	br := bufio.NewReaderSize(tc, 64<<10)
	bw := bufio.NewWriterSize(tc, 64<<10)
	h, err := readHello(br)
	if err != nil {
		t.log.Warn("incoming connection dropped", "remote", remote, "peer", peer, "error", err)
		return
	}
	refuse := func(status uint8, reason string) {
		t.log.Warn("stream refused", "remote", remote, "peer", peer, "session", h.session, "reason", reason)
		bw.Write(appendAnswer(nil, answer{version: wireVersion, status: status, reason: reason}))
		bw.Flush()
	}
	if h.version != wireVersion {
		refuse(statusBadVersion, fmt.Sprintf("wire version %d not supported (this side speaks %d)", h.version, wireVersion))
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	context.AfterFunc(ctx, func() { raw.Close() })
	s := t.session(h.session, cfg.window)
	id, receivedNext, err := s.attach(h, peer, stop)
	var other *otherSenderError
	if errors.As(err, &other) {
		refuse(statusNotAuthorized, err.Error())
		return
	}
	if err != nil {
		refuse(statusRefused, err.Error())
		return
	}
	defer s.detachConn(id)
	raw.SetDeadline(time.Time{})
	bw.Write(appendAnswer(nil, answer{version: wireVersion, status: statusOK, receivedNext: receivedNext}))
	if err := bw.Flush(); err != nil {
		return
	}
	log := t.log.With("session", h.session, "peer", peer, "remote", remote)
	log.Info("stream connected", "resume_at", receivedNext)
	go s.writeAcks(ctx, id, h.ackNext, bw, cfg.compress, stop)
	err = s.readFrames(ctx, id, br, peer)
	if ctx.Err() == nil && !errors.Is(err, io.EOF) {
		log.Warn("stream connection lost", "error", err)
	}
}

func (s *inSession) readFrames(ctx context.Context, id uint64, br *bufio.Reader, peer string) error {
	for {
		m, err := readMessage(br)
		if err != nil {
			return err
		}
		switch m.typ {
		case msgFrame:
			p, err := decompress(m.data, m.flags)
			if err != nil {
				return fmt.Errorf("frame %d: %w", m.seq, err)
			}
			if err := s.push(ctx, id, sdk.Frame{Seq: m.seq, Payload: p, Peer: peer}); err != nil {
				return err
			}
		case msgAckSeen:
			s.ackSeen(id, m.seq)
		default:
			return fmt.Errorf("unexpected message type %d from the sending side", m.typ)
		}
	}
}

// writeAcks sends the host's acks, from sent on, until the connection ends.
func (s *inSession) writeAcks(ctx context.Context, id, sent uint64, bw *bufio.Writer, compressOn bool, stop context.CancelFunc) {
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.conn != id {
			return
		}
		var batch []sdk.Ack
		for _, a := range s.pending {
			if a.Seq >= sent {
				batch = append(batch, a)
			}
		}
		if len(batch) == 0 {
			if err := s.wait(ctx); err != nil {
				return
			}
			continue
		}
		s.mu.Unlock()
		err := func() error {
			for _, a := range batch {
				data, flags := compress(a.Payload, compressOn)
				if err := writeMessage(bw, message{typ: msgAck, seq: a.Seq, flags: flags, data: data}); err != nil {
					return err
				}
			}
			return bw.Flush()
		}()
		s.mu.Lock()
		if err != nil {
			return
		}
		sent = batch[len(batch)-1].Seq + 1
	}
}

// receiver is the host's receiving side of one session.
type receiver struct {
	s      *inSession
	ctx    context.Context
	closed bool // under s.mu
}

// Receive implements sdk.Transport. One host receiver per session at a
// time; frames that arrived before it are handed over first.
func (t *Transport) Receive(ctx context.Context, session, peer string) (sdk.FrameReceiver, error) {
	cfg, err := t.config()
	if err != nil {
		return nil, err
	}
	if err := checkSession(session); err != nil {
		return nil, err
	}
	if t.ListenAddr() == "" {
		return nil, fmt.Errorf("receive session %q: this transport does not listen (no %s setting)", session, keyListen)
	}
	s := t.session(session, cfg.window)
	r := &receiver{s: s, ctx: ctx}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.receiver != nil {
		return nil, fmt.Errorf("receive session %q: already being received", session)
	}
	s.receiver = r
	s.sender = peer
	if peer != "" && s.connStop != nil && s.connPeer != peer {
		// A stream that came before the host said who may send ends.
		s.connStop()
	}
	context.AfterFunc(ctx, func() { r.Close() })
	return r, nil
}

func checkSession(session string) error {
	if session == "" || len(session) > maxSessionLen {
		return fmt.Errorf("session name %q: want 1 to %d bytes", session, maxSessionLen)
	}
	return nil
}

func (r *receiver) Recv() (sdk.Frame, error) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if r.closed {
			return sdk.Frame{}, io.EOF
		}
		if len(s.queue) > 0 {
			f := s.queue[0]
			s.queue = s.queue[1:]
			s.queueBytes -= int64(len(f.Payload))
			s.delivered = append(s.delivered, f)
			s.notifyLocked()
			return f.Frame, nil
		}
		if err := s.wait(r.ctx); err != nil {
			return sdk.Frame{}, err
		}
	}
}

func (r *receiver) Ack(a sdk.Ack) error {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.closed {
		return errors.New("ack after close")
	}
	if len(a.Payload) > sdk.MaxFramePayload {
		return fmt.Errorf("ack %d: reply of %d bytes, limit %d", a.Seq, len(a.Payload), sdk.MaxFramePayload)
	}
	if len(s.delivered) == 0 {
		return fmt.Errorf("ack %d: no frame awaits an ack", a.Seq)
	}
	head := s.delivered[0]
	if head.Seq != a.Seq {
		return fmt.Errorf("ack %d: the oldest frame awaiting an ack is %d", a.Seq, head.Seq)
	}
	s.delivered = s.delivered[1:]
	// An ack for a frame of a stream that was since replaced has nobody
	// to go to.
	if head.gen == s.gen {
		s.pending = append(s.pending, sdk.Ack{Seq: a.Seq, Payload: a.Payload})
		s.notifyLocked()
	}
	return nil
}

// Close detaches the host receiver. Frames it was given but did not ack go
// back to the front of the queue for the next receiver.
func (r *receiver) Close() error {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var back []inFrame
	var n int64
	for _, f := range s.delivered {
		if f.gen == s.gen {
			back = append(back, f)
			n += int64(len(f.Payload))
		}
	}
	s.delivered = nil
	s.queue = append(back, s.queue...)
	s.queueBytes += n
	if s.receiver == r {
		s.receiver = nil
	}
	s.notifyLocked()
	return nil
}
