package tcp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/appliance/pki"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// newCA opens a fresh appliance CA in a temporary directory.
func newCA(t testing.TB) *pki.CA {
	t.Helper()
	ca, err := pki.OpenCA(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// enroll enrolls host with ca the way an agent does and returns the
// identity directory.
func enroll(t testing.TB, ca *pki.CA, host string) string {
	t.Helper()
	keyPEM, csr, err := pki.NewKeyAndCSR(host)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ca.NewEnrollmentToken(host, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certDER, caDER, err := ca.Enroll(tok, csr)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), host)
	if err := pki.SaveIdentity(dir, keyPEM, certDER, caDER); err != nil {
		t.Fatal(err)
	}
	return dir
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newTransport returns a configured transport, closed at the end of the test.
func newTransport(t testing.TB, settings map[string]string) *Transport {
	t.Helper()
	tr := New(testLogger(t))
	if err := tr.Configure(context.Background(), settings); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// pair is a receiving and a sending transport with identities from one CA.
type pair struct {
	ca       *pki.CA
	recv     *Transport
	send     *Transport
	recvAddr string
}

func newPair(t testing.TB, sendSettings map[string]string) pair {
	t.Helper()
	ca := newCA(t)
	recv := newTransport(t, map[string]string{
		"identity_dir": enroll(t, ca, "replica.test"),
		"listen":       "127.0.0.1:0",
	})
	s := map[string]string{"identity_dir": enroll(t, ca, "master.test")}
	for k, v := range sendSettings {
		s[k] = v
	}
	return pair{ca: ca, recv: recv, send: newTransport(t, s), recvAddr: recv.ListenAddr()}
}

// replyTo is what the test's receiving host answers to a frame.
func replyTo(f sdk.Frame) []byte {
	if f.Seq%3 == 0 {
		return nil // most acks carry no reply
	}
	return append([]byte("stored "), f.Payload[:min(len(f.Payload), 16)]...)
}

// receivingHost is a host's receiving loop: it records every frame and
// acks it with replyTo.
type receivingHost struct {
	mu     sync.Mutex
	frames []sdk.Frame
	err    error
	done   chan struct{}
}

func startReceivingHost(t testing.TB, ctx context.Context, tr sdk.Transport, session string) *receivingHost {
	t.Helper()
	return startReceivingHostFrom(t, ctx, tr, session, "")
}

// startReceivingHostFrom is startReceivingHost for a session only sender
// may send on.
func startReceivingHostFrom(t testing.TB, ctx context.Context, tr sdk.Transport, session, sender string) *receivingHost {
	t.Helper()
	fr, err := tr.Receive(ctx, session, sender)
	if err != nil {
		t.Fatal(err)
	}
	h := &receivingHost{done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for {
			f, err := fr.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) && ctx.Err() == nil {
					h.mu.Lock()
					h.err = err
					h.mu.Unlock()
				}
				return
			}
			h.mu.Lock()
			h.frames = append(h.frames, f)
			h.mu.Unlock()
			if err := fr.Ack(sdk.Ack{Seq: f.Seq, Payload: replyTo(f)}); err != nil {
				h.mu.Lock()
				h.err = err
				h.mu.Unlock()
				return
			}
		}
	}()
	return h
}

func (h *receivingHost) received() []sdk.Frame {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]sdk.Frame(nil), h.frames...)
}

// makeFrames returns n frames numbered from first with payloads from gen.
func makeFrames(first uint64, n int, gen func(i int) []byte) []sdk.Frame {
	fs := make([]sdk.Frame, n)
	for i := range fs {
		fs[i] = sdk.Frame{Seq: first + uint64(i), Payload: gen(i)}
	}
	return fs
}

func randomPayload(r *rand.Rand, max int) []byte {
	p := make([]byte, 1+r.IntN(max))
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

// sendAll sends frames on a new stream and collects the acks until EOF.
func sendAll(ctx context.Context, tr sdk.Transport, peer, session string, frames []sdk.Frame) ([]sdk.Ack, error) {
	fs, err := tr.Send(ctx, peer, session)
	if err != nil {
		return nil, err
	}
	sendErr := make(chan error, 1)
	go func() {
		for _, f := range frames {
			if err := fs.Send(f); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- fs.CloseSend()
	}()
	var acks []sdk.Ack
	for {
		a, err := fs.Recv()
		if errors.Is(err, io.EOF) {
			return acks, <-sendErr
		}
		if err != nil {
			return acks, err
		}
		acks = append(acks, a)
	}
}

// proxy is a TCP proxy that counts the bytes it forwards and can cut its
// connections, optionally after a random number of bytes.
type proxy struct {
	ln        net.Listener
	target    string
	up, down  atomic.Int64 // bytes towards the target, and back
	cutBudget func() int64 // bytes a connection may carry before it is cut; nil: no limit
	cuts      atomic.Int64

	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t testing.TB, target string, cutBudget func() int64) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, cutBudget: cutBudget}
	t.Cleanup(func() {
		ln.Close()
		p.cutAll()
	})
	go p.serve()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		budget := int64(-1)
		if p.cutBudget != nil {
			budget = p.cutBudget()
		}
		var left atomic.Int64
		left.Store(budget)
		cut := func() {
			c.Close()
			u.Close()
		}
		pipe := func(dst, src net.Conn, count *atomic.Int64) {
			defer cut()
			buf := make([]byte, 32<<10)
			for {
				n, err := src.Read(buf)
				if n > 0 {
					if budget >= 0 {
						rest := left.Add(-int64(n))
						if rest < 0 {
							// Forward only part of the read, then cut.
							n += int(rest)
							if n > 0 {
								dst.Write(buf[:n])
								count.Add(int64(n))
							}
							p.cuts.Add(1)
							return
						}
					}
					if _, err := dst.Write(buf[:n]); err != nil {
						return
					}
					count.Add(int64(n))
				}
				if err != nil {
					return
				}
			}
		}
		go pipe(u, c, &p.up)
		go pipe(c, u, &p.down)
	}
}
