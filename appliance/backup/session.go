package backup

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"
	"time"

	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/diskstore"
	"github.com/holdfast/holdfast/appliance/jobs"
	"github.com/holdfast/holdfast/appliance/messages"
)

// source is what one session is made of.
type source struct {
	scenario    catalog.Scenario // zero for a directory outside scenarios
	what        string           // "scenario NAME" or "HOST:/DIR", for messages
	host        string           // the master host, as the catalog records it
	entity      string           // the master path the session holds
	consistency string
	from        string // where it is read: "snapshot ID", "agent HOST"
	kind        string // diskstore.SessionMeta.SourceKind
	password    string // protects the session when not empty
}

// tree is a directory tree read for a session: a snapshot's read-only
// view, or an os.Root of a folder of this appliance. Both resolve names
// below their root, so a symlink in the tree never leads out of it.
type tree interface {
	FS() fs.FS
	Open(name string) (*os.File, error)
	Lstat(name string) (fs.FileInfo, error)
	Readlink(name string) (string, error)
}

// build is one session being written: the store's session writer, the
// catalog's versions to add once it is committed, and the counts.
type build struct {
	e        *Executor
	ctx      context.Context
	job      catalog.Job
	src      source
	started  time.Time
	w        *diskstore.SessionWriter
	prev     *diskstore.Session
	prevID   uint64
	versions []catalog.FileVersion

	files, bytes, unchanged, read int64
	t                             *tally
	done, total                   *jobs.Counts
	progress                      jobs.Progress
}

func (e *Executor) begin(ctx context.Context, job catalog.Job, spec Spec, src source, t *tally, done, total *jobs.Counts, progress jobs.Progress) *build {
	b := &build{e: e, ctx: ctx, job: job, src: src, started: time.Now().UTC(), t: t, done: done, total: total, progress: progress}
	if !spec.Full && src.scenario.ID != 0 {
		b.prev, b.prevID = e.previous(src.scenario, src.entity, src.password)
	}
	// The meta makes the session self-describing: the catalog can be
	// rebuilt from the store alone.
	meta := diskstore.SessionMeta{Scenario: src.scenario.Name, Host: src.host, Label: job.Name, Started: b.started,
		Entity: src.entity, Consistency: src.consistency, JobID: job.ID, JobName: job.Name, ScenarioType: src.scenario.Type, SourceKind: src.kind}
	var opts []diskstore.SessionOption
	if src.password != "" {
		opts = append(opts, diskstore.WithSessionPassword(src.password))
	}
	b.w = e.Store.BeginSession(meta, opts...)
	return b
}

// previous opens the entity's latest stored session, the base of an
// incremental session; nil when there is none or it cannot be read (the
// session is then read in full, which is always correct).
func (e *Executor) previous(sc catalog.Scenario, entity, password string) (*diskstore.Session, uint64) {
	last, err := e.Catalog.LatestSession(sc.ID, entity)
	if err != nil {
		return nil, 0
	}
	prev, err := e.Store.OpenSessionWithPassword(last.Stored, password)
	if err != nil {
		return nil, 0
	}
	return prev, last.ID
}

// unreadable records an entry that could not be read; the session goes on.
func (b *build) unreadable(master string, err error) {
	b.t.errors++
	if b.src.scenario.ID != 0 {
		b.e.Rec.Record(b.ctx, messages.BackupFileUnreadable, b.src.scenario.Name, b.job.ID, master, err)
		return
	}
	b.e.Rec.Record(b.ctx, messages.BackupSourceUnreadable, b.src.what, b.job.ID, master, err)
}

// file adds a regular file; open is called only when the previous
// session does not hold it unchanged.
func (b *build) file(hdr diskstore.FileHeader, size int64, open func() (io.ReadCloser, error)) error {
	if pe, ok := b.unchangedEntry(hdr, size); ok {
		// A chunk pruned since (or lost) makes AddUnchanged refuse; the
		// file is then read like a new one.
		if b.w.AddUnchanged(hdr, pe) == nil {
			b.unchanged++
			b.added(hdr, size)
			return nil
		}
	}
	r, err := open()
	if err != nil {
		b.unreadable(hdr.Path, err)
		return nil
	}
	src := &sourceReader{r: r}
	err = b.w.AddFile(hdr, src)
	r.Close()
	if err != nil && src.err != nil {
		// The source failed half-way, not the store: the file is left out
		// and the session goes on.
		b.unreadable(hdr.Path, err)
		return nil
	}
	if err != nil {
		return err
	}
	b.read += size
	b.added(hdr, size)
	return nil
}

// unchangedEntry finds the file in the previous session with the same
// size, mode and modification time (to the nanosecond, as the replica
// keeps the master's).
func (b *build) unchangedEntry(hdr diskstore.FileHeader, size int64) (diskstore.Entry, bool) {
	if b.prev == nil {
		return diskstore.Entry{}, false
	}
	pe, ok := b.prev.Entry(hdr.Path)
	return pe, ok && pe.Type == diskstore.TypeFile && pe.Size == size && pe.Mode == hdr.Mode && pe.ModTime.Equal(hdr.ModTime)
}

func (b *build) added(hdr diskstore.FileHeader, size int64) {
	b.files++
	b.bytes += size
	b.done.Files++
	b.done.Bytes += size
	b.progress.Set(*b.done, *b.total)
	b.versions = append(b.versions, catalog.FileVersion{Host: b.src.host, Path: filepath.Clean(hdr.Path),
		Size: uint64(size), Mode: uint32(hdr.Mode.Perm()), MTime: hdr.ModTime})
}

// finish commits the session to the store, then records it and its file
// versions in the catalog.
func (b *build) finish() error {
	info, err := b.w.Commit()
	if err != nil {
		return fmt.Errorf("back up %s: commit session: %w", b.src.entity, err)
	}
	sess, err := b.e.Catalog.CreateSession(catalog.Session{JobID: b.job.ID, ScenarioID: b.src.scenario.ID, Entity: b.src.entity,
		MasterHost: b.src.host, Consistency: b.src.consistency, Started: b.started, Finished: time.Now().UTC(),
		Files: uint64(b.files), Bytes: uint64(b.bytes), Stored: info.ID})
	if err != nil {
		return fmt.Errorf("record session %s: %w", info.ID, err)
	}
	fw := b.e.Catalog.NewFileVersionWriter()
	for _, v := range b.versions {
		v.SessionID = sess.ID
		if err := fw.Add(v); err != nil {
			return fmt.Errorf("record the files of session %d: %w", sess.ID, err)
		}
	}
	if err := fw.Commit(true); err != nil {
		return fmt.Errorf("record the files of session %d: %w", sess.ID, err)
	}
	t := b.t
	t.sessions++
	t.files += int(b.files)
	t.bytes += b.bytes
	t.readBytes += b.read
	t.unchanged += int(b.unchanged)
	if b.unchanged > 0 {
		t.bases = append(t.bases, fmt.Sprintf("%s session %d", b.src.entity, b.prevID))
	}
	return nil
}

// walk writes one tree into one store session and the catalog.
func (e *Executor) walk(ctx context.Context, job catalog.Job, spec Spec, src source, view tree,
	t *tally, done, total *jobs.Counts, progress jobs.Progress) error {
	b := e.begin(ctx, job, spec, src, t, done, total, progress)
	walkErr := fs.WalkDir(view.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		master := src.entity
		if rel != "." {
			master = path.Join(src.entity, rel)
		}
		if err != nil {
			b.unreadable(master, err)
			return nil
		}
		fi, err := view.Lstat(rel)
		if err != nil {
			b.unreadable(master, err)
			return nil
		}
		hdr := diskstore.FileHeader{Path: master, Mode: fi.Mode(), ModTime: fi.ModTime()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			hdr.UID, hdr.GID = st.Uid, st.Gid
		}
		switch {
		case fi.IsDir():
			t.dirs++
			return b.w.AddDir(hdr)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := view.Readlink(rel)
			if err != nil {
				b.unreadable(master, err)
				return nil
			}
			return b.w.AddSymlink(hdr, target)
		case fi.Mode().IsRegular():
			return b.file(hdr, fi.Size(), func() (io.ReadCloser, error) { return view.Open(rel) })
		}
		return nil // sockets, devices and fifos hold no data to keep
	})
	if walkErr != nil {
		b.w.Abort()
		return fmt.Errorf("back up %s from %s: %w", src.entity, src.from, walkErr)
	}
	return b.finish()
}

// sourceReader remembers its reader's failure, to tell it from the
// store's.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}
