// Package testfs gives tests small filesystems of their own: a tmpfs of a
// chosen size, to fill up (the disk-full paths of the applier, the spool,
// snapshots, the disk store and restores) or to make fsync cost nothing.
package testfs

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// TryTmpfs mounts a tmpfs of size (mount's syntax: "512k", "8m" or bytes)
// on dir, unmounted when the test ends, or says why it could not (not
// root, no permission to mount).
func TryTmpfs(t testing.TB, dir, size string) error {
	t.Helper()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+size+",mode=0755"); err != nil {
		return fmt.Errorf("mount a %s tmpfs on %s (needs root and mount permission): %w", size, dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return nil
}

// Tmpfs is TryTmpfs on dir that skips the test, with the reason, when the
// tmpfs cannot be mounted.
func Tmpfs(t testing.TB, dir, size string) string {
	t.Helper()
	if err := TryTmpfs(t, dir, size); err != nil {
		t.Skip(err)
	}
	return dir
}
