package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast/appliance/backup"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/jobs"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/restorejob"
)

// JobQueue is the job queue the job routes drive.
type JobQueue interface {
	Submit(s jobs.Submission) (jobs.Job, error)
	List(states ...catalog.JobState) ([]jobs.Job, error)
	Get(id uint64) (jobs.Job, error)
	Hold(id uint64) error
	Release(id uint64) error
	Cancel(id uint64) error
	Rerun(id uint64) (jobs.Job, error)
	Delete(id uint64) error
	Modify(id uint64, c jobs.Change) (jobs.Job, error)
}

// SessionReader lists a job's backup sessions.
type SessionReader interface {
	SessionsOfJob(jobID uint64) ([]catalog.Session, error)
	ScenarioByID(id uint64) (catalog.Scenario, error)
	Scenario(name string) (catalog.Scenario, error)
	Session(id uint64) (catalog.Session, error)
	FindByName(pattern string, limit int) ([]catalog.FileVersion, error)
	FileTree(host, dirPath string) ([]catalog.FileVersion, error)
	FileVersions(host, p string) ([]catalog.FileVersion, error)
	Sessions() ([]catalog.Session, error)
}

func (s *Server) jobRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/jobs", s.submitJob)
	mux.HandleFunc("GET /api/v1/jobs", s.listJobs)
	mux.HandleFunc("GET /api/v1/jobs/{id}", s.getJob)
	mux.HandleFunc("POST /api/v1/jobs/{id}/{action}", s.jobAction)
	mux.HandleFunc("DELETE /api/v1/jobs/{id}", s.deleteJob)
	mux.HandleFunc("PATCH /api/v1/jobs/{id}", s.modifyJob)
	mux.HandleFunc("GET /api/v1/files", s.findFiles)
	mux.HandleFunc("GET /api/v1/sessions", s.listSessions)
	mux.HandleFunc("GET /api/v1/files/tree", s.fileTree)
	mux.HandleFunc("GET /api/v1/files/versions", s.fileVersions)
}

// JobRequest is the body of POST /api/v1/jobs: a backup of scenarios, or
// a restore of a session.
type JobRequest struct {
	Kind      string   `json:"kind"` // "backup" (the default) or "restore"
	Name      string   `json:"name"`
	Scenarios []string `json:"scenarios,omitempty"`
	Schedule  string   `json:"schedule,omitempty"` // "now" when empty
	Hold      bool     `json:"hold,omitempty"`
	// Backup: read every file (no incremental), run each scenario as a
	// child job.
	Full        bool `json:"full,omitempty"`
	Multistream bool `json:"multistream,omitempty"`
	// Directories are folders outside scenarios to back up beside them:
	// HOST:/PATH on an enrolled agent or on this appliance.
	Directories []string `json:"directories,omitempty"`
	// Restore: the session, the master paths in it (none: all), where to
	// ("original" or an absolute folder) and the overwrite policy.
	Session     uint64   `json:"session,omitempty"`
	Paths       []string `json:"paths,omitempty"`
	Destination string   `json:"destination,omitempty"`
	Policy      string   `json:"policy,omitempty"`
	// Restore by tree instead of by session: a master host's file or
	// directory, each file at its latest version as of a time.
	Tree *restorejob.Tree `json:"tree,omitempty"`
	// ContinueIfRunning: a restore to the replica goes on when the
	// scenario cannot be stopped.
	ContinueIfRunning bool `json:"continue_if_running,omitempty"`
	// Password protects the sessions a backup writes, or opens the
	// protected session a restore reads. It is kept in memory only and
	// never shown.
	Password string `json:"password,omitempty"`
}

// JobRun is one run of a job.
type JobRun struct {
	Started  time.Time   `json:"started"`
	Finished time.Time   `json:"finished"`
	Result   string      `json:"result"`
	Reason   string      `json:"reason,omitempty"`
	Done     jobs.Counts `json:"done"`
	Total    jobs.Counts `json:"total"`
}

// JobProgress is the live progress of an active job.
type JobProgress struct {
	Done       jobs.Counts `json:"done"`
	Total      jobs.Counts `json:"total"`
	BytesPerS  float64     `json:"bytes_per_second"`
	FilesPerS  float64     `json:"files_per_second"`
	RemainingS float64     `json:"remaining_seconds"` // -1: unknown
}

// JobSession is a backup session a job wrote.
type JobSession struct {
	ID          uint64    `json:"id"`
	Job         uint64    `json:"job"`
	Scenario    string    `json:"scenario"`
	Entity      string    `json:"entity"`
	MasterHost  string    `json:"master_host"`
	Consistency string    `json:"consistency"`
	Files       uint64    `json:"files"`
	Bytes       uint64    `json:"bytes"`
	Stored      string    `json:"stored"`
	Finished    time.Time `json:"finished"`
}

// JobRestore is what a restore job restores, and where to.
type JobRestore struct {
	Session     uint64           `json:"session,omitempty"`
	Tree        *restorejob.Tree `json:"tree,omitempty"`
	Paths       []string         `json:"paths,omitempty"`
	Destination string           `json:"destination"`
	Policy      string           `json:"policy,omitempty"`
}

// Job is a job as the API shows it.
type Job struct {
	ID        uint64       `json:"id"`
	Kind      string       `json:"kind"`
	Name      string       `json:"name"`
	State     string       `json:"state"`
	Result    string       `json:"result,omitempty"`
	Schedule  string       `json:"schedule"`
	NextRun   time.Time    `json:"next_run"`
	Scenarios []string     `json:"scenarios"`
	Restore   *JobRestore  `json:"restore,omitempty"`
	Progress  *JobProgress `json:"progress,omitempty"`
	Runs      []JobRun     `json:"runs"`
	Sessions  []JobSession `json:"sessions,omitempty"`
}

func (s *Server) jobOut(j jobs.Job, withSessions bool) Job {
	out := Job{ID: j.ID, Kind: j.Kind, Name: j.Name, State: string(j.State), Result: string(j.Result),
		Schedule: j.Schedule.String(), NextRun: j.NextRun, Scenarios: []string{}, Runs: []JobRun{}}
	switch j.Kind {
	case backup.Kind:
		var spec backup.Spec
		if json.Unmarshal(j.Spec, &spec) == nil && spec.Scenarios != nil {
			out.Scenarios = spec.Scenarios
		}
	case restorejob.Kind:
		var spec restorejob.Spec
		if json.Unmarshal(j.Spec, &spec) == nil {
			out.Restore = &JobRestore{Session: spec.Session, Tree: spec.Tree, Paths: spec.Paths, Destination: spec.Destination, Policy: spec.Policy}
		}
	}
	for _, r := range j.Runs {
		out.Runs = append(out.Runs, JobRun{Started: r.Started, Finished: r.Finished, Result: string(r.Result), Reason: r.Reason, Done: r.Done, Total: r.Total})
	}
	if j.Live != nil {
		out.Progress = &JobProgress{Done: j.Live.Done, Total: j.Live.Total, BytesPerS: j.Live.Rate, FilesPerS: j.Live.FileRate,
			RemainingS: j.Live.Remaining.Seconds()}
		if j.Live.Remaining < 0 {
			out.Progress.RemainingS = -1
		}
	}
	if withSessions && s.Sessions != nil {
		list, err := s.Sessions.SessionsOfJob(j.ID)
		if err == nil {
			names := map[uint64]string{}
			for _, ss := range list {
				out.Sessions = append(out.Sessions, s.sessionOut(ss, names))
			}
		}
	}
	return out
}

// sessionOut shows a session with its scenario's name ("" for a folder
// outside scenarios); names caches the lookups.
func (s *Server) sessionOut(ss catalog.Session, names map[uint64]string) JobSession {
	name, ok := names[ss.ScenarioID]
	if !ok && ss.ScenarioID != 0 {
		name = strconv.FormatUint(ss.ScenarioID, 10)
		if sc, err := s.Sessions.ScenarioByID(ss.ScenarioID); err == nil {
			name = sc.Name
		}
		names[ss.ScenarioID] = name
	}
	return JobSession{ID: ss.ID, Job: ss.JobID, Scenario: name, Entity: ss.Entity, MasterHost: ss.MasterHost,
		Consistency: ss.Consistency, Files: ss.Files, Bytes: ss.Bytes, Stored: ss.Stored, Finished: ss.Finished}
}

// listSessions lists the backup sessions, newest first, optionally of one
// master host or scenario: the starting point of a restore by session.
func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) {
	list, err := s.Sessions.Sessions()
	if err != nil {
		s.failRecorded(w, r, messages.Wrap(err, messages.CatalogCorrupt, err))
		return
	}
	host, scenario := r.URL.Query().Get("host"), r.URL.Query().Get("scenario")
	names := map[uint64]string{}
	out := []JobSession{}
	for i := len(list) - 1; i >= 0; i-- {
		js := s.sessionOut(list[i], names)
		if host != "" && js.MasterHost != host || scenario != "" && js.Scenario != scenario {
			continue
		}
		out = append(out, js)
	}
	writeJSON(w, http.StatusOK, out)
}

// jobErr gives a queue error its message code.
func jobErr(id string, err error) error {
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return messages.Wrap(err, messages.JobUnknown, id)
	case errors.Is(err, jobs.ErrWrongState):
		return messages.Wrap(err, messages.JobWrongState, err)
	case errors.Is(err, jobs.ErrSchedule), errors.Is(err, jobs.ErrInvalid), errors.Is(err, jobs.ErrUnknownKind):
		return messages.New(messages.BadRequest, err.Error())
	}
	return messages.Wrap(err, messages.InternalError, err)
}

func (s *Server) submitJob(w http.ResponseWriter, r *http.Request) {
	var req JobRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err, 0)
		return
	}
	if req.Kind == "" {
		req.Kind = backup.Kind
	}
	if req.Kind == restorejob.Kind {
		s.submitRestore(w, r, req)
		return
	}
	if req.Kind != backup.Kind {
		s.fail(w, r, messages.New(messages.BadRequest, fmt.Sprintf("kind: %q; use backup or restore", req.Kind)), 0)
		return
	}
	if len(req.Scenarios)+len(req.Directories) == 0 {
		s.fail(w, r, messages.New(messages.BadRequest, "scenarios: missing: name at least one scenario or directory to back up"), 0)
		return
	}
	var dirs []backup.Directory
	for _, d := range req.Directories {
		dir, err := backup.ParseDirectory(d)
		if err != nil {
			s.fail(w, r, messages.New(messages.BadRequest, err.Error()), 0)
			return
		}
		dirs = append(dirs, dir)
	}
	var ids []uint64
	for _, name := range req.Scenarios {
		sc, err := s.Sessions.Scenario(name)
		if err != nil {
			s.fail(w, r, messages.New(messages.ScenarioNotFound, name), 0)
			return
		}
		ids = append(ids, sc.ID)
	}
	if req.Name == "" {
		names := append(slices.Clone(req.Scenarios), req.Directories...)
		req.Name = "backup of " + names[0]
		if len(names) > 1 {
			req.Name += fmt.Sprintf(" and %d more", len(names)-1)
		}
	}
	spec, _ := json.Marshal(backup.Spec{Scenarios: req.Scenarios, Directories: dirs, Full: req.Full, Multistream: req.Multistream, Protected: req.Password != ""})
	j, err := s.submit(jobs.Submission{Kind: req.Kind, Name: req.Name, Owner: "admin", ScenarioIDs: ids,
		Schedule: req.Schedule, Spec: spec, Hold: req.Hold}, req.Password)
	if err != nil {
		s.failRecorded(w, r, jobErr(req.Name, err))
		return
	}
	writeJSON(w, http.StatusCreated, s.jobOut(j, false))
}

func (s *Server) submitRestore(w http.ResponseWriter, r *http.Request, req JobRequest) {
	spec := restorejob.Spec{Session: req.Session, Paths: req.Paths, Tree: req.Tree, Destination: req.Destination, Policy: req.Policy,
		ContinueIfRunning: req.ContinueIfRunning}
	if err := spec.Check(); err != nil {
		s.fail(w, r, messages.New(messages.BadRequest, err.Error()), 0)
		return
	}
	var ids []uint64
	what := fmt.Sprintf("session %d", req.Session)
	if req.Tree != nil {
		what = req.Tree.Host + ":" + req.Tree.Path
	} else {
		sess, err := s.Sessions.Session(req.Session)
		if err != nil {
			s.fail(w, r, messages.New(messages.BadRequest, fmt.Sprintf("session: no session %d", req.Session)), 0)
			return
		}
		ids = []uint64{sess.ScenarioID}
	}
	if req.Name == "" {
		req.Name = fmt.Sprintf("restore of %s to %s", what, req.Destination)
	}
	body, _ := json.Marshal(spec)
	j, err := s.submit(jobs.Submission{Kind: restorejob.Kind, Name: req.Name, Owner: "admin", ScenarioIDs: ids,
		Schedule: req.Schedule, Spec: body, Hold: req.Hold}, req.Password)
	if err != nil {
		s.failRecorded(w, r, jobErr(req.Name, err))
		return
	}
	writeJSON(w, http.StatusCreated, s.jobOut(j, false))
}

// submit queues a job. A job with a password is submitted held, given its
// password (in memory only), and then released unless it was asked held,
// so that it never runs without it.
func (s *Server) submit(sub jobs.Submission, password string) (jobs.Job, error) {
	if password == "" {
		return s.Jobs.Submit(sub)
	}
	if s.Secrets == nil {
		return jobs.Job{}, messages.New(messages.BadRequest, "password: this appliance does not keep job passwords")
	}
	hold := sub.Hold
	sub.Hold = true
	j, err := s.Jobs.Submit(sub)
	if err != nil {
		return j, err
	}
	s.Secrets.Set(j.ID, password)
	if hold {
		return j, nil
	}
	if err := s.Jobs.Release(j.ID); err != nil {
		return j, err
	}
	return s.Jobs.Get(j.ID)
}

// FileVersion is one backed-up version of a file, or a directory of the
// tree (Session 0 when it has no version of its own).
type FileVersion struct {
	Host    string    `json:"host"`
	Path    string    `json:"path"`
	Session uint64    `json:"session,omitempty"`
	Size    uint64    `json:"size"`
	MTime   time.Time `json:"mtime,omitzero"`
	// Finished is when the session holding the version ended.
	Finished time.Time `json:"finished,omitzero"`
}

// hostPath reads the host and path query parameters of the tree routes.
func (s *Server) hostPath(w http.ResponseWriter, r *http.Request) (host, p string, ok bool) {
	host, p = r.URL.Query().Get("host"), r.URL.Query().Get("path")
	if host == "" || !strings.HasPrefix(p, "/") || path.Clean(p) != p {
		s.fail(w, r, messages.New(messages.BadRequest, "host and path: give the master host and a clean absolute path, such as host=fs01&path=/srv/data"), 0)
		return "", "", false
	}
	return host, p, true
}

func (s *Server) versionsOut(list []catalog.FileVersion) []FileVersion {
	out := make([]FileVersion, 0, len(list))
	finished := map[uint64]time.Time{}
	for _, v := range list {
		fv := FileVersion{Host: v.Host, Path: v.Path, Session: v.SessionID, Size: v.Size, MTime: v.MTime}
		if v.SessionID != 0 {
			t, ok := finished[v.SessionID]
			if !ok {
				if sess, err := s.Sessions.Session(v.SessionID); err == nil {
					t = sess.Finished
				}
				finished[v.SessionID] = t
			}
			fv.Finished = t
		}
		out = append(out, fv)
	}
	return out
}

// fileTree lists a directory of a master host as backed up: each child at
// its latest version.
func (s *Server) fileTree(w http.ResponseWriter, r *http.Request) {
	host, p, ok := s.hostPath(w, r)
	if !ok {
		return
	}
	list, err := s.Sessions.FileTree(host, p)
	if err != nil {
		s.failRecorded(w, r, messages.Wrap(err, messages.CatalogCorrupt, err))
		return
	}
	writeJSON(w, http.StatusOK, s.versionsOut(list))
}

// fileVersions lists every backed-up version of one file, newest first.
func (s *Server) fileVersions(w http.ResponseWriter, r *http.Request) {
	host, p, ok := s.hostPath(w, r)
	if !ok {
		return
	}
	list, err := s.Sessions.FileVersions(host, p)
	if err != nil {
		s.failRecorded(w, r, messages.Wrap(err, messages.CatalogCorrupt, err))
		return
	}
	writeJSON(w, http.StatusOK, s.versionsOut(list))
}

// FileFound is one backed-up file a query found: its latest version.
type FileFound struct {
	Host    string    `json:"host"`
	Path    string    `json:"path"`
	Session uint64    `json:"session"`
	Size    uint64    `json:"size"`
	MTime   time.Time `json:"mtime"`
}

func (s *Server) findFiles(w http.ResponseWriter, r *http.Request) {
	pattern := r.URL.Query().Get("name")
	if pattern == "" {
		s.fail(w, r, messages.New(messages.BadRequest, "name: missing: give a file name or pattern such as *.xlsx"), 0)
		return
	}
	list, err := s.Sessions.FindByName(pattern, 1000)
	if err != nil {
		s.fail(w, r, messages.New(messages.BadRequest, "name: "+err.Error()), 0)
		return
	}
	out := []FileFound{}
	for _, v := range list {
		out = append(out, FileFound{Host: v.Host, Path: v.Path, Session: v.SessionID, Size: v.Size, MTime: v.MTime})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	var states []catalog.JobState
	if v := r.URL.Query().Get("state"); v != "" {
		states = append(states, catalog.JobState(v))
	}
	list, err := s.Jobs.List(states...)
	if err != nil {
		s.fail(w, r, jobErr("", err), 0)
		return
	}
	out := []Job{}
	for _, j := range list {
		out = append(out, s.jobOut(j, false))
	}
	writeJSON(w, http.StatusOK, out)
}

func jobID(r *http.Request) (uint64, error) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		return 0, messages.New(messages.BadRequest, fmt.Sprintf("job: %q is not a job number", r.PathValue("id")))
	}
	return id, nil
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	id, err := jobID(r)
	if err != nil {
		s.fail(w, r, err, 0)
		return
	}
	j, err := s.Jobs.Get(id)
	if err != nil {
		s.fail(w, r, jobErr(r.PathValue("id"), err), 0)
		return
	}
	writeJSON(w, http.StatusOK, s.jobOut(j, true))
}

func (s *Server) jobAction(w http.ResponseWriter, r *http.Request) {
	id, err := jobID(r)
	if err != nil {
		s.fail(w, r, err, 0)
		return
	}
	switch r.PathValue("action") {
	case "hold":
		err = s.Jobs.Hold(id)
	case "release":
		err = s.Jobs.Release(id)
	case "cancel":
		err = s.Jobs.Cancel(id)
	case "rerun":
		_, err = s.Jobs.Rerun(id)
	default:
		s.fail(w, r, notFound(r), http.StatusNotFound)
		return
	}
	if err != nil {
		s.failRecorded(w, r, jobErr(r.PathValue("id"), err))
		return
	}
	s.getJob(w, r)
}

func (s *Server) deleteJob(w http.ResponseWriter, r *http.Request) {
	id, err := jobID(r)
	if err != nil {
		s.fail(w, r, err, 0)
		return
	}
	if err := s.Jobs.Delete(id); err != nil {
		s.failRecorded(w, r, jobErr(r.PathValue("id"), err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// JobChange is the body of PATCH /api/v1/jobs/{id}: what to change of a
// job that is not running; absent fields stay as they are.
type JobChange struct {
	Name     *string `json:"name,omitempty"`
	Schedule *string `json:"schedule,omitempty"`
	// Backup jobs: the scenarios and folders to back up.
	Scenarios   *[]string `json:"scenarios,omitempty"`
	Directories *[]string `json:"directories,omitempty"`
}

func (s *Server) modifyJob(w http.ResponseWriter, r *http.Request) {
	id, err := jobID(r)
	if err != nil {
		s.fail(w, r, err, 0)
		return
	}
	var req JobChange
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err, 0)
		return
	}
	c := jobs.Change{Name: req.Name, Schedule: req.Schedule}
	if req.Scenarios != nil || req.Directories != nil {
		j, err := s.Jobs.Get(id)
		if err != nil {
			s.fail(w, r, jobErr(r.PathValue("id"), err), 0)
			return
		}
		if j.Kind != backup.Kind {
			s.fail(w, r, messages.New(messages.BadRequest, fmt.Sprintf("scenarios: job %d is a %s job; only a backup job backs up scenarios and folders", id, j.Kind)), 0)
			return
		}
		var spec backup.Spec
		if err := json.Unmarshal(j.Spec, &spec); err != nil {
			s.failRecorded(w, r, messages.Wrap(err, messages.CatalogCorrupt, err))
			return
		}
		if req.Scenarios != nil {
			for _, name := range *req.Scenarios {
				if _, err := s.Sessions.Scenario(name); err != nil {
					s.fail(w, r, messages.New(messages.ScenarioNotFound, name), 0)
					return
				}
			}
			spec.Scenarios = *req.Scenarios
		}
		if req.Directories != nil {
			spec.Directories = nil
			for _, d := range *req.Directories {
				dir, err := backup.ParseDirectory(d)
				if err != nil {
					s.fail(w, r, messages.New(messages.BadRequest, err.Error()), 0)
					return
				}
				spec.Directories = append(spec.Directories, dir)
			}
		}
		if len(spec.Scenarios)+len(spec.Directories) == 0 {
			s.fail(w, r, messages.New(messages.BadRequest, "scenarios: a backup job needs at least one scenario or folder"), 0)
			return
		}
		raw, _ := json.Marshal(spec)
		c.Spec = &raw
	}
	if _, err := s.Jobs.Modify(id, c); err != nil {
		s.failRecorded(w, r, jobErr(r.PathValue("id"), err))
		return
	}
	s.getJob(w, r)
}
