package agentd

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/holdfast/holdfast/agent/control"
	"github.com/holdfast/holdfast/agent/datastream"
	"github.com/holdfast/holdfast/agent/restore"
)

// restore writes the entries the appliance streams for t below t.Dir.
// Each entry the writer refuses or fails is a problem of the result and
// the rest goes on; only a broken stream or an unusable destination
// fails the task.
func (ts *tasks) restore(ctx context.Context, t control.Task) control.TaskResult {
	var res control.TaskResult
	policy, err := restore.ParsePolicy(t.Policy)
	if err != nil {
		res.Error = control.Printable(err.Error())
		return res
	}
	// The destination first: if it cannot be used, nothing needs to be
	// fetched.
	w, err := restore.Open(t.Dir, restore.Options{Policy: policy, Owners: os.Geteuid() == 0})
	if err != nil {
		res.Error = control.Printable(err.Error())
		return res
	}
	body, err := ts.client.TaskStream(ctx, t.ID)
	if err != nil {
		_ = w.Close()
		res.Error = control.Printable("fetch the restore stream: " + err.Error())
		return res
	}
	defer body.Close()
	r := datastream.NewReader(body, datastream.Limits{})
	for {
		h, content, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			res.Error = control.Printable("restore stream: " + err.Error())
			break
		}
		counted := &byteCounter{r: content}
		var src io.Reader
		if content != nil {
			src = counted
		}
		out, err := w.Put(restoreEntry(h), src)
		if err != nil {
			res.Failed++
			res.AddProblem(control.TaskProblem{Path: h.Path, Kind: problemKind(err), Error: err.Error()})
			continue
		}
		switch out.Action {
		case restore.Written, restore.Renamed:
			res.Written++
			res.Bytes += counted.n
		case restore.Skipped:
			res.Skipped++
		}
	}
	if err := w.Close(); err != nil && res.Error == "" {
		res.Error = control.Printable(err.Error())
	}
	return res
}

// problemKind classifies a refused or failed entry.
func problemKind(err error) control.ProblemKind {
	var se *datastream.SourceError
	switch {
	case errors.Is(err, restore.ErrUnsafePath), errors.Is(err, restore.ErrInTheWay):
		return control.ProblemRefused
	case errors.As(err, &se):
		return control.ProblemIncomplete
	}
	return control.ProblemFailed
}

func restoreEntry(h datastream.Header) restore.Entry {
	e := restore.Entry{Path: h.Path, Mode: h.Mode, UID: h.UID, GID: h.GID, Target: h.Target}
	switch h.Type {
	case datastream.Dir:
		e.Type = restore.Dir
	case datastream.File:
		e.Type = restore.File
	case datastream.Symlink:
		e.Type = restore.Symlink
	}
	if h.MTime != 0 {
		e.MTime = time.Unix(0, h.MTime)
	}
	return e
}

// byteCounter counts what is read through it.
type byteCounter struct {
	r io.Reader
	n int64
}

func (c *byteCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
