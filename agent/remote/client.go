// Package remote is replication to a replica on another host: Client is a
// replication.Replica that sends everything through a transport plugin's
// session (protocol: package wire), and Server, on the replica host,
// receives that session and applies it with package apply.
//
// Durability crosses the network unchanged: the server acknowledges an
// Apply with the reply on the ack of its last frame only once the changes
// are durable, and the client's ApplyBatch returns only then. A stream that
// breaks is opened again on the next call, so the engine's sender sees a
// failed batch, keeps it in the master's spool and sends it again after
// the reconnect; the replica skips what it had already applied, by Seq.
package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/agent/blocksync"
	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/treesync"
	"github.com/holdfast/holdfast/agent/wire"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// Config names the replica a Client writes.
type Config struct {
	Transport sdk.Transport
	Peer      string // the replica host, as the transport addresses it
	Session   string
	Scenario  string // what the Hello names, checked by the server
	Replica   string
	// Timeout bounds one request, replies included; 0: 2 minutes. A
	// request that times out drops the stream.
	Timeout time.Duration
	// MaxBackoff bounds the wait before a stream is opened again after
	// failures; 0: 30 s. The wait starts at 100 ms and doubles.
	MaxBackoff time.Duration
	Logger     *slog.Logger
}

// Client is a replica on another host. It is safe for concurrent use;
// requests go one at a time.
type Client struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	last   atomic.Uint64

	mu       sync.Mutex
	st       *stream
	nextSeq  uint64 // frame numbers, increasing over all streams
	failures int
	retryAt  time.Time
}

// stream is one opened sending side and the acks it returned.
type stream struct {
	cancel context.CancelFunc
	snd    sdk.FrameSender
	acks   chan ackOrErr
}

type ackOrErr struct {
	ack sdk.Ack
	err error
}

// ackBuffer holds the acks of a whole message of fragments and then some,
// so the reader never waits for the requester.
const ackBuffer = wire.MaxMessage/wire.FragmentData + 8

// Dial opens the session and learns where the replica stands. It fails if
// the replica cannot be reached: the engine numbers its changes from
// LastApplied, so it must not start from a guess.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Transport == nil || cfg.Peer == "" || cfg.Session == "" {
		return nil, errors.New("remote replica: transport, peer and session are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &Client{cfg: cfg, log: log.With("peer", cfg.Peer, "session", cfg.Session), ctx: cctx, cancel: cancel,
		// Frame numbers must keep increasing within a session even across
		// restarts of this master (the receiving host checks it); the
		// clock in nanoseconds gives a start no earlier run reached.
		nextSeq: uint64(time.Now().UnixNano())}
	// Until Dial returns, ending ctx ends the hello too; afterwards the
	// client lives until Close.
	stop := context.AfterFunc(ctx, cancel)
	c.mu.Lock()
	err := c.connect(ctx)
	c.mu.Unlock()
	if !stop() && err == nil {
		err = fmt.Errorf("connect to replica %s: %w", cfg.Peer, ctx.Err())
	}
	if err != nil {
		cancel()
		return nil, err
	}
	return c, nil
}

// LastApplied is the highest Seq the replica reported durably applied.
func (c *Client) LastApplied() uint64 { return c.last.Load() }

// Close drops the stream; calls after it fail.
func (c *Client) Close() error {
	c.cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop(nil)
	return nil
}

// ApplyBatch sends cs and returns once the replica made all of them
// durable. A batch larger than one message goes as several, in order.
func (c *Client) ApplyBatch(cs []change.Change) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	last := c.last.Load()
	var msg []change.Change
	size := 0
	flush := func() error {
		if len(msg) == 0 {
			return nil
		}
		r, err := c.request(wire.Apply{Changes: msg})
		msg, size = msg[:0], 0
		if err != nil {
			return err
		}
		a, ok := r.(wire.Applied)
		if !ok {
			return c.unexpected(r)
		}
		c.last.Store(a.LastApplied)
		return nil
	}
	for _, ch := range cs {
		if ch.Seq != 0 && ch.Seq <= last {
			continue // applied before; the replica would skip it too
		}
		// An encoded change is its data plus at most a few paths.
		n := len(ch.Data) + len(ch.XattrValue) + 3*change.MaxPath + 128
		if len(msg) == wire.MaxChanges || size+n > wire.MaxMessage-1<<20 {
			if err := flush(); err != nil {
				return err
			}
		}
		msg = append(msg, ch)
		size += n
	}
	return flush()
}

// Signature fetches the signature of the replica's copy of path, page by
// page.
func (c *Client) Signature(path string) (blocksync.Signature, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var buf []byte
	var total int64
	req := wire.SignatureRequest{Path: path}
	for {
		r, err := c.request(req)
		if err != nil {
			return blocksync.Signature{}, fmt.Errorf("signature of %s: %w", path, err)
		}
		p, ok := r.(wire.SignaturePage)
		if !ok || p.Offset != int64(len(buf)) || (req.ID != 0 && (p.ID != req.ID || p.Total != total)) {
			return blocksync.Signature{}, c.unexpected(r)
		}
		total = p.Total
		buf = append(buf, p.Data...)
		if int64(len(buf)) == total {
			break
		}
		if len(p.Data) == 0 {
			return blocksync.Signature{}, c.unexpected(r)
		}
		req.ID, req.Offset = p.ID, int64(len(buf))
	}
	sig, err := blocksync.UnmarshalSignature(buf)
	if err != nil {
		return blocksync.Signature{}, fmt.Errorf("signature of %s from %s: %w", path, c.cfg.Peer, err)
	}
	return sig, nil
}

// Scan fetches the replica's tree, page by page.
func (c *Client) Scan() ([]treesync.Entry, []*treesync.ScanError, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var entries []treesync.Entry
	var problems []*treesync.ScanError
	var req wire.ScanRequest
	for {
		r, err := c.request(req)
		if err != nil {
			return nil, nil, fmt.Errorf("scan replica on %s: %w", c.cfg.Peer, err)
		}
		p, ok := r.(wire.ScanPage)
		if !ok || (req.ID != 0 && p.ID != req.ID) || (p.More && p.Next <= req.From) {
			return nil, nil, c.unexpected(r)
		}
		entries = append(entries, p.Entries...)
		for _, pr := range p.Problems {
			problems = append(problems, &treesync.ScanError{Path: pr.Path, Err: errors.New(pr.Text)})
		}
		if !p.More {
			break
		}
		req.ID, req.From = p.ID, p.Next
	}
	for i := 1; i < len(entries); i++ {
		if entries[i].Path <= entries[i-1].Path {
			return nil, nil, fmt.Errorf("scan replica on %s: entries out of order at %q", c.cfg.Peer, entries[i].Path)
		}
	}
	return entries, problems, nil
}

// unexpected drops the stream after a reply that makes no sense here.
func (c *Client) unexpected(r wire.Message) error {
	err := fmt.Errorf("replica %s: unexpected %s reply", c.cfg.Peer, r.Kind())
	c.drop(err)
	return err
}

// request sends m and returns the reply, connecting first if needed. A
// Failure reply is returned as an error; so is any stream failure, after
// which the stream is dropped and the next request opens another.
func (c *Client) request(m wire.Message) (wire.Message, error) {
	if c.st == nil {
		if err := c.connect(c.ctx); err != nil {
			return nil, err
		}
	}
	return c.exchange(m)
}

// exchange sends m over the open stream and waits for its reply.
func (c *Client) exchange(m wire.Message) (wire.Message, error) {
	st := c.st
	frames := wire.Split(wire.Marshal(m))
	first := c.nextSeq
	c.nextSeq += uint64(len(frames))
	for i, p := range frames {
		if err := st.snd.Send(sdk.Frame{Seq: first + uint64(i), Payload: p}); err != nil {
			err = fmt.Errorf("replica %s: send: %w", c.cfg.Peer, err)
			c.drop(err)
			return nil, err
		}
	}
	timer := time.NewTimer(c.cfg.Timeout)
	defer timer.Stop()
	for i := range frames {
		var a ackOrErr
		select {
		case a = <-st.acks:
		case <-timer.C:
			err := fmt.Errorf("replica %s: no reply to %s within %v", c.cfg.Peer, m.Kind(), c.cfg.Timeout)
			c.drop(err)
			return nil, err
		case <-c.ctx.Done():
			return nil, fmt.Errorf("replica %s: %w", c.cfg.Peer, c.ctx.Err())
		}
		if a.err != nil {
			err := fmt.Errorf("replica %s: %w", c.cfg.Peer, a.err)
			c.drop(err)
			return nil, err
		}
		if want := first + uint64(i); a.ack.Seq != want {
			err := fmt.Errorf("replica %s: ack for frame %d, expected %d", c.cfg.Peer, a.ack.Seq, want)
			c.drop(err)
			return nil, err
		}
		last := i == len(frames)-1
		if len(a.ack.Payload) == 0 {
			if last {
				err := fmt.Errorf("replica %s: %s acknowledged without a reply", c.cfg.Peer, m.Kind())
				c.drop(err)
				return nil, err
			}
			continue
		}
		r, err := wire.Unmarshal(a.ack.Payload)
		if err != nil {
			err = fmt.Errorf("replica %s: reply: %w", c.cfg.Peer, err)
			c.drop(err)
			return nil, err
		}
		if f, ok := r.(wire.Failure); ok {
			if f.LastApplied > c.last.Load() {
				c.last.Store(f.LastApplied)
			}
			if !last {
				// The server gave up on the message early; what it
				// says of the rest of its frames is of no use.
				c.drop(nil)
			}
			return nil, fmt.Errorf("replica %s: %w", c.cfg.Peer, errorOf(f))
		}
		if !last {
			return nil, c.unexpected(r)
		}
		c.failures = 0
		return r, nil
	}
	panic("unreachable: a message has at least one frame")
}

// connect opens a stream and says hello, after waiting out the backoff
// that earlier failures set.
func (c *Client) connect(ctx context.Context) error {
	if wait := time.Until(c.retryAt); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("connect to replica %s: %w", c.cfg.Peer, ctx.Err())
		case <-t.C:
		}
	}
	sctx, cancel := context.WithCancel(c.ctx)
	snd, err := c.cfg.Transport.Send(sctx, c.cfg.Peer, c.cfg.Session)
	if err != nil {
		cancel()
		err = fmt.Errorf("connect to replica %s: %w", c.cfg.Peer, err)
		c.drop(err)
		return err
	}
	st := &stream{cancel: cancel, snd: snd, acks: make(chan ackOrErr, ackBuffer)}
	go readAcks(sctx, snd, st.acks)
	c.st = st
	r, err := c.exchange(wire.Hello{Version: wire.ProtocolVersion, Scenario: c.cfg.Scenario, Replica: c.cfg.Replica})
	if err != nil {
		if c.st != nil {
			c.drop(err) // a refused hello is a failure too: back off
		}
		return err
	}
	h, ok := r.(wire.HelloReply)
	if !ok {
		return c.unexpected(r)
	}
	c.last.Store(h.LastApplied)
	c.log.Info("replica stream open", "last_applied", h.LastApplied)
	return nil
}

// drop closes the stream. With err, it counts a failure and sets the time
// before which no stream is opened again.
func (c *Client) drop(err error) {
	if c.st != nil {
		c.st.cancel()
		c.st = nil
	}
	if err == nil {
		return
	}
	c.failures++
	backoff := min(c.cfg.MaxBackoff, 100*time.Millisecond<<min(c.failures-1, 20))
	c.retryAt = time.Now().Add(backoff)
	c.log.Warn("replica stream dropped", "err", err, "retry_in", backoff)
}

// readAcks passes the stream's acks on until it ends.
func readAcks(ctx context.Context, snd sdk.FrameSender, out chan<- ackOrErr) {
	for {
		a, err := snd.Recv()
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		select {
		case out <- ackOrErr{a, err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}
