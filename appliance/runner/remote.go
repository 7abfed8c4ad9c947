package runner

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/holdfast/holdfast/agent/control"
	"github.com/holdfast/holdfast/agent/replication"
	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/messages"
)

// Remote says how the runner reaches hosts other than the appliance. A
// scenario whose master is an enrolled agent is run by that agent: the
// runner only decides what each host should do (its assignments, which
// agents pull) and shows what they report.
type Remote struct {
	// LocalHosts are the names that mean this appliance.
	LocalHosts []string
	// Self is the appliance's own enrolled name: the name in its
	// certificate, which masters check when the appliance is the replica.
	Self string
	// DataAddress returns where the appliance's own transport receives
	// replication (HOST:PORT), "" when it does not.
	DataAddress func() string
	// StaleAfter is how long a host may stay silent before its roles show
	// Problem; 0 means 30 s.
	StaleAfter time.Duration
}

func (o Remote) staleAfter() time.Duration {
	if o.StaleAfter <= 0 {
		return 30 * time.Second
	}
	return o.StaleAfter
}

// hostReport is the last word from one host.
type hostReport struct {
	seen  time.Time
	data  string                        // its transport's address
	roles map[string]control.RoleStatus // by session
}

func (r *Runner) isLocal(host string) bool {
	return slices.Contains(r.opts.Remote.LocalHosts, host) || host == r.opts.Remote.Self && host != ""
}

// remote reports whether another host takes part in sc, and refuses the
// combinations the runner cannot run.
func (r *Runner) remote(sc catalog.Scenario) (bool, error) {
	any := !r.isLocal(sc.MasterHost)
	for _, rep := range sc.Replicas {
		if !r.isLocal(rep.Host) {
			any = true
		}
	}
	if any && r.isLocal(sc.MasterHost) {
		// The appliance protects other hosts' data; replicating its own
		// directories to an agent is not something it does.
		return true, messages.New(messages.ScenarioTopology, sc.Name,
			"the appliance is the master and a replica is on another host; make the agent holding the data the master")
	}
	return any, nil
}

// sessionName names the flow of root oi to replica ri of scenario id.
func sessionName(id uint64, ri, oi int) string { return fmt.Sprintf("s%d-%d-%d", id, ri, oi) }

var sessionPattern = regexp.MustCompile(`^s([0-9]+)-([0-9]+)-([0-9]+)$`)

func parseSession(s string) (id uint64, ri, oi int, ok bool) {
	m := sessionPattern.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, 0, false
	}
	id, err1 := strconv.ParseUint(m[1], 10, 64)
	ri, err2 := strconv.Atoi(m[2])
	oi, err3 := strconv.Atoi(m[3])
	return id, ri, oi, err1 == nil && err2 == nil && err3 == nil
}

// peerName is the certificate name of host as its peers must see it.
func (r *Runner) peerName(host string) string {
	if r.isLocal(host) {
		return r.opts.Remote.Self
	}
	return host
}

func (r *Runner) sameHost(a, b string) bool {
	return a == b || r.isLocal(a) && r.isLocal(b)
}

// dataAddress is where host receives replication, "" while unknown.
func (r *Runner) dataAddress(host string) string {
	if r.isLocal(host) {
		if r.opts.Remote.DataAddress == nil {
			return ""
		}
		return r.opts.Remote.DataAddress()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if h := r.hosts[host]; h != nil {
		return h.data
	}
	return ""
}

// Assignments are the roles host has in the running remote scenarios. A
// master role appears only once its replica's address is known.
func (r *Runner) Assignments(host string) control.Assignments {
	r.mu.Lock()
	runs := make([]*scenarioRun, 0, len(r.running))
	for _, run := range r.running {
		if run.remote {
			runs = append(runs, run)
		}
	}
	suspended := make(map[uint64]bool, len(runs))
	diffReq := make(map[uint64]uint64, len(runs))
	for _, run := range runs {
		suspended[run.sc.ID] = run.suspended
		diffReq[run.sc.ID] = run.diffReq
	}
	r.mu.Unlock()

	a := control.Assignments{Masters: []control.MasterRole{}, Replicas: []control.ReplicaRole{}}
	for _, run := range runs {
		sc := run.sc
		for ri, rep := range sc.Replicas {
			for oi, root := range sc.Roots {
				session := sessionName(sc.ID, ri, oi)
				if r.sameHost(sc.MasterHost, host) {
					if addr := r.dataAddress(rep.Host); addr != "" {
						a.Masters = append(a.Masters, control.MasterRole{
							Scenario: sc.Name, Session: session, Root: root,
							Peer:          r.peerName(rep.Host) + "@" + addr,
							Suspended:     suspended[sc.ID],
							SpoolMaxBytes: r.opts.SpoolMaxBytes,
							Difference:    diffReq[sc.ID],
							Sync:          sc.SyncMode,
						})
					}
				}
				if r.sameHost(rep.Host, host) {
					a.Replicas = append(a.Replicas, control.ReplicaRole{
						Scenario: sc.Name, Session: session, Master: r.peerName(sc.MasterHost),
						Target: ReplicaDir(rep.Target, sc.Roots, root),
					})
				}
			}
		}
	}
	return a
}

// Report records what host says about its roles, and puts its events in
// the activity log with the scenario they belong to.
func (r *Runner) Report(ctx context.Context, host string, rep control.Report) {
	roles := make(map[string]control.RoleStatus, len(rep.Roles))
	for _, s := range rep.Roles {
		roles[s.Session] = s
	}
	r.mu.Lock()
	r.hosts[host] = &hostReport{seen: time.Now(), data: rep.DataAddress, roles: roles}
	for _, d := range rep.Differences {
		id, _, _, ok := parseSession(d.Session)
		if run := r.running[id]; ok && run != nil && run.diffReq != 0 && d.Request == run.diffReq {
			run.diffs[d.Session] = d
		}
	}
	r.mu.Unlock()
	ctx = activity.WithHost(ctx, host)
	if rep.EventsDropped > 0 {
		r.rec.Record(ctx, messages.AgentEventsDropped, host, rep.EventsDropped)
	}
	for _, e := range rep.Events {
		r.recordEvent(ctx, host, e)
	}
}

// noticeKinds maps an agent's event back to the engine notice it came from,
// so one function (notifier) gives every notice its message code, whether
// the engine ran here or on an agent.
var noticeKinds = map[control.EventKind]replication.NoticeKind{
	control.EventStarted:         replication.NoticeStarted,
	control.EventSyncDone:        replication.NoticeSyncDone,
	control.EventSpoolOverflow:   replication.NoticeSpoolOverflow,
	control.EventCaptureOverflow: replication.NoticeCaptureOverflow,
	control.EventUnwatched:       replication.NoticeUnwatched,
	control.EventNoSpace:         replication.NoticeNoSpace,
	control.EventEscape:          replication.NoticeEscape,
	control.EventError:           replication.NoticeError,
	control.EventRecovered:       replication.NoticeRecovered,
	control.EventSpoolRecovered:  replication.NoticeSpoolRecovered,
	control.EventNotAuthorized:   replication.NoticeNotAuthorized,
}

func (r *Runner) recordEvent(ctx context.Context, host string, e control.Event) {
	name, root, where := r.describeSession(host, e.Session)
	var err error
	if e.Error != "" {
		err = errors.New(e.Error)
	}
	switch e.Kind {
	case control.EventRoleFailed:
		r.rec.Record(ctx, messages.ReplicaRoleFailed, name, host, err)
		return
	}
	kind, ok := noticeKinds[e.Kind]
	if !ok {
		kind = replication.NoticeError
		if err == nil {
			err = fmt.Errorf("event %q from %s", e.Kind, host)
		}
	}
	n := replication.Notice{Kind: kind, Path: e.Path, Text: e.Text, Err: err}
	if e.Sync != nil {
		n.Sync = *e.Sync
	}
	r.notifierIn(ctx, name, root, where)(n)
}

// describeSession finds the scenario, root and replica a session stands
// for; unknown sessions (a scenario deleted meanwhile) are named as such.
func (r *Runner) describeSession(host, session string) (name, root, where string) {
	id, ri, oi, ok := parseSession(session)
	if !ok {
		return "(session " + session + " from " + host + ")", "", ""
	}
	r.mu.Lock()
	var sc catalog.Scenario
	found := false
	for _, run := range r.running {
		if run.sc.ID == id {
			sc, found = run.sc, true
		}
	}
	r.mu.Unlock()
	if !found || ri >= len(sc.Replicas) || oi >= len(sc.Roots) {
		return "(session " + session + " from " + host + ")", "", ""
	}
	rep := sc.Replicas[ri]
	return sc.Name, sc.Roots[oi], rep.Host + ":" + ReplicaDir(rep.Target, sc.Roots, sc.Roots[oi])
}

// remoteStatus builds a remote scenario's pairs from the hosts' reports.
// The master's engine is the authority on a pair; a replica's report adds
// nothing the master does not know, except that it is alive.
func (r *Runner) remoteStatus(run *scenarioRun) []PairStatus {
	sc := run.sc
	stale := r.opts.Remote.staleAfter()
	now := time.Now()
	var pairs []PairStatus
	for ri, rep := range sc.Replicas {
		for oi, root := range sc.Roots {
			session := sessionName(sc.ID, ri, oi)
			ps := PairStatus{Root: root, ReplicaDir: rep.Host + ":" + ReplicaDir(rep.Target, sc.Roots, root)}
			ps.Status = r.masterStatus(sc, rep.Host, session, now, stale)
			pairs = append(pairs, ps)
		}
	}
	return pairs
}

func (r *Runner) masterStatus(sc catalog.Scenario, replicaHost, session string, now time.Time, stale time.Duration) replication.Status {
	problem := func(format string, args ...any) replication.Status {
		return replication.Status{Phase: replication.PhaseProblem, Problem: fmt.Sprintf(format, args...)}
	}
	if r.dataAddress(replicaHost) == "" {
		return problem("waiting for replica host %s to report where it receives replication", replicaHost)
	}
	r.mu.Lock()
	h := r.hosts[r.hostKey(sc.MasterHost)]
	var (
		st   control.RoleStatus
		have bool
		seen time.Time
	)
	if h != nil {
		st, have = h.roles[session]
		seen = h.seen
	}
	r.mu.Unlock()
	switch {
	case h == nil:
		return problem("master agent %s has not reported since the appliance started", sc.MasterHost)
	case now.Sub(seen) > stale:
		return problem("master agent %s has not reported since %s", sc.MasterHost, seen.Format(time.RFC3339))
	case !have:
		return replication.Status{Phase: replication.PhaseStarting}
	}
	return st.Status
}

// hostKey is the key of host in r.hosts: reports from the appliance itself
// are filed under Self.
func (r *Runner) hostKey(host string) string {
	if r.isLocal(host) {
		return r.opts.Remote.Self
	}
	return host
}

// remoteDifference asks the master agent for the difference report of each
// root and replica, and waits up to limit for the answers: only the master
// can read its own tree, and only it can ask its replicas.
func (r *Runner) remoteDifference(run *scenarioRun, limit time.Duration) (Difference, error) {
	sc := run.sc
	r.mu.Lock()
	req := uint64(time.Now().UnixNano()) // never a number an agent answered before a restart
	run.diffReq, run.diffs = req, map[string]control.DifferenceReport{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if run.diffReq == req {
			run.diffReq, run.diffs = 0, nil
		}
		r.mu.Unlock()
	}()
	want := len(sc.Replicas) * len(sc.Roots)
	deadline := time.Now().Add(limit)
	for {
		r.mu.Lock()
		got := make(map[string]control.DifferenceReport, len(run.diffs))
		for k, v := range run.diffs {
			got[k] = v
		}
		r.mu.Unlock()
		if len(got) >= want {
			return differenceOf(sc, got)
		}
		if time.Now().After(deadline) {
			return Difference{}, messages.New(messages.ReplicationFailed, sc.Name,
				fmt.Errorf("master agent %s answered %d of %d difference reports within %s; check that it runs ('holdfast scenario status %s')", sc.MasterHost, len(got), want, limit, sc.Name))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func differenceOf(sc catalog.Scenario, got map[string]control.DifferenceReport) (Difference, error) {
	var out Difference
	for ri, rep := range sc.Replicas {
		for oi, root := range sc.Roots {
			d := got[sessionName(sc.ID, ri, oi)]
			dir := rep.Host + ":" + ReplicaDir(rep.Target, sc.Roots, root)
			if d.Error != "" {
				return Difference{}, messages.New(messages.ReplicationFailed, sc.Name, fmt.Errorf("difference report of %s to %s: %s", root, dir, d.Error))
			}
			for _, e := range d.Entries {
				out.Entries = append(out.Entries, DifferenceEntry{Root: root, ReplicaDir: dir, Path: e.Path, Kind: e.Kind, Detail: e.Detail})
			}
			if d.LeftOut > 0 {
				out.Entries = append(out.Entries, DifferenceEntry{Root: root, ReplicaDir: dir, Kind: "left out",
					Detail: fmt.Sprintf("%d more differences not listed", d.LeftOut)})
			}
		}
	}
	return out, nil
}
