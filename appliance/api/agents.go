package api

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/holdfast/holdfast/agent/enroll"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/pki"
)

// Enrollment rate limit per source address (an IPv4 address, or an IPv6
// /64, since one host usually controls a whole /64): a burst, then one
// attempt per interval. A token has 256 bits, so guessing is hopeless
// anyway; the limit keeps a prober from costing the appliance CPU, disk
// writes and activity-log entries at line rate.
const (
	DefaultEnrollBurst = 10
	DefaultEnrollEvery = 6 * time.Second
	// maxSources bounds the limiter's memory under a spray of addresses;
	// beyond it, unknown addresses share one bucket.
	maxSources = 4096
)

// AgentHandler serves a route of the agent listener for an enrolled agent
// whose verified certificate names host.
type AgentHandler func(w http.ResponseWriter, r *http.Request, host string)

// AgentListener is the HTTP side of the listener agents dial: the public
// enrollment route, and routes for enrolled agents registered with
// HandleAgent. It expects TLS from pki.ServerTLSClientOptional, so a
// client certificate, when present, has already been verified (chain and
// deny list) during the handshake.
type AgentListener struct {
	// EnrollBurst and EnrollEvery set the per-source rate limit of the
	// enrollment route; change them before calling Handler.
	EnrollBurst int
	EnrollEvery time.Duration

	ca     *pki.CA
	rec    Recorder
	logger *slog.Logger
	mux    *http.ServeMux

	limiter sourceLimiter
	denied  deniedLimiter // bounds activity entries of refused requests

	mu    sync.Mutex
	conns map[net.Conn]string // open connections of enrolled agents, by host
}

// NewAgentListener returns the listener's routes backed by ca, recording
// enrollments and refusals in rec.
func NewAgentListener(ca *pki.CA, rec Recorder, logger *slog.Logger) *AgentListener {
	l := &AgentListener{
		EnrollBurst: DefaultEnrollBurst, EnrollEvery: DefaultEnrollEvery,
		ca: ca, rec: rec, logger: logger, mux: http.NewServeMux(),
		conns: make(map[net.Conn]string),
	}
	l.mux.HandleFunc("POST "+enroll.Path, l.enroll)
	l.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if _, err := AgentHost(r); err != nil {
			l.refuse(w, r, err)
			return
		}
		writeError(w, notFound(r), http.StatusNotFound)
	})
	return l
}

// HandleAgent registers h for pattern (http.ServeMux syntax). Only enrolled
// agents reach h; any other caller gets HF-E8016.
func (l *AgentListener) HandleAgent(pattern string, h AgentHandler) {
	l.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		host, err := AgentHost(r)
		if err != nil {
			l.refuse(w, r, err)
			return
		}
		h(w, r, host)
	})
}

// Handler returns the listener's HTTP handler.
func (l *AgentListener) Handler() http.Handler {
	l.limiter.init(l.EnrollBurst, l.EnrollEvery)
	return l.mux
}

// AgentHost returns the host name in the verified client certificate of r,
// or an error when the caller presented none.
func AgentHost(r *http.Request) (string, error) {
	if r.TLS == nil {
		return "", errors.New("not a TLS connection")
	}
	h, err := pki.PeerHost(*r.TLS)
	if err != nil {
		return "", errors.New("no client certificate of an enrolled agent")
	}
	return h, nil
}

func (l *AgentListener) refuse(w http.ResponseWriter, r *http.Request, why error) {
	err := messages.New(messages.AgentNotAuthorized, r.RemoteAddr, why.Error())
	if l.denied.allow(time.Now()) {
		l.rec.RecordError(r.Context(), err)
	}
	writeError(w, err, http.StatusUnauthorized)
}

// ConnState is the http.Server hook that keeps track of enrolled agents'
// connections, so CloseHost can cut them when a host is revoked (the deny
// list only stops new handshakes).
func (l *AgentListener) ConnState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateActive:
		tc, ok := c.(*tls.Conn)
		if !ok {
			return
		}
		h, err := pki.PeerHost(tc.ConnectionState())
		if err != nil {
			return
		}
		l.mu.Lock()
		l.conns[c] = h
		l.mu.Unlock()
	case http.StateClosed, http.StateHijacked:
		l.mu.Lock()
		delete(l.conns, c)
		l.mu.Unlock()
	}
}

// CloseHost closes every open connection of host and returns how many.
func (l *AgentListener) CloseHost(host string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for c, h := range l.conns {
		if h == host {
			c.Close()
			delete(l.conns, c)
			n++
		}
	}
	return n
}

func (l *AgentListener) enroll(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	src := sourceKey(r.RemoteAddr)
	if !l.limiter.allow(src, now) {
		err := messages.New(messages.EnrollRateLimited, src)
		if l.denied.allow(now) {
			l.rec.RecordError(r.Context(), err)
		}
		w.Header().Set("Retry-After", fmt.Sprint(int(l.EnrollEvery.Seconds()+0.5)))
		writeError(w, err, http.StatusTooManyRequests)
		return
	}
	req, err := enroll.DecodeRequest(http.MaxBytesReader(w, r.Body, enroll.MaxRequestBytes+1))
	if err != nil {
		l.enrollFailed(w, r, messages.New(messages.EnrollBadRequest, r.RemoteAddr, err.Error()), http.StatusBadRequest)
		return
	}
	tok := pki.RedactToken(req.Token)
	certDER, caDER, err := l.ca.Enroll(req.Token, req.CSR)
	switch {
	case err == nil:
	case errors.Is(err, pki.ErrTokenUnknown):
		l.enrollFailed(w, r, messages.New(messages.EnrollTokenUnknown, r.RemoteAddr, tok), http.StatusForbidden)
		return
	case errors.Is(err, pki.ErrTokenUsed):
		l.enrollFailed(w, r, messages.New(messages.EnrollTokenUsed, r.RemoteAddr, tok, err), http.StatusForbidden)
		return
	case errors.Is(err, pki.ErrTokenExpired):
		l.enrollFailed(w, r, messages.New(messages.EnrollTokenExpired, r.RemoteAddr, tok, err), http.StatusForbidden)
		return
	case errors.Is(err, pki.ErrHostMismatch):
		l.enrollFailed(w, r, messages.New(messages.EnrollHostMismatch, r.RemoteAddr, tok, err), http.StatusForbidden)
		return
	case errors.Is(err, pki.ErrBadCSR):
		l.enrollFailed(w, r, messages.New(messages.EnrollBadRequest, r.RemoteAddr, err.Error()), http.StatusBadRequest)
		return
	default:
		l.logger.Error("enrollment failed", "from", r.RemoteAddr, "token", tok, "err", err)
		l.enrollFailed(w, r, messages.Wrap(err, messages.InternalError, err), http.StatusInternalServerError)
		return
	}
	if cert, err := x509.ParseCertificate(certDER); err == nil {
		host, _ := pki.CertHost(cert)
		l.rec.Record(r.Context(), messages.AgentEnrolled, host, r.RemoteAddr, tok, cert.SerialNumber.Text(16),
			cert.NotAfter.UTC().Format(time.RFC3339))
	}
	writeJSON(w, http.StatusOK, enroll.Response{Certificate: certDER, CA: caDER})
}

// enrollFailed records and answers a refused enrollment. Every refusal is
// recorded: the rate limit already bounds how many there can be.
func (l *AgentListener) enrollFailed(w http.ResponseWriter, r *http.Request, err *messages.Error, status int) {
	l.rec.RecordError(r.Context(), err)
	writeError(w, err, status)
}

// sourceKey is the rate limit's key for a remote address: the IP for IPv4,
// the /64 for IPv6.
func sourceKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}

// sourceLimiter is a token bucket per source.
type sourceLimiter struct {
	mu      sync.Mutex
	burst   float64
	every   time.Duration
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func (s *sourceLimiter) init(burst int, every time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if burst < 1 {
		burst = 1
	}
	if every <= 0 {
		every = DefaultEnrollEvery
	}
	s.burst, s.every = float64(burst), every
	s.buckets = make(map[string]*bucket)
}

func (s *sourceLimiter) allow(key string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.buckets[key]
	if !ok {
		if len(s.buckets) >= maxSources {
			s.forgetFull(now)
		}
		if len(s.buckets) >= maxSources {
			key = "(many sources)"
			b = s.buckets[key]
		}
		if b == nil {
			b = &bucket{tokens: s.burst, last: now}
			s.buckets[key] = b
		}
	}
	b.tokens += float64(now.Sub(b.last)) / float64(s.every)
	if b.tokens > s.burst {
		b.tokens = s.burst
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// forgetFull drops buckets that have refilled: they hold no information.
func (s *sourceLimiter) forgetFull(now time.Time) {
	for k, b := range s.buckets {
		if b.tokens+float64(now.Sub(b.last))/float64(s.every) >= s.burst {
			delete(s.buckets, k)
		}
	}
}
