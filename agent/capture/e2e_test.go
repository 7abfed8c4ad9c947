//go:build linux

package capture

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/change"
)

// applyItem is a minimal replica applier, for tests only: enough to check
// that the change records a Stage produces rebuild the master's tree. Sync
// items copy the master's current content, standing in for block-level
// sync and write in place; OpReplaceFile replaces the entry (temporary file
// and rename), as the Stage's contract says.
func applyItem(master, replica string, it Item) error {
	if it.Sync != "" {
		data, err := os.ReadFile(filepath.Join(master, it.Sync))
		if gone(err) || errors.Is(err, unix.EISDIR) {
			return errSyncGone
		}
		if err != nil {
			return fmt.Errorf("sync %s: %w", it.Sync, err)
		}
		return writeInPlace(filepath.Join(replica, it.Sync), data)
	}
	c := it.Change
	if err := c.Validate(); err != nil {
		return err
	}
	p := filepath.Join(replica, filepath.FromSlash(c.Path))
	np := filepath.Join(replica, filepath.FromSlash(c.NewPath))
	var err error
	switch c.Op {
	case change.OpCreate:
		var f *os.File
		if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0); err == nil {
			f.Close()
			err = unix.Chmod(p, c.Mode)
		}
	case change.OpMkdir:
		if err = os.Mkdir(p, 0o700); err == nil || errors.Is(err, fs.ErrExist) {
			err = unix.Chmod(p, c.Mode)
		}
	case change.OpSymlink:
		err = os.Symlink(c.Target, p)
	case change.OpLink:
		err = os.Link(p, np)
	case change.OpRename:
		err = unix.Rename(p, np)
	case change.OpRemove:
		// A directory moved out of the master's root goes with its subtree;
		// a path through a non-directory does not exist.
		if err = os.RemoveAll(p); errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			err = nil
		}
	case change.OpChmod:
		err = unix.Chmod(p, c.Mode)
	case change.OpChown:
		err = os.Lchown(p, int(c.UID), int(c.GID))
	case change.OpSetTimes:
		err = setMtime(p, c.MTime)
	case change.OpSetXattr:
		err = unix.Lsetxattr(p, c.XattrName, c.XattrValue, 0)
	case change.OpRemoveXattr:
		if err = unix.Lremovexattr(p, c.XattrName); errors.Is(err, unix.ENODATA) {
			err = nil
		}
	case change.OpReplaceFile:
		if err = replaceFile(p, c.Data); err == nil {
			if err = unix.Chmod(p, c.Mode); err == nil {
				err = setMtime(p, c.MTime)
			}
		}
	default:
		err = fmt.Errorf("op %v not expected", c.Op)
	}
	if err != nil {
		return fmt.Errorf("applying %v %s: %w", c.Op, c.Path, err)
	}
	return nil
}

func replaceFile(p string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(p), ".holdfast-tmp")
	if err := writeInPlace(tmp, data); err != nil {
		return err
	}
	return unix.Rename(tmp, p)
}

// errSyncGone: the master's file was gone when its Sync item was applied.
var errSyncGone = errors.New("file to sync is gone from the master")

func writeInPlace(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func setMtime(p string, ns int64) error {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(ns)}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// treeState renders everything replication must reproduce, one line per
// entry. Directory mtimes are left out (see Stage).
func treeState(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	inodes := map[uint64]string{}
	sc := Scanner{Root: root}
	err := sc.Scan("", func(e Entry) error {
		if strings.HasPrefix(e.Path, ".end") {
			return nil
		}
		fmt.Fprintf(&b, "%s %v %o %d:%d", e.Path, e.Mode.Type(), e.Perm, e.UID, e.GID)
		abs := filepath.Join(root, e.Path)
		switch {
		case e.Mode.IsRegular():
			data, err := os.ReadFile(abs)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %q mtime=%d", data, e.MTime.UnixNano())
			if other, ok := inodes[e.Ino]; ok {
				fmt.Fprintf(&b, " same-inode-as=%s", other)
			} else {
				inodes[e.Ino] = e.Path
			}
		case e.Mode&fs.ModeSymlink != 0:
			fmt.Fprintf(&b, " -> %s", e.Target)
		}
		for _, n := range e.Xattrs {
			v := make([]byte, 256)
			k, err := unix.Lgetxattr(abs, n, v)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %s=%q", n, v[:k])
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestReplicateEndToEnd(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.String(), func(t *testing.T) {
			for attempt := 1; ; attempt++ {
				err := replicateOnce(t, b)
				if err == nil {
					return
				}
				if !errors.Is(err, errOverflowed) || attempt == 3 {
					t.Fatal(err)
				}
				t.Logf("attempt %d: %v; again", attempt, err)
			}
		})
	}
}

func replicateOnce(t *testing.T, b Backend) error {
	master, replica, outside := t.TempDir(), t.TempDir(), t.TempDir()
	write(t, master, "pre/keep", "k")
	write(t, master, "pre/linked", "L")
	must(t, os.Link(filepath.Join(master, "pre/linked"), filepath.Join(master, "pre/link2")))
	write(t, master, "old/gone", "g")

	w, err := Watch(master, Options{Backend: b})
	if err != nil {
		return err
	}
	defer w.Close()
	st, err := NewStage(master)
	if err != nil {
		return err
	}
	defer st.Close()
	st.MaxInline = 64

	// Initial copy, after Watch so that nothing falls in between.
	sc := Scanner{Root: master}
	err = sc.Scan("", func(e Entry) error {
		st.Observe(e)
		kind := Created
		if e.Mode.IsDir() {
			kind = DirCreated
		}
		items, err := st.Convert(Event{Kind: kind, Path: e.Path, IsDir: e.Mode.IsDir(), Time: time.Now()})
		if err != nil {
			return err
		}
		for _, it := range items {
			if err := applyItem(master, replica, it); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("initial copy: %w", err)
	}

	// The consumer: events to changes to the replica, in order.
	finished := make(chan error, 1)
	var trace strings.Builder // what the consumer did, for failures
	go func() {
		var errs []error
		for {
			select {
			case ev, ok := <-w.Events():
				if !ok {
					finished <- errors.New("events closed")
					return
				}
				if ev.Kind == Overflow || ev.Kind == Unwatched {
					finished <- fmt.Errorf("%w: %v", errOverflowed, ev)
					return
				}
				items, err := st.Convert(ev)
				fmt.Fprintf(&trace, "%v\n", ev)
				for _, it := range items {
					fmt.Fprintf(&trace, "    %s\n", summary([]Item{it}))
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("convert %v: %w", ev, err))
				}
				for _, it := range items {
					if err := applyItem(master, replica, it); errors.Is(err, errSyncGone) {
						st.SyncFailed(it.Sync)
					} else if err != nil {
						errs = append(errs, fmt.Errorf("event %v: %w", ev, err))
					}
				}
				if ev.Kind == Created && ev.Path == ".end" {
					finished <- errors.Join(errs...)
					return
				}
			case err := <-w.Errors():
				errs = append(errs, err)
			}
		}
	}()

	m := func(rel string) string { return filepath.Join(master, rel) }
	mkdirs(t, master, "a/b/c")
	write(t, master, "a/b/c/f", "one")
	write(t, master, "big", strings.Repeat("B", 200))
	appendTo(t, master, "big", "more")
	must(t, os.Symlink("b/c/f", m("a/s")))
	must(t, os.Link(m("a/b/c/f"), m("a/h")))
	must(t, os.Chmod(m("a/b/c/f"), 0o600))
	must(t, os.Lchown(m("a/b/c/f"), 1000, 1000))
	must(t, unix.Setxattr(m("a/b/c/f"), "user.k", []byte("v"), 0))
	must(t, unix.Setxattr(m("a/b/c/f"), "user.gone", []byte("soon"), 0))
	old := time.Date(2019, 1, 1, 0, 0, 0, 123, time.UTC)
	must(t, os.Chtimes(m("big"), old, old))
	must(t, os.Rename(m("a/b"), m("a/z")))
	appendTo(t, master, "a/z/c/f", " two") // through the hard link's other name
	write(t, outside, "in/x/y", "moved in")
	must(t, os.Rename(filepath.Join(outside, "in"), m("in")))
	must(t, os.Rename(m("old"), filepath.Join(outside, "old")))
	write(t, master, "tmp", "replacement")
	must(t, os.Rename(m("tmp"), m("a/h"))) // breaks the hard link on purpose
	must(t, os.Truncate(m("big"), 10))
	must(t, unix.Removexattr(m("a/z/c/f"), "user.gone"))
	must(t, os.Remove(m("a/s")))
	mkdirs(t, master, "d")
	for i := range 20 {
		write(t, master, fmt.Sprintf("d/%02d", i), fmt.Sprint(i))
	}
	must(t, os.Rename(m("d"), m("d2")))
	appendTo(t, master, "d2/07", " seven")
	must(t, os.Chmod(m("pre/link2"), 0o604))
	// A chown clears setuid: the mode must reach the replica after the owner.
	write(t, master, "suid", "#!/bin/true")
	must(t, os.Lchown(m("suid"), 1000, 1000))
	must(t, unix.Chmod(m("suid"), 0o4755))
	write(t, master, ".end", "")

	select {
	case err := <-finished:
		if err != nil {
			return fmt.Errorf("%w\ntrace:\n%s", err, trace.String())
		}
	case <-time.After(3 * waitLimit):
		return errors.New("timed out waiting for the end marker")
	}
	want, got := treeState(t, master), treeState(t, replica)
	if want != got {
		return fmt.Errorf("replica differs from master:\n%s\ntrace:\n%s", lineDiff(want, got), trace.String())
	}
	if !bytes.Contains([]byte(got), []byte("suid ---------- 4755 1000:1000")) {
		return fmt.Errorf("setuid file not replicated with its mode:\n%s", got)
	}
	if !bytes.Contains([]byte(got), []byte("pre/link2 ---------- 604 0:0 \"L\"")) ||
		!bytes.Contains([]byte(got), []byte("same-inode-as=pre/link2")) {
		return fmt.Errorf("hard link from the initial copy not kept:\n%s", got)
	}
	t.Logf("replica matches master:\n%s", got)
	return nil
}

// lineDiff lists the lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}
