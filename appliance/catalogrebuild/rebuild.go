// Package catalogrebuild recreates catalog sessions and file versions from
// the disk store alone, for store sessions the catalog does not know: after
// a lost or damaged catalog, or a catalog restored from an older copy. The
// store keeps in every session root what the catalog needs (scenario and
// master host, entity, consistency, job); a protected session needs its
// password.
package catalogrebuild

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/diskstore"
	"github.com/holdfast/holdfast/appliance/messages"
)

// Catalog is the part of the catalog a rebuild reads and writes.
type Catalog interface {
	Sessions() ([]catalog.Session, error)
	Scenario(name string) (catalog.Scenario, error)
	Job(id uint64) (catalog.Job, error)
	CreateJob(j catalog.Job) (catalog.Job, error)
	CreateSession(s catalog.Session) (catalog.Session, error)
	NewFileVersionWriter() *catalog.FileVersionWriter
}

// Result counts what a rebuild did with the store's sessions.
type Result struct {
	Stored   int `json:"stored"`   // sessions in the store
	Recorded int `json:"recorded"` // recorded in the catalog now
	Known    int `json:"known"`    // already in the catalog (by stored id)
	Skipped  int `json:"skipped"`  // protected, and no or a wrong password
	Failed   int `json:"failed"`   // unreadable, or refused by the catalog
	Versions int `json:"versions"` // file versions recorded
}

// Progress is told, after each stored session, how many are done of all.
type Progress func(done, total int)

// Rebuilder recreates catalog sessions from the store.
type Rebuilder struct {
	Store   *diskstore.Store
	Catalog Catalog
	Rec     activity.Recorder
}

// Run records every store session the catalog does not know (matched by
// Session.Stored). It is idempotent: a second run finds them known. One
// session that cannot be read or recorded is counted, logged and skipped.
// password opens protected sessions; sessions it does not open are
// skipped. A crash while one session's file versions are written leaves
// that session recorded with part of them (a later run counts it known):
// delete the session in the catalog and run again.
func (r *Rebuilder) Run(ctx context.Context, password string, progress Progress) (Result, error) {
	var res Result
	infos, listErr := r.Store.ListSessions()
	if infos == nil && listErr != nil {
		return res, fmt.Errorf("catalog rebuild: list the store's sessions: %w", listErr)
	}
	if listErr != nil {
		// Damaged roots are left out of the list and named in the error.
		res.Failed++
		r.Rec.Record(ctx, messages.RebuildSessionFailed, "(some)", listErr)
	}
	res.Stored = len(infos)
	known, err := r.Catalog.Sessions()
	if err != nil {
		return res, fmt.Errorf("catalog rebuild: list the catalog's sessions: %w", err)
	}
	have := make(map[string]bool, len(known))
	for _, s := range known {
		have[s.Stored] = true
	}
	for i, info := range infos {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if progress != nil {
			progress(i, len(infos))
		}
		if have[info.ID] {
			res.Known++
			continue
		}
		n, err := r.session(ctx, info, password)
		switch {
		case errors.Is(err, diskstore.ErrPasswordRequired):
			res.Skipped++
			r.Rec.Record(ctx, messages.RebuildSkippedProtected, info.ID)
		case errors.Is(err, diskstore.ErrWrongPassword):
			res.Skipped++
			r.Rec.Record(ctx, messages.RebuildBadPassword, info.ID)
		case err != nil:
			res.Failed++
			r.Rec.Record(ctx, messages.RebuildSessionFailed, info.ID, err)
		default:
			res.Recorded++
			res.Versions += n
		}
	}
	if progress != nil {
		progress(len(infos), len(infos))
	}
	r.Rec.Record(ctx, messages.RebuildDone, res.Stored, res.Recorded, res.Known, res.Skipped, res.Failed)
	return res, nil
}

// session records one store session and returns its file versions' count.
func (r *Rebuilder) session(ctx context.Context, info diskstore.SessionInfo, password string) (int, error) {
	ss, err := r.Store.OpenSessionWithPassword(info.ID, password)
	if err != nil {
		return 0, err
	}
	info = ss.Info()
	meta := info.Meta
	entity := meta.Entity
	if entity == "" {
		entity = commonRoot(ss.Entries()) // sessions of version 1
	}
	var scenarioID uint64
	var scenarioIDs []uint64
	if meta.Scenario != "" {
		sc, err := r.Catalog.Scenario(meta.Scenario)
		switch {
		case err == nil:
			scenarioID, scenarioIDs = sc.ID, []uint64{sc.ID}
		case errors.Is(err, catalog.ErrNotFound):
			r.Rec.Record(ctx, messages.RebuildScenarioGone, info.ID, meta.Scenario)
		default:
			return 0, fmt.Errorf("look up scenario %s: %w", meta.Scenario, err)
		}
	}
	jobID, err := r.job(meta, info, scenarioIDs)
	if err != nil {
		return 0, err
	}
	var files, bytes uint64
	for _, en := range ss.Entries() {
		if en.Type == diskstore.TypeFile {
			files++
			bytes += uint64(en.Size)
		}
	}
	sess, err := r.Catalog.CreateSession(catalog.Session{JobID: jobID, ScenarioID: scenarioID, Entity: entity, MasterHost: meta.Host,
		Consistency: meta.Consistency, Started: meta.Started, Finished: info.Committed, Files: files, Bytes: bytes, Stored: info.ID})
	if err != nil {
		return 0, fmt.Errorf("record the session: %w", err)
	}
	n := 0
	if meta.Host != "" {
		fw := r.Catalog.NewFileVersionWriter()
		for _, en := range ss.Entries() {
			if en.Type != diskstore.TypeFile || !path.IsAbs(en.Path) {
				continue
			}
			if err := fw.Add(catalog.FileVersion{Host: meta.Host, Path: filepath.Clean(en.Path), SessionID: sess.ID,
				Size: uint64(en.Size), Mode: uint32(en.Mode.Perm()), MTime: en.ModTime}); err != nil {
				fw.Discard()
				return n, fmt.Errorf("record the files of session %d: %w", sess.ID, err)
			}
			n++
		}
		if err := fw.Commit(true); err != nil {
			return n, fmt.Errorf("record the files of session %d: %w", sess.ID, err)
		}
	}
	r.Rec.Record(ctx, messages.RebuildSessionRecorded, info.ID, orNone(meta.Scenario), entity, sess.ID, jobID, n)
	return n, nil
}

// job returns the session's backup job when the catalog still has it, or
// a job made for it: kind backup, Done and Completed, named "rebuilt: ...".
func (r *Rebuilder) job(meta diskstore.SessionMeta, info diskstore.SessionInfo, scenarioIDs []uint64) (uint64, error) {
	if meta.JobID != 0 {
		j, err := r.Catalog.Job(meta.JobID)
		if err == nil && j.Kind == "backup" && j.Name == meta.JobName {
			return j.ID, nil
		}
		if err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return 0, fmt.Errorf("look up job %d: %w", meta.JobID, err)
		}
	}
	name := meta.JobName
	if name == "" {
		name = meta.Label
	}
	if name == "" {
		name = "backup of " + orNone(meta.Scenario)
	}
	// The job queue keeps its schedule and runs in Spec, as this JSON (the
	// queue's record form); a Done job of schedule "now" never runs again.
	payload, _ := json.Marshal(map[string][]string{"scenarios": nonEmpty(meta.Scenario)})
	spec, err := json.Marshal(struct {
		Schedule string `json:"schedule"`
		Runs     []run  `json:"runs,omitempty"`
		Payload  []byte `json:"payload,omitempty"`
	}{Schedule: "now", Runs: []run{{Due: meta.Started, Started: meta.Started, Finished: info.Committed, Result: catalog.ResultCompleted,
		Reason: "rebuilt from the disk store"}}, Payload: payload})
	if err != nil {
		return 0, fmt.Errorf("encode the rebuilt job: %w", err)
	}
	j, err := r.Catalog.CreateJob(catalog.Job{Kind: "backup", Name: "rebuilt: " + name, State: catalog.JobDone, Result: catalog.ResultCompleted,
		Owner: "catalog rebuild", ScenarioIDs: scenarioIDs, Started: meta.Started, Finished: info.Committed, Spec: spec})
	if err != nil {
		return 0, fmt.Errorf("record the rebuilt job: %w", err)
	}
	return j.ID, nil
}

// run mirrors one run in the job queue's record.
type run struct {
	Due      time.Time         `json:"due"`
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Result   catalog.JobResult `json:"result"`
	Reason   string            `json:"reason,omitempty"`
}

// commonRoot is the deepest directory holding every entry, for sessions
// written before the entity was recorded.
func commonRoot(entries []diskstore.Entry) string {
	root := ""
	for _, en := range entries {
		p := en.Path
		if en.Type != diskstore.TypeDir {
			p = path.Dir(p)
		}
		if root == "" {
			root = p
			continue
		}
		for root != "/" && root != "." && p != root && !strings.HasPrefix(p, root+"/") {
			root = path.Dir(root)
		}
	}
	if root == "" {
		return "/"
	}
	return root
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func nonEmpty(s string) []string {
	if s == "" {
		return []string{}
	}
	return []string{s}
}
