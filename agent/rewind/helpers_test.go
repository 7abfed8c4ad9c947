package rewind

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/apply"
	"github.com/holdfast/holdfast/agent/change"
)

// digest lists every entry of the tree with its type, mode, owner, mtime
// (not the root's, nor link counts), size, content hash, link target and
// extended attributes: two trees are equal when their digests are.
func digest(t testing.TB, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		if rel == apply.StateDir {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s type=%o mode=%o uid=%d gid=%d mtime=%d", rel, st.Mode&unix.S_IFMT, st.Mode&0o7777, st.Uid, st.Gid, st.Mtim.Nano())
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			line += fmt.Sprintf(" size=%d sha=%s", len(b), hex.EncodeToString(sum[:8]))
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			line += " -> " + target
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			buf := make([]byte, 4096)
			n, _ := unix.Listxattr(p, buf)
			names := strings.Split(strings.Trim(string(buf[:n]), "\x00"), "\x00")
			sort.Strings(names)
			for _, name := range names {
				if name == "" {
					continue
				}
				v := make([]byte, 65536)
				m, _ := unix.Getxattr(p, name, v)
				line += fmt.Sprintf(" %s=%x", name, v[:max(m, 0)])
			}
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatalf("digest %s: %v", root, err)
	}
	return strings.Join(lines, "\n")
}

func openR(t testing.TB, dir string, opts Options) *Replica {
	t.Helper()
	if opts.Log == nil {
		opts.Log = discardLog()
	}
	r, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// seqs numbers changes from first on.
func seqs(first uint64, cs ...change.Change) []change.Change {
	for i := range cs {
		cs[i].Seq = first + uint64(i)
	}
	return cs
}

func diffDigest(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var out []string
	gs := map[string]bool{}
	for _, l := range g {
		gs[l] = true
	}
	ws := map[string]bool{}
	for _, l := range w {
		ws[l] = true
	}
	for _, l := range w {
		if !gs[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range g {
		if !ws[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
