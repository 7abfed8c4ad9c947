package diskstore

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
)

// TestReadAheadReadsWhatOpenReads reads a session through ReadAhead in the
// ways a restore does — every file, files passed over, a file closed half
// read, a path not in the list — with a budget smaller than one file and
// with a large one, and compares with the files written.
func TestReadAheadReadsWhatOpenReads(t *testing.T) {
	files := testTree(3)
	var paths []string
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, budget := range []int64{1, 0} {
		s := createTestStore(t, t.TempDir())
		info := writeSession(t, s, files)
		ss, err := s.OpenSessionWithPassword(info.ID, "secret")
		if err != nil {
			t.Fatal(err)
		}
		ra := ss.ReadAhead(append([]string{"/data/link", "/nowhere"}, paths...), budget)
		for i, p := range paths {
			if i%4 == 1 {
				continue // passed over: the next Open skips it
			}
			r, err := ra.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			if i%4 == 2 {
				// Half read, then closed: the next file starts right.
				b := make([]byte, len(files[p])/2)
				if _, err := io.ReadFull(r, b); err != nil || !bytes.Equal(b, files[p][:len(b)]) {
					t.Fatalf("budget %d, %s: first half: %v", budget, p, err)
				}
				r.Close()
				continue
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, files[p]) {
				t.Fatalf("budget %d, %s: %d bytes, %v; want %d bytes", budget, p, len(got), err, len(files[p]))
			}
		}
		// Earlier in the list than where it stands: read without read-ahead.
		r, err := ra.Open(paths[0])
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, files[paths[0]]) {
			t.Fatalf("budget %d, %s again: %v", budget, paths[0], err)
		}
		ra.Close()
		s.Close()
	}
}

// TestReadAheadReportsDamage: a damaged chunk ends that file's read with
// ErrCorrupt naming the file; the files after it still read whole.
func TestReadAheadReportsDamage(t *testing.T) {
	s := createTestStore(t, t.TempDir())
	defer s.Close()
	files := testTree(4)
	info := writeSession(t, s, files)
	ss, err := s.OpenSessionWithPassword(info.ID, "secret")
	if err != nil {
		t.Fatal(err)
	}
	en, _ := ss.Entry("/data/big.bin")
	corruptOneDataBlob(t, s, en.Chunks[1])
	order := []string{"/data/big.bin", "/data/text.log"}
	ra := ss.ReadAhead(order, 0)
	defer ra.Close()
	r, err := ra.Open(order[0])
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(r)
	r.Close()
	if !errors.Is(err, ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte("/data/big.bin")) {
		t.Fatalf("damaged file read: %v, want ErrCorrupt naming /data/big.bin", err)
	}
	r, err = ra.Open(order[1])
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, files[order[1]]) {
		t.Fatalf("the file after the damaged one: %v", err)
	}
}

// TestReadAheadCloseEarly: Close while the dispatcher waits for budget
// returns, and the reader then fails instead of blocking.
func TestReadAheadCloseEarly(t *testing.T) {
	s := createTestStore(t, t.TempDir())
	defer s.Close()
	info := writeSession(t, s, testTree(5))
	ss, err := s.OpenSessionWithPassword(info.ID, "secret")
	if err != nil {
		t.Fatal(err)
	}
	ra := ss.ReadAhead([]string{"/data/big.bin", "/data/text.log", "/data/sub/f01"}, 1)
	ra.Close()
	ra.Close()
	if _, err := ra.Open("/data/text.log"); err == nil {
		t.Fatal("Open after Close succeeded; want an error")
	}
}
