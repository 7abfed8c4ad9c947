package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/pki"
)

// DefaultTokenTTL is an enrollment token's lifetime when the request names
// none: long enough to walk to the agent host, short enough that a leaked
// token is soon worthless.
const DefaultTokenTTL = time.Hour

// AgentAdmin is what the administrator routes for agents need.
type AgentAdmin struct {
	CA *pki.CA
	// Listener, when set, gets revoked hosts' connections cut.
	Listener *AgentListener
	// Address is the HOST:PORT agents dial; empty when the agent
	// listener is disabled.
	Address string
	// ServerName is the host name in the appliance's certificate.
	ServerName string
}

// AgentTokenRequest is the body of POST /api/v1/agents/tokens.
type AgentTokenRequest struct {
	Host string `json:"host"`
	// TTL is a Go duration ("1h", "30m"); empty means DefaultTokenTTL.
	TTL string `json:"ttl,omitempty"`
}

// AgentToken is everything the agent host needs to enroll.
type AgentToken struct {
	Host    string    `json:"host"`
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
	// CAFingerprint is the SHA-256 of the appliance CA's certificate: the
	// agent sends the token only to a server whose CA has it.
	CAFingerprint string `json:"ca_fingerprint"`
	// Appliance is the HOST:PORT of the agent listener.
	Appliance string `json:"appliance"`
	// ServerName is the name in the appliance's certificate, which the
	// agent checks; it differs from Appliance's host when that is an IP.
	ServerName string `json:"server_name"`
}

// Agent is one certificate issued to an agent.
type Agent struct {
	Host      string     `json:"host"`
	Serial    string     `json:"serial"`
	NotAfter  time.Time  `json:"not_after"`
	Revoked   bool       `json:"revoked"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

func (s *Server) agentRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/agents/tokens", s.createAgentToken)
	mux.HandleFunc("GET /api/v1/agents", s.listAgents)
	mux.HandleFunc("POST /api/v1/agents/{host}/revoke", s.revokeAgent)
}

func (s *Server) createAgentToken(w http.ResponseWriter, r *http.Request) {
	var req AgentTokenRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err, 0)
		return
	}
	a := s.Agents
	if a.Address == "" {
		s.failRecorded(w, r, messages.New(messages.AgentsDisabled))
		return
	}
	ttl := DefaultTokenTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil {
			s.failRecorded(w, r, messages.New(messages.AgentTokenRefused, fmt.Sprintf("ttl %q is not a duration such as 1h or 30m", req.TTL)))
			return
		}
		ttl = d
	}
	host, err := pki.NormalizeHost(req.Host)
	if err != nil {
		s.failRecorded(w, r, messages.New(messages.AgentTokenRefused, err.Error()))
		return
	}
	// An agent certificate for the appliance's own name would let that
	// agent pose as the appliance to hosts that are enrolling.
	if host == a.ServerName {
		s.failRecorded(w, r, messages.New(messages.AgentTokenRefused, host+" is this appliance's own name"))
		return
	}
	if ttl <= 0 || ttl > pki.MaxTokenTTL {
		s.failRecorded(w, r, messages.New(messages.AgentTokenRefused, fmt.Sprintf("ttl %s outside (0, %s]", ttl, pki.MaxTokenTTL)))
		return
	}
	// Taken before the token exists, so the expiry shown is never later
	// than the real one.
	expires := time.Now().Add(ttl)
	token, err := a.CA.NewEnrollmentToken(host, ttl)
	if err != nil {
		s.failRecorded(w, r, messages.Wrap(err, messages.AgentTokenRefused, err.Error()))
		return
	}
	s.Recorder.Record(r.Context(), messages.AgentTokenCreated, pki.RedactToken(token), host, expires.UTC().Format(time.RFC3339))
	writeJSON(w, http.StatusCreated, AgentToken{
		Host: host, Token: token, Expires: expires.UTC(), CAFingerprint: a.CA.Fingerprint(),
		Appliance: a.Address, ServerName: a.ServerName,
	})
}

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request) {
	out := []Agent{}
	for _, c := range s.Agents.CA.Issued() {
		ag := Agent{Host: c.Host, Serial: c.Serial.Text(16), NotAfter: c.NotAfter.UTC()}
		if !c.RevokedAt.IsZero() {
			t := c.RevokedAt.UTC()
			ag.Revoked, ag.RevokedAt = true, &t
		}
		out = append(out, ag)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) revokeAgent(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("host")
	host, err := pki.NormalizeHost(raw)
	if err != nil {
		s.failRecorded(w, r, messages.New(messages.AgentUnknown, raw))
		return
	}
	if err := s.Agents.CA.Revoke(host); err != nil {
		if errors.Is(err, pki.ErrHostUnknown) {
			s.failRecorded(w, r, messages.New(messages.AgentUnknown, host))
			return
		}
		s.failRecorded(w, r, messages.Wrap(err, messages.InternalError, err))
		return
	}
	if s.Agents.Listener != nil {
		s.Agents.Listener.CloseHost(host)
	}
	s.Recorder.Record(r.Context(), messages.AgentRevoked, host)
	writeJSON(w, http.StatusOK, map[string]string{"host": host, "state": "revoked"})
}

// failRecorded records err in the activity log and answers with it.
func (s *Server) failRecorded(w http.ResponseWriter, r *http.Request, err error) {
	s.Recorder.RecordError(r.Context(), err)
	s.fail(w, r, err, 0)
}
