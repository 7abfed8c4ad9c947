package snapshot

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/apply"
)

func TestCreate(t *testing.T) {
	for _, fsys := range filesystems {
		t.Run(fsys.name, func(t *testing.T) {
			src, s := newReplica(t, fsys.dir(t))
			want := digest(t, src, true)
			var calls, lastFiles, lastBytes int64
			in, err := s.Create(context.Background(), src, Meta{Scenario: "fs1", Label: "nightly"}, func(f, b int64) {
				calls++
				lastFiles, lastBytes = f, b
			})
			must(t, err)
			if in.Method != fsys.method {
				t.Errorf("Method = %q, want %q", in.Method, fsys.method)
			}
			if in.Consistency != CrashConsistent || in.Scenario != "fs1" || in.Label != "nightly" {
				t.Errorf("Info = %+v", in)
			}
			// a/file and its two other names count once
			if in.Files != 9 || in.Files != lastFiles || in.Bytes != lastBytes || calls < in.Files {
				t.Errorf("Files %d, Bytes %d; progress %d calls, last %d files %d bytes", in.Files, in.Bytes, calls, lastFiles, lastBytes)
			}
			tree := filepath.Join(s.Dir(), in.ID, treeName)
			sameDigest(t, "snapshot", digest(t, tree, false), want)
			if _, err := os.Lstat(filepath.Join(tree, apply.StateDir)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the state directory is in the snapshot: %v", err)
			}
			if b := blocks(t, filepath.Join(tree, "sparse")); b*512 >= 1<<20 {
				t.Errorf("sparse file takes %d bytes in the snapshot, want only its 4 KiB of data", b*512)
			}
			for _, p := range []string{s.Dir(), filepath.Join(s.Dir(), in.ID)} {
				if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o700 {
					t.Errorf("%s: mode %v, %v; want 0700", p, fi.Mode(), err)
				}
			}
			got, err := s.Get(in.ID)
			if err != nil || got != in {
				t.Errorf("Get = %+v, %v; want %+v", got, err, in)
			}

			// The replica goes on changing; the snapshot does not.
			f, err := os.OpenFile(filepath.Join(src, "a/file"), os.O_WRONLY, 0)
			must(t, err)
			_, err = f.WriteAt([]byte("changed in place"), 100)
			must(t, err)
			must(t, f.Close())
			must(t, os.Truncate(filepath.Join(src, "a/b/big"), 10))
			must(t, os.Rename(filepath.Join(src, "a/b"), filepath.Join(src, "a/c")))
			must(t, os.Remove(filepath.Join(src, "empty")))
			must(t, os.WriteFile(filepath.Join(src, "sparse"), []byte("rewritten"), 0o644))
			must(t, unix.Setxattr(filepath.Join(src, "a"), "user.dir", []byte("new"), 0))
			sameDigest(t, "snapshot after the replica changed", digest(t, tree, false), want)
		})
	}
}

func TestView(t *testing.T) {
	src, s := newReplica(t, t.TempDir())
	must(t, os.WriteFile(filepath.Join(filepath.Dir(src), "outside"), []byte("secret"), 0o644))
	in, err := s.Create(context.Background(), src, Meta{}, nil)
	must(t, err)
	v, err := s.Open(in.ID)
	must(t, err)
	defer v.Close()
	if v.Info() != in {
		t.Errorf("Info = %+v, want %+v", v.Info(), in)
	}

	f, err := v.Open("rel-link")
	must(t, err)
	b, err := io.ReadAll(f)
	must(t, err)
	must(t, f.Close())
	if want, _ := os.ReadFile(filepath.Join(src, "a/file")); string(b) != string(want) {
		t.Error("rel-link does not read a/file's content")
	}
	if target, err := v.Readlink("abs-link"); err != nil || target != "/etc/passwd" {
		t.Errorf("Readlink(abs-link) = %q, %v", target, err)
	}
	if fi, err := v.Lstat("abs-link"); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("Lstat(abs-link) = %v, %v; want a symlink", fi, err)
	}
	ents, err := v.ReadDir(".")
	must(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "a abs-link dangling dirlink empty fifo hl2 rel-link ro sparse sticky up" {
		t.Errorf("ReadDir(.) = %s", got)
	}
	for _, name := range []string{"up", "abs-link", "../outside", "/etc/passwd", "a/../../outside"} {
		if f, err := v.Open(name); err == nil {
			_ = f.Close()
			t.Errorf("Open(%q) left the snapshot", name)
		}
	}
	if _, err := v.Lstat("../" + filepath.Base(src)); err == nil {
		t.Error("Lstat(..) left the snapshot")
	}

	if err := s.Release(in.ID); !errors.Is(err, ErrInUse) {
		t.Fatalf("Release of a viewed snapshot = %v, want ErrInUse", err)
	}
	must(t, v.Close())
	must(t, s.Release(in.ID))
	if _, err := s.Open(in.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open of a released snapshot = %v, want ErrNotFound", err)
	}
}

func TestKeepAndRelease(t *testing.T) {
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644))
	s, err := OpenStore(filepath.Join(src, apply.StateDir, "snapshots"))
	must(t, err)
	var ids []string
	for range 5 {
		in, err := s.Create(context.Background(), src, Meta{}, nil)
		must(t, err)
		ids = append(ids, in.ID)
	}
	list, err := s.List()
	must(t, err)
	if len(list) != 5 {
		t.Fatalf("List has %d snapshots, want 5", len(list))
	}
	for i, in := range list {
		if in.ID != ids[i] {
			t.Fatalf("List[%d] = %s, want %s (oldest first)", i, in.ID, ids[i])
		}
	}

	v, err := s.Open(ids[0])
	must(t, err)
	released, err := s.Keep(3)
	if !errors.Is(err, ErrInUse) || len(released) != 1 || released[0].ID != ids[1] {
		t.Fatalf("Keep(3) with the oldest open = %v, %v; want %s released and ErrInUse", released, err, ids[1])
	}
	must(t, v.Close())
	released, err = s.Keep(3)
	if err != nil || len(released) != 1 || released[0].ID != ids[0] {
		t.Fatalf("Keep(3) = %v, %v; want %s released", released, err, ids[0])
	}
	list, err = s.List()
	must(t, err)
	if len(list) != 3 || list[0].ID != ids[2] || list[2].ID != ids[4] {
		t.Fatalf("after Keep(3): %v", list)
	}
	if released, err := s.Keep(3); err != nil || len(released) != 0 {
		t.Errorf("Keep(3) again = %v, %v; want nothing", released, err)
	}
	if _, err := s.Keep(-1); err == nil {
		t.Error("Keep(-1) succeeded")
	}

	for _, id := range []string{ids[0], "20260101T000000.000Z-001", "../../etc", ""} {
		if err := s.Release(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Release(%q) = %v, want ErrNotFound", id, err)
		}
		if _, err := s.Get(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
		}
	}

	must(t, s.SetConsistency(ids[4], ApplicationConsistent))
	if err := s.SetConsistency(ids[4], "quiet"); err == nil {
		t.Error("SetConsistency accepted an unknown value")
	}
	s2, err := OpenStore(s.Dir())
	must(t, err)
	if in, err := s2.Get(ids[4]); err != nil || in.Consistency != ApplicationConsistent {
		t.Errorf("after SetConsistency and reopening: %+v, %v", in, err)
	}
}

func TestLeftoversRemoved(t *testing.T) {
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644))
	dir := filepath.Join(t.TempDir(), "snapshots")
	s, err := OpenStore(dir)
	must(t, err)
	kept, err := s.Create(context.Background(), src, Meta{}, nil)
	must(t, err)

	// What a Create and a Release killed half-way leave.
	for _, name := range []string{"20260101T000000.000Z-001" + partialSuffix, "20260101T000000.000Z-002" + releaseSuffix} {
		must(t, os.MkdirAll(filepath.Join(dir, name, treeName, "ro"), 0o700))
		must(t, os.WriteFile(filepath.Join(dir, name, treeName, "ro", "f"), []byte("x"), 0o600))
		must(t, os.Chmod(filepath.Join(dir, name, treeName, "ro"), 0o500))
	}
	// And a Create still running in another process (its lock is held).
	live := filepath.Join(dir, "20260101T000000.000Z-003"+partialSuffix)
	must(t, os.Mkdir(live, 0o700))
	lock, err := lockDir(live, unix.LOCK_EX|unix.LOCK_NB)
	must(t, err)

	if _, err := OpenStore(dir); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	must(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got, want := strings.Join(names, " "), "20260101T000000.000Z-003.partial "+kept.ID; got != want {
		t.Fatalf("after OpenStore the store holds %q, want %q", got, want)
	}
	must(t, lock.Close())
	list, err := s.List()
	must(t, err)
	if len(list) != 1 || list[0].ID != kept.ID {
		t.Errorf("List = %v", list)
	}
	if _, err := os.Stat(live); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the partial snapshot whose creator is gone is still there: %v", err)
	}
}

func TestCreateCancelled(t *testing.T) {
	src, s := newReplica(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	_, err := s.Create(ctx, src, Meta{}, func(files, _ int64) {
		if files == 3 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Create = %v, want context.Canceled", err)
	}
	ents, err := os.ReadDir(s.Dir())
	must(t, err)
	if len(ents) != 0 {
		t.Errorf("the store holds %v after a cancelled Create", ents)
	}
}

func TestNoSpace(t *testing.T) {
	small := tmpfsDir(t, "2m")
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "small"), []byte("fits"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "large"), randBytes(9, 4<<20), 0o644))
	s, err := OpenStore(filepath.Join(small, "snapshots"))
	must(t, err)
	_, err = s.Create(context.Background(), src, Meta{}, nil)
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), `"large"`) {
		t.Fatalf("Create on a full filesystem = %v, want ErrNoSpace naming \"large\"", err)
	}
	ents, err := os.ReadDir(s.Dir())
	must(t, err)
	if len(ents) != 0 {
		t.Errorf("the store holds %v after running out of space", ents)
	}
	if list, err := s.List(); err != nil || len(list) != 0 {
		t.Errorf("List = %v, %v; want nothing", list, err)
	}
}

func TestIDOrder(t *testing.T) {
	tests := []struct{ a, b string }{
		{"20260101T000000.000Z-999", "20260101T000000.000Z-1000"},
		{"20260101T000000.000Z-002", "20260101T000000.001Z-001"},
		{"20251231T235959.999Z-500", "20260101T000000.000Z-001"},
	}
	for _, tt := range tests {
		if !idLess(tt.a, tt.b) || idLess(tt.b, tt.a) {
			t.Errorf("%s should sort before %s", tt.a, tt.b)
		}
	}
}
