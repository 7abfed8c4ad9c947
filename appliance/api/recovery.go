package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/holdfast/holdfast/agent/rewind"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/recovery"
)

// Recovery is Data Rewind, snapshots and Assured Recovery.
type Recovery interface {
	Bookmark(ctx context.Context, name, label string) ([]recovery.Mark, error)
	Points(ctx context.Context, name string, q recovery.PointQuery) ([]recovery.PointList, error)
	Rewind(ctx context.Context, name string, q recovery.RewindRequest, progress func(replica string, done, total int)) ([]recovery.Rewound, error)
	TakeSnapshot(ctx context.Context, name, label string) ([]recovery.Snap, error)
	Snapshots(name string) ([]recovery.Snap, error)
	ReleaseSnapshot(ctx context.Context, name, id string) error
	Test(ctx context.Context, name string) ([]catalog.RecoveryTest, error)
	Tests(name string, limit int) ([]catalog.RecoveryTest, error)
}

func (s *Server) recoveryRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/scenarios/{name}/bookmarks", s.bookmark)
	mux.HandleFunc("GET /api/v1/scenarios/{name}/points", s.points)
	mux.HandleFunc("POST /api/v1/scenarios/{name}/rewind", s.rewind)
	mux.HandleFunc("GET /api/v1/scenarios/{name}/snapshots", s.snapshots)
	mux.HandleFunc("POST /api/v1/scenarios/{name}/snapshots", s.takeSnapshot)
	mux.HandleFunc("DELETE /api/v1/scenarios/{name}/snapshots/{id}", s.releaseSnapshot)
	mux.HandleFunc("POST /api/v1/scenarios/{name}/tests", s.runTest)
	mux.HandleFunc("GET /api/v1/scenarios/{name}/tests", s.listTests)
}

// Point is one rewind point as the API shows it.
type Point struct {
	ID       uint64    `json:"id"`
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"`
	Op       string    `json:"op,omitempty"`
	Path     string    `json:"path,omitempty"`
	NewPath  string    `json:"new_path,omitempty"`
	Label    string    `json:"label,omitempty"`
	Seq      uint64    `json:"seq,omitempty"`
	RewindOf uint64    `json:"rewind_of,omitempty"`
}

func pointOut(p rewind.Point) Point {
	return Point{ID: p.ID, Time: p.Time, Kind: p.Kind.String(), Op: p.Op, Path: p.Path, NewPath: p.NewPath,
		Label: p.Label, Seq: p.Seq, RewindOf: p.RewindOf}
}

// Bookmark is a bookmark set on one replica.
type Bookmark struct {
	Replica string `json:"replica"`
	Root    string `json:"root"`
	Point   Point  `json:"point"`
}

// BookmarkRequest is the body of POST .../bookmarks.
type BookmarkRequest struct {
	Label string `json:"label"`
}

func (s *Server) bookmark(w http.ResponseWriter, r *http.Request) {
	var req BookmarkRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err, 0)
		return
	}
	marks, err := s.Recovery.Bookmark(r.Context(), r.PathValue("name"), req.Label)
	if err != nil {
		s.failRecorded(w, r, err)
		return
	}
	out := []Bookmark{}
	for _, m := range marks {
		out = append(out, Bookmark{Replica: m.Replica, Root: m.Root, Point: pointOut(m.Point)})
	}
	writeJSON(w, http.StatusCreated, out)
}

// ReplicaPoints is the rewind history of one replica.
type ReplicaPoints struct {
	Replica     string    `json:"replica"`
	Root        string    `json:"root"`
	PointsKept  int       `json:"points_kept"`
	JournalSize int64     `json:"journal_bytes"`
	Oldest      time.Time `json:"oldest"`
	Points      []Point   `json:"points"`
}

func (s *Server) points(w http.ResponseWriter, r *http.Request) {
	q := recovery.PointQuery{Replica: r.URL.Query().Get("replica"), Path: r.URL.Query().Get("path")}
	if v := r.URL.Query().Get("since"); v != "" {
		t, err := parseTime(v)
		if err != nil {
			s.fail(w, r, messages.New(messages.BadRequest, "since: "+err.Error()), 0)
			return
		}
		q.Since = t
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.fail(w, r, messages.New(messages.BadRequest, fmt.Sprintf("limit: %q is not a count", v)), 0)
			return
		}
		q.Limit = n
	}
	lists, err := s.Recovery.Points(r.Context(), r.PathValue("name"), q)
	if err != nil {
		s.fail(w, r, err, 0)
		return
	}
	out := []ReplicaPoints{}
	for _, l := range lists {
		rp := ReplicaPoints{Replica: l.Replica, Root: l.Root, PointsKept: l.Usage.Points, JournalSize: l.Usage.Bytes,
			Oldest: l.Usage.Oldest, Points: []Point{}}
		for _, p := range l.Points {
			rp.Points = append(rp.Points, pointOut(p))
		}
		out = append(out, rp)
	}
	writeJSON(w, http.StatusOK, out)
}

// parseTime accepts RFC 3339 times, with or without seconds' fractions.
func parseTime(v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a time like 2026-11-25T10:04:05Z", v)
	}
	return t, nil
}

// RewindRequest is the body of POST .../rewind: exactly one of point, time
// and bookmark.
type RewindRequest struct {
	Point    uint64 `json:"point,omitempty"`
	Time     string `json:"time,omitempty"`
	Bookmark string `json:"bookmark,omitempty"`
	Path     string `json:"path,omitempty"`
	Replica  string `json:"replica,omitempty"`
}

// Rewound is the outcome of a rewind on one replica.
type Rewound struct {
	Replica    string  `json:"replica"`
	Root       string  `json:"root"`
	Undone     int     `json:"undone"`
	FirstNew   uint64  `json:"first_new_point"`
	LastNew    uint64  `json:"last_new_point"`
	DurationMS float64 `json:"duration_ms"`
}

func (s *Server) rewind(w http.ResponseWriter, r *http.Request) {
	var req RewindRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err, 0)
		return
	}
	q := recovery.RewindRequest{Point: req.Point, Bookmark: req.Bookmark, Path: req.Path, Replica: req.Replica}
	if req.Time != "" {
		t, err := parseTime(req.Time)
		if err != nil {
			s.fail(w, r, messages.New(messages.BadRequest, "time: "+err.Error()), 0)
			return
		}
		q.Time = t
	}
	name := r.PathValue("name")
	last := time.Now()
	res, err := s.Recovery.Rewind(r.Context(), name, q, func(replica string, done, total int) {
		if time.Since(last) > 5*time.Second || done == total {
			last = time.Now()
			s.Logger.Info("rewind progress", "scenario", name, "replica", replica, "done", done, "total", total)
		}
	})
	if err != nil {
		s.failRecorded(w, r, err)
		return
	}
	out := []Rewound{}
	for _, x := range res {
		out = append(out, Rewound{Replica: x.Replica, Root: x.Root, Undone: x.Undone, FirstNew: x.FirstNew, LastNew: x.LastNew,
			DurationMS: ms(x.Duration)})
	}
	writeJSON(w, http.StatusOK, out)
}

// Snapshot is one replica snapshot.
type Snapshot struct {
	ID          string    `json:"id"`
	Replica     string    `json:"replica"`
	Root        string    `json:"root"`
	Time        time.Time `json:"time"`
	Method      string    `json:"method"`
	Files       int64     `json:"files"`
	Bytes       int64     `json:"bytes"`
	Consistency string    `json:"consistency"`
	Label       string    `json:"label,omitempty"`
}

func snapsOut(list []recovery.Snap) []Snapshot {
	out := []Snapshot{}
	for _, x := range list {
		out = append(out, Snapshot{ID: x.ID, Replica: x.Replica, Root: x.Root, Time: x.Time, Method: string(x.Method),
			Files: x.Files, Bytes: x.Bytes, Consistency: x.Consistency, Label: x.Label})
	}
	return out
}

// SnapshotRequest is the body of POST .../snapshots.
type SnapshotRequest struct {
	Label string `json:"label,omitempty"`
}

func (s *Server) takeSnapshot(w http.ResponseWriter, r *http.Request) {
	var req SnapshotRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err, 0)
		return
	}
	list, err := s.Recovery.TakeSnapshot(r.Context(), r.PathValue("name"), req.Label)
	if err != nil {
		s.failRecorded(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, snapsOut(list))
}

func (s *Server) snapshots(w http.ResponseWriter, r *http.Request) {
	list, err := s.Recovery.Snapshots(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err, 0)
		return
	}
	writeJSON(w, http.StatusOK, snapsOut(list))
}

func (s *Server) releaseSnapshot(w http.ResponseWriter, r *http.Request) {
	if err := s.Recovery.ReleaseSnapshot(r.Context(), r.PathValue("name"), r.PathValue("id")); err != nil {
		s.failRecorded(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// RecoveryTest is one Assured Recovery test.
type RecoveryTest struct {
	ID         uint64    `json:"id"`
	Replica    string    `json:"replica"`
	Snapshot   string    `json:"snapshot"`
	Started    time.Time `json:"started"`
	DurationMS float64   `json:"duration_ms"`
	Passed     bool      `json:"passed"`
	Checked    uint64    `json:"checked"`
	Problems   []string  `json:"problems"`
	Error      string    `json:"error,omitempty"`
	View       string    `json:"view"`
}

func testsOut(list []catalog.RecoveryTest) []RecoveryTest {
	out := []RecoveryTest{}
	for _, t := range list {
		p := t.Problems
		if p == nil {
			p = []string{}
		}
		out = append(out, RecoveryTest{ID: t.ID, Replica: t.Replica, Snapshot: t.Snapshot, Started: t.Started,
			DurationMS: ms(t.Duration), Passed: t.Passed, Checked: t.Checked, Problems: p, Error: t.Error, View: t.View})
	}
	return out
}

func (s *Server) runTest(w http.ResponseWriter, r *http.Request) {
	list, err := s.Recovery.Test(r.Context(), r.PathValue("name"))
	if err != nil {
		s.failRecorded(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, testsOut(list))
}

func (s *Server) listTests(w http.ResponseWriter, r *http.Request) {
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.fail(w, r, messages.New(messages.BadRequest, fmt.Sprintf("limit: %q is not a count", v)), 0)
			return
		}
		limit = n
	}
	list, err := s.Recovery.Tests(r.PathValue("name"), limit)
	if err != nil {
		s.fail(w, r, err, 0)
		return
	}
	writeJSON(w, http.StatusOK, testsOut(list))
}
