package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/holdfast/holdfast/agent/datastream"
	"github.com/holdfast/holdfast/appliance/agenttasks"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/diskstore"
	"github.com/holdfast/holdfast/appliance/jobs"
)

// Directory is a source outside scenarios: a folder of an enrolled
// agent, or of this appliance. It is read live — there is no replica to
// take a snapshot of — so its sessions are recorded with consistency
// "live".
type Directory struct {
	Host string `json:"host"`
	Path string `json:"path"`
}

func (d Directory) String() string { return d.Host + ":" + d.Path }

// ParseDirectory reads HOST:/PATH.
func ParseDirectory(s string) (Directory, error) {
	host, p, ok := strings.Cut(s, ":")
	if !ok || host == "" || !path.IsAbs(p) || strings.ContainsAny(host, "/ ") {
		return Directory{}, fmt.Errorf("directory %q: give HOST:/PATH, e.g. branch1:/srv/share", s)
	}
	return Directory{Host: host, Path: path.Clean(p)}, nil
}

// Reader reads folders of enrolled agents (appliance/agenttasks.Hub).
type Reader interface {
	Read(ctx context.Context, host, dir string, paths []string, sink func(datastream.Header, io.Reader) error, progress agenttasks.ProgressFunc) (agenttasks.Result, error)
}

// Live is the consistency recorded for sessions of folders read while in
// use.
const Live = "live"

// directory backs up one folder into one session.
func (e *Executor) directory(ctx context.Context, job catalog.Job, spec Spec, password string, d Directory, t *tally, done, total *jobs.Counts, progress jobs.Progress) error {
	t.nodes[d.Host] = true
	t.volumes++
	src := source{what: d.String(), host: d.Host, entity: d.Path, consistency: Live, kind: "directory", password: password}
	if e.Local != nil && e.Local(d.Host) {
		src.from = "folder " + d.Path
		root, err := os.OpenRoot(d.Path)
		if err != nil {
			t.volumesFailed++
			return fmt.Errorf("open %s: %w", d, err)
		}
		defer root.Close()
		if err := e.walk(ctx, job, spec, src, root, t, done, total, progress); err != nil {
			t.volumesFailed++
			return err
		}
		return nil
	}
	if e.Agents == nil {
		t.volumesFailed++
		return fmt.Errorf("%s: this appliance cannot reach agents", d)
	}
	src.from = "agent " + d.Host
	b := e.begin(ctx, job, spec, src, t, done, total, progress)
	sink := func(h datastream.Header, content io.Reader) error {
		master := d.Path
		if h.Path != "" && h.Path != "." {
			master = path.Join(d.Path, h.Path)
		}
		hdr := diskstore.FileHeader{Path: master, Mode: goMode(h), UID: h.UID, GID: h.GID, ModTime: time.Unix(0, h.MTime)}
		switch h.Type {
		case datastream.Dir:
			t.dirs++
			return b.w.AddDir(hdr)
		case datastream.Symlink:
			return b.w.AddSymlink(hdr, h.Target)
		case datastream.File:
			total.Files++
			total.Bytes += h.Size
			return b.file(hdr, h.Size, func() (io.ReadCloser, error) { return io.NopCloser(content), nil })
		}
		return nil
	}
	res, err := e.Agents.Read(ctx, d.Host, d.Path, nil, sink, nil)
	for _, p := range res.Problems() {
		t.errors++
		if er, ok := e.Rec.(interface {
			RecordError(context.Context, error)
		}); ok {
			er.RecordError(ctx, p)
		}
	}
	if err != nil {
		b.w.Abort()
		t.volumesFailed++
		if errors.Is(err, context.Canceled) {
			return err
		}
		return fmt.Errorf("read %s: %w", d, err)
	}
	if err := b.finish(); err != nil {
		t.volumesFailed++
		return err
	}
	return nil
}

// goMode turns a stream header's type and Unix mode bits into Go's mode.
func goMode(h datastream.Header) fs.FileMode {
	m := fs.FileMode(h.Mode & 0o777)
	if h.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if h.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if h.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch h.Type {
	case datastream.Dir:
		m |= fs.ModeDir
	case datastream.Symlink:
		m |= fs.ModeSymlink
	}
	return m
}
