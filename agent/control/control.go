// Package control is the conversation between an agent and its appliance:
// the agent asks which replication roles it has (its assignments) and
// reports how they stand. Agents pull, the appliance never calls them: a
// branch office's agent needs only an outgoing connection to the data
// center, and an agent that restarts simply asks again.
//
// Both directions are JSON over the appliance's agent listener, inside
// mutual TLS; the appliance knows the caller from its certificate, so no
// message names its sender. Decoders bound every list and string, because
// either side may be a stranger's program.
package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/replication"
)

// Routes on the appliance's agent listener.
const (
	AssignmentsPath = "/agent/v1/assignments"
	ReportPath      = "/agent/v1/report"
)

// Limits on what either side accepts.
const (
	MaxBodyBytes = 4 << 20
	MaxRoles     = 4096
	MaxEvents    = 1024
	maxText      = 4096
)

// Assignments are every role one host has. An empty list means: run
// nothing (stop what runs).
type Assignments struct {
	Masters  []MasterRole  `json:"masters"`
	Replicas []ReplicaRole `json:"replicas"`
	// Tasks are data tasks waiting for this host or running on it; one
	// that disappears from the list is to be abandoned.
	Tasks []Task `json:"tasks,omitempty"`
}

// MasterRole is one master root replicated to one replica.
type MasterRole struct {
	Scenario  string `json:"scenario"`
	Session   string `json:"session"` // names the flow on the transport; unique per (scenario, replica, root)
	Root      string `json:"root"`    // absolute directory on the master
	Peer      string `json:"peer"`    // the replica's transport address, NAME@HOST:PORT
	Suspended bool   `json:"suspended,omitempty"`
	// SpoolMaxBytes caps the master's spool for this root; 0 is the
	// agent's default.
	SpoolMaxBytes int64 `json:"spool_max_bytes,omitempty"`
	// Sync is how synchronization sends files: "auto", "file" or
	// "block" ("" is auto).
	Sync string `json:"sync,omitempty"`
	// Difference, when not 0, asks for a difference report of this role,
	// answered once per number in a Report's Differences.
	Difference uint64 `json:"difference,omitempty"`
}

// ReplicaRole is one session the host receives and applies.
type ReplicaRole struct {
	Scenario string `json:"scenario"`
	Session  string `json:"session"`
	Master   string `json:"master"` // the only host allowed to send on the session
	Target   string `json:"target"` // absolute directory that mirrors the root
}

// Report is what an agent tells the appliance about itself.
type Report struct {
	// DataAddress is where this host's transport receives replication
	// (HOST:PORT), empty if it has no replica role.
	DataAddress string       `json:"data_address,omitempty"`
	Roles       []RoleStatus `json:"roles"`
	Events      []Event      `json:"events,omitempty"`
	// EventsDropped counts events the agent could not keep while the
	// appliance was unreachable.
	EventsDropped int `json:"events_dropped,omitempty"`
	// Differences answer the difference reports asked for.
	Differences []DifferenceReport `json:"differences,omitempty"`
}

// MaxDifferences bounds the entries of one difference report; the rest is
// counted as left out.
const MaxDifferences = 2000

// DifferenceReport is what differs between a master root and its replica,
// as the master agent found it.
type DifferenceReport struct {
	Session string            `json:"session"`
	Request uint64            `json:"request"`
	Entries []DifferenceEntry `json:"entries"`
	LeftOut int               `json:"left_out,omitempty"` // entries beyond MaxDifferences
	Error   string            `json:"error,omitempty"`    // why no report could be made
}

// DifferenceEntry is one difference.
type DifferenceEntry struct {
	Path   string `json:"path"`
	Kind   string `json:"kind"`
	Detail string `json:"detail,omitempty"`
}

// RoleStatus is how one role stands.
type RoleStatus struct {
	Session string             `json:"session"`
	Role    string             `json:"role"` // "master" or "replica"
	Status  replication.Status `json:"status"`
	// LastApplied is, for a replica role, the highest change applied.
	LastApplied uint64 `json:"last_applied,omitempty"`
}

// Event is something to put in the appliance's activity log.
type Event struct {
	Time    time.Time `json:"time"`
	Session string    `json:"session"`
	Kind    EventKind `json:"kind"`
	Path    string    `json:"path,omitempty"`
	Text    string    `json:"text,omitempty"`
	Error   string    `json:"error,omitempty"`
	// Sync carries the figures of a finished synchronization.
	Sync *replication.SyncStats `json:"sync,omitempty"`
}

// EventKind names what an Event reports. The appliance maps each to a
// message code; unknown kinds are recorded as failures, never dropped.
type EventKind string

const (
	EventStarted         EventKind = "started"
	EventSyncDone        EventKind = "sync-done"
	EventSpoolOverflow   EventKind = "spool-overflow"
	EventCaptureOverflow EventKind = "capture-overflow"
	EventUnwatched       EventKind = "unwatched"
	EventNoSpace         EventKind = "no-space"
	EventEscape          EventKind = "escape"
	EventError           EventKind = "error"
	EventRecovered       EventKind = "recovered"
	EventSpoolRecovered  EventKind = "spool-recovered"
	EventNotAuthorized   EventKind = "not-authorized"
	EventRoleFailed      EventKind = "role-failed" // a role could not start; Error says why
)

// eventKinds maps engine notices to event kinds.
var eventKinds = map[replication.NoticeKind]EventKind{
	replication.NoticeStarted:         EventStarted,
	replication.NoticeSyncDone:        EventSyncDone,
	replication.NoticeSpoolOverflow:   EventSpoolOverflow,
	replication.NoticeCaptureOverflow: EventCaptureOverflow,
	replication.NoticeUnwatched:       EventUnwatched,
	replication.NoticeNoSpace:         EventNoSpace,
	replication.NoticeEscape:          EventEscape,
	replication.NoticeError:           EventError,
	replication.NoticeRecovered:       EventRecovered,
	replication.NoticeSpoolRecovered:  EventSpoolRecovered,
	replication.NoticeNotAuthorized:   EventNotAuthorized,
}

// Printable makes s fit a report: control characters and invalid UTF-8
// are escaped as Go does in quoted strings, and the result is cut to the
// length a report accepts. File names may hold any byte but '/' and NUL;
// one odd name must not make every report of its agent unacceptable.
func Printable(s string) string {
	if checkText("", s) != nil {
		q := strconv.Quote(s)
		s = q[1 : len(q)-1]
	}
	if len(s) > maxText {
		s = strings.ToValidUTF8(s[:maxText-3], "") + "..."
	}
	return s
}

// EventFromNotice turns an engine's notice into an event of session.
func EventFromNotice(session string, n replication.Notice, now time.Time) Event {
	e := Event{Time: now, Session: session, Kind: eventKinds[n.Kind], Path: Printable(n.Path), Text: Printable(n.Text)}
	if e.Kind == "" {
		e.Kind = EventError
	}
	if n.Err != nil {
		e.Error = Printable(n.Err.Error())
	}
	if n.Kind == replication.NoticeSyncDone {
		s := n.Sync
		e.Sync = &s
	}
	return e
}

// DecodeAssignments reads and checks assignments from an appliance.
func DecodeAssignments(r io.Reader) (Assignments, error) {
	var a Assignments
	if err := decode(r, &a); err != nil {
		return Assignments{}, fmt.Errorf("decode assignments: %w", err)
	}
	if err := a.Check(); err != nil {
		return Assignments{}, fmt.Errorf("decode assignments: %w", err)
	}
	return a, nil
}

// DecodeReport reads and checks a report from an agent.
func DecodeReport(r io.Reader) (Report, error) {
	var rep Report
	if err := decode(r, &rep); err != nil {
		return Report{}, fmt.Errorf("decode report: %w", err)
	}
	if err := rep.Check(); err != nil {
		return Report{}, fmt.Errorf("decode report: %w", err)
	}
	return rep, nil
}

func decode(r io.Reader, v any) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxBodyBytes+1))
	if err != nil {
		return err
	}
	if len(data) > MaxBodyBytes {
		return fmt.Errorf("body larger than %d bytes", MaxBodyBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}

// Check refuses assignments an agent must not act on: an absolute,
// clean directory for every root and target, a session name usable on a
// transport, and no session twice.
func (a Assignments) Check() error {
	if len(a.Masters)+len(a.Replicas) > MaxRoles {
		return fmt.Errorf("%d roles; at most %d", len(a.Masters)+len(a.Replicas), MaxRoles)
	}
	seen := map[string]bool{}
	session := func(field, s string) error {
		if err := checkSession(s); err != nil {
			return fmt.Errorf("%s.session: %w", field, err)
		}
		if seen[s] {
			return fmt.Errorf("%s.session: %q appears twice", field, s)
		}
		seen[s] = true
		return nil
	}
	for i, m := range a.Masters {
		f := fmt.Sprintf("masters[%d]", i)
		if err := session(f, m.Session); err != nil {
			return err
		}
		if err := checkText(f+".scenario", m.Scenario); err != nil {
			return err
		}
		if err := checkDir(f+".root", m.Root); err != nil {
			return err
		}
		if err := checkText(f+".peer", m.Peer); err != nil || m.Peer == "" {
			return fmt.Errorf("%s.peer: missing or unprintable", f)
		}
		if m.SpoolMaxBytes < 0 {
			return fmt.Errorf("%s.spool_max_bytes: negative", f)
		}
		switch m.Sync {
		case "", "auto", "file", "block":
		default:
			return fmt.Errorf("%s.sync: %q; want auto, file or block", f, m.Sync)
		}
	}
	for i, r := range a.Replicas {
		f := fmt.Sprintf("replicas[%d]", i)
		if err := session(f, r.Session); err != nil {
			return err
		}
		if err := checkText(f+".scenario", r.Scenario); err != nil {
			return err
		}
		if err := checkDir(f+".target", r.Target); err != nil {
			return err
		}
		if err := checkText(f+".master", r.Master); err != nil || r.Master == "" {
			return fmt.Errorf("%s.master: missing or unprintable", f)
		}
	}
	return CheckTasks(a.Tasks)
}

// DecodeTaskResult reads and checks a task's result from an agent.
func DecodeTaskResult(r io.Reader) (TaskResult, error) {
	var res TaskResult
	if err := decode(r, &res); err != nil {
		return TaskResult{}, fmt.Errorf("decode task result: %w", err)
	}
	if err := res.Check(); err != nil {
		return TaskResult{}, fmt.Errorf("decode task result: %w", err)
	}
	return res, nil
}

// Check refuses reports the appliance must not record.
func (r Report) Check() error {
	if len(r.Roles) > MaxRoles {
		return fmt.Errorf("%d roles; at most %d", len(r.Roles), MaxRoles)
	}
	if len(r.Events) > MaxEvents {
		return fmt.Errorf("%d events; at most %d", len(r.Events), MaxEvents)
	}
	if err := checkText("data_address", r.DataAddress); err != nil {
		return err
	}
	for i, s := range r.Roles {
		f := fmt.Sprintf("roles[%d]", i)
		if err := checkSession(s.Session); err != nil {
			return fmt.Errorf("%s.session: %w", f, err)
		}
		if s.Role != "master" && s.Role != "replica" {
			return fmt.Errorf("%s.role: %q; want master or replica", f, s.Role)
		}
		if err := checkText(f+".status.problem", s.Status.Problem); err != nil {
			return err
		}
	}
	for i, e := range r.Events {
		f := fmt.Sprintf("events[%d]", i)
		if err := checkSession(e.Session); err != nil {
			return fmt.Errorf("%s.session: %w", f, err)
		}
		for _, t := range []struct{ name, v string }{{"kind", string(e.Kind)}, {"path", e.Path}, {"text", e.Text}, {"error", e.Error}} {
			if err := checkText(f+"."+t.name, t.v); err != nil {
				return err
			}
		}
	}
	if r.EventsDropped < 0 {
		return errors.New("events_dropped: negative")
	}
	if len(r.Differences) > MaxRoles {
		return fmt.Errorf("%d difference reports; at most %d", len(r.Differences), MaxRoles)
	}
	for i, d := range r.Differences {
		f := fmt.Sprintf("differences[%d]", i)
		if err := checkSession(d.Session); err != nil {
			return fmt.Errorf("%s.session: %w", f, err)
		}
		if len(d.Entries) > MaxDifferences || d.LeftOut < 0 {
			return fmt.Errorf("%s: %d entries (at most %d), %d left out", f, len(d.Entries), MaxDifferences, d.LeftOut)
		}
		if err := checkText(f+".error", d.Error); err != nil {
			return err
		}
		for j, e := range d.Entries {
			for _, t := range []struct{ name, v string }{{"path", e.Path}, {"kind", e.Kind}, {"detail", e.Detail}} {
				if err := checkText(fmt.Sprintf("%s.entries[%d].%s", f, j, t.name), t.v); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// checkSession accepts what a transport accepts as a session name:
// lower-case letters, digits, '.', '_' and '-', at most 64 bytes.
func checkSession(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("%q: want 1 to 64 bytes", s)
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("%q: use lower-case letters, digits, '.', '_' and '-'", s)
		}
	}
	return nil
}

func checkText(field, s string) error {
	if len(s) > maxText {
		return fmt.Errorf("%s: %d bytes; at most %d", field, len(s), maxText)
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || c == '\uFFFD' {
			return fmt.Errorf("%s: contains a control character or invalid UTF-8", field)
		}
	}
	return nil
}

func checkDir(field, d string) error {
	if d == "" || !path.IsAbs(d) || path.Clean(d) != d || len(d) > change.MaxPath {
		return fmt.Errorf("%s: %q is not an absolute, clean path of at most %d bytes", field, d, change.MaxPath)
	}
	return checkText(field, d)
}
