package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/catalogrebuild"
	"github.com/holdfast/holdfast/appliance/jobs"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/retention"
	"github.com/holdfast/holdfast/appliance/verifyjob"
)

// CatalogRebuilder recreates catalog sessions from the disk store.
type CatalogRebuilder interface {
	Run(ctx context.Context, password string, progress catalogrebuild.Progress) (catalogrebuild.Result, error)
}

func (s *Server) storeRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/store/verify", s.submitVerify)
	mux.HandleFunc("POST /api/v1/store/prune", s.submitPrune)
	if s.Rebuild != nil {
		mux.HandleFunc("POST /api/v1/catalog/rebuild", s.rebuildCatalog)
	}
}

// VerifyRequest is the body of POST /api/v1/store/verify: catalog session
// ids, or all sessions, or those of one scenario.
type VerifyRequest struct {
	Sessions []uint64 `json:"sessions,omitempty"`
	All      bool     `json:"all,omitempty"`
	Scenario string   `json:"scenario,omitempty"`
	Schedule string   `json:"schedule,omitempty"`
	Name     string   `json:"name,omitempty"`
}

func (s *Server) submitVerify(w http.ResponseWriter, r *http.Request) {
	var req VerifyRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err, 0)
		return
	}
	spec := verifyjob.Spec{Sessions: req.Sessions, All: req.All, Scenario: req.Scenario}
	if err := spec.Check(); err != nil {
		s.fail(w, r, messages.New(messages.BadRequest, err.Error()+": give --session N (repeatable), --scenario NAME or --all"), 0)
		return
	}
	var ids []uint64
	switch {
	case req.Scenario != "":
		sc, err := s.Sessions.Scenario(req.Scenario)
		if err != nil {
			s.fail(w, r, messages.New(messages.ScenarioNotFound, req.Scenario), 0)
			return
		}
		ids = []uint64{sc.ID}
	case len(req.Sessions) > 0:
		for _, id := range req.Sessions {
			if _, err := s.Sessions.Session(id); err != nil {
				s.fail(w, r, messages.New(messages.BadRequest, fmt.Sprintf("session: no session %d (see 'holdfast job show ID' for a job's sessions)", id)), 0)
				return
			}
		}
	}
	if req.Name == "" {
		switch {
		case req.All:
			req.Name = "verify of all sessions"
		case req.Scenario != "":
			req.Name = "verify of scenario " + req.Scenario
		default:
			req.Name = fmt.Sprintf("verify of sessions %v", req.Sessions)
		}
	}
	body, _ := json.Marshal(spec)
	j, err := s.Jobs.Submit(jobs.Submission{Kind: verifyjob.Kind, Name: req.Name, Owner: "admin", ScenarioIDs: ids, Schedule: req.Schedule, Spec: body})
	if err != nil {
		s.failRecorded(w, r, jobErr(req.Name, err))
		return
	}
	writeJSON(w, http.StatusCreated, s.jobOut(j, false))
}

// PruneRequest is the body of POST /api/v1/store/prune.
type PruneRequest struct {
	Schedule string `json:"schedule,omitempty"`
}

func (s *Server) submitPrune(w http.ResponseWriter, r *http.Request) {
	var req PruneRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err, 0)
		return
	}
	j, err := s.Jobs.Submit(jobs.Submission{Kind: retention.Kind, Name: "prune of the disk store", Owner: "admin", Schedule: req.Schedule, Spec: []byte("{}")})
	if err != nil {
		s.failRecorded(w, r, jobErr("prune", err))
		return
	}
	writeJSON(w, http.StatusCreated, s.jobOut(j, false))
}

// RebuildRequest is the body of POST /api/v1/catalog/rebuild. The password
// opens protected sessions; it is used for this call only, never stored.
type RebuildRequest struct {
	Password string `json:"password,omitempty"`
}

// RebuildResult is what a rebuild did.
type RebuildResult = catalogrebuild.Result

func (s *Server) rebuildCatalog(w http.ResponseWriter, r *http.Request) {
	var req RebuildRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err, 0)
		return
	}
	// A backup commits its store session before its catalog session: a
	// rebuild in between would record the session twice.
	active, err := s.Jobs.List(catalog.JobActive)
	if err != nil {
		s.fail(w, r, jobErr("", err), 0)
		return
	}
	for _, j := range active {
		if j.Kind == "backup" {
			s.fail(w, r, messages.New(messages.JobWrongState, fmt.Sprintf("backup job %d (%s) is running: wait until it ends ('holdfast job show %d'), then rebuild", j.ID, j.Name, j.ID)), 0)
			return
		}
	}
	res, err := s.Rebuild.Run(r.Context(), req.Password, nil)
	if err != nil {
		s.failRecorded(w, r, messages.Wrap(err, messages.InternalError, err))
		return
	}
	writeJSON(w, http.StatusOK, res)
}
