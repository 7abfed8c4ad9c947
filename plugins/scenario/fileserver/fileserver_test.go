package fileserver

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/holdfast/holdfast/plugins/sdk"
)

func TestDescribe(t *testing.T) {
	info, err := New().Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != "fileserver" || info.DisplayName != "File Server" || info.EntityKind != "volume" {
		t.Fatalf("Describe = %+v", info)
	}
	if err := sdk.ValidateInfo(info); err != nil {
		t.Fatalf("Describe reply is invalid: %v", err)
	}
}

func devOf(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(fi.Sys().(*syscall.Stat_t).Dev)
}

func TestListEntities(t *testing.T) {
	tmp := t.TempDir()
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(tmp, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h := New()
	ctx := context.Background()

	tests := []struct {
		name    string
		roots   []string
		want    int    // entities
		wantErr string // substring
	}{
		{"one volume", []string{a, b + "/"}, 1, ""},
		{"duplicate root", []string{a, a}, 1, ""},
		{"no roots", nil, 0, "no roots"},
		{"missing root", []string{a, filepath.Join(tmp, "missing")}, 0, filepath.Join(tmp, "missing")},
		{"file root", []string{file}, 0, file + " is not a directory"},
		{"relative root", []string{"data"}, 0, `"data" is not an absolute path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := sdk.ScenarioConfig{Name: "s", Roots: tt.roots}
			ents, err := h.ListEntities(ctx, cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ListEntities = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != tt.want {
				t.Fatalf("got %d entities, want %d: %+v", len(ents), tt.want, ents)
			}
			if err := sdk.ValidateEntities(cfg, ents); err != nil {
				t.Fatalf("reply would be rejected: %v", err)
			}
			e := ents[0]
			if e.Kind != "volume" || e.Detail["mountpoint"] != e.Name || e.Detail["fstype"] == "" || e.Detail["device"] == "" {
				t.Fatalf("entity %+v", e)
			}
			if !sdk.Within(e.Name, a) {
				t.Fatalf("entity %q is not the mount holding %s", e.Name, a)
			}
		})
	}

	// A second file system, when the machine has one at hand, is a second
	// entity.
	const shm = "/dev/shm"
	if fi, err := os.Stat(shm); err == nil && fi.IsDir() && devOf(t, shm) != devOf(t, a) {
		cfg := sdk.ScenarioConfig{Roots: []string{a, shm, b}}
		ents, err := h.ListEntities(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 2 {
			t.Fatalf("roots on two file systems gave %d entities: %+v", len(ents), ents)
		}
		for _, e := range ents {
			if e.Name == shm && (len(e.Paths) != 1 || e.Paths[0] != shm) {
				t.Fatalf("entity %+v", e)
			}
			if e.Name != shm && len(e.Paths) != 2 {
				t.Fatalf("entity %+v should hold both temp roots", e)
			}
		}
	}
}

func TestMountInfo(t *testing.T) {
	mi := filepath.Join(t.TempDir(), "mountinfo")
	text := `26 1 254:0 / / rw,relatime - ext4 /dev/vda rw
24 23 0:22 / /dev/shm rw,relatime - tmpfs tmpfs rw
29 24 0:26 / /dev/shm rw,relatime - tmpfs tmpfs2 rw
40 26 8:1 / /srv/my\040data rw shared:1 master:2 - xfs /dev/sdb1 rw
`
	if err := os.WriteFile(mi, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	mounts, err := readMountInfo(mi)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, point, fstype, source string }{
		{"/etc", "/", "ext4", "/dev/vda"},
		{"/dev/shm/x", "/dev/shm", "tmpfs", "tmpfs2"}, // the later mount hides the earlier
		{"/srv/my data/sub", "/srv/my data", "xfs", "/dev/sdb1"},
		{"/srv/my datax", "/", "ext4", "/dev/vda"},
	}
	for _, tt := range tests {
		m, ok := mountOf(mounts, tt.path)
		if !ok || m.point != tt.point || m.fstype != tt.fstype || m.source != tt.source {
			t.Errorf("mountOf(%q) = %+v, %v", tt.path, m, ok)
		}
	}
	if err := os.WriteFile(mi, []byte("1 2 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readMountInfo(mi); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("malformed mountinfo: %v", err)
	}
}

func TestPrepareRelease(t *testing.T) {
	root := t.TempDir()
	h := New()
	ctx := context.Background()
	cfg := sdk.ScenarioConfig{ID: 1, Name: "s", Roots: []string{root}}
	ents, err := h.ListEntities(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := h.PrepareBackup(ctx, cfg, ents[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := sdk.ValidatePrepareResult(r); err != nil || r.Consistency != sdk.ConsistencyCrash {
		t.Fatalf("PrepareBackup = %+v (%v)", r, err)
	}
	if err := h.ReleaseBackup(ctx, r.HoldID); err != nil {
		t.Fatal(err)
	}
	if err := h.ReleaseBackup(ctx, r.HoldID); err == nil {
		t.Fatal("second release of the same hold succeeded")
	}
	if err := h.ReleaseBackup(ctx, "nonsense"); err == nil || !strings.Contains(err.Error(), "nonsense") {
		t.Fatalf("release of unknown hold = %v", err)
	}
	if _, err := h.PrepareBackup(ctx, cfg, "/nowhere"); err == nil || !strings.Contains(err.Error(), "no entity") {
		t.Fatalf("PrepareBackup of unknown entity = %v", err)
	}
}

func TestVerify(t *testing.T) {
	root := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.txt", "hello")
	write("dir/b.bin", strings.Repeat("x", 1<<20))
	write("dir/sub/c", "")
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	h := New()
	ctx := context.Background()
	res, err := h.Verify(ctx, sdk.VerifyRequest{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Passed || res.Checked != 3 || len(res.Problems) != 0 {
		t.Fatalf("Verify of a sound tree = %+v", res)
	}
	if err := sdk.ValidateVerifyResult(res); err != nil {
		t.Fatal(err)
	}

	// Make one file unreadable. Tests often run as root, which reads
	// anything, so the failure is injected where files are opened.
	bad := filepath.Join(root, "dir", "b.bin")
	write("weird\nname", "x")
	h.open = func(name string) (io.ReadCloser, error) {
		if name == bad || strings.HasSuffix(name, "\nname") {
			return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EIO}
		}
		return os.Open(name)
	}
	res, err = h.Verify(ctx, sdk.VerifyRequest{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if res.Passed || res.Checked != 4 || len(res.Problems) != 2 {
		t.Fatalf("Verify with unreadable files = %+v", res)
	}
	if !strings.Contains(strings.Join(res.Problems, "|"), "dir/b.bin: open: input/output error") {
		t.Fatalf("problems %q do not name dir/b.bin", res.Problems)
	}
	if err := sdk.ValidateVerifyResult(res); err != nil {
		t.Fatalf("reply would be rejected: %v", err)
	}

	if _, err := h.Verify(ctx, sdk.VerifyRequest{Root: "snap"}); err == nil {
		t.Fatal("relative root accepted")
	}
	if _, err := h.Verify(ctx, sdk.VerifyRequest{Root: filepath.Join(root, "missing")}); err == nil {
		t.Fatal("missing root accepted")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.Verify(cctx, sdk.VerifyRequest{Root: root}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Verify with a cancelled context = %v", err)
	}
}

func TestVerifyManyProblems(t *testing.T) {
	root := t.TempDir()
	for i := 0; i < sdk.MaxProblems+5; i++ {
		if err := os.WriteFile(filepath.Join(root, strings.Repeat("f", 1+i%200)+string(rune('a'+i/200))), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := New()
	h.open = func(name string) (io.ReadCloser, error) { return nil, errors.New("broken") }
	res, err := h.Verify(context.Background(), sdk.VerifyRequest{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if err := sdk.ValidateVerifyResult(res); err != nil {
		t.Fatalf("reply would be rejected: %v", err)
	}
	if last := res.Problems[len(res.Problems)-1]; !strings.Contains(last, "more problems") {
		t.Fatalf("last problem %q does not summarize the rest", last)
	}
}

func TestBeforeRestore(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h := New()
	tests := []struct {
		name    string
		dest    string
		wantErr string
	}{
		{"existing dir", tmp, ""},
		{"creatable", filepath.Join(tmp, "new", "deeper"), ""},
		{"empty", "", "empty"},
		{"relative", "restore/here", "not an absolute path"},
		{"file", file, "exists and is not a directory"},
		{"under a file", filepath.Join(file, "x"), "is not a directory"},
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(tmp, "ro")
		if err := os.Mkdir(ro, 0o555); err != nil {
			t.Fatal(err)
		}
		tests = append(tests,
			struct{ name, dest, wantErr string }{"read-only", ro, "not writable"},
			struct{ name, dest, wantErr string }{"under read-only", filepath.Join(ro, "x"), "cannot be created"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := h.BeforeRestore(context.Background(), sdk.RestoreRequest{Destination: tt.dest})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("BeforeRestore(%q) = %v, want error containing %q", tt.dest, err, tt.wantErr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(tmp, "new")); err == nil {
		t.Fatal("BeforeRestore created the destination")
	}
	if err := h.AfterRestore(context.Background(), sdk.RestoreRequest{Destination: tmp}); err != nil {
		t.Fatal(err)
	}
}
