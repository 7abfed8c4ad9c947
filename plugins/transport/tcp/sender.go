package tcp

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/holdfast/holdfast/agent/throttle"
	"github.com/holdfast/holdfast/appliance/pki"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// Reconnect backoff for network errors: quick first retries for a blip,
// capped so that a long outage is noticed within seconds of its end.
const (
	minBackoff  = 100 * time.Millisecond
	maxBackoff  = 5 * time.Second
	dialTimeout = 10 * time.Second
	// maxBatch bounds the frames written between two flushes.
	maxBatch = 16
)

// errFinished ends the connection of a stream whose every frame was acked
// after CloseSend.
var errFinished = errors.New("stream finished")

// refusedError is the receiving side's refusal of the stream; reconnecting
// would get the same answer, so it ends the stream.
type refusedError struct{ reason string }

func (e *refusedError) Error() string { return "receiving side refused the stream: " + e.reason }

// outAck is an ack from the peer waiting for the host's Recv, with the size
// of its frame, which stays in the window until then.
type outAck struct {
	sdk.Ack
	size int64
}

// outStream is the sending side of one session: it owns a connection at a
// time and keeps every frame until the receiving host acked it.
type outStream struct {
	t       *Transport
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc
	name    string // the peer's enrolled host name
	addr    string
	session string
	stream  streamID
	window  int64

	mu       sync.Mutex
	changed  chan struct{}
	frames   []sdk.Frame // sent by the host, not yet acked by the peer
	acks     []outAck    // acked by the peer, not yet taken by Recv
	inflight int64       // payload bytes of frames and acks
	lastSeq  uint64
	haveSeq  bool
	ackNext  uint64 // one more than the highest seq acked by the peer
	closed   bool   // CloseSend was called
	err      error  // the stream failed for good
}

// Send implements sdk.Transport. peer is NAME@HOST:PORT: the receiving
// host's enrolled name, which its certificate must carry, and where to dial
// it. The connection is made in the background; network errors are retried
// without the host noticing, certificate errors end the stream with an
// error wrapping sdk.ErrNotAuthorized (from Recv and Send).
func (t *Transport) Send(ctx context.Context, peer, session string) (sdk.FrameSender, error) {
	cfg, err := t.config()
	if err != nil {
		return nil, err
	}
	name, addr, err := parsePeer(peer)
	if err != nil {
		return nil, err
	}
	if err := checkSession(session); err != nil {
		return nil, err
	}
	o := &outStream{
		t: t, name: name, addr: addr, session: session,
		window:  cfg.window,
		changed: make(chan struct{}),
	}
	if _, err := rand.Read(o.stream[:]); err != nil {
		return nil, fmt.Errorf("send session %q: stream id: %w", session, err)
	}
	o.log = t.log.With("session", session, "peer", name, "address", addr)
	o.ctx, o.cancel = context.WithCancel(ctx)
	go o.run()
	return o, nil
}

func (o *outStream) notifyLocked() {
	close(o.changed)
	o.changed = make(chan struct{})
}

// wait unlocks o.mu until o changes or ctx ends, and locks it again.
func (o *outStream) wait(ctx context.Context) error {
	ch := o.changed
	o.mu.Unlock()
	defer o.mu.Lock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Send queues f, blocking while the window is full.
func (o *outStream) Send(f sdk.Frame) error {
	if len(f.Payload) > sdk.MaxFramePayload {
		return fmt.Errorf("frame %d: payload of %d bytes, limit %d", f.Seq, len(f.Payload), sdk.MaxFramePayload)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.closed:
		return fmt.Errorf("frame %d: sent after CloseSend", f.Seq)
	case o.haveSeq && f.Seq <= o.lastSeq:
		return fmt.Errorf("frame %d: sequence numbers must increase (last was %d)", f.Seq, o.lastSeq)
	case f.Seq == ^uint64(0):
		return fmt.Errorf("frame %d: sequence number out of range", f.Seq)
	}
	n := int64(len(f.Payload))
	for o.inflight > 0 && o.inflight+n > o.window {
		if o.err != nil {
			return o.err
		}
		if err := o.wait(o.ctx); err != nil {
			return err
		}
	}
	if o.err != nil {
		return o.err
	}
	o.frames = append(o.frames, sdk.Frame{Seq: f.Seq, Payload: f.Payload})
	o.inflight += n
	o.lastSeq, o.haveSeq = f.Seq, true
	o.notifyLocked()
	return nil
}

// Recv returns the receiving host's acks in order.
func (o *outStream) Recv() (sdk.Ack, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for {
		if len(o.acks) > 0 {
			a := o.acks[0]
			o.acks = o.acks[1:]
			o.inflight -= a.size
			o.notifyLocked()
			return a.Ack, nil
		}
		if o.err != nil {
			return sdk.Ack{}, o.err
		}
		if o.closed && len(o.frames) == 0 {
			return sdk.Ack{}, io.EOF
		}
		if err := o.wait(o.ctx); err != nil {
			return sdk.Ack{}, err
		}
	}
}

func (o *outStream) CloseSend() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	o.notifyLocked()
	return nil
}

func (o *outStream) fail(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.err = err
	o.notifyLocked()
}

func (o *outStream) finished() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closed && len(o.frames) == 0
}

// run connects and reconnects until the stream is over.
func (o *outStream) run() {
	defer o.cancel()
	backoff := minBackoff
	for {
		connected, err := o.connect()
		if o.ctx.Err() != nil || o.finished() {
			return
		}
		var refused *refusedError
		if errors.Is(err, sdk.ErrNotAuthorized) || errors.As(err, &refused) {
			o.log.Error("stream ended", "error", err)
			o.fail(err)
			return
		}
		if connected {
			backoff = minBackoff
		}
		o.log.Warn("connection failed; retrying", "in", backoff.String(), "error", err)
		t := time.NewTimer(backoff)
		select {
		case <-o.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// connect runs one connection; connected reports whether the handshake
// got through, which resets the backoff.
func (o *outStream) connect() (connected bool, err error) {
	cfg, err := o.t.config()
	if err != nil {
		return false, err
	}
	d := net.Dialer{Timeout: dialTimeout, KeepAliveConfig: keepAlive}
	raw, err := d.DialContext(o.ctx, "tcp", o.addr)
	if err != nil {
		return false, fmt.Errorf("dial %s: %w", o.addr, err)
	}
	if err := tuneLiveness(raw); err != nil {
		raw.Close()
		return false, fmt.Errorf("connection to %s: %w", o.addr, err)
	}
	ctx, stop := context.WithCancel(o.ctx)
	defer stop()
	context.AfterFunc(ctx, func() { raw.Close() })
	var wire net.Conn = raw
	if cfg.limited {
		// Under TLS, so the limit counts every byte that leaves.
		wire = &throttledConn{Conn: raw, w: throttle.NewWriter(raw, cfg.bandwidth, o.t.clock), ctx: ctx}
	}
	tc := tls.Client(wire, pki.ClientTLS(cfg.cert, cfg.roots, o.name, nil))
	raw.SetReadDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		return false, classify(fmt.Errorf("TLS handshake with %s: %w", o.addr, err))
	}
	if peer, err := pki.PeerHost(tc.ConnectionState()); err != nil || peer != o.name {
		return false, fmt.Errorf("%w: %s presented a certificate for %q, want %q (%v)", sdk.ErrNotAuthorized, o.addr, peer, o.name, err)
	}
	br := bufio.NewReaderSize(tc, 64<<10)
	bw := bufio.NewWriterSize(tc, 256<<10)
	o.mu.Lock()
	ackNext := o.ackNext
	o.mu.Unlock()
	bw.Write(appendHello(nil, hello{version: wireVersion, session: o.session, stream: o.stream, ackNext: ackNext}))
	if err := bw.Flush(); err != nil {
		return false, classify(fmt.Errorf("hello to %s: %w", o.addr, err))
	}
	// In TLS 1.3 the server checks our certificate after the client's
	// handshake is done: a refusal arrives as an alert here.
	a, err := readAnswer(br)
	if err != nil {
		return false, classify(fmt.Errorf("answer from %s: %w", o.addr, err))
	}
	raw.SetReadDeadline(time.Time{})
	if a.status == statusNotAuthorized {
		return false, fmt.Errorf("%w: %s", sdk.ErrNotAuthorized, a.reason)
	}
	if a.status != statusOK {
		return false, &refusedError{reason: a.reason}
	}
	o.log.Info("stream connected", "resume_at", a.receivedNext)
	readErr := make(chan error, 1)
	go func() {
		err := o.readAcks(br)
		stop()
		readErr <- err
	}()
	werr := o.writeFrames(ctx, bw, a.receivedNext, ackNext, cfg.compress)
	stop()
	rerr := <-readErr
	if errors.Is(werr, errFinished) {
		return true, nil
	}
	if o.ctx.Err() == nil && ctx.Err() != nil && rerr != nil {
		return true, rerr // the reader saw the break first
	}
	return true, werr
}

// writeFrames sends frames from sendNext on and the acks seen, until the
// connection ends or the stream is finished.
func (o *outStream) writeFrames(ctx context.Context, bw *bufio.Writer, sendNext, seenSent uint64, compressOn bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		i := sort.Search(len(o.frames), func(i int) bool { return o.frames[i].Seq >= sendNext })
		batch := o.frames[i:min(len(o.frames), i+maxBatch)]
		ackNext := o.ackNext
		if len(batch) == 0 && ackNext == seenSent {
			if o.closed && len(o.frames) == 0 {
				return errFinished
			}
			if err := o.wait(ctx); err != nil {
				return err
			}
			continue
		}
		o.mu.Unlock()
		err := func() error {
			if ackNext != seenSent {
				if err := writeMessage(bw, message{typ: msgAckSeen, seq: ackNext}); err != nil {
					return err
				}
			}
			for _, f := range batch {
				data, flags := compress(f.Payload, compressOn)
				if err := writeMessage(bw, message{typ: msgFrame, seq: f.Seq, flags: flags, data: data}); err != nil {
					return err
				}
			}
			return bw.Flush()
		}()
		o.mu.Lock()
		if err != nil {
			return err
		}
		seenSent = ackNext
		if len(batch) > 0 {
			sendNext = batch[len(batch)-1].Seq + 1
		}
	}
}

// readAcks takes the receiving host's acks off the connection.
func (o *outStream) readAcks(br *bufio.Reader) error {
	for {
		m, err := readMessage(br)
		if err != nil {
			return err
		}
		if m.typ != msgAck {
			return fmt.Errorf("unexpected message type %d from the receiving side", m.typ)
		}
		reply, err := decompress(m.data, m.flags)
		if err != nil {
			return fmt.Errorf("ack %d: %w", m.seq, err)
		}
		o.mu.Lock()
		if m.seq < o.ackNext { // a resent ack we already have
			o.mu.Unlock()
			continue
		}
		if len(o.frames) == 0 || o.frames[0].Seq != m.seq {
			o.mu.Unlock()
			return fmt.Errorf("ack %d does not match the oldest frame in flight", m.seq)
		}
		size := int64(len(o.frames[0].Payload))
		o.frames = o.frames[1:]
		o.acks = append(o.acks, outAck{Ack: sdk.Ack{Seq: m.seq, Payload: reply}, size: size})
		o.ackNext = m.seq + 1
		o.notifyLocked()
		o.mu.Unlock()
	}
}

// throttledConn limits the bytes written to a connection.
type throttledConn struct {
	net.Conn
	w   *throttle.Writer
	ctx context.Context
}

func (c *throttledConn) Write(p []byte) (int, error) { return c.w.WriteContext(c.ctx, p) }

// classify marks errors that say a certificate was refused, by us or by
// the peer, as sdk.ErrNotAuthorized.
func classify(err error) error {
	if isCertificateError(err) {
		return fmt.Errorf("%w: %w", sdk.ErrNotAuthorized, err)
	}
	return err
}
