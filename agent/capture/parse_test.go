package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// encInotify builds a buffer as the kernel does: names NUL-padded to a
// multiple of the header size.
func encInotify(recs ...inotifyRecord) []byte {
	var b []byte
	for _, r := range recs {
		n := 0
		if r.Name != "" {
			n = (len(r.Name) + 1 + inotifyHeaderLen - 1) / inotifyHeaderLen * inotifyHeaderLen
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(r.WD))
		b = binary.LittleEndian.AppendUint32(b, r.Mask)
		b = binary.LittleEndian.AppendUint32(b, r.Cookie)
		b = binary.LittleEndian.AppendUint32(b, uint32(n))
		name := make([]byte, n)
		copy(name, r.Name)
		b = append(b, name...)
	}
	return b
}

// encFanotify builds a fanotify event buffer with FID information records.
func encFanotify(recs ...fanRecord) []byte {
	var b []byte
	for _, r := range recs {
		var infos []byte
		for _, fi := range r.Infos {
			var rec []byte
			rec = append(rec, fi.Type, 0, 0, 0)
			rec = append(rec, fi.FSID[:]...)
			rec = binary.LittleEndian.AppendUint32(rec, uint32(len(fi.Handle)))
			rec = binary.LittleEndian.AppendUint32(rec, uint32(fi.HandleType))
			rec = append(rec, fi.Handle...)
			if fi.Name != nil {
				rec = append(rec, fi.Name...)
				rec = append(rec, 0)
			}
			for len(rec)%4 != 0 {
				rec = append(rec, 0)
			}
			binary.LittleEndian.PutUint16(rec[2:4], uint16(len(rec)))
			infos = append(infos, rec...)
		}
		ev := binary.LittleEndian.AppendUint32(nil, uint32(fanMetadataLen+len(infos)))
		ev = append(ev, fanMetadataVer, 0)
		ev = binary.LittleEndian.AppendUint16(ev, fanMetadataLen)
		ev = binary.LittleEndian.AppendUint64(ev, r.Mask)
		ev = binary.LittleEndian.AppendUint32(ev, uint32(r.FD))
		ev = binary.LittleEndian.AppendUint32(ev, uint32(r.PID))
		b = append(b, append(ev, infos...)...)
	}
	return b
}

var (
	inotifySample = []inotifyRecord{
		{WD: 1, Mask: 0x100, Name: "new-file"},
		{WD: 1, Mask: 0x40, Cookie: 7, Name: "a-rather-longer-name-than-sixteen"},
		{WD: 2, Mask: 0x80, Cookie: 7, Name: "b"},
		{WD: 2, Mask: 0x400},
		{WD: -1, Mask: 0x4000},
	}
	fsid           = [8]byte{0x42, 0xc4, 0x04, 0x45, 0x4c, 0x0c, 0x01, 0x0e}
	fanotifySample = []fanRecord{
		{Mask: 0x40000100, FD: -1, PID: 15036, Infos: []fanInfo{
			{Type: fanInfoDFIDName, FSID: fsid, HandleType: 1, Handle: []byte{0xf6, 0x43, 0x98, 0, 0xff, 0xf0, 0x89, 0x73}, Name: []byte("d")},
			{Type: fanInfoFID, FSID: fsid, HandleType: 1, Handle: []byte{0x5f, 0x40, 0x98, 0, 0xb4, 0xfc, 0x42, 0xeb}},
		}},
		{Mask: 0x10000000, FD: -1, PID: 15039, Infos: []fanInfo{
			{Type: fanInfoOldDFIDNm, FSID: fsid, HandleType: 1, Handle: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Name: []byte("f")},
			{Type: fanInfoNewDFIDNm, FSID: fsid, HandleType: 1, Handle: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Name: []byte("g")},
			{Type: fanInfoFID, FSID: fsid, HandleType: 1, Handle: []byte{9, 9, 9, 9, 9, 9, 9, 9}},
		}},
		{Mask: 0x40000004, FD: -1, PID: 1, Infos: []fanInfo{
			{Type: fanInfoDFIDName, FSID: fsid, HandleType: 1, Handle: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Name: []byte(".")},
		}},
		{Mask: 0x4000, FD: -1},
	}
)

func TestParseInotify(t *testing.T) {
	got, err := parseInotify(encInotify(inotifySample...))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, inotifySample) {
		t.Fatalf("got %+v\nwant %+v", got, inotifySample)
	}
	full := encInotify(inotifySample...)
	bad := []struct {
		name string
		buf  []byte
	}{
		{"short header", full[:10]},
		{"truncated name", full[:len(encInotify(inotifySample[0]))+20]},
		{"huge name length", func() []byte {
			b := encInotify(inotifyRecord{WD: 1, Mask: 1, Name: "x"})
			binary.LittleEndian.PutUint32(b[12:], 1<<31)
			return b
		}()},
		{"slash in name", encInotify(inotifyRecord{WD: 1, Mask: 1, Name: "a/b"})},
		{"name without NUL", func() []byte {
			b := encInotify(inotifyRecord{WD: 1, Mask: 1, Name: "0123456789abcde"}) // 15 bytes + NUL = 16
			b[len(b)-1] = 'f'
			return b
		}()},
		{"dot-dot name", encInotify(inotifyRecord{WD: 1, Mask: 1, Name: ".."})},
	}
	for _, tc := range bad {
		recs, err := parseInotify(tc.buf)
		if !errors.Is(err, errBadRecord) {
			t.Errorf("%s: err = %v", tc.name, err)
		}
		if tc.name == "truncated name" && len(recs) != 1 {
			t.Errorf("%s: want the one complete record before it, got %d", tc.name, len(recs))
		}
	}
}

func TestParseFanotify(t *testing.T) {
	buf := encFanotify(fanotifySample...)
	got, err := parseFanotify(buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(fanotifySample) {
		t.Fatalf("got %d records, want %d", len(got), len(fanotifySample))
	}
	for i := range got {
		w := fanotifySample[i]
		g := got[i]
		if g.Mask != w.Mask || g.FD != w.FD || g.PID != w.PID || len(g.Infos) != len(w.Infos) {
			t.Fatalf("record %d: got %+v, want %+v", i, g, w)
		}
		for j := range g.Infos {
			gi, wi := g.Infos[j], w.Infos[j]
			if gi.Type != wi.Type || gi.FSID != wi.FSID || gi.HandleType != wi.HandleType ||
				!bytes.Equal(gi.Handle, wi.Handle) || !bytes.Equal(gi.Name, wi.Name) {
				t.Fatalf("record %d info %d: got %+v, want %+v", i, j, gi, wi)
			}
		}
	}

	// Unknown information record types are skipped by length.
	withPidfd := encFanotify(fanotifySample[0])
	pidfd := []byte{4, 0, 8, 0, 7, 0, 0, 0} // FAN_EVENT_INFO_TYPE_PIDFD
	withPidfd = append(withPidfd, pidfd...)
	binary.LittleEndian.PutUint32(withPidfd[0:], uint32(len(withPidfd)))
	if recs, err := parseFanotify(withPidfd); err != nil || len(recs) != 1 || len(recs[0].Infos) != 2 {
		t.Errorf("pidfd record: %v %+v", err, recs)
	}

	one := encFanotify(fanotifySample[0])
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), one...)) }
	bad := map[string][]byte{
		"short metadata":  one[:10],
		"truncated event": one[:len(one)-1],
		"wrong version":   mutate(func(b []byte) []byte { b[4] = 2; return b }),
		"event length beyond buffer": mutate(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[0:], uint32(len(b)+8))
			return b
		}),
		"metadata longer than event": mutate(func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[6:], 0xffff)
			return b
		}),
		"info length zero": mutate(func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[fanMetadataLen+2:], 0)
			return b
		}),
		"handle beyond record": mutate(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[fanMetadataLen+12:], 100)
			return b
		}),
		"name not terminated": mutate(func(b []byte) []byte {
			info := b[fanMetadataLen:]
			n := binary.LittleEndian.Uint16(info[2:])
			for i := fanFidFixedLen + 8; i < int(n); i++ {
				info[i] = 'x'
			}
			return b
		}),
		"slash in name": encFanotify(fanRecord{Mask: 1, FD: -1, Infos: []fanInfo{
			{Type: fanInfoDFIDName, Handle: []byte{1}, Name: []byte("a/b")}}}),
	}
	for name, b := range bad {
		if _, err := parseFanotify(b); !errors.Is(err, errBadRecord) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// FuzzParseInotify: no buffer makes the decoder panic, and what it accepts
// obeys the invariants the watcher relies on.
func FuzzParseInotify(f *testing.F) {
	f.Add(encInotify(inotifySample...))
	f.Add(encInotify(inotifySample[0]))
	f.Add([]byte{})
	f.Add(make([]byte, 15))
	f.Fuzz(func(t *testing.T, buf []byte) {
		recs, err := parseInotify(buf)
		if err != nil && !errors.Is(err, errBadRecord) {
			t.Fatalf("error not wrapping errBadRecord: %v", err)
		}
		if len(recs)*inotifyHeaderLen > len(buf) {
			t.Fatalf("%d records from %d bytes", len(recs), len(buf))
		}
		for _, r := range recs {
			if len(r.Name) > maxNameLen || bytes.ContainsAny([]byte(r.Name), "/\x00") || r.Name == "." || r.Name == ".." {
				t.Fatalf("bad name accepted: %q", r.Name)
			}
		}
		if err == nil {
			// A fully accepted buffer re-encodes to the same records.
			again, err := parseInotify(encInotify(recs...))
			if err != nil || len(again) != len(recs) {
				t.Fatalf("re-encoding: %v, %d vs %d records", err, len(again), len(recs))
			}
		}
	})
}

// FuzzParseFanotify: the same for fanotify buffers.
func FuzzParseFanotify(f *testing.F) {
	f.Add(encFanotify(fanotifySample...))
	f.Add(encFanotify(fanotifySample[1]))
	f.Add([]byte{})
	f.Add(make([]byte, fanMetadataLen))
	f.Fuzz(func(t *testing.T, buf []byte) {
		recs, err := parseFanotify(buf)
		if err != nil && !errors.Is(err, errBadRecord) {
			t.Fatalf("error not wrapping errBadRecord: %v", err)
		}
		if len(recs)*fanMetadataLen > len(buf) {
			t.Fatalf("%d records from %d bytes", len(recs), len(buf))
		}
		for _, r := range recs {
			for _, fi := range r.Infos {
				if len(fi.Handle) > maxFanHandleBytes {
					t.Fatalf("handle of %d bytes accepted", len(fi.Handle))
				}
				if fanInfoHasName(fi.Type) && (len(fi.Name) == 0 || len(fi.Name) > maxNameLen || bytes.ContainsAny(fi.Name, "/\x00") || string(fi.Name) == "..") {
					t.Fatalf("bad name accepted: %q", fi.Name)
				}
			}
		}
	})
}
