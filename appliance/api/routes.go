package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/pluginhost"
	"github.com/holdfast/holdfast/appliance/scenarios"
)

// Scenario is a scenario as the API shows it.
type Scenario struct {
	ID              uint64              `json:"id"`
	Name            string              `json:"name"`
	Type            string              `json:"type"`
	State           string              `json:"state"`
	Master          scenarios.Master    `json:"master"`
	Replicas        []scenarios.Replica `json:"replicas"`
	AssuredRecovery bool                `json:"assured_recovery"`
	Suspend         bool                `json:"suspend"`
	SnapshotsKeep   uint32              `json:"snapshots_keep"`
	Sync            string              `json:"sync"`
	Created         time.Time           `json:"created"`
	Updated         time.Time           `json:"updated"`
	Entities        []Entity            `json:"entities,omitempty"`
}

// Entity is a unit of backup inside a scenario.
type Entity struct {
	Name   string            `json:"name"`
	Kind   string            `json:"kind"`
	Paths  []string          `json:"paths"`
	Detail map[string]string `json:"detail,omitempty"`
}

// LogEntry is one activity-log entry.
type LogEntry struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	JobID    uint64    `json:"job,omitempty"`
	Severity string    `json:"severity"`
	Code     string    `json:"code,omitempty"`
	Host     string    `json:"host"`
	Message  string    `json:"message"`
}

func scenarioOut(sc catalog.Scenario, ents []catalog.Entity) Scenario {
	out := Scenario{
		ID: sc.ID, Name: sc.Name, Type: sc.Type, State: string(sc.State),
		Master:          scenarios.Master{Host: sc.MasterHost, Roots: sc.Roots},
		AssuredRecovery: sc.AssuredRecovery, Suspend: sc.Suspend, SnapshotsKeep: sc.SnapshotsKeep, Sync: syncMode(sc.SyncMode),
		Created: sc.Created, Updated: sc.Updated,
		Replicas: []scenarios.Replica{},
	}
	for _, r := range sc.Replicas {
		out.Replicas = append(out.Replicas, scenarios.Replica{Host: r.Host, Target: r.Target})
	}
	for _, e := range ents {
		out.Entities = append(out.Entities, Entity{Name: e.Name, Kind: e.Kind, Paths: e.Paths, Detail: e.Detail})
	}
	return out
}

func (s *Server) listScenarios(w http.ResponseWriter, r *http.Request) {
	list, err := s.Scenarios.List(r.Context())
	if err != nil {
		s.fail(w, r, err, 0)
		return
	}
	out := make([]Scenario, 0, len(list))
	for _, sc := range list {
		o := scenarioOut(sc, nil)
		o.State = s.Replication.State(sc)
		out = append(out, o)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) createScenario(w http.ResponseWriter, r *http.Request) {
	var def scenarios.Definition
	if err := decodeBody(r, &def); err != nil {
		s.fail(w, r, err, 0)
		return
	}
	d, err := s.Scenarios.Create(r.Context(), def)
	if err != nil {
		s.fail(w, r, err, 0)
		return
	}
	writeJSON(w, http.StatusCreated, scenarioOut(d.Scenario, d.Entities))
}

func (s *Server) getScenario(w http.ResponseWriter, r *http.Request) {
	d, err := s.Scenarios.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err, 0)
		return
	}
	o := scenarioOut(d.Scenario, d.Entities)
	o.State = s.Replication.State(d.Scenario)
	writeJSON(w, http.StatusOK, o)
}

func (s *Server) deleteScenario(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	// A running scenario's engines would outlive its record.
	if st, err := s.Replication.Status(name); err == nil && st.State != string(catalog.StateStopped) {
		err := messages.New(messages.ScenarioAlreadyRunning, name)
		s.Recorder.RecordError(r.Context(), err)
		s.fail(w, r, err, 0)
		return
	}
	sc, err := s.Scenarios.Delete(r.Context(), name)
	if err != nil {
		s.fail(w, r, err, 0)
		return
	}
	writeJSON(w, http.StatusOK, scenarioOut(sc, nil))
}

func (s *Server) listPlugins(w http.ResponseWriter, r *http.Request) {
	list := s.Plugins.List()
	if list == nil {
		list = []pluginhost.PluginStatus{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) listLog(w http.ResponseWriter, r *http.Request) {
	f, err := logFilter(r)
	if err != nil {
		s.fail(w, r, err, 0)
		return
	}
	entries, err := s.Activity.Activity(f)
	if err != nil {
		code := messages.InternalError
		if errors.Is(err, catalog.ErrCorrupt) {
			code = messages.CatalogCorrupt
		}
		err = messages.Wrap(err, code, err)
		s.Recorder.RecordError(r.Context(), err)
		s.fail(w, r, err, 0)
		return
	}
	out := make([]LogEntry, 0, len(entries))
	for _, e := range entries {
		out = append(out, LogEntry{Seq: e.Seq, Time: e.Time, JobID: e.JobID, Severity: e.Severity.String(),
			Code: e.Code, Host: e.Host, Message: e.Message})
	}
	writeJSON(w, http.StatusOK, out)
}

func logFilter(r *http.Request) (catalog.ActivityFilter, error) {
	q := r.URL.Query()
	var f catalog.ActivityFilter
	bad := func(param, problem string) error {
		return messages.New(messages.BadRequest, fmt.Sprintf("parameter %s: %s", param, problem))
	}
	if v := q.Get("job"); v != "" {
		id, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return f, bad("job", "want a job number")
		}
		f.JobID = id
	}
	f.Code = q.Get("code")
	if v := q.Get("severity"); v != "" {
		sev, err := catalog.ParseSeverity(v)
		if err != nil {
			return f, bad("severity", err.Error())
		}
		f.MinSeverity = sev
	}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return f, bad("since", "want an RFC 3339 time such as 2026-11-25T08:00:00Z")
		}
		f.Since = t
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return f, bad("limit", "want a non-negative number")
		}
		f.Limit = n
	}
	return f, nil
}

// syncMode shows a scenario stored before the mode existed as auto.
func syncMode(m string) string {
	if m == "" {
		return "auto"
	}
	return m
}
