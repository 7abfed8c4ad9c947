package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// treeDigest lists every entry below root with its metadata and content
// hash, one line each, sorted: two trees are identical when their digests
// are. skip names top-level entries to leave out (the replica's own state
// folder). The root's own times are left out: they move when that state
// folder is written.
func treeDigest(root string, skip ...string) ([]string, error) {
	var lines []string
	inodes := map[uint64]string{} // inode -> first path, to record hard links
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		for _, s := range skip {
			if rel == s {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("lstat %s: %w", p, err)
		}
		line := fmt.Sprintf("%s type=%o mode=%o uid=%d gid=%d mtime=%d", rel, st.Mode&syscall.S_IFMT, st.Mode&0o7777, st.Uid, st.Gid, st.Mtim.Nano())
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			sum, err := fileHash(p)
			if err != nil {
				return err
			}
			line += " size=" + fmt.Sprint(st.Size) + " sha256=" + sum
			if st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					line += " link-of=" + first
				} else {
					inodes[st.Ino] = rel
				}
			}
		case syscall.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " target=" + target
		}
		x, err := xattrs(p)
		if err != nil {
			return err
		}
		lines = append(lines, line+x)
		return nil
	})
	sort.Strings(lines)
	return lines, err
}

func fileHash(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func xattrs(p string) (string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		if err == unix.ENOTSUP {
			return "", nil
		}
		return "", fmt.Errorf("list xattrs of %s: %w", p, err)
	}
	var names []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			return "", fmt.Errorf("read xattr %s of %s: %w", name, p, err)
		}
		fmt.Fprintf(&b, " xattr:%s=%x", name, v[:m])
	}
	return b.String(), nil
}

// diffLines says where two digests first differ, for a readable failure.
func diffLines(a, b []string) string {
	as, bs := map[string]bool{}, map[string]bool{}
	for _, l := range a {
		as[l] = true
	}
	for _, l := range b {
		bs[l] = true
	}
	var out []string
	for _, l := range a {
		if !bs[l] {
			out = append(out, "master only:  "+l)
		}
	}
	for _, l := range b {
		if !as[l] {
			out = append(out, "replica only: "+l)
		}
	}
	if len(out) > 20 {
		out = append(out[:20], fmt.Sprintf("... and %d more", len(out)-20))
	}
	return strings.Join(out, "\n")
}
