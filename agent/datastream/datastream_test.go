package datastream

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.hfds")

// entry is a header with its content, for tests.
type entry struct {
	h       Header
	content string
	srcErr  string // the sender's failure text, if the content is incomplete
}

func encode(t testing.TB, es []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, e := range es {
		var r io.Reader = strings.NewReader(e.content)
		if e.srcErr != "" {
			r = io.MultiReader(strings.NewReader(e.content), iotest.ErrReader(errors.New(e.srcErr)))
		}
		err := w.Put(e.h, r)
		if e.srcErr == "" && err != nil {
			t.Fatalf("put %q: %v", e.h.Path, err)
		}
		if e.srcErr != "" && !errors.Is(err, ErrContent) {
			t.Fatalf("put %q with a failing source: %v, want ErrContent", e.h.Path, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// decodeAll reads a whole stream; content errors of the sender are kept
// in the entries, any other error is returned.
func decodeAll(data []byte, lim Limits) ([]entry, error) {
	r := NewReader(bytes.NewReader(data), lim)
	var out []entry
	for {
		h, content, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		e := entry{h: h}
		if content != nil {
			b, err := io.ReadAll(content)
			var se *SourceError
			switch {
			case errors.As(err, &se):
				e.srcErr = se.Text
			case err != nil:
				return out, err
			}
			e.content = string(b)
		}
		out = append(out, e)
	}
}

func sample() []entry {
	big := strings.Repeat("0123456789abcdef", (chunkSize*2+100)/16+1)
	return []entry{
		{h: Header{Type: Dir, Path: "docs", Mode: 0o755, UID: 1000, GID: 1000, MTime: 1700000000123456789}},
		{h: Header{Type: File, Path: "docs/a.txt", Mode: 0o644, UID: 1000, GID: 100, MTime: 1700000001000000000, Size: 5}, content: "hello"},
		{h: Header{Type: File, Path: "docs/empty", Mode: 0o600, MTime: -5, Size: 0}},
		{h: Header{Type: Symlink, Path: "docs/link", Mode: 0o777, MTime: 1, Target: "../elsewhere/x"}},
		{h: Header{Type: File, Path: "bin/tool", Mode: 0o4755 | 0o2000 | 0o1000, Size: int64(len(big))}, content: big},
		{h: Header{Type: File, Path: "naïve ünïcode/\x01odd", Mode: 0o640, Size: 3}, content: "xyz"},
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		es   []entry
	}{
		{"empty stream", nil},
		{"sample", sample()},
		{"one empty file", []entry{{h: Header{Type: File, Path: "f"}}}},
		{"hostile names pass through", []entry{
			{h: Header{Type: File, Path: "../escape", Size: 1}, content: "e"},
			{h: Header{Type: File, Path: "/abs", Size: 1}, content: "a"},
			{h: Header{Type: Symlink, Path: "link", Target: "/tmp/outside"}},
		}},
		{"incomplete file, then more", []entry{
			{h: Header{Type: File, Path: "shrank", Size: 10}, content: "abc", srcErr: "I/O error"},
			{h: Header{Type: File, Path: "next", Size: 2}, content: "ok"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := encode(t, tt.es)
			got, err := decodeAll(data, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.es) {
				t.Fatalf("%d entries back, want %d", len(got), len(tt.es))
			}
			for i, want := range tt.es {
				if want.srcErr != "" {
					if !strings.Contains(got[i].srcErr, want.srcErr) || got[i].content != want.content {
						t.Errorf("entry %d: content %q, error %q; want %q then %q", i, got[i].content, got[i].srcErr, want.content, want.srcErr)
					}
					continue
				}
				if got[i].h != want.h || got[i].content != want.content || got[i].srcErr != "" {
					t.Errorf("entry %d: got %+v (%d bytes, %q), want %+v (%d bytes)", i, got[i].h, len(got[i].content), got[i].srcErr, want.h, len(want.content))
				}
			}
		})
	}
}

// A file whose source yields more than its size sends exactly the size.
func TestPutReadsExactlySize(t *testing.T) {
	data := encode(t, []entry{{h: Header{Type: File, Path: "grew", Size: 3}, content: "abcdef"}})
	got, err := decodeAll(data, Limits{})
	if err != nil || len(got) != 1 || got[0].content != "abc" {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestPutRefusesUnencodableHeaders(t *testing.T) {
	bad := []Header{
		{Type: 9, Path: "x"},
		{Type: File, Path: ""},
		{Type: File, Path: "x", Mode: 0o170000},
		{Type: Dir, Path: "d", Size: 3},
		{Type: File, Path: "f", Size: -1},
		{Type: Symlink, Path: "l"},
		{Type: File, Path: "f", Target: "t"},
		{Type: File, Path: strings.Repeat("a", 70000)},
	}
	for _, h := range bad {
		w := NewWriter(io.Discard)
		if err := w.Put(h, nil); err == nil {
			t.Errorf("Put(%+v) accepted", h)
		}
	}
}

// Skipping content without reading it still checks it.
func TestNextSkipsUnreadContent(t *testing.T) {
	data := encode(t, sample())
	r := NewReader(bytes.NewReader(data), Limits{})
	n := 0
	for {
		_, _, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != len(sample()) {
		t.Fatalf("%d entries, want %d", n, len(sample()))
	}
	// A corrupted byte in a skipped file's content is still found.
	bad := bytes.Clone(data)
	bad[len(bad)/2] ^= 0x40
	r = NewReader(bytes.NewReader(bad), Limits{})
	for {
		_, _, err := r.Next()
		if errors.Is(err, io.EOF) {
			t.Fatal("damaged skipped content not noticed")
		}
		if err != nil {
			break
		}
	}
}

// Every prefix of a stream is refused as truncated: at frame boundaries
// and inside frames alike.
func TestTruncationDetected(t *testing.T) {
	es := sample()
	es[4].content = es[4].content[:300]
	es[4].h.Size = 300
	data := encode(t, es)
	for n := 0; n < len(data); n++ {
		_, err := decodeAll(data[:n], Limits{})
		var fe *FormatError
		if !errors.As(err, &fe) || !errors.Is(err, ErrTruncated) {
			t.Fatalf("stream cut at %d of %d bytes: %v, want a truncation error", n, len(data), err)
		}
	}
	if _, err := decodeAll(append(bytes.Clone(data), 0), Limits{}); err == nil || !strings.Contains(err.Error(), "after the end frame") {
		t.Errorf("trailing byte: %v", err)
	}
}

// Every flipped bit is found, and the error names where.
func TestCorruptionNamed(t *testing.T) {
	es := []entry{
		{h: Header{Type: Dir, Path: "d", Mode: 0o755}},
		{h: Header{Type: File, Path: "d/f", Mode: 0o644, Size: 4}, content: "data"},
	}
	data := encode(t, es)
	for i := 0; i < len(data); i++ {
		bad := bytes.Clone(data)
		bad[i] ^= 0x01
		_, err := decodeAll(bad, Limits{})
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("bit flipped at byte %d: %v, want a FormatError", i, err)
		}
	}
	// A flip in the file's data frame: a CRC mismatch at entry 2, "d/f".
	at := bytes.Index(data, []byte("data"))
	bad := bytes.Clone(data)
	bad[at] ^= 0x01
	_, err := decodeAll(bad, Limits{})
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Entry != 2 || fe.Path != "d/f" || !strings.Contains(fe.Reason, "CRC mismatch in data frame") || fe.Offset != int64(at-5) {
		t.Fatalf("got %v (%+v), want a CRC mismatch of entry 2 \"d/f\" in the data frame at byte %d", err, fe, at-5)
	}
	if msg := err.Error(); !strings.Contains(msg, `entry 2 ("d/f") at byte `+fmt.Sprint(at-5)) {
		t.Errorf("message %q does not name the entry and offset", msg)
	}
}

func TestLimits(t *testing.T) {
	es := sample()
	data := encode(t, es)
	tests := []struct {
		name string
		lim  Limits
		want string
	}{
		{"path", Limits{MaxPath: 5}, "path of"},
		{"frame", Limits{MaxFrame: 1000}, "at most 1000"},
		{"entries", Limits{MaxEntries: 3}, "more than 3 entries"},
		{"bytes", Limits{MaxBytes: 1000}, "more than 1000 content bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeAll(data, tt.lim)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestHandCraftedMalformed(t *testing.T) {
	frame := func(typ byte, payload []byte) []byte {
		var b bytes.Buffer
		w := &Writer{w: &b, started: true}
		if err := w.writeFrame(typ, payload); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	header := func(h Header) []byte { return frame(frameHeader, appendHeader(nil, h)) }
	end := func(entries, n uint64) []byte {
		p := make([]byte, 16)
		p[7], p[15] = byte(entries), byte(n)
		return frame(frameEnd, p)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(append([][]byte{magic[:]}, parts...), nil) }
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"bad magic", []byte("HFDX\x01\x00\x00\x00"), "bad magic"},
		{"future version", []byte("HFDS\x02\x00\x00\x00"), "version 2"},
		{"end miscounts", cat(end(1, 0)), "end frame counts 1 entries"},
		{"data before a header", cat(frame(frameData, []byte("x"))), "data frame where a header"},
		{"unknown frame", cat(frame('q', nil)), "unknown (0x71) frame"},
		{"file-end without reason short", cat(header(Header{Type: File, Path: "f", Size: 2}), frame(frameData, []byte("a")), frame(frameFileEnd, make([]byte, 9))), "file-end frame counts 0 bytes"},
		{"content too long", cat(header(Header{Type: File, Path: "f", Size: 1}), frame(frameData, []byte("ab"))), "longer than the announced 1"},
		{"header in content", cat(header(Header{Type: File, Path: "f", Size: 1}), header(Header{Type: Dir, Path: "g"})), "header frame inside the content"},
		{"dir with size", cat(frame(frameHeader, appendHeader(nil, Header{Type: Dir, Path: "d", Size: 7}))), "size 7 for a directory"},
		{"header too short", cat(frame(frameHeader, []byte{1, 2, 3})), "header: 3 bytes"},
		{"bad mode", cat(header(Header{Type: Dir, Path: "d", Mode: 0o170755})), "has bits beyond"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeAll(tt.data, Limits{})
			var fe *FormatError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a FormatError with %q", err, tt.want)
			}
		})
	}
}

// The encoding is fixed: a change to it must be deliberate (a new
// Version), never a side effect.
func TestGolden(t *testing.T) {
	es := []entry{
		{h: Header{Type: Dir, Path: "d", Mode: 0o2755, UID: 1, GID: 2, MTime: 1700000000000000001}},
		{h: Header{Type: File, Path: "d/f", Mode: 0o644, UID: 3, GID: 4, MTime: 1700000000000000002, Size: 5}, content: "hello"},
		{h: Header{Type: File, Path: "d/bad", Mode: 0o600, Size: 4}, content: "ab", srcErr: "EIO"},
		{h: Header{Type: Symlink, Path: "d/l", Mode: 0o777, MTime: 3, Target: "f"}},
	}
	data := encode(t, es)
	golden := filepath.Join("testdata", "golden.hfds")
	if *update {
		if err := os.WriteFile(golden, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, want) {
		t.Fatalf("encoding changed:\n got %x\nwant %x", data, want)
	}
}

// The reader survives whatever it is given, and whatever it accepts
// encodes again to entries that decode the same.
func FuzzReader(f *testing.F) {
	f.Add(encode(f, sample()[:4]))
	f.Add(encode(f, nil))
	f.Add(encode(f, []entry{{h: Header{Type: File, Path: "x", Size: 4}, content: "ab", srcErr: "EIO"}}))
	f.Add([]byte("HFDS\x01\x00\x00\x00"))
	f.Add([]byte{})
	golden, err := os.ReadFile(filepath.Join("testdata", "golden.hfds"))
	if err == nil {
		f.Add(golden)
	}
	lim := Limits{MaxPath: 256, MaxFrame: 4096, MaxEntries: 64, MaxBytes: 1 << 16}
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := decodeAll(data, lim)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		again, err := decodeAll(encode(t, es), Limits{})
		if err != nil {
			t.Fatalf("re-encoded stream refused: %v", err)
		}
		if len(again) != len(es) {
			t.Fatalf("%d entries, then %d", len(es), len(again))
		}
		for i := range es {
			if again[i] != es[i] {
				t.Fatalf("entry %d: %+v, then %+v", i, es[i], again[i])
			}
		}
	})
}
