// Package backup runs backup jobs of scenarios: for each scenario it asks
// for a consistent image of the replica (a snapshot proven by Assured
// Recovery, or taken with applying paused), reads it through the
// snapshot's read-only view — never the master — and writes one session
// per replicated root into the disk store, recording the session and every
// file version in the catalog as if backed up from the master: the master
// host and the master paths, so that restores see the master's tree.
package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/holdfast/holdfast/agent/snapshot"
	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/diskstore"
	"github.com/holdfast/holdfast/appliance/jobs"
	"github.com/holdfast/holdfast/appliance/jobsecrets"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/recovery"
)

// Kind is the job kind this package executes.
const Kind = "backup"

// Spec is a backup job's payload.
type Spec struct {
	Scenarios []string `json:"scenarios"`
	// Directories are sources outside scenarios, backed up beside them.
	Directories []Directory `json:"directories,omitempty"`
	// Full reads every file. Otherwise a file whose size, mode and
	// modification time match its entry in the entity's previous session
	// is recorded from that entry without being read (as restic does with
	// its parent snapshot); only the metadata is trusted, so an edit that
	// keeps size and mtime (touch -r) is seen by the next full backup.
	Full bool `json:"full,omitempty"`
	// Multistream runs each scenario as a child job, so that several
	// scenarios — a host with several of them too — are read side by side.
	Multistream bool `json:"multistream,omitempty"`
	// Protected sessions are sealed with a password the operator gave at
	// submission, which holdfastd keeps in memory only (jobsecrets).
	Protected bool `json:"protected,omitempty"`
}

// Images gives consistent images of scenarios: the recovery service.
type Images interface {
	ConsistentImage(ctx context.Context, name string) ([]recovery.Image, error)
}

// Catalog is the part of the catalog a backup writes.
type Catalog interface {
	Scenario(name string) (catalog.Scenario, error)
	CreateSession(s catalog.Session) (catalog.Session, error)
	LatestSession(scenarioID uint64, entity string) (catalog.Session, error)
	NewFileVersionWriter() *catalog.FileVersionWriter
}

// Executor runs backup jobs.
type Executor struct {
	Images  Images
	Store   *diskstore.Store
	Catalog Catalog
	Rec     activity.Recorder
	// Children runs multistreamed scenarios as child jobs; without it a
	// multistream job runs its scenarios one after the other.
	Children jobs.Children
	// Media names where sessions go, for the end-of-job listing.
	Media string
	// Secrets holds the passwords of protected jobs.
	Secrets *jobsecrets.Secrets
	// Agents reads directories of enrolled agents; Local says which host
	// names mean this appliance.
	Agents Reader
	Local  func(host string) bool
}

var _ jobs.Executor = (*Executor)(nil)

// tally is what a job did, for its summary.
type tally struct {
	scenarios, sessions, dirs, files, errors int
	volumes, volumesFailed                   int
	unchanged                                int // files taken from the previous session unread
	bytes, readBytes                         int64
	nodes                                    map[string]bool
	bases                                    []string // "ENTITY from session N" of incremental sessions
}

// Run backs up every scenario of the job. A scenario that fails does not
// stop the others; the job is Incomplete when something was skipped,
// Failed when nothing was saved.
func (e *Executor) Run(ctx context.Context, job catalog.Job, progress jobs.Progress) (catalog.JobResult, error) {
	var spec Spec
	if err := json.Unmarshal(job.Spec, &spec); err != nil || len(spec.Scenarios)+len(spec.Directories) == 0 {
		return catalog.ResultFailed, fmt.Errorf("backup job %d: its spec names no scenario or directory (%v)", job.ID, err)
	}
	units := len(spec.Scenarios) + len(spec.Directories)
	ctx = activity.WithJob(ctx, job.ID)
	var password string
	if spec.Protected {
		var ok bool
		if password, ok = e.Secrets.Get(job.ID); !ok && job.ParentID != 0 {
			password, ok = e.Secrets.Get(job.ParentID)
		}
		if !ok {
			return catalog.ResultFailed, messages.New(messages.JobPasswordUnknown, job.ID)
		}
	}
	if spec.Multistream && units > 1 && e.Children != nil && job.ParentID == 0 {
		return e.multistream(ctx, job, spec, progress)
	}
	start := time.Now()
	t := tally{nodes: map[string]bool{}}
	var total, done jobs.Counts
	failed := 0
	var causes []error
	for _, name := range spec.Scenarios {
		if err := ctx.Err(); err != nil {
			return catalog.ResultCanceled, err
		}
		err := e.scenario(ctx, job, spec, password, name, &t, &done, &total, progress)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return catalog.ResultCanceled, err
			}
			failed++
			t.errors++
			causes = append(causes, fmt.Errorf("scenario %s: %w", name, err))
			e.Rec.Record(ctx, messages.BackupScenarioFailed, name, job.ID, err)
			continue
		}
		t.scenarios++
	}
	for _, d := range spec.Directories {
		if err := ctx.Err(); err != nil {
			return catalog.ResultCanceled, err
		}
		if err := e.directory(ctx, job, spec, password, d, &t, &done, &total, progress); err != nil {
			if errors.Is(err, context.Canceled) {
				return catalog.ResultCanceled, err
			}
			failed++
			t.errors++
			causes = append(causes, fmt.Errorf("%s: %w", d, err))
			e.Rec.Record(ctx, messages.BackupSourceFailed, d.String(), job.ID, err)
		}
	}
	result := catalog.ResultCompleted
	switch {
	case failed == units:
		result = catalog.ResultFailed
	case t.errors > 0:
		result = catalog.ResultIncomplete
	}
	elapsed := time.Since(start)
	e.Rec.Record(ctx, messages.BackupSummary, job.ID, t.listing(len(spec.Scenarios), e.Media, elapsed))
	summary := fmt.Sprintf("%d of %d sources, %d sessions, %d directories, %d files, %d bytes in %s, %d errors",
		units-failed, units, t.sessions, t.dirs, t.files, t.bytes, elapsed.Round(time.Millisecond), t.errors)
	if result == catalog.ResultFailed {
		// The reason names each cause, not only the counts.
		return result, fmt.Errorf("%s: %w", summary, errors.Join(causes...))
	}
	e.Rec.Record(ctx, messages.JobFinished, job.ID, job.Name, result, summary)
	return result, nil
}

// listing is the end-of-job summary in the order an administrator reads a
// backup product's log: what was to be backed up, what was, where to, how
// fast.
func (t *tally) listing(scenarios int, media string, elapsed time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "nodes %d; scenarios %d of %d; volumes %d (%d failed); directories %d; files %d",
		len(t.nodes), t.scenarios, scenarios, t.volumes, t.volumesFailed, t.dirs, t.files)
	if t.unchanged > 0 {
		fmt.Fprintf(&b, " (%d unchanged, taken from %s)", t.unchanged, strings.Join(t.bases, ", "))
	}
	fmt.Fprintf(&b, "; sessions %d; media: %s; errors %d; elapsed %s; average throughput %s/min (%s read)",
		t.sessions, media, t.errors, elapsed.Round(time.Millisecond), sizeText(float64(t.bytes)/max(elapsed.Minutes(), 1e-6)), sizeText(float64(t.readBytes)))
	return b.String()
}

func sizeText(n float64) string {
	for _, u := range []string{"B", "KiB", "MiB", "GiB"} {
		if n < 1024 {
			return fmt.Sprintf("%.1f %s", n, u)
		}
		n /= 1024
	}
	return fmt.Sprintf("%.1f TiB", n)
}

// multistream runs each scenario of the job as a child job and waits for
// them; the job's result is the worst of theirs.
func (e *Executor) multistream(ctx context.Context, job catalog.Job, spec Spec, progress jobs.Progress) (catalog.JobResult, error) {
	subs := make([]jobs.Submission, 0, len(spec.Scenarios))
	for _, name := range spec.Scenarios {
		child := Spec{Scenarios: []string{name}, Full: spec.Full, Protected: spec.Protected}
		raw, err := json.Marshal(child)
		if err != nil {
			return catalog.ResultFailed, fmt.Errorf("backup job %d: child spec: %w", job.ID, err)
		}
		var ids []uint64
		if sc, err := e.Catalog.Scenario(name); err == nil {
			ids = []uint64{sc.ID}
		}
		subs = append(subs, jobs.Submission{Kind: Kind, Name: job.Name + " / " + name, Owner: job.Owner, ScenarioIDs: ids, Spec: raw})
	}
	for _, d := range spec.Directories {
		raw, err := json.Marshal(Spec{Directories: []Directory{d}, Full: spec.Full, Protected: spec.Protected})
		if err != nil {
			return catalog.ResultFailed, fmt.Errorf("backup job %d: child spec: %w", job.ID, err)
		}
		subs = append(subs, jobs.Submission{Kind: Kind, Name: job.Name + " / " + d.String(), Owner: job.Owner, Spec: raw})
	}
	kids, err := e.Children.SubmitChildren(job.ID, subs)
	if err != nil {
		return catalog.ResultFailed, err
	}
	ids := make([]uint64, len(kids))
	names := make([]string, len(kids))
	for i, k := range kids {
		ids[i] = k.ID
		names[i] = fmt.Sprintf("%d (%s)", k.ID, strings.TrimPrefix(k.Name, job.Name+" / "))
	}
	e.Rec.Record(ctx, messages.BackupChildren, job.ID, len(kids), strings.Join(names, ", "))
	kids, err = e.Children.WaitChildren(ctx, job.ID, ids, progress.Set)
	if err != nil {
		return catalog.ResultCanceled, err
	}
	counts := map[catalog.JobResult]int{}
	var parts []string
	for _, k := range kids {
		counts[k.Result]++
		part := fmt.Sprintf("job %d %s", k.ID, k.Result)
		if n := len(k.Runs); n > 0 && k.Runs[n-1].Reason != "" && k.Result != catalog.ResultCompleted {
			part += " (" + k.Runs[n-1].Reason + ")"
		}
		parts = append(parts, part)
	}
	result := catalog.ResultIncomplete
	switch {
	case counts[catalog.ResultCompleted] == len(kids):
		result = catalog.ResultCompleted
	case counts[catalog.ResultFailed]+counts[catalog.ResultCanceled] == len(kids):
		result = catalog.ResultFailed
	}
	summary := fmt.Sprintf("%d child jobs: %s", len(kids), strings.Join(parts, ", "))
	if result == catalog.ResultFailed {
		return result, errors.New(summary)
	}
	e.Rec.Record(ctx, messages.JobFinished, job.ID, job.Name, result, summary)
	return result, nil
}

// scenario backs up one scenario: one session per replicated root.
func (e *Executor) scenario(ctx context.Context, job catalog.Job, spec Spec, password, name string, t *tally, done, total *jobs.Counts, progress jobs.Progress) error {
	sc, err := e.Catalog.Scenario(name)
	if err != nil {
		return fmt.Errorf("scenario %s: %w", name, err)
	}
	t.nodes[sc.MasterHost] = true
	images, err := e.Images.ConsistentImage(ctx, name)
	if err != nil {
		t.volumes += len(sc.Roots)
		t.volumesFailed += len(sc.Roots)
		return err
	}
	for _, img := range images {
		t.volumes++
		store, err := snapshot.OpenStore(recovery.SnapshotDir(img.Dir))
		if err != nil {
			t.volumesFailed++
			return fmt.Errorf("snapshot %s: %w", img.Snapshot, err)
		}
		view, err := store.Open(img.Snapshot)
		if err != nil {
			t.volumesFailed++
			return fmt.Errorf("snapshot %s: %w", img.Snapshot, err)
		}
		info := view.Info()
		total.Files += info.Files
		total.Bytes += info.Bytes
		src := source{scenario: sc, what: "scenario " + sc.Name, host: sc.MasterHost, entity: img.Root, consistency: img.Consistency, from: "snapshot " + img.Snapshot, kind: "scenario"}
		src.password = password
		err = e.walk(ctx, job, spec, src, view, t, done, total, progress)
		if cerr := view.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			t.volumesFailed++
			return err
		}
	}
	return nil
}
