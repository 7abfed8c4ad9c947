// Package restorejob runs restore jobs: it reads a backup session from the
// disk store and writes the entries asked for — the whole session or some
// files and directories of it, by their master paths — to the original
// location on the master or to an alternate folder, through agent/restore,
// which never writes outside its destination and applies the operator's
// overwrite policy. A damaged chunk or an unwritable entry is reported and
// skipped; the job then ends Incomplete.
package restorejob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/holdfast/holdfast/agent/restore"
	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/diskstore"
	"github.com/holdfast/holdfast/appliance/jobs"
	"github.com/holdfast/holdfast/appliance/messages"
)

// Kind is the job kind this package executes.
const Kind = "restore"

// Original is the destination meaning "where the files were on the master".
const Original = "original"

// Spec is a restore job's payload.
type Spec struct {
	Session     uint64   `json:"session"`
	Paths       []string `json:"paths,omitempty"` // master paths; empty: the whole session
	Destination string   `json:"destination"`     // Original, or an absolute folder on this appliance
	Policy      string   `json:"policy,omitempty"`
}

// Check validates a spec before it is queued.
func (s Spec) Check() error {
	if s.Session == 0 {
		return errors.New("session: missing: give the session number ('holdfast restore find' and 'holdfast job show' list them)")
	}
	if s.Destination != Original && !filepath.IsAbs(s.Destination) {
		return fmt.Errorf("destination: %q: give %q or an absolute folder", s.Destination, Original)
	}
	for _, p := range s.Paths {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("path: %q is not an absolute master path", p)
		}
	}
	if s.Policy != "" {
		if _, err := restore.ParsePolicy(s.Policy); err != nil {
			return err
		}
	}
	return nil
}

// Catalog is the part of the catalog a restore reads.
type Catalog interface {
	Session(id uint64) (catalog.Session, error)
	ScenarioByID(id uint64) (catalog.Scenario, error)
}

// Executor runs restore jobs.
type Executor struct {
	Store   *diskstore.Store
	Catalog Catalog
	Rec     activity.Recorder
	// Local reports whether a host name means this appliance: restores to
	// the original location of another host need its agent (not built).
	Local func(host string) bool
}

var _ jobs.Executor = (*Executor)(nil)

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
	sess, err := e.Catalog.Session(spec.Session)
	if err != nil {
		return catalog.ResultFailed, fmt.Errorf("session %d: %w", spec.Session, err)
	}
	if sess.Stored == "" {
		return catalog.ResultFailed, fmt.Errorf("session %d has no disk-store copy", sess.ID)
	}
	root := sess.Entity // the master root the session holds
	dest := spec.Destination
	if dest == Original {
		if e.Local == nil || !e.Local(sess.MasterHost) {
			return catalog.ResultFailed, fmt.Errorf("session %d comes from %s; restoring to another host's original location needs its agent, which is not built yet: restore to a folder here", sess.ID, sess.MasterHost)
		}
		dest = root
	}
	stored, err := e.Store.OpenSession(sess.Stored)
	if err != nil {
		return catalog.ResultFailed, fmt.Errorf("open stored session %s: %w", sess.Stored, err)
	}
	var picked []diskstore.Entry
	var total jobs.Counts
	for _, en := range stored.Entries() {
		if selected(en.Path, spec.Paths) {
			picked = append(picked, en)
			if en.Type == diskstore.TypeFile {
				total.Files++
				total.Bytes += en.Size
			}
		}
	}
	if len(picked) == 0 {
		return catalog.ResultFailed, fmt.Errorf("session %d holds nothing at %s", sess.ID, strings.Join(spec.Paths, ", "))
	}
	w, err := restore.Open(dest, restore.Options{Policy: restore.Policy(spec.Policy), Owners: true})
	if err != nil {
		return catalog.ResultFailed, err
	}
	var done jobs.Counts
	problems, written, skipped := 0, 0, 0
	for _, en := range picked {
		if err := ctx.Err(); err != nil {
			w.Close()
			return catalog.ResultCanceled, err
		}
		rel, err := filepath.Rel(root, en.Path)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			problems++
			e.Rec.Record(ctx, messages.RestoreEntryFailed, en.Path, job.ID, fmt.Errorf("not below the session's root %s", root))
			continue
		}
		if rel == "." {
			continue // the destination itself
		}
		out, err := e.put(w, stored, en, filepath.ToSlash(rel))
		if err != nil {
			problems++
			e.Rec.Record(ctx, messages.RestoreEntryFailed, en.Path, job.ID, err)
			continue
		}
		if out.Action == restore.Skipped {
			skipped++
		} else {
			written++
		}
		if en.Type == diskstore.TypeFile {
			done.Files++
			done.Bytes += en.Size
			progress.Set(done, total)
		}
	}
	if err := w.Close(); err != nil {
		problems++
		e.Rec.Record(ctx, messages.RestoreEntryFailed, dest, job.ID, err)
	}
	result := catalog.ResultCompleted
	if problems > 0 {
		result = catalog.ResultIncomplete
	}
	e.Rec.Record(ctx, messages.JobFinished, job.ID, job.Name, result,
		fmt.Sprintf("session %d to %s: %d entries written, %d kept by the %s policy, %d problems, %d bytes in %s",
			sess.ID, dest, written, skipped, policyName(spec.Policy), problems, done.Bytes, time.Since(start).Round(time.Millisecond)))
	return result, nil
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

func (e *Executor) put(w *restore.Writer, stored *diskstore.Session, en diskstore.Entry, rel string) (restore.Outcome, error) {
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
	rc, err := stored.Open(en.Path)
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
