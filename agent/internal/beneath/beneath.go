// Package beneath opens names below a directory descriptor without ever
// leaving it: no "..", no absolute path, and no symlink of any kind on the
// way, the last component included. The replica applier and the restore
// writer resolve every name they write through it, because in both the
// names and symlink targets come from elsewhere (the master, a backup)
// and following one could write where nobody asked.
package beneath

import (
	"os"

	"golang.org/x/sys/unix"
)

// Resolve is the openat2 resolution every lookup uses.
const Resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// Open opens name below dirfd with Resolve. mode is used only with
// O_CREAT. ELOOP means a symlink on the way, EXDEV a path leaving dirfd.
func Open(dirfd int, name string, flags int, mode uint32) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags) | unix.O_CLOEXEC, Resolve: Resolve}
	if flags&unix.O_CREAT != 0 {
		how.Mode = uint64(mode)
	}
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(dirfd, name, &how)
		// EAGAIN: the kernel saw a concurrent rename or mount during a
		// RESOLVE_BENEATH walk and asks for a retry.
		if (err == unix.EINTR || err == unix.EAGAIN) && tries < 16 {
			continue
		}
		if err != nil {
			return -1, os.NewSyscallError("openat2", err)
		}
		return fd, nil
	}
}
