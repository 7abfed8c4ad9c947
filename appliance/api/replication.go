package api

import (
	"context"
	"net/http"
	"time"

	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/runner"
)

// Replication runs scenarios.
type Replication interface {
	Run(ctx context.Context, name string) error
	Stop(ctx context.Context, name string) error
	Suspend(ctx context.Context, name string) error
	Resume(ctx context.Context, name string) error
	Status(name string) (runner.Status, error)
	State(sc catalog.Scenario) string
	Difference(name string) (runner.Difference, error)
}

// ScenarioStatus is a scenario's replication as the API shows it.
type ScenarioStatus struct {
	Name    string       `json:"name"`
	State   string       `json:"state"`
	Problem string       `json:"problem,omitempty"`
	Pairs   []PairStatus `json:"pairs"`
}

// PairStatus is one master root replicated to one replica directory.
type PairStatus struct {
	Root         string    `json:"root"`
	Replica      string    `json:"replica"`
	Phase        string    `json:"phase"`
	Problem      string    `json:"problem,omitempty"`
	Capture      string    `json:"capture"`
	Started      time.Time `json:"started"`
	Changes      uint64    `json:"changes"`
	Bytes        uint64    `json:"bytes"`
	Created      uint64    `json:"created"`
	Updated      uint64    `json:"updated"`
	Removed      uint64    `json:"removed"`
	Renamed      uint64    `json:"renamed"`
	Metadata     uint64    `json:"metadata"`
	Errors       uint64    `json:"errors"`
	Rescans      uint64    `json:"rescans"`
	SpoolPending int64     `json:"spool_pending"`
	SpoolBytes   int64     `json:"spool_bytes"`
	DirtyPaths   int       `json:"dirty_paths"`
	LagLastMS    float64   `json:"lag_last_ms"`
	LagP50MS     float64   `json:"lag_p50_ms"`
	LagP99MS     float64   `json:"lag_p99_ms"`
	Sync         SyncStats `json:"sync"`
}

// SyncStats are the figures of the last synchronization.
type SyncStats struct {
	ElapsedMS     float64 `json:"elapsed_ms"`
	Differences   int     `json:"differences"`
	FilesWhole    int64   `json:"files_whole"`
	BytesWhole    int64   `json:"bytes_whole"`
	FilesBlock    int64   `json:"files_block"`
	BytesLiteral  int64   `json:"bytes_literal"`
	BytesMatched  int64   `json:"bytes_matched"`
	Removed       int64   `json:"removed"`
	MetadataFixes int64   `json:"metadata_fixes"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func statusOut(st runner.Status) ScenarioStatus {
	out := ScenarioStatus{Name: st.Name, State: st.State, Problem: st.Problem, Pairs: []PairStatus{}}
	for _, p := range st.Pairs {
		k := p.Counters
		out.Pairs = append(out.Pairs, PairStatus{
			Root: p.Root, Replica: p.ReplicaDir, Phase: string(p.Phase), Problem: p.Problem, Capture: p.Backend,
			Started: p.Started, Changes: k.Changes, Bytes: k.Bytes, Created: k.Created, Updated: k.Updated,
			Removed: k.Removed, Renamed: k.Renamed, Metadata: k.Meta, Errors: k.Errors, Rescans: k.Rescans,
			SpoolPending: p.SpoolPending, SpoolBytes: p.SpoolBytes, DirtyPaths: p.DirtyPaths,
			LagLastMS: ms(p.LagLast), LagP50MS: ms(p.LagP50), LagP99MS: ms(p.LagP99),
			Sync: SyncStats{
				ElapsedMS: ms(p.Sync.Elapsed), Differences: p.Sync.Differences,
				FilesWhole: p.Sync.FilesWhole, BytesWhole: p.Sync.BytesWhole, FilesBlock: p.Sync.FilesBlock,
				BytesLiteral: p.Sync.BytesLiteral, BytesMatched: p.Sync.BytesMatched,
				Removed: p.Sync.Removed, MetadataFixes: p.Sync.MetadataFixes,
			},
		})
	}
	return out
}

func (s *Server) scenarioAction(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var err error
	switch r.PathValue("action") {
	case "run":
		err = s.Replication.Run(r.Context(), name)
	case "stop":
		err = s.Replication.Stop(r.Context(), name)
	case "suspend":
		err = s.Replication.Suspend(r.Context(), name)
	case "resume":
		err = s.Replication.Resume(r.Context(), name)
	default:
		s.fail(w, r, notFound(r), http.StatusNotFound)
		return
	}
	if err != nil {
		s.Recorder.RecordError(r.Context(), err)
		s.fail(w, r, err, 0)
		return
	}
	s.scenarioStatus(w, r)
}

func (s *Server) scenarioStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.Replication.Status(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err, 0)
		return
	}
	writeJSON(w, http.StatusOK, statusOut(st))
}

// DifferenceEntry is one difference between master and replica.
type DifferenceEntry struct {
	Root    string `json:"root"`
	Replica string `json:"replica"`
	Path    string `json:"path"`
	Kind    string `json:"kind"`
	Detail  string `json:"detail"`
}

func (s *Server) differenceReport(w http.ResponseWriter, r *http.Request) {
	d, err := s.Replication.Difference(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err, 0)
		return
	}
	out := []DifferenceEntry{}
	for _, e := range d.Entries {
		out = append(out, DifferenceEntry{Root: e.Root, Replica: e.ReplicaDir, Path: e.Path, Kind: e.Kind, Detail: e.Detail})
	}
	writeJSON(w, http.StatusOK, out)
}
