package tapeformat

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// memTape is a tape in memory: blocks and filemarks in order, an
// early-warning zone and a capacity in blocks. It stands for the drive so
// that the format's own rules can be tested; the drivers are tested
// against the virtual library and tgt.
type memTape struct {
	items   [][]byte // nil is a filemark
	pos     int
	warnAt  int // blocks written before early warning; 0: never
	capAt   int // blocks the tape holds; 0: unlimited
	written int
}

func (m *memTape) WriteBlock(p []byte) error {
	if m.capAt > 0 && m.written >= m.capAt {
		return ErrEndOfMedium
	}
	m.items = append(m.items, bytes.Clone(p))
	m.written++
	if m.warnAt > 0 && m.written >= m.warnAt {
		return ErrEarlyWarning
	}
	return nil
}

func (m *memTape) WriteFilemarks(n int) error {
	for range n {
		m.items = append(m.items, nil)
	}
	return nil
}

func (m *memTape) ReadBlock(p []byte) (int, error) {
	if m.pos >= len(m.items) {
		return 0, ErrEndOfData
	}
	it := m.items[m.pos]
	m.pos++
	if it == nil {
		return 0, ErrFilemark
	}
	return copy(p, it), nil
}

func payload(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

var when = time.Date(2026, 11, 25, 22, 0, 0, 0, time.UTC)

func TestLabelAndSessionsRoundTrip(t *testing.T) {
	tape := &memTape{}
	if err := WriteLabel(tape, Label{Barcode: "HF0001L9", Pool: "weekly", Sequence: 1, Created: when}); err != nil {
		t.Fatal(err)
	}
	sessions := [][]byte{payload(1, 3000), payload(2, 0), payload(3, 1024)}
	for i, p := range sessions {
		w, err := NewSessionWriter(tape, SessionInfo{Stored: fmt.Sprintf("s%d", i), Host: "fs01", Entity: "/srv", Started: when}, 1024+HeaderSize)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
		tr, err := w.Close()
		if err != nil {
			t.Fatal(err)
		}
		if tr.Bytes != uint64(len(p)) || tr.Blocks != uint64((len(p)+1023)/1024) {
			t.Errorf("session %d trailer %+v for %d bytes", i, tr, len(p))
		}
	}
	l, err := ReadLabel(tape)
	if err != nil || l.Barcode != "HF0001L9" || l.Pool != "weekly" || !l.Created.Equal(when) {
		t.Fatalf("label = %+v, %v", l, err)
	}
	for i, want := range sessions {
		r, err := NewSessionReader(tape)
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		if r.Info().Stored != fmt.Sprintf("s%d", i) || r.Info().Volume != 1 {
			t.Errorf("session %d header %+v", i, r.Info())
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("session %d: %d bytes, %v; want %d", i, len(got), err, len(want))
		}
	}
	if _, err := tape.ReadBlock(make([]byte, 10)); !errors.Is(err, ErrEndOfData) {
		t.Errorf("after the last session: %v", err)
	}
}

// TestSessionSpansVolumes: the tape warns, the session ends its part with
// a continuation marker, goes on on a second labelled volume, and reads
// back whole across both.
func TestSessionSpansVolumes(t *testing.T) {
	for _, tc := range []struct {
		name          string
		warnAt, capAt int
	}{
		{"early warning", 6, 0},
		{"end of medium without warning", 0, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := &memTape{warnAt: tc.warnAt, capAt: tc.capAt}
			second := &memTape{}
			if err := WriteLabel(first, Label{Barcode: "A", Sequence: 1, MediaSet: "m1", Created: when}); err != nil {
				t.Fatal(err)
			}
			want := payload(7, 20*512)
			w, err := NewSessionWriter(first, SessionInfo{Stored: "big", Host: "fs01", Entity: "/srv"}, 512+HeaderSize)
			if err != nil {
				t.Fatal(err)
			}
			n, err := w.Write(want)
			if !errors.Is(err, ErrVolumeFull) {
				t.Fatalf("Write = %d, %v; want ErrVolumeFull", n, err)
			}
			if err := WriteLabel(second, Label{Barcode: "B", Sequence: 2, MediaSet: "m1", Created: when}); err != nil {
				t.Fatal(err)
			}
			if err := w.Continue(second); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(want[n:]); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Close(); err != nil {
				t.Fatal(err)
			}

			if _, err := ReadLabel(first); err != nil {
				t.Fatal(err)
			}
			r, err := NewSessionReader(first)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			_, err = io.Copy(&got, r)
			if tc.capAt > 0 {
				// No room was left for the marker: the part ends at the
				// filemark, which a reader cannot tell from a cut.
				if !errors.Is(err, ErrDamaged) {
					t.Fatalf("first volume without a marker: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrNeedNextVolume) {
				t.Fatalf("end of the first volume: %v", err)
			}
			if _, err := ReadLabel(second); err != nil {
				t.Fatal(err)
			}
			if err := r.Continue(second); err != nil {
				t.Fatal(err)
			}
			if r.Info().Volume != 2 {
				t.Errorf("continuation part %d", r.Info().Volume)
			}
			if _, err := io.Copy(&got, r); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("read back %d bytes, want %d, different", got.Len(), len(want))
			}
		})
	}
}

// TestReadFromPosition: positions taken while writing let a reader start
// in the middle of a session, at one file's first byte.
func TestReadFromPosition(t *testing.T) {
	tape := &memTape{}
	w, err := NewSessionWriter(tape, SessionInfo{Stored: "s", Host: "h", Entity: "/"}, 100+HeaderSize)
	if err != nil {
		t.Fatal(err)
	}
	files := [][]byte{payload(1, 250), payload(2, 33), payload(3, 400)}
	var pos []Position
	for _, f := range files {
		pos = append(pos, w.Tell())
		if _, err := w.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r0, err := NewSessionReader(tape)
	if err != nil {
		t.Fatal(err)
	}
	stream := r0.Stream()
	for i, p := range pos {
		// Position the tape at the block: the header is item 0, data
		// block n is item n (what LOCATE does on a drive).
		tape.pos = int(p.Seq)
		r, err := NewSessionReaderAt(tape, stream, p)
		if err != nil {
			t.Fatalf("file %d at %+v: %v", i, p, err)
		}
		got := make([]byte, len(files[i]))
		if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, files[i]) {
			t.Fatalf("file %d from %+v: %v", i, p, err)
		}
	}
	// The wrong block for the position is refused.
	tape.pos = 2
	if _, err := NewSessionReaderAt(tape, stream, Position{Seq: 1}); !errors.Is(err, ErrDamaged) {
		t.Errorf("reader at the wrong block: %v", err)
	}
}

// TestDamage: a flipped byte, a lost block, a foreign tape, a cut session.
func TestDamage(t *testing.T) {
	write := func() *memTape {
		tape := &memTape{}
		w, err := NewSessionWriter(tape, SessionInfo{Stored: "s", Host: "h", Entity: "/"}, 128+HeaderSize)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(payload(9, 128*5)); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return tape
	}
	tests := []struct {
		name   string
		damage func(*memTape)
		want   error
	}{
		{"flipped payload byte", func(m *memTape) { m.items[3][HeaderSize+5] ^= 1 }, ErrDamaged},
		{"flipped header byte", func(m *memTape) { m.items[2][30] ^= 1 }, ErrDamaged},
		{"lost block", func(m *memTape) { m.items = append(m.items[:2], m.items[3:]...) }, ErrDamaged},
		{"cut before the trailer", func(m *memTape) { m.items = m.items[:4] }, ErrDamaged},
		{"trailer lies", func(m *memTape) {
			m.items[6] = AppendBlock(nil, Block{Kind: KindSessionTrailer, Stream: mustBlock(t, m.items[6]).Stream, Seq: 6,
				Payload: []byte(`{"blocks":5,"bytes":640,"sha256":"00"}`)})
		}, ErrDamaged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tape := write()
			tt.damage(tape)
			r, err := NewSessionReader(tape)
			if err == nil {
				_, err = io.ReadAll(r)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("read = %v, want %v", err, tt.want)
			}
		})
	}
	foreign := &memTape{items: [][]byte{[]byte("VOL1HF0001 this tape has an ANSI label")}}
	if _, err := ReadLabel(foreign); !errors.Is(err, ErrNotHoldfast) {
		t.Errorf("foreign label: %v", err)
	}
}

func mustBlock(t *testing.T, raw []byte) Block {
	t.Helper()
	b, err := DecodeBlock(raw)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var update = flag.Bool("update", false, "rewrite golden files")

// TestGoldenBlock pins the block encoding.
func TestGoldenBlock(t *testing.T) {
	var stream [16]byte
	for i := range stream {
		stream[i] = byte(i)
	}
	got := AppendBlock(nil, Block{Kind: KindData, Flags: FlagContinuation, Stream: stream, Seq: 0x0102030405, Payload: []byte("holdfast")})
	path := filepath.Join("testdata", "data-block.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update once)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("block encoding changed:\n got %x\nwant %x", got, want)
	}
	if _, err := DecodeBlock(want); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeBlock(f *testing.F) {
	f.Add(AppendBlock(nil, Block{Kind: KindLabel, Payload: []byte(`{"format":"holdfast-tape","barcode":"A","sequence":1,"created":"2026-11-25T00:00:00Z"}`)}))
	f.Add(AppendBlock(nil, Block{Kind: KindData, Seq: 3, Payload: []byte("x")}))
	f.Add([]byte("HFTP"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, err := DecodeBlock(raw)
		if err != nil {
			return
		}
		again := AppendBlock(nil, b)
		if !bytes.Equal(again, raw) {
			t.Fatalf("decode then encode differs")
		}
	})
}

// FuzzReadTape feeds arbitrary block sequences to the label and session
// readers: they may refuse, never panic or loop.
func FuzzReadTape(f *testing.F) {
	good := &memTape{}
	_ = WriteLabel(good, Label{Barcode: "A", Sequence: 1, Created: when})
	w, err := NewSessionWriter(good, SessionInfo{Stored: "s", Host: "h", Entity: "/"}, 128+HeaderSize)
	if err != nil {
		f.Fatal(err)
	}
	_, _ = w.Write(payload(1, 200))
	_, _ = w.Close()
	var seed []byte
	for _, it := range good.items {
		seed = append(seed, byte(len(it)>>8), byte(len(it)))
		seed = append(seed, it...)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, raw []byte) {
		tape := &memTape{}
		for len(raw) >= 2 {
			n := int(raw[0])<<8 | int(raw[1])
			raw = raw[2:]
			if n == 0 {
				tape.items = append(tape.items, nil)
				continue
			}
			n = min(n, len(raw))
			tape.items = append(tape.items, raw[:n])
			raw = raw[n:]
		}
		_, _ = ReadLabel(tape)
		for range 3 {
			r, err := NewSessionReader(tape)
			if err != nil {
				continue
			}
			_, _ = io.Copy(io.Discard, r)
		}
	})
}
