package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// The kernel's event buffers are decoded by pure functions over []byte so that
// they can be fuzzed: a decoder must never panic or read out of bounds, even
// on a truncated or garbage buffer. Both formats are host-endian; every Linux
// port Holdfast supports (amd64, arm64) is little-endian.

// errBadRecord is wrapped by every decoding failure.
var errBadRecord = errors.New("malformed kernel event record")

func badRecord(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRecord, fmt.Sprintf(format, args...))
}

// inotifyRecord is one struct inotify_event.
type inotifyRecord struct {
	WD     int32
	Mask   uint32
	Cookie uint32
	Name   string // "" for an event on the watched directory itself
}

const (
	maxNameLen       = 255 // NAME_MAX
	inotifyHeaderLen = 16
	// maxInotifyNameLen bounds the padded name: NAME_MAX (255) plus the NUL
	// and the kernel's padding to a multiple of the header size.
	maxInotifyNameLen = 256 + inotifyHeaderLen
)

// parseInotify decodes a buffer read from an inotify descriptor. It returns
// the records decoded before the first malformed one, and an error
// describing that one; the rest of the buffer cannot be trusted, since record
// boundaries depend on the length fields.
func parseInotify(buf []byte) ([]inotifyRecord, error) {
	var recs []inotifyRecord
	for off := 0; off < len(buf); {
		if len(buf)-off < inotifyHeaderLen {
			return recs, badRecord("inotify record at offset %d: %d bytes left, header needs %d", off, len(buf)-off, inotifyHeaderLen)
		}
		h := buf[off : off+inotifyHeaderLen]
		r := inotifyRecord{
			WD:     int32(binary.LittleEndian.Uint32(h[0:4])),
			Mask:   binary.LittleEndian.Uint32(h[4:8]),
			Cookie: binary.LittleEndian.Uint32(h[8:12]),
		}
		nameLen := binary.LittleEndian.Uint32(h[12:16])
		off += inotifyHeaderLen
		if nameLen > maxInotifyNameLen || int(nameLen) > len(buf)-off {
			return recs, badRecord("inotify record at offset %d: name length %d, %d bytes left", off-inotifyHeaderLen, nameLen, len(buf)-off)
		}
		name := buf[off : off+int(nameLen)]
		off += int(nameLen)
		if nameLen > 0 {
			// The kernel NUL-terminates the name (then pads it), and no name
			// is longer than NAME_MAX.
			i := bytes.IndexByte(name, 0)
			if i < 0 || i > maxNameLen {
				return recs, badRecord("inotify record at offset %d: name not NUL-terminated within %d bytes", off-int(nameLen)-inotifyHeaderLen, maxNameLen+1)
			}
			name = name[:i]
		}
		if bytes.IndexByte(name, '/') >= 0 || string(name) == "." || string(name) == ".." {
			return recs, badRecord("inotify record name %q is not a single path element", name)
		}
		r.Name = string(name)
		recs = append(recs, r)
	}
	return recs, nil
}

// fanRecord is one fanotify event: struct fanotify_event_metadata and its
// information records.
type fanRecord struct {
	Mask  uint64
	FD    int32 // FAN_NOFD (-1) in the FID reporting modes this package uses
	PID   int32
	Infos []fanInfo
}

// fanInfo is one struct fanotify_event_info_fid (with the name that follows
// the handle for the *DFID_NAME types). Handle and Name alias the buffer
// passed to parseFanotify: copy them to keep them past the next read.
type fanInfo struct {
	Type       uint8
	FSID       [8]byte
	HandleType int32
	Handle     []byte
	Name       []byte // nil unless Type carries a name
}

const (
	fanMetadataLen    = 24
	fanMetadataVer    = 3  // FANOTIFY_METADATA_VERSION
	fanInfoHeaderLen  = 4  // struct fanotify_event_info_header
	fanFidFixedLen    = 20 // header, fsid, handle_bytes, handle_type
	maxFanHandleBytes = 128
	fanInfoFID        = 1
	fanInfoDFIDName   = 2
	fanInfoDFID       = 3
	fanInfoOldDFIDNm  = 10
	fanInfoNewDFIDNm  = 12
)

func fanInfoHasFID(t uint8) bool {
	switch t {
	case fanInfoFID, fanInfoDFIDName, fanInfoDFID, fanInfoOldDFIDNm, fanInfoNewDFIDNm:
		return true
	}
	return false
}

func fanInfoHasName(t uint8) bool {
	return t == fanInfoDFIDName || t == fanInfoOldDFIDNm || t == fanInfoNewDFIDNm
}

// parseFanotify decodes a buffer read from a fanotify descriptor initialised
// with a FID reporting mode. Like parseInotify it returns what it decoded
// before the first malformed record and an error for that one. Information
// records of types it does not know are skipped by their length.
func parseFanotify(buf []byte) ([]fanRecord, error) {
	var recs []fanRecord
	for off := 0; off < len(buf); {
		rest := buf[off:]
		if len(rest) < fanMetadataLen {
			return recs, badRecord("fanotify event at offset %d: %d bytes left, metadata needs %d", off, len(rest), fanMetadataLen)
		}
		evLen := binary.LittleEndian.Uint32(rest[0:4])
		ver := rest[4]
		metaLen := binary.LittleEndian.Uint16(rest[6:8])
		if ver != fanMetadataVer {
			return recs, badRecord("fanotify event at offset %d: metadata version %d, want %d", off, ver, fanMetadataVer)
		}
		if metaLen < fanMetadataLen || uint32(metaLen) > evLen || evLen > uint32(len(rest)) {
			return recs, badRecord("fanotify event at offset %d: event length %d, metadata length %d, %d bytes left", off, evLen, metaLen, len(rest))
		}
		ev := rest[:evLen]
		r := fanRecord{
			Mask: binary.LittleEndian.Uint64(ev[8:16]),
			FD:   int32(binary.LittleEndian.Uint32(ev[16:20])),
			PID:  int32(binary.LittleEndian.Uint32(ev[20:24])),
		}
		for io := int(metaLen); io < len(ev); {
			info := ev[io:]
			if len(info) < fanInfoHeaderLen {
				return recs, badRecord("fanotify info record at offset %d: %d bytes left", off+io, len(info))
			}
			typ := info[0]
			infoLen := int(binary.LittleEndian.Uint16(info[2:4]))
			if infoLen < fanInfoHeaderLen || infoLen > len(info) {
				return recs, badRecord("fanotify info record at offset %d: length %d, %d bytes left", off+io, infoLen, len(info))
			}
			info = info[:infoLen]
			io += infoLen
			if !fanInfoHasFID(typ) {
				continue
			}
			fi, err := parseFanFID(typ, info)
			if err != nil {
				return recs, fmt.Errorf("fanotify info record at offset %d: %w", off+io-infoLen, err)
			}
			r.Infos = append(r.Infos, fi)
		}
		recs = append(recs, r)
		off += int(evLen)
	}
	return recs, nil
}

func parseFanFID(typ uint8, info []byte) (fanInfo, error) {
	if len(info) < fanFidFixedLen {
		return fanInfo{}, badRecord("fid record of %d bytes, needs %d", len(info), fanFidFixedLen)
	}
	fi := fanInfo{Type: typ, HandleType: int32(binary.LittleEndian.Uint32(info[16:20]))}
	copy(fi.FSID[:], info[4:12])
	hb := binary.LittleEndian.Uint32(info[12:16])
	if hb > maxFanHandleBytes || int(hb) > len(info)-fanFidFixedLen {
		return fanInfo{}, badRecord("file handle of %d bytes in a record of %d", hb, len(info))
	}
	end := fanFidFixedLen + int(hb)
	fi.Handle = info[fanFidFixedLen:end]
	if fanInfoHasName(typ) {
		name := info[end:]
		i := bytes.IndexByte(name, 0)
		if i <= 0 {
			return fanInfo{}, badRecord("name missing or not NUL-terminated")
		}
		fi.Name = name[:i]
		if len(fi.Name) > maxNameLen || bytes.IndexByte(fi.Name, '/') >= 0 || string(fi.Name) == ".." {
			return fanInfo{}, badRecord("name %q is not a single path element", fi.Name)
		}
	}
	return fi, nil
}
