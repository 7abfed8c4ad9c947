package apply

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/blocksync"
	"github.com/holdfast/holdfast/agent/change"
)

// patchFile applies an OpPatch: the file at c.Path is rebuilt from its
// current content and the delta in c.Data into a temporary file, which
// then replaces it as in OpReplaceFile. See the package doc for the
// contract, the replay rule and the hard-link exception.
func (a *Applier) patchFile(c *change.Change) error {
	dir, base, err := a.parent(c.Path)
	if err != nil {
		return err // an escape is reported as such, whatever the delta
	}
	defer dir.close()
	// Check the delta's framing before touching anything: a damaged or
	// hostile delta is refused without a temporary file ever existing.
	header, end, err := deltaBounds(c.Data)
	if err != nil {
		return err
	}
	st, ok, err := lstat(dir.fd, base)
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("%w: %q does not exist", ErrBaseMismatch, base)
	case isType(&st, unix.S_IFDIR):
		return isDirErr(base)
	case !isType(&st, unix.S_IFREG):
		// A symlink is never followed (its target is the master's data),
		// and neither it nor a special file has content to patch.
		return fmt.Errorf("%w: %q is not a regular file (mode %#o)", ErrBaseMismatch, base, st.Mode)
	}
	old, err := openNode(dir.fd, base, &st)
	if err != nil {
		return err
	}
	defer unix.Close(old)

	if st.Size != header.Size {
		why := fmt.Errorf("delta was made against a %d-byte file; %q has %d bytes", header.Size, base, st.Size)
		return a.patchApplied(c, dir.fd, base, old, &st, end, why)
	}
	mode := c.Mode & 0o7777
	if a.otherNames(&st) {
		err = a.patchLinked(c, dir.fd, base, old, &st)
	} else {
		err = a.newFile(dir.fd, base, c.Seq, func(fd int, tmp string) error {
			if _, err := patchInto(old, st.Size, c.Data, fd); err != nil {
				return err
			}
			return a.finishNew(dir.fd, tmp, fd, old, &st, mode, c.MTime)
		})
	}
	if errors.Is(err, blocksync.ErrMismatch) {
		// Same size, other content: perhaps the result of this very patch
		// (a delta that keeps the size), perhaps another version.
		return a.patchApplied(c, dir.fd, base, old, &st, end, err)
	}
	return err
}

// patchApplied is reached when the delta does not fit the file at base
// (why says how). If the file already is what the delta produces, the
// patch was applied before a crash and is done: its mode and time are set
// again (the in-place path for linked files sets them after the content)
// and it is synced. Otherwise the replica's copy is not the delta's base.
func (a *Applier) patchApplied(c *change.Change, dir int, base string, fd int, st *unix.Stat_t, end blocksync.Op, why error) error {
	if st.Size != end.Size {
		return fmt.Errorf("%w: %w", ErrBaseMismatch, why)
	}
	got, err := endOf(fd, st.Size)
	if err != nil {
		return fmt.Errorf("checksum %q to see whether the patch was applied before: %w", base, err)
	}
	if got.Sum != end.Sum {
		return fmt.Errorf("%w: %w", ErrBaseMismatch, why)
	}
	if err := fchmod(fd, c.Mode&0o7777); err != nil {
		return err
	}
	if c.MTime != 0 {
		if err := setMTime(dir, base, c.MTime); err != nil {
			return err
		}
	}
	if err := a.pending.add(fd, syncMeta); err != nil {
		return err
	}
	return a.pending.add(dir, syncMeta)
}

// patchLinked applies a patch to a file with several hard links: the new
// content is built and checked in a temporary file first, then copied over
// the file in place so that every name keeps sharing it, like OpReplaceFile
// does for such files. The temporary file is always removed.
func (a *Applier) patchLinked(c *change.Change, dir int, base string, old int, st *unix.Stat_t) (err error) {
	tmp := tempName(c.Seq)
	if err := removeStale(dir, tmp); err != nil {
		return err
	}
	tfd, err := openat2(dir, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return resolveErr(tmp, err)
	}
	defer func() {
		_ = unix.Close(tfd)
		if uerr := unix.Unlinkat(dir, tmp, 0); uerr != nil {
			err = errors.Join(err, fmt.Errorf("remove temporary %s: %w", tmp, os.NewSyscallError("unlinkat", uerr)))
		}
	}()
	n, err := patchInto(old, st.Size, c.Data, tfd)
	if err != nil {
		return err
	}
	wfd, err := openWritable(dir, base, st)
	if err != nil {
		return err
	}
	defer unix.Close(wfd)
	// Write first, then cut: the file is never shorter than both versions.
	if err := copyRange(tfd, wfd, n); err != nil {
		return err
	}
	if err := ftruncate(wfd, n); err != nil {
		return err
	}
	if err := fchmod(wfd, c.Mode&0o7777); err != nil {
		return err
	}
	if c.MTime != 0 {
		if err := setMTime(dir, base, c.MTime); err != nil {
			return err
		}
	}
	if err := a.pending.add(wfd, syncMeta); err != nil {
		return err
	}
	// The temporary name came and went: sync that too, so that a crash
	// cannot bring it back as litter.
	return a.pending.add(dir, syncMeta)
}

// patchInto writes the old file (oldSize bytes at fd old) patched with the
// encoded delta to the start of the empty file out, and returns its size.
// blocksync.Patch checks every op against the old file and the result
// against the delta's end op.
func patchInto(old int, oldSize int64, delta []byte, out int) (int64, error) {
	w := bufio.NewWriterSize(&fdWriter{fd: out}, 256<<10)
	n, err := blocksync.Patch(fdReaderAt(old), oldSize, blocksync.NewOpReader(bytes.NewReader(delta)), w)
	if err != nil {
		return n, err
	}
	if err := w.Flush(); err != nil {
		return n, err
	}
	return n, nil
}

// deltaBounds reads the frames of an encoded delta without applying it and
// returns its header and end ops. It refuses a delta that is damaged,
// truncated, out of order, or followed by anything: such bytes are never
// given to Patch.
func deltaBounds(b []byte) (header, end blocksync.Op, err error) {
	for i := 0; len(b) > 0; i++ {
		op, n, err := blocksync.DecodeOp(b)
		if err != nil {
			if !errors.Is(err, blocksync.ErrInvalid) {
				err = fmt.Errorf("%w: %w", blocksync.ErrInvalid, err)
			}
			return header, end, fmt.Errorf("delta op %d: %w", i, err)
		}
		b = b[n:]
		switch {
		case i == 0 && op.Kind != blocksync.OpHeader:
			return header, end, fmt.Errorf("%w: delta starts with %v, not a header", blocksync.ErrInvalid, op.Kind)
		case i == 0:
			header = op
		case op.Kind == blocksync.OpHeader:
			return header, end, fmt.Errorf("%w: delta op %d is a second header", blocksync.ErrInvalid, i)
		case op.Kind == blocksync.OpEnd:
			if len(b) > 0 {
				return header, end, fmt.Errorf("%w: %d bytes after the delta's end op", blocksync.ErrInvalid, len(b))
			}
			return header, op, nil
		}
	}
	return header, end, fmt.Errorf("%w: delta ends without its end op: %w", blocksync.ErrInvalid, io.ErrUnexpectedEOF)
}

// endOf returns the end op a delta producing the file at fd (size bytes)
// carries: its size and checksum. It is computed by blocksync itself, as
// the delta against an empty signature, so this package never has to know
// which checksum the format uses.
func endOf(fd int, size int64) (blocksync.Op, error) {
	var end blocksync.Op
	empty := blocksync.Signature{BlockSize: blocksync.MaxBlockSize}
	_, err := blocksync.Diff(empty, io.NewSectionReader(fdReaderAt(fd), 0, size), func(op blocksync.Op) error {
		if op.Kind == blocksync.OpEnd {
			end = op
		}
		return nil
	})
	if err != nil {
		return end, err
	}
	if end.Kind != blocksync.OpEnd || end.Size != size {
		return end, fmt.Errorf("file changed while being read (%d bytes, %d expected)", end.Size, size)
	}
	return end, nil
}

// copyRange copies the first n bytes of from to the start of to.
func copyRange(from, to int, n int64) error {
	buf := make([]byte, min(n, 256<<10))
	for off := int64(0); off < n; {
		b := buf[:min(int64(len(buf)), n-off)]
		if _, err := fdReaderAt(from).ReadAt(b, off); err != nil {
			return fmt.Errorf("read back the patched file at offset %d: %w", off, err)
		}
		if err := pwriteAll(to, b, off); err != nil {
			return err
		}
		off += int64(len(b))
	}
	return nil
}

// fdWriter writes sequentially to a file descriptor it does not own.
type fdWriter struct {
	fd  int
	off int64
}

func (w *fdWriter) Write(b []byte) (int, error) {
	if err := pwriteAll(w.fd, b, w.off); err != nil {
		return 0, err
	}
	w.off += int64(len(b))
	return len(b), nil
}

// fdReaderAt reads a file descriptor it does not own at given offsets.
type fdReaderAt int

func (fd fdReaderAt) ReadAt(b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Pread(int(fd), b[n:], off+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, os.NewSyscallError("pread", err)
		}
		if m == 0 {
			return n, io.EOF
		}
		n += m
	}
	return n, nil
}
