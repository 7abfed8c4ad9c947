package tcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/plugins/sdk"
)

// checkAcks checks that acks answer frames one for one, in order, with the
// receiving host's replies.
func checkAcks(t *testing.T, frames []sdk.Frame, acks []sdk.Ack) {
	t.Helper()
	if len(acks) != len(frames) {
		t.Fatalf("%d acks for %d frames", len(acks), len(frames))
	}
	for i, a := range acks {
		f := frames[i]
		if a.Seq != f.Seq {
			t.Fatalf("ack %d is for seq %d, want %d", i, a.Seq, f.Seq)
		}
		if want := replyTo(f); !bytes.Equal(a.Payload, want) {
			t.Fatalf("ack %d reply %q, want %q", a.Seq, a.Payload, want)
		}
	}
}

// checkDelivered checks that the receiving host saw every frame exactly
// once, in order, intact, from the sending host.
func checkDelivered(t *testing.T, frames, got []sdk.Frame) {
	t.Helper()
	if len(got) != len(frames) {
		t.Fatalf("receiving host got %d frames, want %d", len(got), len(frames))
	}
	for i, f := range got {
		if f.Seq != frames[i].Seq || !bytes.Equal(f.Payload, frames[i].Payload) {
			t.Fatalf("frame %d: got seq %d (%d bytes), want seq %d (%d bytes)", i, f.Seq, len(f.Payload), frames[i].Seq, len(frames[i].Payload))
		}
		if f.Peer != "master.test" {
			t.Fatalf("frame %d: Peer %q, want master.test", f.Seq, f.Peer)
		}
	}
}

func TestRoundTripWithReplies(t *testing.T) {
	for _, compression := range []string{"zstd", "none"} {
		t.Run(compression, func(t *testing.T) {
			p := newPair(t, map[string]string{"compression": compression})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			host := startReceivingHost(t, ctx, p.recv, "fs1")
			r := rand.New(rand.NewPCG(1, 2))
			frames := makeFrames(1, 200, func(i int) []byte {
				if i%2 == 0 {
					text := bytes.Repeat([]byte(fmt.Sprintf("line %d\n", i)), 1+r.IntN(20000))
					return text[:1+r.IntN(len(text))]
				}
				return randomPayload(r, 8<<10)
			})
			frames[0].Payload = make([]byte, sdk.MaxFramePayload)
			acks, err := sendAll(ctx, p.send, "replica.test@"+p.recvAddr, "fs1", frames)
			if err != nil {
				t.Fatal(err)
			}
			checkAcks(t, frames, acks)
			checkDelivered(t, frames, host.received())
		})
	}
}

func TestResumeAcrossCuts(t *testing.T) {
	p := newPair(t, map[string]string{"window_bytes": "2MiB"})
	cutRand := rand.New(rand.NewPCG(3, 4))
	px := newProxy(t, p.recvAddr, func() int64 {
		// From inside the TLS handshake to a few dozen frames.
		return 500 + cutRand.Int64N(400<<10)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	host := startReceivingHost(t, ctx, p.recv, "cut")
	r := rand.New(rand.NewPCG(5, 6))
	frames := makeFrames(10, 400, func(int) []byte { return randomPayload(r, 24<<10) })
	acks, err := sendAll(ctx, p.send, "replica.test@"+px.addr(), "cut", frames)
	if err != nil {
		t.Fatal(err)
	}
	checkAcks(t, frames, acks)
	checkDelivered(t, frames, host.received())
	if px.cuts.Load() < 3 {
		t.Fatalf("only %d cuts; the test did not test resuming", px.cuts.Load())
	}
	t.Logf("%d connections cut", px.cuts.Load())
}

// TestFramesHeldUntilReceive: frames for a session nobody receives yet
// wait on the receiving side, and the sender waits for their acks.
func TestFramesHeldUntilReceive(t *testing.T) {
	p := newPair(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	frames := makeFrames(1, 5, func(i int) []byte { return []byte{byte(i)} })
	type result struct {
		acks []sdk.Ack
		err  error
	}
	done := make(chan result, 1)
	go func() {
		acks, err := sendAll(ctx, p.send, "replica.test@"+p.recvAddr, "later", frames)
		done <- result{acks, err}
	}()
	// Wait until the receiving side holds all five frames.
	for {
		s := p.recv.session("later", defaultWindow)
		s.mu.Lock()
		n := len(s.queue)
		s.mu.Unlock()
		if n == len(frames) {
			break
		}
		select {
		case res := <-done:
			t.Fatalf("send finished before anybody received: %v %v", res.acks, res.err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	host := startReceivingHost(t, ctx, p.recv, "later")
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	checkAcks(t, frames, res.acks)
	checkDelivered(t, frames, host.received())
}

// TestNewStreamReplacesOld: a master that restarts opens a new stream for
// the session; the receiver takes it, and the old stream is refused.
func TestNewStreamReplacesOld(t *testing.T) {
	p := newPair(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	peer := "replica.test@" + p.recvAddr
	// The old stream sends while nobody receives, so its frames stay
	// unacked.
	old, err := p.send.Send(ctx, peer, "restart")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range makeFrames(1, 3, func(int) []byte { return []byte("old") }) {
		if err := old.Send(f); err != nil {
			t.Fatal(err)
		}
	}
	s := p.recv.session("restart", defaultWindow)
	for {
		s.mu.Lock()
		n := len(s.queue)
		s.mu.Unlock()
		if n == 3 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	host := startReceivingHost(t, ctx, p.recv, "restart")
	_ = host
	// Replace it before the host's acks matter: a second transport
	// process plays the restarted master.
	frames := makeFrames(1, 4, func(i int) []byte { return []byte(fmt.Sprintf("new %d", i)) })
	acks, err := sendAll(ctx, p.send, peer, "restart", frames)
	if err != nil {
		t.Fatal(err)
	}
	checkAcks(t, frames, acks)
	// The old stream either got its acks before the replacement or is
	// refused now; it never hangs.
	for {
		_, err := old.Recv()
		if err != nil {
			if !strings.Contains(err.Error(), "newer stream") {
				t.Fatalf("old stream ended with %v, want a refusal naming the newer stream", err)
			}
			break
		}
	}
}

func TestNotAuthorized(t *testing.T) {
	ca := newCA(t)
	other := newCA(t)
	recv := newTransport(t, map[string]string{
		"identity_dir": enroll(t, ca, "replica.test"),
		"listen":       "127.0.0.1:0",
	})
	good := newTransport(t, map[string]string{"identity_dir": enroll(t, ca, "master.test")})
	foreign := newTransport(t, map[string]string{"identity_dir": enroll(t, other, "master.test")})
	// A sender that trusts the right CA but shows a certificate from
	// another one: only the receiving side can refuse it.
	mixed := New(testLogger(t))
	mixedCfg, err := parseSettings(map[string]string{"identity_dir": enroll(t, ca, "master.test")})
	if err != nil {
		t.Fatal(err)
	}
	foreignCfg, _ := foreign.config()
	mixedCfg.cert = foreignCfg.cert
	mixed.cfg = mixedCfg

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	host := startReceivingHost(t, ctx, recv, "s")
	addr := recv.ListenAddr()
	for _, tc := range []struct {
		name string
		tr   *Transport
		peer string
	}{
		{"certificate from another CA", foreign, "replica.test@" + addr},
		{"receiver refuses our certificate", mixed, "replica.test@" + addr},
		{"name mismatch", good, "other.test@" + addr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sendAll(ctx, tc.tr, tc.peer, "s", makeFrames(1, 3, func(int) []byte { return []byte("x") }))
			if !errors.Is(err, sdk.ErrNotAuthorized) {
				t.Fatalf("err = %v, want ErrNotAuthorized", err)
			}
			t.Logf("error: %v", err)
		})
	}
	// The good sender still gets through, and only its frames arrived.
	frames := makeFrames(1, 2, func(int) []byte { return []byte("ok") })
	acks, err := sendAll(ctx, good, "replica.test@"+addr, "s", frames)
	if err != nil {
		t.Fatal(err)
	}
	checkAcks(t, frames, acks)
	checkDelivered(t, frames, host.received())
}

func TestCompressionShrinksWire(t *testing.T) {
	text := bytes.Repeat([]byte("holdfast replicates this line again and again\n"), 20000)
	wire := map[string]int64{}
	for _, compression := range []string{"zstd", "none"} {
		p := newPair(t, map[string]string{"compression": compression})
		px := newProxy(t, p.recvAddr, nil)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		startReceivingHost(t, ctx, p.recv, "z")
		frames := makeFrames(1, 8, func(int) []byte { return text[:sdk.MaxFramePayload/2] })
		acks, err := sendAll(ctx, p.send, "replica.test@"+px.addr(), "z", frames)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		checkAcks(t, frames, acks)
		wire[compression] = px.up.Load()
	}
	t.Logf("bytes on the wire for 4 MiB of text: zstd %d, none %d", wire["zstd"], wire["none"])
	if wire["none"] < 4<<20 || wire["zstd"]*20 > wire["none"] {
		t.Fatalf("zstd sent %d bytes, none %d: want at least 20x less with zstd", wire["zstd"], wire["none"])
	}
}

// TestBandwidthLimit runs the schedule on a clock that stands still: the
// token bucket then never refills by itself, so after its first burst
// (64 KiB at 64KiB/s) the sender may write only one more burst per
// second of real time, each after a longer wait. Unthrottled, the 2 MiB
// would cross in milliseconds.
func TestBandwidthLimit(t *testing.T) {
	ca := newCA(t)
	recv := newTransport(t, map[string]string{"identity_dir": enroll(t, ca, "replica.test"), "listen": "127.0.0.1:0"})
	send := New(testLogger(t))
	frozen := time.Date(2026, 3, 2, 10, 0, 0, 0, time.Local) // a Monday
	send.clock = func() time.Time { return frozen }
	if err := send.Configure(context.Background(), map[string]string{
		"identity_dir": enroll(t, ca, "master.test"),
		"compression":  "none",
		"bandwidth":    "mon-fri 08:00-18:00 64KiB/s; * unlimited",
	}); err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, recv.ListenAddr(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	host := startReceivingHost(t, ctx, recv, "slow")
	r := rand.New(rand.NewPCG(7, 8))
	frames := makeFrames(1, 64, func(int) []byte { return randomPayload(r, 32<<10) })
	go sendAll(ctx, send, "replica.test@"+px.addr(), "slow", frames)
	for len(host.received()) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	// Two bursts: enough for up to 3 s of a slow machine.
	if up := px.up.Load(); up > 2*64<<10 {
		t.Fatalf("%d bytes crossed at 64KiB/s on a stopped clock, want at most %d", up, 2*64<<10)
	}
	if n := len(host.received()); n >= len(frames) {
		t.Fatalf("all %d frames arrived despite the limit", n)
	}
}

func TestConfigureRefusesBadSettings(t *testing.T) {
	ca := newCA(t)
	id := enroll(t, ca, "master.test")
	for _, tc := range []struct {
		settings map[string]string
		key      string
	}{
		{map[string]string{}, "identity_dir"},
		{map[string]string{"identity_dir": t.TempDir()}, "identity_dir"},
		{map[string]string{"identity_dir": id, "colour": "blue"}, "colour"},
		{map[string]string{"identity_dir": id, "listen": "nowhere"}, "listen"},
		{map[string]string{"identity_dir": id, "listen": "127.0.0.1:99999"}, "listen"},
		{map[string]string{"identity_dir": id, "listen_addr_file": "/tmp/x"}, "listen_addr_file"},
		{map[string]string{"identity_dir": id, "compression": "gzip"}, "compression"},
		{map[string]string{"identity_dir": id, "bandwidth": "mon 9-17 2MiB/s"}, "bandwidth"},
		{map[string]string{"identity_dir": id, "window_bytes": "lots"}, "window_bytes"},
		{map[string]string{"identity_dir": id, "window_bytes": "1KiB"}, "window_bytes"},
	} {
		err := New(testLogger(t)).Configure(context.Background(), tc.settings)
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("Configure(%v) = %v, want an error naming %q", tc.settings, err, tc.key)
		}
	}
}

func TestConfigureListenAddrFileAndRestart(t *testing.T) {
	ca := newCA(t)
	id := enroll(t, ca, "replica.test")
	file := filepath.Join(t.TempDir(), "addr")
	tr := newTransport(t, map[string]string{"identity_dir": id, "listen": "127.0.0.1:0", "listen_addr_file": file})
	first := tr.ListenAddr()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(data)) != first {
		t.Fatalf("listen_addr_file says %q, listening on %q", data, first)
	}
	// The same listen setting keeps the listener; another one moves it.
	if err := tr.Configure(context.Background(), map[string]string{"identity_dir": id, "listen": "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	if got := tr.ListenAddr(); got != first {
		t.Fatalf("listener moved to %s on an unchanged setting", got)
	}
	if err := tr.Configure(context.Background(), map[string]string{"identity_dir": id, "listen": "localhost:0"}); err != nil {
		t.Fatal(err)
	}
	if got := tr.ListenAddr(); got == first || got == "" {
		t.Fatalf("listener at %q after listen changed, was %q", got, first)
	}
	if err := tr.Configure(context.Background(), map[string]string{"identity_dir": id}); err != nil {
		t.Fatal(err)
	}
	if got := tr.ListenAddr(); got != "" {
		t.Fatalf("still listening at %s without a listen setting", got)
	}
}

func TestSendRefusesBadPeer(t *testing.T) {
	tr := newTransport(t, map[string]string{"identity_dir": enroll(t, newCA(t), "master.test")})
	for _, peer := range []string{"", "127.0.0.1:7000", "replica@", "@127.0.0.1:7000", "replica@127.0.0.1", "replica@127.0.0.1:0", "a@b@c:1"} {
		if _, err := tr.Send(context.Background(), peer, "s"); err == nil || !strings.Contains(err.Error(), "NAME@HOST:PORT") && !strings.Contains(err.Error(), "port") && !strings.Contains(err.Error(), "host name") {
			t.Errorf("Send(%q) = %v, want a refusal explaining NAME@HOST:PORT", peer, err)
		}
	}
}

func TestDescribe(t *testing.T) {
	info, err := New(testLogger(t)).Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "tcp" || !slices.Contains(info.Features, sdk.FeatureReplies) || !slices.Contains(info.Features, "compression") {
		t.Fatalf("Describe = %+v", info)
	}
}

// TestLivenessOptions: both ends of a connection carry the user timeout
// that turns a long link loss into a reconnect.
func TestLivenessOptions(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := tuneLiveness(c); err != nil {
		t.Fatal(err)
	}
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if got != int(unackedTimeout/time.Millisecond) {
		t.Fatalf("TCP_USER_TIMEOUT = %d ms, want %d", got, unackedTimeout/time.Millisecond)
	}
}

// TestOnlyTheNamedSenderMayUseASession: another enrolled host, trusted by
// the CA, can neither deliver frames on a session the receiving host gave
// to one sender nor push that sender's stream aside.
func TestOnlyTheNamedSenderMayUseASession(t *testing.T) {
	ca := newCA(t)
	recv := newTransport(t, map[string]string{
		"identity_dir": enroll(t, ca, "replica.test"),
		"listen":       "127.0.0.1:0",
	})
	good := newTransport(t, map[string]string{"identity_dir": enroll(t, ca, "master.test")})
	intruder := newTransport(t, map[string]string{"identity_dir": enroll(t, ca, "intruder.test")})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	host := startReceivingHostFrom(t, ctx, recv, "s", "master.test")
	addr := recv.ListenAddr()

	frames := makeFrames(1, 5, func(i int) []byte { return []byte(fmt.Sprint("good ", i)) })
	gs, err := good.Send(ctx, "replica.test@"+addr, "s")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames[:2] {
		if err := gs.Send(f); err != nil {
			t.Fatal(err)
		}
	}
	var acks []sdk.Ack
	for range 2 {
		a, err := gs.Recv()
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, a)
	}

	_, err = sendAll(ctx, intruder, "replica.test@"+addr, "s", makeFrames(1, 3, func(int) []byte { return []byte("bad") }))
	if !errors.Is(err, sdk.ErrNotAuthorized) {
		t.Fatalf("intruder's send = %v, want ErrNotAuthorized", err)
	}

	// The right sender's stream goes on where it was.
	for _, f := range frames[2:] {
		if err := gs.Send(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := gs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for {
		a, err := gs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, a)
	}
	checkAcks(t, frames, acks)
	checkDelivered(t, frames, host.received())
}
