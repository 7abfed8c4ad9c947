//go:build linux

package capture

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/change"
)

func newStageT(t *testing.T, root string) *Stage {
	t.Helper()
	s, err := NewStage(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var captured = time.Unix(1700000000, 0)

func convert(t *testing.T, s *Stage, e Event) []Item {
	t.Helper()
	e.Time = captured
	items, err := s.Convert(e)
	if err != nil {
		t.Fatalf("Convert(%v): %v", e, err)
	}
	for _, it := range items {
		if it.Sync != "" {
			if it.Change.Op != 0 {
				t.Fatalf("item with both a change and a sync: %+v", it)
			}
			continue
		}
		if err := it.Change.Validate(); err != nil {
			t.Fatalf("Convert(%v) produced an invalid change %+v: %v", e, it.Change, err)
		}
		if it.Change.Captured != captured.UnixNano() {
			t.Fatalf("Captured = %d", it.Change.Captured)
		}
	}
	return items
}

// summary renders items compactly: "op path[ detail]".
func summary(items []Item) string {
	var parts []string
	for _, it := range items {
		if it.Sync != "" {
			parts = append(parts, "sync "+it.Sync)
			continue
		}
		c := it.Change
		s := c.Op.String() + " " + c.Path
		switch c.Op {
		case change.OpRename, change.OpLink:
			s += " -> " + c.NewPath
		case change.OpSymlink:
			s += " @" + c.Target
		case change.OpReplaceFile:
			s += fmt.Sprintf(" %q %o", c.Data, c.Mode)
		case change.OpCreate, change.OpMkdir, change.OpChmod:
			s += fmt.Sprintf(" %o", c.Mode)
		case change.OpChown:
			s += fmt.Sprintf(" %d:%d", c.UID, c.GID)
		case change.OpSetXattr:
			s += fmt.Sprintf(" %s=%q", c.XattrName, c.XattrValue)
		case change.OpRemoveXattr:
			s += " " + c.XattrName
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func TestStageConvert(t *testing.T) {
	root := t.TempDir()
	s := newStageT(t, root)
	s.MaxInline = 16
	p := func(rel string) string { return filepath.Join(root, rel) }
	mtime := time.Date(2021, 5, 6, 7, 8, 9, 10, time.UTC)

	// Created small file: its content travels whole, then owner and xattrs.
	must(t, os.WriteFile(p("small"), []byte("hello"), 0o640))
	must(t, os.Chmod(p("small"), 0o640))
	must(t, os.Chtimes(p("small"), mtime, mtime))
	must(t, os.Lchown(p("small"), 1001, 1002))
	must(t, unix.Setxattr(p("small"), "user.color", []byte("blue"), 0))
	items := convert(t, s, Event{Kind: Created, Path: "small"})
	if got, want := summary(items), `replacefile small "hello" 640; chown small 1001:1002; setxattr small user.color="blue"`; got != want {
		t.Errorf("created small:\n got  %s\n want %s", got, want)
	}
	if items[0].Change.MTime != mtime.UnixNano() {
		t.Errorf("replacefile mtime %d, want %d", items[0].Change.MTime, mtime.UnixNano())
	}

	// Attrib: every attribute, and a removed xattr is noticed.
	must(t, unix.Removexattr(p("small"), "user.color"))
	must(t, unix.Setxattr(p("small"), "user.shape", []byte("round"), 0))
	must(t, unix.Chmod(p("small"), 0o4755)) // os.Chmod maps only os.FileMode bits
	items = convert(t, s, Event{Kind: Attrib, Path: "small"})
	if got, want := summary(items), `chown small 1001:1002; chmod small 4755; removexattr small user.color; setxattr small user.shape="round"; settimes small`; got != want {
		t.Errorf("attrib:\n got  %s\n want %s", got, want)
	}

	// Modified small file.
	must(t, os.WriteFile(p("small"), []byte("hello again"), 0))
	items = convert(t, s, Event{Kind: Modified, Path: "small"})
	if got := summary(items); !strings.HasPrefix(got, `replacefile small "hello again" 4755; chown small 1001:1002; chmod small 4755`) {
		t.Errorf("modified small: %s", got)
	}

	// Large file: left to block-level sync, mtime set after it.
	must(t, os.WriteFile(p("large"), bytes.Repeat([]byte("x"), 17), 0o600))
	items = convert(t, s, Event{Kind: Created, Path: "large"})
	if got, want := summary(items), `remove large; create large 600; chown large 0:0; sync large; settimes large`; got != want {
		t.Errorf("created large:\n got  %s\n want %s", got, want)
	}
	items = convert(t, s, Event{Kind: Modified, Path: "large"})
	if got, want := summary(items), `sync large; settimes large`; got != want {
		t.Errorf("modified large:\n got  %s\n want %s", got, want)
	}

	// Directory.
	must(t, os.Mkdir(p("d"), 0o750))
	must(t, unix.Chmod(p("d"), 0o2750))
	items = convert(t, s, Event{Kind: DirCreated, Path: "d", IsDir: true})
	if got, want := summary(items), `mkdir d 2750; chown d 0:0`; got != want {
		t.Errorf("dircreated:\n got  %s\n want %s", got, want)
	}
	items = convert(t, s, Event{Kind: Attrib, Path: "d", IsDir: true})
	if got, want := summary(items), `chown d 0:0; chmod d 2750; settimes d`; got != want {
		t.Errorf("attrib dir:\n got  %s\n want %s", got, want)
	}

	// Symlink: target and owner only.
	must(t, os.Symlink("../elsewhere", p("d/s")))
	items = convert(t, s, Event{Kind: Created, Path: "d/s"})
	if got, want := summary(items), `remove d/s; symlink d/s @../elsewhere; chown d/s 0:0`; got != want {
		t.Errorf("symlink:\n got  %s\n want %s", got, want)
	}

	// Hard link to a file the stage has seen: a link, not a copy.
	must(t, os.Link(p("small"), p("d/h")))
	items = convert(t, s, Event{Kind: Created, Path: "d/h"})
	if got, want := summary(items), `remove d/h; link small -> d/h`; got != want {
		t.Errorf("hard link:\n got  %s\n want %s", got, want)
	}

	// Rename and remove pass through.
	items = convert(t, s, Event{Kind: Renamed, OldPath: "d/h", Path: "d/h2"})
	if got, want := summary(items), `rename d/h -> d/h2`; got != want {
		t.Errorf("rename:\n got  %s\n want %s", got, want)
	}
	items = convert(t, s, Event{Kind: Removed, Path: "d", IsDir: true})
	if got, want := summary(items), `remove d`; got != want {
		t.Errorf("remove:\n got  %s\n want %s", got, want)
	}

	// Overflow and Unwatched are the caller's: no items.
	if items := convert(t, s, Event{Kind: Overflow}); len(items) != 0 {
		t.Errorf("overflow: %s", summary(items))
	}
}

// TestStageHardLinkFromScan: a file known only from the initial scan is
// recognised when it gets a second name.
func TestStageHardLinkFromScan(t *testing.T) {
	root := t.TempDir()
	write(t, root, "a/f", "x")
	s := newStageT(t, root)
	sc := Scanner{Root: root}
	must(t, sc.Scan("", func(e Entry) error { s.Observe(e); return nil }))
	// The directory holding it is renamed first: the stage follows.
	convert(t, s, Event{Kind: Renamed, OldPath: "a", Path: "b", IsDir: true})
	must(t, os.Rename(filepath.Join(root, "a"), filepath.Join(root, "b")))
	must(t, os.Link(filepath.Join(root, "b/f"), filepath.Join(root, "h")))
	if got, want := summary(convert(t, s, Event{Kind: Created, Path: "h"})), `remove h; link b/f -> h`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestStageMissingResolvedByRename: a write just before its directory was
// renamed is converted at the new path, after the rename.
func TestStageMissingResolvedByRename(t *testing.T) {
	root := t.TempDir()
	write(t, root, "d/sub/f", "new content")
	s := newStageT(t, root)
	sc := Scanner{Root: root}
	must(t, sc.Scan("", func(e Entry) error { s.Observe(e); return nil }))
	must(t, os.Rename(filepath.Join(root, "d"), filepath.Join(root, "e")))
	if items := convert(t, s, Event{Kind: Modified, Path: "d/sub/f"}); len(items) != 0 {
		t.Fatalf("modified at a vanished path: %s", summary(items))
	}
	if items := convert(t, s, Event{Kind: Attrib, Path: "d/sub", IsDir: true}); len(items) != 0 {
		t.Fatalf("attrib at a vanished path: %s", summary(items))
	}
	got := summary(convert(t, s, Event{Kind: Renamed, OldPath: "d", Path: "e", IsDir: true}))
	want := `rename d -> e; chown e/sub 0:0; chmod e/sub 755; settimes e/sub; replacefile e/sub/f "new content" 644; chown e/sub/f 0:0`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// A removal forgets what was missing below it.
	must(t, os.Remove(filepath.Join(root, "e/sub/f")))
	convert(t, s, Event{Kind: Modified, Path: "e/sub/f"})
	convert(t, s, Event{Kind: Removed, Path: "e/sub/f"})
	if len(s.missing) != 0 {
		t.Errorf("missing not forgotten: %v", s.missing)
	}
}

func TestStageUnsupportedType(t *testing.T) {
	root := t.TempDir()
	must(t, syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	s := newStageT(t, root)
	_, err := s.Convert(Event{Kind: Created, Path: "fifo", Time: captured})
	if !errors.Is(err, ErrUnsupportedType) {
		t.Fatalf("err = %v", err)
	}
}

// TestStageFollowsNoSymlink: a path through a symlink names nothing, whether
// the link points outside the root or inside it. (An event's path names the
// directories the change went through; one that has become a symlink since
// is not that directory.)
func TestStageFollowsNoSymlink(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	write(t, outside, "secret", "do not copy")
	write(t, root, "real/f", "not this one either")
	must(t, os.Symlink(outside, filepath.Join(root, "out")))
	must(t, os.Symlink("real", filepath.Join(root, "in")))
	s := newStageT(t, root)
	for _, p := range []string{"out/secret", "in/f"} {
		for _, k := range []Kind{Created, Modified, Attrib} {
			items, err := s.Convert(Event{Kind: k, Path: p, Time: captured})
			if err != nil || len(items) != 0 {
				t.Errorf("%v %s: got %s, %v; want nothing (the path does not exist)", k, p, summary(items), err)
			}
		}
	}
}

func TestScanner(t *testing.T) {
	root := t.TempDir()
	write(t, root, "b/f", "x")
	write(t, root, "a", "y")
	must(t, os.Symlink("a", filepath.Join(root, "s")))
	must(t, unix.Setxattr(filepath.Join(root, "a"), "user.k", []byte("v"), 0))
	write(t, root, "bad\xffname", "z")
	var got []string
	sc := Scanner{Root: root}
	err := sc.Scan("", func(e Entry) error {
		got = append(got, fmt.Sprintf("%s %v %s %v", e.Path, e.Mode.Type(), e.Target, e.Xattrs))
		return nil
	})
	if !errors.Is(err, ErrUnrepresentable) {
		t.Errorf("err = %v, want ErrUnrepresentable for the bad name", err)
	}
	want := []string{"a ----------  [user.k]", "b d---------  []", "b/f ----------  []", "s L--------- a []"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	got = nil
	must(t, sc.Scan("b", func(e Entry) error { got = append(got, e.Path); return nil }))
	if fmt.Sprint(got) != "[b b/f]" {
		t.Errorf("subtree scan: %v", got)
	}
	stop := errors.New("stop")
	if err := sc.Scan("", func(Entry) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("fn error not returned: %v", err)
	}
}

// TestStageStaleRenames: renames converted after the paths were reused must
// not carry the wrong object to the new name.
func TestStageStaleRenames(t *testing.T) {
	p := func(root, rel string) string { return filepath.Join(root, rel) }
	t.Run("old name reused before the rename was converted", func(t *testing.T) {
		root := t.TempDir()
		s := newStageT(t, root)
		write(t, root, "x", "first")
		must(t, os.Rename(p(root, "x"), p(root, "y")))
		write(t, root, "x", "second")
		// Events: created x, renamed x -> y, created x; converted late.
		got := summary(convert(t, s, Event{Kind: Created, Path: "x"}))
		if !strings.HasPrefix(got, `replacefile x "second"`) {
			t.Fatalf("created x: %s", got)
		}
		got = summary(convert(t, s, Event{Kind: Renamed, OldPath: "x", Path: "y"}))
		if want := `remove y; replacefile y "first" 644; chown y 0:0`; got != want {
			t.Errorf("renamed x -> y:\n got  %s\n want %s", got, want)
		}
	})
	t.Run("replica already holds the object at both names", func(t *testing.T) {
		root := t.TempDir()
		s := newStageT(t, root)
		write(t, root, "a", "A")
		convert(t, s, Event{Kind: Created, Path: "a"})
		must(t, os.Rename(p(root, "a"), p(root, "b")))
		convert(t, s, Event{Kind: Created, Path: "b"}) // a listing reported it first
		got := summary(convert(t, s, Event{Kind: Renamed, OldPath: "a", Path: "b"}))
		if got != "remove a" {
			t.Errorf("got %s, want remove a", got)
		}
	})
	t.Run("created and renamed before the creation was converted", func(t *testing.T) {
		root := t.TempDir()
		s := newStageT(t, root)
		write(t, root, "h", "old")
		convert(t, s, Event{Kind: Created, Path: "h"})
		write(t, root, "tmp", "new")
		must(t, os.Rename(p(root, "tmp"), p(root, "h")))
		if items := convert(t, s, Event{Kind: Created, Path: "tmp"}); len(items) != 0 {
			t.Fatalf("created tmp: %s", summary(items))
		}
		got := summary(convert(t, s, Event{Kind: Renamed, OldPath: "tmp", Path: "h"}))
		if want := `remove h; replacefile h "new" 644; chown h 0:0`; got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	})
	t.Run("directory renamed and its old name reused", func(t *testing.T) {
		root := t.TempDir()
		s := newStageT(t, root)
		write(t, root, "d/f", "old f")
		convert(t, s, Event{Kind: DirCreated, Path: "d", IsDir: true})
		must(t, os.Rename(p(root, "d"), p(root, "e")))
		write(t, root, "d/f", "new f")
		// d/f's creation is converted late: it reads the new d/f.
		convert(t, s, Event{Kind: Created, Path: "d/f"})
		got := summary(convert(t, s, Event{Kind: Renamed, OldPath: "d", Path: "e", IsDir: true}))
		if want := `rename d -> e; remove e/f; replacefile e/f "old f" 644; chown e/f 0:0`; got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	})
}
