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
	"io/fs"
	"path"
	"path/filepath"
	"syscall"
	"time"

	"github.com/holdfast/holdfast/agent/snapshot"
	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/diskstore"
	"github.com/holdfast/holdfast/appliance/jobs"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/appliance/recovery"
)

// Kind is the job kind this package executes.
const Kind = "backup"

// Spec is a backup job's payload.
type Spec struct {
	Scenarios []string `json:"scenarios"`
}

// Images gives consistent images of scenarios: the recovery service.
type Images interface {
	ConsistentImage(ctx context.Context, name string) ([]recovery.Image, error)
}

// Catalog is the part of the catalog a backup writes.
type Catalog interface {
	Scenario(name string) (catalog.Scenario, error)
	CreateSession(s catalog.Session) (catalog.Session, error)
	NewFileVersionWriter() *catalog.FileVersionWriter
}

// Executor runs backup jobs.
type Executor struct {
	Images  Images
	Store   *diskstore.Store
	Catalog Catalog
	Rec     activity.Recorder
}

var _ jobs.Executor = (*Executor)(nil)

// tally is what a job did, for its summary.
type tally struct {
	scenarios, sessions, dirs, files, errors int
	bytes                                    int64
}

// Run backs up every scenario of the job. A scenario that fails does not
// stop the others; the job is Incomplete when something was skipped,
// Failed when nothing was saved.
func (e *Executor) Run(ctx context.Context, job catalog.Job, progress jobs.Progress) (catalog.JobResult, error) {
	var spec Spec
	if err := json.Unmarshal(job.Spec, &spec); err != nil || len(spec.Scenarios) == 0 {
		return catalog.ResultFailed, fmt.Errorf("backup job %d: its spec names no scenario (%v)", job.ID, err)
	}
	ctx = activity.WithJob(ctx, job.ID)
	start := time.Now()
	var t tally
	var total, done jobs.Counts
	failed := 0
	for _, name := range spec.Scenarios {
		if err := ctx.Err(); err != nil {
			return catalog.ResultCanceled, err
		}
		err := e.scenario(ctx, job, name, &t, &done, &total, progress)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return catalog.ResultCanceled, err
			}
			failed++
			t.errors++
			e.Rec.Record(ctx, messages.BackupScenarioFailed, name, job.ID, err)
			continue
		}
		t.scenarios++
	}
	result := catalog.ResultCompleted
	switch {
	case failed == len(spec.Scenarios):
		result = catalog.ResultFailed
	case t.errors > 0:
		result = catalog.ResultIncomplete
	}
	elapsed := time.Since(start)
	rate := float64(t.bytes) / max(elapsed.Seconds(), 1e-3)
	summary := fmt.Sprintf("%d of %d scenarios, %d sessions, %d directories, %d files, %d bytes in %s (%.1f MiB/s), %d errors",
		t.scenarios, len(spec.Scenarios), t.sessions, t.dirs, t.files, t.bytes, elapsed.Round(time.Millisecond), rate/(1<<20), t.errors)
	if result == catalog.ResultFailed {
		return result, errors.New(summary)
	}
	e.Rec.Record(ctx, messages.JobFinished, job.ID, job.Name, result, summary)
	return result, nil
}

// scenario backs up one scenario: one session per replicated root.
func (e *Executor) scenario(ctx context.Context, job catalog.Job, name string, t *tally, done, total *jobs.Counts, progress jobs.Progress) error {
	sc, err := e.Catalog.Scenario(name)
	if err != nil {
		return fmt.Errorf("scenario %s: %w", name, err)
	}
	images, err := e.Images.ConsistentImage(ctx, name)
	if err != nil {
		return err
	}
	for _, img := range images {
		store, err := snapshot.OpenStore(recovery.SnapshotDir(img.Dir))
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", img.Snapshot, err)
		}
		view, err := store.Open(img.Snapshot)
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", img.Snapshot, err)
		}
		info := view.Info()
		total.Files += info.Files
		total.Bytes += info.Bytes
		err = e.session(ctx, job, sc, img, view, t, done, total, progress)
		if cerr := view.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// session writes one image into one store session and the catalog.
func (e *Executor) session(ctx context.Context, job catalog.Job, sc catalog.Scenario, img recovery.Image, view *snapshot.View,
	t *tally, done, total *jobs.Counts, progress jobs.Progress) error {
	started := time.Now().UTC()
	w := e.Store.BeginSession(diskstore.SessionMeta{Scenario: sc.Name, Host: sc.MasterHost, Label: job.Name, Started: started})
	type version struct {
		path  string
		size  int64
		mode  fs.FileMode
		mtime time.Time
	}
	var versions []version
	var files, bytes int64
	walkErr := fs.WalkDir(view.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		master := img.Root
		if rel != "." {
			master = path.Join(img.Root, rel)
		}
		if err != nil {
			t.errors++
			e.Rec.Record(ctx, messages.BackupFileUnreadable, sc.Name, job.ID, master, err)
			return nil
		}
		fi, err := view.Lstat(rel)
		if err != nil {
			t.errors++
			e.Rec.Record(ctx, messages.BackupFileUnreadable, sc.Name, job.ID, master, err)
			return nil
		}
		hdr := diskstore.FileHeader{Path: master, Mode: fi.Mode(), ModTime: fi.ModTime()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			hdr.UID, hdr.GID = st.Uid, st.Gid
		}
		switch {
		case fi.IsDir():
			t.dirs++
			return w.AddDir(hdr)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := view.Readlink(rel)
			if err != nil {
				t.errors++
				e.Rec.Record(ctx, messages.BackupFileUnreadable, sc.Name, job.ID, master, err)
				return nil
			}
			return w.AddSymlink(hdr, target)
		case fi.Mode().IsRegular():
			f, err := view.Open(rel)
			if err != nil {
				t.errors++
				e.Rec.Record(ctx, messages.BackupFileUnreadable, sc.Name, job.ID, master, err)
				return nil
			}
			err = w.AddFile(hdr, f)
			f.Close()
			if err != nil {
				return err
			}
			files++
			bytes += fi.Size()
			done.Files++
			done.Bytes += fi.Size()
			progress.Set(*done, *total)
			versions = append(versions, version{path: master, size: fi.Size(), mode: fi.Mode(), mtime: fi.ModTime()})
		}
		return nil
	})
	if walkErr != nil {
		w.Abort()
		return fmt.Errorf("back up %s from snapshot %s: %w", img.Root, img.Snapshot, walkErr)
	}
	info, err := w.Commit()
	if err != nil {
		return fmt.Errorf("back up %s: commit session: %w", img.Root, err)
	}
	sess, err := e.Catalog.CreateSession(catalog.Session{JobID: job.ID, ScenarioID: sc.ID, Entity: img.Root, MasterHost: sc.MasterHost,
		Consistency: img.Consistency, Started: started, Finished: time.Now().UTC(), Files: uint64(files), Bytes: uint64(bytes), Stored: info.ID})
	if err != nil {
		return fmt.Errorf("record session %s: %w", info.ID, err)
	}
	fw := e.Catalog.NewFileVersionWriter()
	for _, v := range versions {
		if err := fw.Add(catalog.FileVersion{Host: sc.MasterHost, Path: filepath.Clean(v.path), SessionID: sess.ID,
			Size: uint64(v.size), Mode: uint32(v.mode.Perm()), MTime: v.mtime}); err != nil {
			return fmt.Errorf("record the files of session %d: %w", sess.ID, err)
		}
	}
	if err := fw.Commit(true); err != nil {
		return fmt.Errorf("record the files of session %d: %w", sess.ID, err)
	}
	t.sessions++
	t.files += int(files)
	t.bytes += bytes
	return nil
}
