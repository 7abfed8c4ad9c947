package rewind

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// A rewind group's steps are not idempotent as a sequence: replaying a
// restore or a rename after later steps of the same group moved or
// replaced its names would undo them (a name op is idempotent only
// against its own effect). So before each name op of a group, once every
// step before it is durable, the rewind records "group G reached step k"
// in the progress file, and a rewind finished after a crash replays the
// group from the last step recorded: that name op (idempotent against
// itself) and the metadata steps after it, none of which a later name op
// has moved yet, since that one is recorded before it runs.
//
// The file has two 4 KiB slots written alternately, each: "HFRP", group
// (the ID of the group's first record), step, CRC-32C of the 20 bytes
// before it, little-endian. A torn write damages only the slot being
// written; the reader takes the valid slot with the higher (group, step).
const (
	progressName  = "progress"
	progressSlot  = 4096
	progressLen   = 24
	progressMagic = "HFRP"
)

type progressFile struct {
	f    *os.File
	slot int
}

type progressMark struct{ group, step uint64 }

func (m progressMark) after(o progressMark) bool {
	return m.group > o.group || m.group == o.group && m.step > o.step
}

func openProgress(dir string) (*progressFile, progressMark, error) {
	name := filepath.Join(dir, progressName)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, progressMark{}, fmt.Errorf("open rewind progress %s: %w", name, err)
	}
	p := &progressFile{f: f}
	var best progressMark
	bestSlot := -1
	buf := make([]byte, progressLen)
	for slot := range 2 {
		if n, _ := f.ReadAt(buf, int64(slot*progressSlot)); n < progressLen {
			continue // never written
		}
		m, ok := decodeProgress(buf)
		if ok && (bestSlot < 0 || m.after(best)) {
			best, bestSlot = m, slot
		}
	}
	p.slot = bestSlot
	return p, best, nil
}

func decodeProgress(b []byte) (progressMark, bool) {
	if string(b[:4]) != progressMagic {
		return progressMark{}, false
	}
	if crc32.Checksum(b[:20], castagnoli) != binary.LittleEndian.Uint32(b[20:24]) {
		return progressMark{}, false
	}
	return progressMark{group: binary.LittleEndian.Uint64(b[4:12]), step: binary.LittleEndian.Uint64(b[12:20])}, true
}

// record makes m durable in the slot not holding the newest mark.
func (p *progressFile) record(m progressMark) error {
	b := make([]byte, progressLen)
	copy(b, progressMagic)
	binary.LittleEndian.PutUint64(b[4:12], m.group)
	binary.LittleEndian.PutUint64(b[12:20], m.step)
	binary.LittleEndian.PutUint32(b[20:24], crc32.Checksum(b[:20], castagnoli))
	slot := 0
	if p.slot == 0 {
		slot = 1
	}
	if _, err := p.f.WriteAt(b, int64(slot*progressSlot)); err != nil {
		return fmt.Errorf("record rewind progress: %w", err)
	}
	if err := unix.Fdatasync(int(p.f.Fd())); err != nil {
		return fmt.Errorf("record rewind progress: %w", os.NewSyscallError("fdatasync", err))
	}
	p.slot = slot
	return nil
}

func (p *progressFile) close() error { return p.f.Close() }
