package treesync

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/blocksync"
	"github.com/holdfast/holdfast/agent/change"
)

const (
	ns1 = int64(1764000000123456789)
	ns2 = int64(1234567890987654321)
)

// baseTree is a small tree with something of every kind.
func baseTree(t *testing.T, m string) {
	mkdir(t, m, "docs/sub", 0o750)
	write(t, m, "docs/readme.txt", []byte("hello\n"), 0o644)
	write(t, m, "docs/notes.md", []byte("# notes\n"), 0o600)
	write(t, m, "docs/sub/deep.txt", []byte("deep"), 0o640)
	write(t, m, "bin/tool", []byte("#!/bin/sh\necho tool\n"), 0o755)
	chmod(t, m, "bin/tool", 0o4755)
	symlink(t, m, "docs/readme.txt", "current")
	symlink(t, m, "/etc/passwd", "abs")
	write(t, m, "data/small.bin", random(1, 10<<10), 0o644)
	hardlink(t, m, "data/small.bin", "data/small.link")
	write(t, m, "data/empty", nil, 0o644)
	setXattr(t, m, "docs/readme.txt", "user.tag", "v1")
	setXattr(t, m, "docs", "user.dir", "d")
	chown(t, m, "docs/notes.md", 1234, 5678)
	chown(t, m, "abs", 4321, 8765)
	mkdir(t, m, "tmp", 0o1777)
	setMTime(t, m, "docs/readme.txt", ns1)
	setMTime(t, m, "current", ns2)
}

type scenario struct {
	name string
	// initial builds the master's first state, which a first pass
	// synchronizes to the empty replica.
	initial func(t *testing.T, m string)
	// change is then done to the master (and, to make the replica
	// diverge, to the replica), before the pass under test.
	change  func(t *testing.T, m, r string)
	planner func(p *Planner)
	check   func(t *testing.T, st Stats, rp *replica)
}

func count(rp *replica, op change.Op) int {
	n := 0
	for _, c := range rp.sent {
		if c.Op == op {
			n++
		}
	}
	return n
}

func scenarios() []scenario {
	big := random(2, 8<<20)
	huge := random(3, change.MaxData+(1<<20))
	return []scenario{
		{name: "empty replica", change: func(t *testing.T, m, _ string) { baseTree(t, m) },
			check: func(t *testing.T, st Stats, _ *replica) {
				if st.Dirs != 5 || st.Symlinks != 2 || st.HardLinks != 1 || st.FilesWhole != 6 || st.FilesBlock != 0 {
					t.Errorf("stats %+v: want 5 dirs, 2 symlinks, 1 hard link, 6 whole files", st)
				}
			}},
		{name: "identical trees", initial: baseTree, change: func(*testing.T, string, string) {},
			check: func(t *testing.T, st Stats, _ *replica) {
				if st.Changes != 0 {
					t.Errorf("%d changes for identical trees", st.Changes)
				}
			}},
		{name: "small edit goes whole", initial: baseTree,
			change: func(t *testing.T, m, _ string) { write(t, m, "docs/readme.txt", []byte("hello, world\n"), 0o644) },
			check: func(t *testing.T, st Stats, _ *replica) {
				if st.FilesWhole != 1 || st.FilesBlock != 0 {
					t.Errorf("stats %+v: want one whole file", st)
				}
			}},
		{name: "one percent of a large file goes block-level",
			initial: func(t *testing.T, m string) { write(t, m, "data/db", big, 0o600) },
			change:  func(t *testing.T, m, _ string) { write(t, m, "data/db", edit(big, 0.01, 1), 0o600) },
			check: func(t *testing.T, st Stats, _ *replica) {
				if st.FilesBlock != 1 || st.FilesWhole != 0 {
					t.Fatalf("stats %+v: want one file block-level", st)
				}
				if st.BytesDelta > int64(len(big))/10 {
					t.Errorf("delta of %d bytes for 1%% of %d bytes", st.BytesDelta, len(big))
				}
				t.Logf("8 MiB file, 1%% changed: delta %d bytes (%d literal, %d copied)", st.BytesDelta, st.BytesLiteral, st.BytesCopied)
			}},
		{name: "large file rewritten goes whole",
			initial: func(t *testing.T, m string) { write(t, m, "data/db", big[:4<<20], 0o600) },
			change:  func(t *testing.T, m, _ string) { write(t, m, "data/db", random(9, 4<<20), 0o600) },
			check: func(t *testing.T, st Stats, _ *replica) {
				if st.FilesBlock != 0 || st.FilesWhole != 1 {
					t.Errorf("stats %+v: want one whole file", st)
				}
			}},
		{name: "mode file sends large files whole",
			initial: func(t *testing.T, m string) { write(t, m, "data/db", big[:2<<20], 0o600) },
			change:  func(t *testing.T, m, _ string) { write(t, m, "data/db", edit(big[:2<<20], 0.01, 2), 0o600) },
			planner: func(p *Planner) { p.Mode = ModeFile },
			check: func(t *testing.T, st Stats, _ *replica) {
				if st.FilesBlock != 0 || st.FilesWhole != 1 {
					t.Errorf("stats %+v: want one whole file", st)
				}
			}},
		{name: "mode block sends small files as deltas",
			initial: func(t *testing.T, m string) { write(t, m, "small", big[:64<<10], 0o600) },
			change:  func(t *testing.T, m, _ string) { write(t, m, "small", edit(big[:64<<10], 0.01, 3), 0o600) },
			planner: func(p *Planner) { p.Mode = ModeBlock },
			check: func(t *testing.T, st Stats, _ *replica) {
				if st.FilesBlock != 1 || st.FilesWhole != 0 {
					t.Errorf("stats %+v: want one file block-level", st)
				}
			}},
		{name: "new file larger than one change",
			change: func(t *testing.T, m, _ string) {
				b := append(make([]byte, 8<<20), huge...) // 8 MiB of zeros first: a hole
				write(t, m, "huge", b, 0o640)
				chown(t, m, "huge", 7, 8)
			},
			check: func(t *testing.T, st Stats, rp *replica) {
				if st.FilesWhole != 1 || st.FilesBlock != 0 {
					t.Errorf("stats %+v: want one whole file", st)
				}
				// 25 MiB in 4 MiB chunks is 7 of them; the first two are zeros.
				if n := count(rp, change.OpWrite); n != 5 {
					t.Errorf("%d writes, want 5", n)
				}
			}},
		{name: "file larger than one change, one percent edited",
			initial: func(t *testing.T, m string) { write(t, m, "huge", huge, 0o600) },
			change:  func(t *testing.T, m, _ string) { write(t, m, "huge", edit(huge, 0.01, 4), 0o600) },
			check: func(t *testing.T, st Stats, _ *replica) {
				if st.FilesBlock != 1 || st.FilesWhole != 0 || st.BytesDelta > int64(len(huge))/10 {
					t.Errorf("stats %+v: want one small delta", st)
				}
			}},
		{name: "file larger than one change, rewritten",
			initial: func(t *testing.T, m string) { write(t, m, "huge", huge, 0o600) },
			change:  func(t *testing.T, m, _ string) { write(t, m, "huge", random(5, len(huge)-100), 0o600) },
			check: func(t *testing.T, st Stats, _ *replica) {
				if st.FilesBlock != 0 || st.FilesWhole != 1 {
					t.Errorf("stats %+v: want one whole file", st)
				}
			}},
		{name: "renames", initial: baseTree,
			change: func(t *testing.T, m, _ string) {
				rename(t, m, "docs/notes.md", "archive/notes-2025.md")
				rename(t, m, "docs/sub", "moved/sub")
				rename(t, m, "bin/tool", "docs/readme.txt") // over an existing file
			},
			check: func(t *testing.T, st Stats, _ *replica) {
				if st.Removed != 4 {
					t.Errorf("removed %d, want 4 (two files, a directory and its file)", st.Removed)
				}
			}},
		{name: "deletes", initial: baseTree,
			change: func(t *testing.T, m, _ string) {
				remove(t, m, "docs")
				remove(t, m, "current")
				remove(t, m, "data/small.link")
			},
			check: func(t *testing.T, st Stats, _ *replica) {
				if st.Removed != 7 || st.FilesWhole != 0 {
					t.Errorf("stats %+v: want 7 removals and nothing sent", st)
				}
			}},
		{name: "type changes", initial: func(t *testing.T, m string) {
			baseTree(t, m)
			write(t, m, "f2d", []byte("file"), 0o644)
			mkdir(t, m, "d2f/inner", 0o755)
			write(t, m, "d2f/inner/x", []byte("x"), 0o644)
			write(t, m, "f2l", []byte("file"), 0o644)
			symlink(t, m, "somewhere", "l2f")
			mkdir(t, m, "d2l", 0o755)
			write(t, m, "d2l/y", []byte("y"), 0o644)
			symlink(t, m, "elsewhere", "l2d")
		}, change: func(t *testing.T, m, _ string) {
			remove(t, m, "f2d")
			write(t, m, "f2d/child", []byte("now a directory"), 0o600)
			remove(t, m, "d2f")
			write(t, m, "d2f", []byte("now a file"), 0o600)
			remove(t, m, "f2l")
			symlink(t, m, "docs", "f2l")
			remove(t, m, "l2f")
			write(t, m, "l2f", []byte("now a file"), 0o600)
			remove(t, m, "d2l")
			symlink(t, m, "docs", "d2l")
			remove(t, m, "l2d")
			mkdir(t, m, "l2d/deeper", 0o700)
			remove(t, m, "current")
			symlink(t, m, "docs/notes.md", "current")
		}},
		{name: "metadata", initial: baseTree,
			change: func(t *testing.T, m, _ string) {
				chmod(t, m, "docs/readme.txt", 0o600)
				chmod(t, m, "docs/sub", 0o2770)
				chown(t, m, "docs/readme.txt", 10, 20)
				chown(t, m, "docs/sub", 30, 40)
				chown(t, m, "current", 50, 60)
				chown(t, m, "bin/tool", 70, 80) // clears setuid on the master too
				chmod(t, m, "bin/tool", 0o6755)
				setMTime(t, m, "data/small.bin", ns2) // equal content
				setMTime(t, m, "current", ns1)
				setXattr(t, m, "docs/readme.txt", "user.tag", "v2")
				setXattr(t, m, "docs/readme.txt", "user.new", "")
				removeXattr(t, m, "docs", "user.dir")
				setXattr(t, m, "tmp", "user.t", "on a directory")
			},
			check: func(t *testing.T, st Stats, _ *replica) {
				// The quick check cannot tell a new mtime from new content:
				// data/small.bin (and only it) is sent again.
				if st.FilesWhole != 1 || st.FilesBlock != 0 || st.MetadataFixes < 10 {
					t.Errorf("stats %+v: want one file resent and the metadata fixed", st)
				}
			}},
		{name: "hard links", initial: baseTree,
			change: func(t *testing.T, m, _ string) {
				hardlink(t, m, "docs/readme.txt", "docs/readme.link")    // a new name of an old file
				remove(t, m, "data/small.link")                          // a link broken:
				write(t, m, "data/small.link", random(1, 10<<10), 0o644) // same content, own inode
				write(t, m, "new/a", []byte("group of three"), 0o644)
				hardlink(t, m, "new/a", "new/b")
				hardlink(t, m, "new/a", "z/c")
				hardlink(t, m, "docs/notes.md", "new/notes") // from a new directory to an old file
			},
			check: func(t *testing.T, st Stats, _ *replica) {
				if st.HardLinks != 4 {
					t.Errorf("%d hard links, want 4", st.HardLinks)
				}
			}},
		{name: "hard-linked file edited", initial: baseTree,
			change: func(t *testing.T, m, _ string) {
				write(t, m, "data/small.bin", random(11, 12<<10), 0o644)
			},
			check: func(t *testing.T, st Stats, _ *replica) {
				if st.FilesWhole != 1 || st.HardLinks != 0 {
					t.Errorf("stats %+v: want the shared content sent once", st)
				}
			}},
		{name: "nested new directories", initial: baseTree,
			change: func(t *testing.T, m, _ string) {
				for _, d := range []string{"a", "a/b", "a/b/c", "a/b/c/d", "a/b/c/d/e"} {
					mkdir(t, m, d, 0o751)
					write(t, m, d+"/file", []byte(d), 0o604)
				}
				chmod(t, m, "a/b", 0o700)
				symlink(t, m, "../../..", "a/b/c/up")
				setXattr(t, m, "a/b/c", "user.x", "y")
			},
			check: func(t *testing.T, st Stats, _ *replica) {
				if st.Dirs != 5 || st.FilesWhole != 5 {
					t.Errorf("stats %+v: want 5 directories and 5 files", st)
				}
			}},
		{name: "replica diverged", initial: baseTree,
			change: func(t *testing.T, _, r string) {
				write(t, r, "extra/deep/file", []byte("not on the master"), 0o644)
				write(t, r, "docs/extra", []byte("nor this"), 0o644)
				chmod(t, r, "docs/readme.txt", 0o777)
				remove(t, r, "docs/notes.md")
				write(t, r, "data/small.bin", []byte("shorter"), 0o644) // both names: a shared inode
				remove(t, r, "docs/sub")
				symlink(t, r, "/", "docs/sub")
				setXattr(t, r, "bin/tool", "user.stray", "x")
			}},
		{name: "rename and reuse of the old name", initial: baseTree,
			change: func(t *testing.T, m, _ string) {
				rename(t, m, "docs", "docs.old")
				write(t, m, "docs", []byte("a file where the directory was"), 0o644)
			}},
	}
}

// TestSync runs every scenario: a first pass makes an empty replica equal
// the master's initial tree, then the master (or replica) changes and a
// second pass must make the replica equal again, as a fresh scan and
// compare of both trees prove.
func TestSync(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the scenarios set owners: run as root")
	}
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			base := t.TempDir()
			m, r := filepath.Join(base, "master"), filepath.Join(base, "replica")
			mkdir(t, base, "master", 0o755)
			mkdir(t, base, "replica", 0o755)
			rp := openReplica(t, r)
			if sc.initial != nil {
				sc.initial(t, m)
				pass(t, m, rp, nil)
			}
			sc.change(t, m, r)
			st := pass(t, m, rp, sc.planner)
			if st.Changes == 0 && sc.name != "identical trees" {
				t.Errorf("nothing emitted: the scenario changed nothing Compare sees")
			}
			if sc.check != nil {
				sc.check(t, st, rp)
			}
			if t.Failed() {
				t.Logf("emitted: %v", rp.sent)
			}
		})
	}
}

// pass scans both trees, compares, synchronizes, and checks that the trees
// then compare equal.
func pass(t *testing.T, m string, rp *replica, tune func(*Planner)) Stats {
	t.Helper()
	master := scan(t, m)
	diffs := Compare(master, scan(t, rp.root))
	p := rp.planner(m, Links(master))
	if tune != nil {
		tune(p)
	}
	st, err := p.Sync(diffs)
	if err != nil {
		t.Fatalf("sync: %v\ndifferences:%s", err, report(diffs))
	}
	if after := Compare(scan(t, m), scan(t, rp.root)); len(after) > 0 {
		t.Fatalf("after sync, still:%s\nwas:%s\nemitted: %v", report(after), report(diffs), rp.sent)
	}
	if left := tempLeft(t, rp.root); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if int64(len(rp.sent)) != st.Changes {
		t.Errorf("Stats.Changes = %d, %d emitted", st.Changes, len(rp.sent))
	}
	return st
}

// TestSyncChangedDuringRead: a master file written while the planner reads
// it is reported (ErrChanged), nothing is sent for it, everything else is
// synchronized, and the next pass catches up.
func TestSyncChangedDuringRead(t *testing.T) {
	for _, size := range []int{100, 3 << 20, change.MaxData + 5} {
		base := t.TempDir()
		m, r := filepath.Join(base, "master"), filepath.Join(base, "replica")
		mkdir(t, base, "master", 0o755)
		mkdir(t, base, "replica", 0o755)
		rp := openReplica(t, r)
		write(t, m, "stable", []byte("stable"), 0o644)
		write(t, m, "busy", random(6, size), 0o644)
		pass(t, m, rp, nil)
		write(t, m, "busy", random(7, size), 0o644)
		write(t, m, "stable", []byte("stable, edited"), 0o644)

		master := scan(t, m)
		diffs := Compare(master, scan(t, r))
		p := rp.planner(m, Links(master))
		p.afterRead = func(rel string) {
			if rel == "busy" {
				f, err := os.OpenFile(filepath.Join(m, rel), os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				_, err = f.Write([]byte("appended while being read"))
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		st, err := p.Sync(diffs)
		if !errors.Is(err, ErrIncomplete) || !errors.Is(err, ErrChanged) {
			t.Fatalf("size %d: Sync = %v, want ErrIncomplete and ErrChanged", size, err)
		}
		if len(st.Problems) != 1 || st.Problems[0].Path != "busy" {
			t.Fatalf("size %d: problems %v, want just busy", size, st.Problems)
		}
		if got := readFile(t, r, "stable"); string(got) != "stable, edited" {
			t.Errorf("size %d: the other file was not synchronized: %q", size, got)
		}
		if size <= change.MaxData {
			if count(rp, change.OpReplaceFile)+count(rp, change.OpPatch) != 1 {
				t.Errorf("size %d: emitted %v; want content for stable only", size, rp.sent)
			}
		}
		pass(t, m, rp, nil) // the caller queues it again
	}
}

// TestSyncSignatureFails: a replica that cannot give a signature gets the
// file whole.
func TestSyncSignatureFails(t *testing.T) {
	base := t.TempDir()
	m, r := filepath.Join(base, "master"), filepath.Join(base, "replica")
	mkdir(t, base, "master", 0o755)
	mkdir(t, base, "replica", 0o755)
	rp := openReplica(t, r)
	b := random(8, 2<<20)
	write(t, m, "f", b, 0o644)
	pass(t, m, rp, nil)
	write(t, m, "f", edit(b, 0.01, 9), 0o644)
	st := pass(t, m, rp, func(p *Planner) {
		p.Signature = func(string) (blocksync.Signature, error) {
			return blocksync.Signature{}, errors.New("replica unreachable")
		}
	})
	if st.FilesWhole != 1 || len(st.SignatureErrors) != 1 {
		t.Errorf("stats %+v: want the file whole and the signature error listed", st)
	}
	// A signature that does not hold together is the replica's fault too.
	write(t, m, "f", edit(b, 0.01, 10), 0o644)
	st = pass(t, m, rp, func(p *Planner) {
		p.Signature = func(string) (blocksync.Signature, error) {
			return blocksync.Signature{BlockSize: 4096, FileSize: 1 << 20}, nil
		}
	})
	if st.FilesWhole != 1 || len(st.SignatureErrors) != 1 {
		t.Errorf("stats %+v: want the file whole and the signature error listed", st)
	}
}

// TestSyncUnsupported: a FIFO on the master cannot be replicated; it is a
// problem, and the rest is synchronized.
func TestSyncUnsupported(t *testing.T) {
	base := t.TempDir()
	m, r := filepath.Join(base, "master"), filepath.Join(base, "replica")
	mkdir(t, base, "master", 0o755)
	mkdir(t, base, "replica", 0o755)
	rp := openReplica(t, r)
	write(t, m, "file", []byte("x"), 0o644)
	if err := unix.Mkfifo(filepath.Join(m, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	master := scan(t, m)
	diffs := Compare(master, scan(t, r))
	st, err := rp.planner(m, nil).Sync(diffs)
	if !errors.Is(err, ErrUnsupported) || len(st.Problems) != 1 {
		t.Fatalf("Sync = %v (%v), want one ErrUnsupported", err, st.Problems)
	}
	after := Compare(scan(t, m), scan(t, r))
	if len(after) != 1 || after[0].Path != "fifo" || after[0].Kind != MissingOnReplica {
		t.Errorf("after sync:%s\nwant only the FIFO missing", report(after))
	}
}

// TestSyncBadMode: an unknown mode is refused before anything is emitted.
func TestSyncBadMode(t *testing.T) {
	p := &Planner{MasterRoot: t.TempDir(), Mode: "fast", Emit: func(change.Change) error {
		t.Fatal("emitted")
		return nil
	}}
	if _, err := p.Sync(nil); err == nil {
		t.Fatal("Sync with mode \"fast\" succeeded")
	}
}

// TestSyncEmitError: an error of Emit stops Sync and is returned.
func TestSyncEmitError(t *testing.T) {
	m := t.TempDir()
	write(t, m, "a", []byte("a"), 0o644)
	write(t, m, "b", []byte("b"), 0o644)
	boom := errors.New("transport down")
	n := 0
	p := &Planner{MasterRoot: m, Emit: func(change.Change) error { n++; return boom }}
	_, err := p.Sync(Compare(scan(t, m), nil))
	if !errors.Is(err, boom) || n != 1 {
		t.Fatalf("Sync = %v after %d emits, want the Emit error after 1", err, n)
	}
}

// TestSyncLeavesWhatItCannotSee: an extra replica directory that could not
// be listed is not removed (nor are its ancestors), and a master entry
// below a new directory that cannot be replicated is reported while its
// siblings are synchronized.
func TestSyncLeavesWhatItCannotSee(t *testing.T) {
	m := t.TempDir()
	write(t, m, "new/ok", []byte("fine"), 0o644)
	write(t, m, "new/bad\xffname", []byte("not UTF-8"), 0o644)
	var sent []change.Change
	p := &Planner{MasterRoot: m, Emit: func(c change.Change) error { sent = append(sent, c); return nil }}
	dirEntry := func(p string, unlisted bool) *Entry {
		return &Entry{Path: p, Type: Dir, Mode: 0o755, Unlisted: unlisted}
	}
	master, scanProblems, err := Scan(m, ScanOptions{})
	if err != nil || len(scanProblems) != 1 {
		t.Fatalf("scan: %v, problems %v; want the one name", err, scanProblems)
	}
	diffs := Compare(master, []Entry{*dirEntry("x", false), *dirEntry("x/y", true), *dirEntry("x/z", false)})
	st, err := p.Sync(diffs)
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Sync = %v, want ErrIncomplete", err)
	}
	var problems []string
	for _, pr := range st.Problems {
		problems = append(problems, pr.Path)
	}
	if want := []string{"new/bad\xffname", "x/y"}; len(problems) != 2 || problems[0] != want[0] || problems[1] != want[1] {
		t.Errorf("problems %q, want %q", problems, want)
	}
	var ops []string
	for _, c := range sent {
		if c.Op != change.OpChown && c.Op != change.OpSetTimes {
			ops = append(ops, c.Op.String()+" "+c.Path)
		}
	}
	want := []string{"mkdir new", "replacefile new/ok", "remove x/z"}
	if strings.Join(ops, ", ") != strings.Join(want, ", ") {
		t.Errorf("emitted %q, want %q", ops, want)
	}
}
