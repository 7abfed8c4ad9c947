package recovery

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/holdfast/holdfast/agent/rewind"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/runner"
)

// Mark is a bookmark set on one replica.
type Mark struct {
	Replica string
	Root    string
	Point   rewind.Point
}

// Bookmark sets a bookmark with label on every replica of the scenario held
// here, running or not, so that all of them can be rewound to it.
func (s *Service) Bookmark(ctx context.Context, name, label string) ([]Mark, error) {
	if err := checkLabel("label", label); err != nil {
		return nil, err
	}
	pl, reps, err := s.replicas(name, "")
	if err != nil {
		return nil, err
	}
	var out []Mark
	for _, lr := range reps {
		err := s.withJournal(pl, lr, func(j *rewind.Replica) error {
			p, err := j.Bookmark(label)
			if err != nil {
				return err
			}
			out = append(out, Mark{Replica: replicaName(lr), Root: lr.Root, Point: p})
			s.record(ctx, messages.RewindBookmarkSet, label, name, replicaName(lr), p.ID)
			return nil
		})
		if err != nil {
			return out, s.journalErr(name, lr, err)
		}
	}
	return out, nil
}

// PointList is the rewind history of one replica.
type PointList struct {
	Replica string
	Root    string
	Usage   rewind.Usage
	Points  []rewind.Point // newest first
}

// PointQuery selects points.
type PointQuery struct {
	Replica string // a replica directory; "" for all held here
	Path    string // a master path below a root, or a path relative to the roots
	Since   time.Time
	Limit   int
}

// Points lists the rewind points of the scenario's replicas.
func (s *Service) Points(ctx context.Context, name string, q PointQuery) ([]PointList, error) {
	pl, reps, err := s.replicas(name, q.Replica)
	if err != nil {
		return nil, err
	}
	var out []PointList
	for _, lr := range reps {
		rel, ok, err := relPath(pl, lr, q.Path)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		err = s.withJournal(pl, lr, func(j *rewind.Replica) error {
			pts, err := j.Points(rewind.Filter{Path: rel, Since: q.Since, Limit: q.Limit})
			if err != nil {
				return err
			}
			u, err := j.Usage()
			if err != nil {
				return err
			}
			out = append(out, PointList{Replica: replicaName(lr), Root: lr.Root, Usage: u, Points: pts})
			return nil
		})
		if err != nil {
			return nil, s.journalErr(name, lr, err)
		}
	}
	return out, nil
}

// relPath turns the operator's path into one relative to the replica's
// root. A master path (absolute) selects the root holding it: ok is false
// for the replicas of other roots. A relative path applies to every root.
func relPath(pl runner.Placement, lr runner.LocalReplica, p string) (string, bool, error) {
	if p == "" {
		return "", true, nil
	}
	if !filepath.IsAbs(p) {
		clean := filepath.ToSlash(filepath.Clean(p))
		if clean == "." {
			return "", true, nil
		}
		if clean == ".." || strings.HasPrefix(clean, "../") {
			return "", false, messages.New(messages.BadRequest, fmt.Sprintf("path: %q leaves the scenario's roots", p))
		}
		return clean, true, nil
	}
	clean := filepath.Clean(p)
	inSome := false
	for _, root := range pl.Scenario.Roots {
		if r, err := filepath.Rel(root, clean); err == nil && r != ".." && !strings.HasPrefix(r, "../") {
			inSome = true
			if root == lr.Root {
				if r == "." {
					r = ""
				}
				return filepath.ToSlash(r), true, nil
			}
		}
	}
	if !inSome {
		return "", false, messages.New(messages.BadRequest,
			fmt.Sprintf("path: %s is not below the scenario's roots (%s); give a master path or one relative to the roots", p, strings.Join(pl.Scenario.Roots, ", ")))
	}
	return "", false, nil
}

// RewindRequest says what to rewind to: exactly one of Point, Time and
// Bookmark.
type RewindRequest struct {
	Point    uint64
	Time     time.Time
	Bookmark string
	Path     string // only what lies at or below it; "" for everything
	Replica  string // one replica directory; "" for all held here
}

func (q RewindRequest) target() (rewind.Target, string, error) {
	n := 0
	var desc string
	if q.Point != 0 {
		n++
		desc = fmt.Sprintf("point %d", q.Point)
	}
	if !q.Time.IsZero() {
		n++
		desc = "time " + q.Time.UTC().Format(time.RFC3339)
	}
	if q.Bookmark != "" {
		n++
		desc = fmt.Sprintf("bookmark %q", q.Bookmark)
	}
	if n != 1 {
		return rewind.Target{}, "", messages.New(messages.BadRequest, "rewind: give exactly one of point, time and bookmark")
	}
	return rewind.Target{Point: q.Point, Time: q.Time, Bookmark: q.Bookmark}, desc, nil
}

// Rewound is the outcome on one replica.
type Rewound struct {
	Replica string
	Root    string
	rewind.Result
}

// Rewind rewinds the scenario's replicas held here. The scenario must be
// stopped: changes from the master would otherwise land on the replica
// while it is rewound. Point IDs belong to one replica's journal, so a
// scenario with several replicas here needs Replica with Point.
func (s *Service) Rewind(ctx context.Context, name string, q RewindRequest, progress func(replica string, done, total int)) ([]Rewound, error) {
	to, desc, err := q.target()
	if err != nil {
		return nil, err
	}
	pl, reps, err := s.replicas(name, q.Replica)
	if err != nil {
		return nil, err
	}
	if q.Point != 0 && len(reps) > 1 {
		return nil, messages.New(messages.BadRequest,
			fmt.Sprintf("replica: point IDs belong to one replica's journal and scenario %s has %d replicas here; name one with its directory", name, len(reps)))
	}
	if pl.Running {
		return nil, messages.New(messages.RewindNeedsStop, name)
	}
	var out []Rewound
	for _, lr := range reps {
		rel, ok, err := relPath(pl, lr, q.Path)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		err = s.withJournal(pl, lr, func(j *rewind.Replica) error {
			res, err := j.Rewind(ctx, to, rel, func(done, total int) {
				if progress != nil {
					progress(replicaName(lr), done, total)
				}
			})
			if err != nil {
				return err
			}
			out = append(out, Rewound{Replica: replicaName(lr), Root: lr.Root, Result: res})
			what := desc
			if rel != "" {
				what += " (path " + rel + ")"
			}
			s.record(ctx, messages.RewindDone, name, replicaName(lr), what, res.Undone,
				res.Duration.Round(time.Millisecond), res.FirstNew, res.LastNew)
			return nil
		})
		if err != nil {
			return out, s.journalErr(name, lr, err)
		}
	}
	return out, nil
}
