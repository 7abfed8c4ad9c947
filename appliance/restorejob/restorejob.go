// Package restorejob runs restore jobs: it reads backup sessions from the
// disk store and writes the entries asked for — a whole session, some
// files and directories of it by their master paths, or a tree as it stood
// at a time, assembled from whichever sessions hold each file's version —
// to the original location on the master, the original location on the
// replicas (the scenario is stopped first), an alternate folder on this
// appliance, or a folder on any enrolled agent.
//
// Local writes go through agent/restore, which never writes outside its
// destination and applies the operator's overwrite policy; writes on an
// agent go as a task stream (appliance/agenttasks) to the same writer on
// the agent. A damaged chunk or an unwritable entry is reported and
// skipped; the job then ends Incomplete.
package restorejob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/holdfast/holdfast/agent/datastream"
	"github.com/holdfast/holdfast/agent/restore"
	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/agenttasks"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/diskstore"
	"github.com/holdfast/holdfast/appliance/jobs"
	"github.com/holdfast/holdfast/appliance/jobsecrets"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/runner"
)

// Kind is the job kind this package executes.
const Kind = "restore"

// Catalog is the part of the catalog a restore reads.
type Catalog interface {
	Session(id uint64) (catalog.Session, error)
	ScenarioByID(id uint64) (catalog.Scenario, error)
	VersionsBelow(host, p string, fn func(catalog.FileVersion) error) error
}

// Agents writes restores on enrolled agents (appliance/agenttasks.Hub).
type Agents interface {
	Restore(ctx context.Context, host, dir, policy string, src func(put func(datastream.Header, io.Reader) error) error, progress agenttasks.ProgressFunc) (agenttasks.Result, error)
}

// Scenarios stops a scenario before a restore to its replicas.
type Scenarios interface {
	Stop(ctx context.Context, name string) error
}

// Executor runs restore jobs.
type Executor struct {
	Store   *diskstore.Store
	Catalog Catalog
	Rec     activity.Recorder
	// Local reports whether a host name means this appliance.
	Local func(host string) bool
	// Agents reaches other hosts; without it only this appliance's
	// folders are destinations.
	Agents    Agents
	Scenarios Scenarios
	// Granular reports whether a scenario type's entities restore file by
	// file (File Server) or whole only (databases, mail stores).
	Granular func(ctx context.Context, scenarioType string) (bool, error)
	// Secrets holds the session passwords restores were submitted with.
	Secrets *jobsecrets.Secrets
}

var _ jobs.Executor = (*Executor)(nil)

// part is what one session contributes to a restore.
type part struct {
	sess   catalog.Session
	sc     catalog.Scenario // zero when the session's scenario is gone
	stored *diskstore.Session
	pick   func(p string) bool
}

// target is one place a part is written to.
type target struct {
	host string // "" for this appliance
	dir  string
}

func (t target) String() string {
	if t.host == "" {
		return t.dir
	}
	return t.host + ":" + t.dir
}

// tally counts what a restore did.
type tally struct {
	written, skipped, problems int64
	done, total                jobs.Counts
}

// Run restores what the job's spec names.
func (e *Executor) Run(ctx context.Context, job catalog.Job, progress jobs.Progress) (catalog.JobResult, error) {
	ctx = activity.WithJob(ctx, job.ID)
	var spec Spec
	if err := json.Unmarshal(job.Spec, &spec); err != nil {
		return catalog.ResultFailed, fmt.Errorf("restore job %d: unreadable spec: %w", job.ID, err)
	}
	if err := spec.Check(); err != nil {
		return catalog.ResultFailed, fmt.Errorf("restore job %d: %w", job.ID, err)
	}
	start := time.Now()
	password, _ := e.Secrets.Get(job.ID)
	parts, err := e.plan(ctx, spec, password)
	if err != nil {
		return catalog.ResultFailed, err
	}
	var t tally
	type planned struct {
		part
		targets []target
	}
	var work []planned
	for _, p := range parts {
		targets, err := e.targets(spec, p)
		if err != nil {
			return catalog.ResultFailed, err
		}
		work = append(work, planned{p, targets})
		for _, en := range p.stored.Entries() {
			if en.Type == diskstore.TypeFile && p.pick(en.Path) {
				t.total.Files += int64(len(targets))
				t.total.Bytes += en.Size * int64(len(targets))
			}
		}
	}
	if spec.Destination == Replica {
		if err := e.stopScenarios(ctx, spec, parts); err != nil {
			return catalog.ResultFailed, err
		}
	}
	failedTargets, allTargets := 0, 0
	var lastErr error
	for _, w := range work {
		for _, tg := range w.targets {
			if err := ctx.Err(); err != nil {
				return catalog.ResultCanceled, err
			}
			allTargets++
			var err error
			if tg.host == "" {
				err = e.writeLocal(ctx, job, w.part, tg, spec.Policy, &t, progress)
			} else {
				err = e.writeAgent(ctx, job, w.part, tg, spec.Policy, &t, progress)
			}
			if errors.Is(err, context.Canceled) {
				return catalog.ResultCanceled, err
			}
			if err != nil {
				failedTargets++
				lastErr = err
				t.problems++
				e.Rec.Record(ctx, messages.RestoreEntryFailed, tg.String(), job.ID, err)
			}
		}
	}
	var ids []string
	for _, p := range parts {
		ids = append(ids, fmt.Sprint(p.sess.ID))
	}
	what := "session " + strings.Join(ids, ", ")
	if spec.Tree != nil {
		what = fmt.Sprintf("tree %s:%s as of %s (sessions %s)", spec.Tree.Host, spec.Tree.Path, asOfText(spec.Tree.AsOf), strings.Join(ids, ", "))
	}
	summary := fmt.Sprintf("%s to %s: %d entries written, %d kept by the %s policy, %d problems, %d bytes in %s",
		what, spec.Destination, t.written, t.skipped, policyName(spec.Policy), t.problems, t.done.Bytes, time.Since(start).Round(time.Millisecond))
	if failedTargets == allTargets {
		return catalog.ResultFailed, fmt.Errorf("%s: %w", summary, lastErr)
	}
	result := catalog.ResultCompleted
	if t.problems > 0 {
		result = catalog.ResultIncomplete
	}
	e.Rec.Record(ctx, messages.JobFinished, job.ID, job.Name, result, summary)
	return result, nil
}

func asOfText(t time.Time) string {
	if t.IsZero() {
		return "the latest backup"
	}
	return t.UTC().Format(time.RFC3339)
}

// plan finds the sessions to read and what to take from each.
func (e *Executor) plan(ctx context.Context, spec Spec, password string) ([]part, error) {
	if spec.Tree == nil {
		p, err := e.part(spec.Session, password)
		if err != nil {
			return nil, err
		}
		if len(spec.Paths) > 0 {
			if err := e.granular(ctx, p, "a restore of single paths"); err != nil {
				return nil, err
			}
		}
		paths := spec.Paths
		p.pick = func(q string) bool { return selected(q, paths) }
		if !slices.ContainsFunc(p.stored.Entries(), func(en diskstore.Entry) bool { return p.pick(en.Path) }) {
			return nil, fmt.Errorf("session %d holds nothing at %s", p.sess.ID, strings.Join(spec.Paths, ", "))
		}
		return []part{p}, nil
	}
	return e.planTree(ctx, *spec.Tree, password)
}

// planTree picks every file's newest version at or before the tree's
// time, and groups the picks by session. Directories that lead to a
// picked file are taken from the same session, so their metadata comes
// along; sessions are written oldest first, so the newest wins.
func (e *Executor) planTree(ctx context.Context, tr Tree, password string) ([]part, error) {
	sessions := map[uint64]catalog.Session{}
	chosen := map[uint64][]string{} // session -> files
	last := ""
	err := e.Catalog.VersionsBelow(tr.Host, tr.Path, func(v catalog.FileVersion) error {
		if v.Path == last {
			return nil // an older version of a file already chosen
		}
		s, ok := sessions[v.SessionID]
		if !ok {
			var err error
			if s, err = e.Catalog.Session(v.SessionID); err != nil {
				return fmt.Errorf("session %d of %s: %w", v.SessionID, v.Path, err)
			}
			sessions[v.SessionID] = s
		}
		if s.Stored == "" || !tr.AsOf.IsZero() && s.Finished.After(tr.AsOf) {
			return nil
		}
		last = v.Path
		chosen[v.SessionID] = append(chosen[v.SessionID], v.Path)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(chosen) == 0 {
		return nil, fmt.Errorf("no backup of %s:%s finished by %s: list what there is with 'holdfast restore tree %s:%s'",
			tr.Host, tr.Path, asOfText(tr.AsOf), tr.Host, path.Dir(tr.Path))
	}
	ids := make([]uint64, 0, len(chosen))
	for id := range chosen {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var parts []part
	for _, id := range ids {
		p, err := e.part(id, password)
		if err != nil {
			return nil, err
		}
		if err := e.granular(ctx, p, "a restore by tree"); err != nil {
			return nil, err
		}
		want := map[string]bool{}
		for _, f := range chosen[id] {
			want[f] = true
			for d := path.Dir(f); d != p.sess.Entity && strings.HasPrefix(d, p.sess.Entity+"/"); d = path.Dir(d) {
				want[d] = true
			}
		}
		p.pick = func(q string) bool { return want[q] }
		parts = append(parts, p)
	}
	return parts, nil
}

// part opens one session; password opens a protected one.
func (e *Executor) part(id uint64, password string) (part, error) {
	sess, err := e.Catalog.Session(id)
	if err != nil {
		return part{}, fmt.Errorf("session %d: %w", id, err)
	}
	if sess.Stored == "" {
		return part{}, fmt.Errorf("session %d has no disk-store copy", sess.ID)
	}
	p := part{sess: sess}
	if sess.ScenarioID != 0 {
		if p.sc, err = e.Catalog.ScenarioByID(sess.ScenarioID); err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return part{}, fmt.Errorf("scenario of session %d: %w", id, err)
		}
	}
	if p.stored, err = e.Store.OpenSessionWithPassword(sess.Stored, password); err != nil {
		return part{}, fmt.Errorf("open stored session %s: %w", sess.Stored, err)
	}
	return p, nil
}

// granular refuses a partial restore of an entity that restores whole.
func (e *Executor) granular(ctx context.Context, p part, what string) error {
	if e.Granular == nil || p.sc.Type == "" {
		return nil
	}
	ok, err := e.Granular(ctx, p.sc.Type)
	if err != nil {
		return fmt.Errorf("scenario type %s of session %d: %w", p.sc.Type, p.sess.ID, err)
	}
	if !ok {
		return messages.New(messages.RestoreWholeOnly, p.sess.ID, p.sc.Type, p.sess.Entity, what+" is not possible")
	}
	return nil
}

// targets says where a part goes.
func (e *Executor) targets(spec Spec, p part) ([]target, error) {
	local := func(host string) string {
		if host == "" || e.Local != nil && e.Local(host) {
			return ""
		}
		return host
	}
	host, dir, err := ParseDestination(spec.Destination)
	if err != nil {
		return nil, err
	}
	var out []target
	switch dir {
	case Original:
		out = []target{{host: local(p.sess.MasterHost), dir: p.sess.Entity}}
	case Replica:
		if p.sc.ID == 0 {
			return nil, fmt.Errorf("session %d: its scenario no longer exists, so it has no replica: restore to a folder", p.sess.ID)
		}
		for _, rep := range p.sc.Replicas {
			out = append(out, target{host: local(rep.Host), dir: runner.ReplicaDir(rep.Target, p.sc.Roots, p.sess.Entity)})
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("scenario %s has no replica", p.sc.Name)
		}
	default:
		out = []target{{host: local(host), dir: dir}}
	}
	for _, t := range out {
		if t.host != "" && e.Agents == nil {
			return nil, fmt.Errorf("restore to %s: this appliance cannot reach agents", t)
		}
	}
	return out, nil
}

// stopScenarios stops the scenarios whose replicas the restore writes, so
// that replication does not overwrite what is restored.
func (e *Executor) stopScenarios(ctx context.Context, spec Spec, parts []part) error {
	done := map[uint64]bool{}
	for _, p := range parts {
		if done[p.sc.ID] || e.Scenarios == nil {
			continue
		}
		done[p.sc.ID] = true
		err := e.Scenarios.Stop(ctx, p.sc.Name)
		var me *messages.Error
		if errors.As(err, &me) && me.Code == messages.ScenarioNotRunning {
			err = nil
		}
		switch {
		case err == nil:
			var hosts []string
			for _, r := range p.sc.Replicas {
				hosts = append(hosts, r.Host)
			}
			e.Rec.Record(ctx, messages.RestoreReplicaStopped, p.sc.Name, p.sess.ID, strings.Join(hosts, ", "))
		case spec.ContinueIfRunning:
			e.Rec.Record(ctx, messages.RestoreReplicaRunning, p.sc.Name, err)
		default:
			return messages.Wrap(err, messages.RestoreCannotStop, p.sc.Name, p.sc.ID)
		}
	}
	return nil
}

// relative is an entry's path below its session's root, or false for the
// root itself and for entries outside it.
func relative(sess catalog.Session, p string) (string, bool, error) {
	rel, err := filepath.Rel(sess.Entity, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false, fmt.Errorf("not below the session's root %s", sess.Entity)
	}
	return filepath.ToSlash(rel), rel != ".", nil
}

// writeLocal writes a part into a folder of this appliance. The files'
// content is read ahead (decoded while the file before is written), and
// the writer syncs its files a batch at a time: an entry Put accepted can
// still fail when its batch is flushed, and is then counted and recorded
// as a problem like one Put refused.
func (e *Executor) writeLocal(ctx context.Context, job catalog.Job, p part, tg target, policy string, t *tally, progress jobs.Progress) error {
	failed := func(fe *restore.EntryError) {
		t.written-- // counted when Put accepted it
		t.problems++
		e.Rec.Record(ctx, messages.RestoreEntryFailed, path.Join(p.sess.Entity, fe.Entry.Path), job.ID, fe.Err)
	}
	w, err := restore.Open(tg.dir, restore.Options{Policy: restore.Policy(policy), Owners: true, Batch: true, Failed: failed})
	if err != nil {
		return err
	}
	var files []string
	for _, en := range p.stored.Entries() {
		if en.Type == diskstore.TypeFile && p.pick(en.Path) {
			files = append(files, en.Path)
		}
	}
	ahead := p.stored.ReadAhead(files, 0)
	defer ahead.Close()
	err = e.each(ctx, job, p, t, func(en diskstore.Entry, rel string) error {
		out, err := e.put(w, ahead.Open, en, rel)
		if err != nil {
			t.problems++
			e.Rec.Record(ctx, messages.RestoreEntryFailed, en.Path, job.ID, err)
			return nil
		}
		if out.Action == restore.Skipped {
			t.skipped++
		} else {
			t.written++
		}
		if en.Type == diskstore.TypeFile {
			t.done.Files++
			t.done.Bytes += en.Size
			progress.Set(t.done, t.total)
		}
		return nil
	})
	if err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// each calls fn with every entry the part picks and its path below the
// session's root; an entry outside the root is a problem, the root itself
// (the destination) is left out. It stops at fn's error or ctx's end.
func (e *Executor) each(ctx context.Context, job catalog.Job, p part, t *tally, fn func(en diskstore.Entry, rel string) error) error {
	for _, en := range p.stored.Entries() {
		if !p.pick(en.Path) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, ok, err := relative(p.sess, en.Path)
		if err != nil {
			t.problems++
			e.Rec.Record(ctx, messages.RestoreEntryFailed, en.Path, job.ID, err)
			continue
		}
		if !ok {
			continue
		}
		if err := fn(en, rel); err != nil {
			return err
		}
	}
	return nil
}

// writeAgent streams a part to an agent, which writes it through the same
// confined writer there.
func (e *Executor) writeAgent(ctx context.Context, job catalog.Job, p part, tg target, policy string, t *tally, progress jobs.Progress) error {
	base := t.done
	src := func(put func(datastream.Header, io.Reader) error) error {
		return e.each(ctx, job, p, t, func(en diskstore.Entry, rel string) error {
			h := datastream.Header{Path: rel, Mode: unixMode(en.Mode), UID: en.UID, GID: en.GID, MTime: en.ModTime.UnixNano(), Target: en.Target}
			var content io.Reader
			var rc io.ReadCloser
			switch en.Type {
			case diskstore.TypeDir:
				h.Type = datastream.Dir
			case diskstore.TypeSymlink:
				h.Type = datastream.Symlink
			default:
				h.Type, h.Size = datastream.File, en.Size
				var err error
				if rc, err = p.stored.Open(en.Path); err != nil {
					t.problems++
					e.Rec.Record(ctx, messages.RestoreEntryFailed, en.Path, job.ID, err)
					return nil
				}
				content = &sizeCheck{r: rc, want: en.Size}
			}
			err := put(h, content)
			if rc != nil {
				rc.Close()
			}
			if errors.Is(err, datastream.ErrContent) {
				// The stored content was damaged half-way: the agent drops
				// the entry, the stream goes on.
				t.problems++
				e.Rec.Record(ctx, messages.RestoreEntryFailed, en.Path, job.ID, err)
				return nil
			}
			if err != nil {
				return err
			}
			if h.Type == datastream.File {
				t.done.Files++
			}
			return nil
		})
	}
	res, err := e.Agents.Restore(ctx, tg.host, tg.dir, policyName(policy), src, func(pr agenttasks.Progress) {
		progress.Set(jobs.Counts{Files: t.done.Files, Bytes: base.Bytes + pr.Bytes}, t.total)
	})
	t.done.Bytes += res.Streamed.Bytes
	t.written += res.Written
	t.skipped += res.Skipped
	t.problems += res.Failed
	if er, ok := e.Rec.(interface {
		RecordError(context.Context, error)
	}); ok {
		for _, pr := range res.Problems() {
			er.RecordError(ctx, pr)
		}
	}
	return err
}

func policyName(p string) string {
	if p == "" {
		return string(restore.Overwrite)
	}
	return p
}

// selected reports whether p is one of the paths asked for or below one.
func selected(p string, paths []string) bool {
	if len(paths) == 0 {
		return true
	}
	return slices.ContainsFunc(paths, func(q string) bool {
		q = filepath.Clean(q)
		return p == q || strings.HasPrefix(p, strings.TrimSuffix(q, "/")+"/")
	})
}

func (e *Executor) put(w *restore.Writer, open func(string) (io.ReadCloser, error), en diskstore.Entry, rel string) (restore.Outcome, error) {
	entry := restore.Entry{Path: rel, Mode: unixMode(en.Mode), UID: en.UID, GID: en.GID, MTime: en.ModTime, Target: en.Target}
	switch en.Type {
	case diskstore.TypeDir:
		entry.Type = restore.Dir
		return w.Put(entry, nil)
	case diskstore.TypeSymlink:
		entry.Type = restore.Symlink
		return w.Put(entry, nil)
	}
	entry.Type = restore.File
	rc, err := open(en.Path)
	if err != nil {
		return restore.Outcome{}, err
	}
	defer rc.Close()
	// Read through a checker so that a damaged chunk met half-way fails
	// the entry (its temporary file is removed) instead of leaving it short.
	return w.Put(entry, &sizeCheck{r: rc, want: en.Size})
}

// sizeCheck fails a read that ends before the recorded size.
type sizeCheck struct {
	r    io.Reader
	want int64
	got  int64
}

func (c *sizeCheck) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.got += int64(n)
	if errors.Is(err, io.EOF) && c.got != c.want {
		return n, fmt.Errorf("stored content is %d bytes, the session recorded %d", c.got, c.want)
	}
	return n, err
}

// unixMode turns Go's file mode into permission bits with setuid, setgid
// and sticky where Unix keeps them.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}
