package agentd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/control"
	"github.com/holdfast/holdfast/agent/datastream"
	"github.com/holdfast/holdfast/agent/internal/beneath"
)

// read streams t.Dir's entries (or t.Paths below it) to the appliance.
// Every name is opened relative to its parent's descriptor and never
// through a symlink, so the walk cannot be led out of t.Dir; entries
// that cannot be read are problems, not failures of the task.
func (ts *tasks) read(ctx context.Context, t control.Task) control.TaskResult {
	var res control.TaskResult
	root, err := unix.Open(t.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		res.Error = control.Printable(fmt.Sprintf("open %s: %v", t.Dir, err))
		return res
	}
	defer unix.Close(root)

	pr, pw := io.Pipe()
	uploaded := make(chan error, 1)
	go func() {
		err := ts.client.SendTaskStream(ctx, t.ID, pr)
		// The walk's writes fail from now on, if it still writes.
		pr.CloseWithError(fmt.Errorf("upload ended: %w", errOr(err, errors.New("appliance answered before the end"))))
		uploaded <- err
	}()
	wk := &walker{ctx: ctx, out: datastream.NewWriter(pw), res: &res}
	walkErr := wk.paths(root, t.Paths)
	if walkErr == nil {
		walkErr = wk.out.Close()
	}
	pw.CloseWithError(walkErr)
	upErr := <-uploaded
	switch {
	case upErr != nil:
		res.Error = control.Printable("send the read stream: " + upErr.Error())
	case walkErr != nil:
		res.Error = control.Printable(walkErr.Error())
	}
	return res
}

func errOr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// walker streams entries; an error it returns ends the task.
type walker struct {
	ctx context.Context
	out *datastream.Writer
	res *control.TaskResult
}

func (w *walker) problem(rel string, err error) {
	w.res.Failed++
	w.res.AddProblem(control.TaskProblem{Path: rel, Kind: control.ProblemUnreadable, Error: err.Error()})
}

// paths streams every entry below root, or only the given paths with
// their parent directories (each once) and what is below them.
func (w *walker) paths(root int, paths []string) error {
	if len(paths) == 0 {
		fd, err := unix.Dup(root)
		if err != nil {
			return os.NewSyscallError("dup", err)
		}
		return w.dir(fd, "")
	}
	paths = slices.Clone(paths)
	slices.Sort(paths)
	parentsSent := map[string]bool{}
	last := ""
	for _, p := range paths {
		if last != "" && (p == last || strings.HasPrefix(p, last+"/")) {
			continue // inside a path already streamed whole
		}
		last = p
		if err := w.path(root, p, parentsSent); err != nil {
			return err
		}
	}
	return nil
}

// path streams p's parents not sent yet, then p and what is below it.
func (w *walker) path(root int, p string, parentsSent map[string]bool) error {
	dirfd, err := unix.Dup(root)
	if err != nil {
		return os.NewSyscallError("dup", err)
	}
	defer func() { unix.Close(dirfd) }()
	parts := strings.Split(p, "/")
	rel := ""
	for _, name := range parts[:len(parts)-1] {
		rel = path.Join(rel, name)
		if !parentsSent[rel] {
			parentsSent[rel] = true
			var st unix.Stat_t
			if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				w.problem(rel, os.NewSyscallError("fstatat", err))
				return nil
			}
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				w.problem(rel, errors.New("not a directory (a symlink or file where a parent of a path to read should be)"))
				return nil
			}
			if err := w.put(header(datastream.Dir, rel, &st, 0), nil); err != nil {
				return err
			}
		}
		next, err := beneath.Open(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			w.problem(rel, err)
			return nil
		}
		unix.Close(dirfd)
		dirfd = next
	}
	return w.entry(dirfd, parts[len(parts)-1], p)
}

// dir streams what the directory fd (owned, closed here) holds.
func (w *walker) dir(fd int, rel string) error {
	f := os.NewFile(uintptr(fd), orDot(rel))
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		// What was listed is still streamed.
		w.problem(orDot(rel), err)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		if err := w.entry(fd, name, path.Join(rel, name)); err != nil {
			return err
		}
	}
	return nil
}

// entry streams the entry name of dirfd and, for a directory, what is
// below it.
func (w *walker) entry(dirfd int, name, rel string) error {
	if len(rel) > datastream.DefaultMaxPath {
		w.problem(rel, fmt.Errorf("path longer than %d bytes", datastream.DefaultMaxPath))
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		w.problem(rel, os.NewSyscallError("fstatat", err))
		return nil
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := w.put(header(datastream.Dir, rel, &st, 0), nil); err != nil {
			return err
		}
		fd, err := beneath.Open(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			w.problem(rel, err)
			return nil
		}
		return w.dir(fd, rel)
	case unix.S_IFREG:
		return w.file(dirfd, name, rel)
	case unix.S_IFLNK:
		buf := make([]byte, datastream.DefaultMaxPath+1)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err == nil && n > datastream.DefaultMaxPath {
			err = fmt.Errorf("symlink target longer than %d bytes", datastream.DefaultMaxPath)
		}
		if err == nil && n == 0 {
			err = errors.New("empty symlink target")
		}
		if err != nil {
			w.problem(rel, err)
			return nil
		}
		h := header(datastream.Symlink, rel, &st, 0)
		h.Target = string(buf[:n])
		return w.put(h, nil)
	}
	// Sockets, devices and FIFOs are not data to keep.
	w.res.Skipped++
	return nil
}

// file streams one regular file, described by the descriptor it is read
// from, so what is sent is what was opened even if the name changes.
func (w *walker) file(dirfd int, name, rel string) error {
	fd, err := beneath.Open(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		w.problem(rel, err)
		return nil
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		w.problem(rel, os.NewSyscallError("fstat", err))
		return nil
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		w.res.Skipped++ // replaced by something else since it was listed
		return nil
	}
	return w.put(header(datastream.File, rel, &st, st.Size), f)
}

// put sends an entry; a file whose content failed is a problem, any
// other failure ends the walk.
func (w *walker) put(h datastream.Header, content io.Reader) error {
	err := w.out.Put(h, content)
	switch {
	case err == nil:
		w.res.Written++
		w.res.Bytes += h.Size
		return nil
	case errors.Is(err, datastream.ErrContent):
		w.problem(h.Path, err)
		return nil
	}
	return err
}

func header(t datastream.Type, rel string, st *unix.Stat_t, size int64) datastream.Header {
	return datastream.Header{
		Type: t, Path: rel, Mode: st.Mode & datastream.ModeBits,
		UID: st.Uid, GID: st.Gid, MTime: st.Mtim.Nano(), Size: size,
	}
}

func orDot(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}
