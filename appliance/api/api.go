// Package api is holdfastd's HTTP API, used by the holdfast CLI, the web
// console and scripts. Every route needs the administrator token; bodies are
// JSON; every failure answers with a message code, its reason and its action.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/jobsecrets"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/pluginhost"
	"github.com/holdfast/holdfast/appliance/scenarios"
	"github.com/holdfast/holdfast/appliance/version"
)

// maxBody bounds request bodies: a scenario definition is a few kilobytes.
const maxBody = 1 << 20

// Plugins reports the plugins the daemon supervises.
type Plugins interface {
	List() []pluginhost.PluginStatus
}

// ActivityReader reads the activity log.
type ActivityReader interface {
	Activity(f catalog.ActivityFilter) ([]catalog.ActivityEntry, error)
}

// Recorder writes the activity log.
type Recorder interface {
	activity.Recorder
	RecordError(ctx context.Context, err error)
}

// Server holds what the handlers need.
type Server struct {
	Scenarios   *scenarios.Service
	Replication Replication
	// Recovery backs rewind, snapshot and test routes; nil leaves them out.
	Recovery Recovery
	// Jobs and Sessions back the job routes; nil Jobs leaves them out.
	Jobs     JobQueue
	Sessions SessionReader
	// Secrets keeps the passwords of protected backups and restores.
	Secrets *jobsecrets.Secrets
	// Rebuild backs POST /api/v1/catalog/rebuild; nil leaves it out.
	Rebuild  CatalogRebuilder
	Plugins  Plugins
	Activity ActivityReader
	Recorder Recorder
	Logger   *slog.Logger
	// Agents backs the enrollment administration routes; nil leaves them
	// out.
	Agents *AgentAdmin

	tokenHash [sha256.Size]byte
	denied    deniedLimiter
}

// New returns a server that accepts only token.
func New(token string) *Server {
	return &Server{tokenHash: sha256.Sum256([]byte(token))}
}

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/version", s.version)
	mux.HandleFunc("GET /api/v1/scenarios", s.listScenarios)
	mux.HandleFunc("POST /api/v1/scenarios", s.createScenario)
	mux.HandleFunc("GET /api/v1/scenarios/{name}", s.getScenario)
	mux.HandleFunc("DELETE /api/v1/scenarios/{name}", s.deleteScenario)
	mux.HandleFunc("POST /api/v1/scenarios/{name}/{action}", s.scenarioAction)
	mux.HandleFunc("GET /api/v1/scenarios/{name}/status", s.scenarioStatus)
	mux.HandleFunc("GET /api/v1/scenarios/{name}/difference", s.differenceReport)
	if s.Recovery != nil {
		s.recoveryRoutes(mux)
	}
	if s.Jobs != nil {
		s.jobRoutes(mux)
		s.storeRoutes(mux)
	}
	mux.HandleFunc("GET /api/v1/plugins", s.listPlugins)
	mux.HandleFunc("GET /api/v1/log", s.listLog)
	if s.Agents != nil {
		s.agentRoutes(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, notFound(r), http.StatusNotFound)
	})
	return s.authenticate(mux)
}

// authenticate rejects every request without the administrator token. The
// token is compared as a hash in constant time so neither its length nor its
// prefix leaks through timing.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		given, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		why := ""
		switch {
		case !ok || given == "":
			why = "no bearer token"
		default:
			h := sha256.Sum256([]byte(given))
			if subtle.ConstantTimeCompare(h[:], s.tokenHash[:]) != 1 {
				why = "wrong token"
			}
		}
		if why != "" {
			err := messages.New(messages.NotAuthorized, fmt.Sprintf("%s from %s for %s %s", why, r.RemoteAddr, r.Method, r.URL.Path))
			if s.denied.allow(time.Now()) {
				s.Recorder.RecordError(r.Context(), err)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="holdfast"`)
			writeError(w, err, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// deniedLimiter keeps a flood of unauthorized requests from filling the
// activity log: at most one entry per second is stored.
type deniedLimiter struct {
	mu   sync.Mutex
	last time.Time
}

func (d *deniedLimiter) allow(now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if now.Sub(d.last) < time.Second {
		return false
	}
	d.last = now
	return true
}

// ErrorBody is the JSON of every failure.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail explains a failure the way the message catalog does.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason,omitempty"`
	Action  string `json:"action,omitempty"`
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error, status int) {
	if status == 0 {
		status = statusOf(err)
	}
	if status >= 500 {
		s.Logger.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, err, status)
}

func writeError(w http.ResponseWriter, err error, status int) {
	var me *messages.Error
	if !errors.As(err, &me) {
		me = messages.Wrap(err, messages.InternalError, err)
	}
	d := ErrorDetail{Code: string(me.Code), Message: me.Text()}
	if m, ok := messages.Lookup(me.Code); ok {
		d.Reason, d.Action = m.Reason, m.Action
	}
	writeJSON(w, status, ErrorBody{Error: d})
}

func statusOf(err error) int {
	switch messages.CodeOf(err) {
	case messages.ScenarioNotFound:
		return http.StatusNotFound
	case messages.ScenarioExists:
		return http.StatusConflict
	case messages.BadRequest, messages.ScenarioInvalid, messages.ScenarioNoConsistency, messages.ScenarioTypeUnknown:
		return http.StatusBadRequest
	case messages.EntitiesUnavailable:
		return http.StatusUnprocessableEntity
	case messages.PluginUnavailable:
		return http.StatusServiceUnavailable
	case messages.PluginTimeout:
		return http.StatusGatewayTimeout
	case messages.PluginBadReply:
		return http.StatusBadGateway
	case messages.NotAuthorized:
		return http.StatusUnauthorized
	case messages.ScenarioNotRunning, messages.ScenarioAlreadyRunning, messages.RewindNeedsStop, messages.RecoveryNotReplicating:
		return http.StatusConflict
	case messages.JobWrongState:
		return http.StatusConflict
	case messages.SnapshotNotFound, messages.RewindNoPoint, messages.JobUnknown:
		return http.StatusNotFound
	case messages.RewindPointDropped, messages.RecoveryImpossible, messages.RecoveryUnavailable:
		return http.StatusUnprocessableEntity
	case messages.AgentUnknown:
		return http.StatusNotFound
	case messages.AgentTokenRefused:
		return http.StatusBadRequest
	case messages.AgentsDisabled:
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func notFound(r *http.Request) error {
	return messages.New(messages.BadRequest, fmt.Sprintf("no route %s %s", r.Method, r.URL.Path))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing useful to do
}

// decodeBody reads one JSON object, refusing unknown fields so a typo in a
// definition is an error rather than a silently missing setting.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return messages.New(messages.BadRequest, fmt.Sprintf("body is not a valid definition: %v", err))
	}
	if dec.More() {
		return messages.New(messages.BadRequest, "body holds more than one JSON value")
	}
	return nil
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": version.Version})
}
