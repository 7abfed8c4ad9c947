package apply

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// The state file, <target>/.holdfast/applied, holds LastApplied in two
// slots, 4 KiB apart so that no device writes both in one sector. Each
// record goes to the slot not holding the newest valid record and is
// fdatasynced, so a write torn by a crash can only damage the older
// record; the reader takes the valid record with the highest Seq. That is
// one small in-place write and one fdatasync per commit, where writing a
// new file and renaming it would cost two fsyncs and a rename.
//
// Record: "HFAP", format version (uint32), seq (uint64), CRC-32C of the 16
// bytes before it; little-endian.
const (
	stateName     = "applied"
	slotSize      = 4096
	recordLen     = 20
	stateVersion  = 1
	stateMagic    = "HFAP"
	stateFileSize = 2 * slotSize
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type stateFile struct {
	fd   int // also holds the flock that makes this applier the only writer
	slot int // slot of the newest valid record, -1 if none
	seq  uint64
}

// openState opens (creating if needed) the state directory and file below
// root, locks it and reads the last recorded Seq.
func openState(root int) (*stateFile, error) {
	created := false
	if err := unix.Mkdirat(root, StateDir, 0o700); err == nil {
		created = true
	} else if !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("create %s: %w", StateDir, os.NewSyscallError("mkdirat", err))
	}
	dir, err := openat2(root, StateDir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			return nil, fmt.Errorf("openat2 is not supported by this kernel (Linux 5.6 or later is needed to confine paths): %w", err)
		}
		return nil, fmt.Errorf("open %s: %w", StateDir, resolveErr(StateDir, err))
	}
	defer unix.Close(dir)
	if created {
		if err := unix.Fsync(root); err != nil {
			return nil, os.NewSyscallError("fsync", err)
		}
	}

	fd, err := openat2(dir, stateName, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", StateDir, stateName, resolveErr(stateName, err))
	}
	s := &stateFile{fd: fd, slot: -1}
	if err := s.init(dir); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("%s/%s: %w", StateDir, stateName, err)
	}
	return s, nil
}

func (s *stateFile) init(dir int) error {
	if err := unix.Flock(s.fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return ErrInUse
		}
		return os.NewSyscallError("flock", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(s.fd, &st); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	if st.Size < stateFileSize {
		// Write both slots out now, so that recording a Seq never needs a
		// new block: a full disk must not stop us from recording progress.
		if err := pwriteAll(s.fd, make([]byte, stateFileSize), 0); err != nil {
			return err
		}
		if err := unix.Fsync(s.fd); err != nil {
			return os.NewSyscallError("fsync", err)
		}
		if err := unix.Fsync(dir); err != nil {
			return os.NewSyscallError("fsync", err)
		}
	}
	buf := make([]byte, recordLen)
	for slot := range 2 {
		n, err := unix.Pread(s.fd, buf, int64(slot*slotSize))
		if err != nil {
			return os.NewSyscallError("pread", err)
		}
		if seq, ok := parseRecord(buf[:n]); ok && (s.slot < 0 || seq > s.seq) {
			s.slot, s.seq = slot, seq
		}
	}
	return nil
}

func parseRecord(b []byte) (uint64, bool) {
	if len(b) < recordLen || string(b[:4]) != stateMagic ||
		binary.LittleEndian.Uint32(b[4:8]) != stateVersion ||
		crc32.Checksum(b[:16], castagnoli) != binary.LittleEndian.Uint32(b[16:20]) {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[8:16]), true
}

func makeRecord(seq uint64) []byte {
	b := make([]byte, 0, recordLen)
	b = append(b, stateMagic...)
	b = binary.LittleEndian.AppendUint32(b, stateVersion)
	b = binary.LittleEndian.AppendUint64(b, seq)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// record durably stores seq.
func (s *stateFile) record(seq uint64) error {
	slot := 1 - s.slot // 0 when no slot is valid yet
	if s.slot < 0 {
		slot = 0
	}
	if err := pwriteAll(s.fd, makeRecord(seq), int64(slot*slotSize)); err != nil {
		return err
	}
	if err := unix.Fdatasync(s.fd); err != nil {
		return os.NewSyscallError("fdatasync", err)
	}
	s.slot, s.seq = slot, seq
	return nil
}

func (s *stateFile) close() error {
	if err := unix.Close(s.fd); err != nil {
		return os.NewSyscallError("close", err)
	}
	return nil
}

func pwriteAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return os.NewSyscallError("pwrite", err)
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}
