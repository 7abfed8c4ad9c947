package chunker

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

var testParams = Params{Min: 2 << 10, Avg: 8 << 10, Max: 32 << 10}

func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func split(t *testing.T, key []byte, p Params, data []byte) [][]byte {
	t.Helper()
	c, err := New(bytes.NewReader(data), NewGear(key), p)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		ch, err := c.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(ch))
	}
}

func digests(chunks [][]byte) map[[32]byte]bool {
	m := map[[32]byte]bool{}
	for _, c := range chunks {
		m[sha256.Sum256(c)] = true
	}
	return m
}

func TestChunksCoverInputWithinBounds(t *testing.T) {
	for _, n := range []int{0, 1, testParams.Min, testParams.Max + 1, 1 << 20} {
		data := randomBytes(uint64(n), n)
		chunks := split(t, []byte("k"), testParams, data)
		if got := bytes.Join(chunks, nil); !bytes.Equal(got, data) {
			t.Fatalf("n=%d: chunks do not join to the input", n)
		}
		for i, c := range chunks {
			if len(c) > testParams.Max || (len(c) < testParams.Min && i != len(chunks)-1) {
				t.Fatalf("n=%d: chunk %d has size %d", n, i, len(c))
			}
		}
	}
}

func TestNormalizedSizes(t *testing.T) {
	chunks := split(t, []byte("k"), testParams, randomBytes(7, 4<<20))
	mean := (4 << 20) / len(chunks)
	// Normalized chunking keeps the mean near Avg; a plain gear chunker with
	// a min skip would land near Min+Avg.
	if mean < testParams.Avg/2 || mean > testParams.Avg*2 {
		t.Fatalf("mean chunk size %d for average %d", mean, testParams.Avg)
	}
}

func TestDeterministicAndKeyed(t *testing.T) {
	data := randomBytes(3, 1<<20)
	a := split(t, []byte("store one"), testParams, data)
	b := split(t, []byte("store one"), testParams, data)
	if len(a) != len(b) {
		t.Fatalf("same key: %d and %d chunks", len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("same key: chunk %d differs", i)
		}
	}
	other := digests(split(t, []byte("store two"), testParams, data))
	shared := 0
	for d := range digests(a) {
		if other[d] {
			shared++
		}
	}
	if shared > 1 {
		t.Fatalf("two keys cut %d identical chunks out of %d", shared, len(a))
	}
}

func TestBoundaryStability(t *testing.T) {
	data := randomBytes(5, 2<<20)
	before := split(t, []byte("k"), testParams, data)
	for _, at := range []int{0, 100, 50_000} {
		changed := append(append(append([]byte{}, data[:at]...), []byte("inserted bytes")...), data[at:]...)
		after := digests(split(t, []byte("k"), testParams, changed))
		lost := 0
		for d := range digests(before) {
			if !after[d] {
				lost++
			}
		}
		// Only the chunk holding the insertion and perhaps its neighbour
		// may change.
		if lost > 2 {
			t.Fatalf("insert at %d changed %d of %d chunks", at, lost, len(before))
		}
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []Params{
		{Min: 10, Avg: 1024, Max: 4096},
		{Min: 512, Avg: 1000, Max: 4096},
		{Min: 2048, Avg: 1024, Max: 4096},
		{Min: 512, Avg: 1 << 20, Max: 128 << 20},
	} {
		if p.Validate() == nil {
			t.Errorf("%+v accepted", p)
		}
	}
	if err := DefaultParams().Validate(); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkChunker(b *testing.B) {
	data := randomBytes(1, 64<<20)
	g := NewGear([]byte("k"))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		c, _ := New(bytes.NewReader(data), g, DefaultParams())
		for {
			if _, err := c.Next(); err != nil {
				break
			}
		}
	}
}

// Cut points depend on the bytes only, not on how the reader hands them
// over.
func TestIndependentOfReadSizes(t *testing.T) {
	data := randomBytes(8, 600<<10)
	want := split(t, []byte("k"), testParams, data)
	for name, r := range map[string]io.Reader{
		"one byte": iotest.OneByteReader(bytes.NewReader(data)),
		"half":     iotest.HalfReader(bytes.NewReader(data)),
	} {
		c, err := New(r, NewGear([]byte("k")), testParams)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			ch, err := c.Next()
			if err == io.EOF {
				if i != len(want) {
					t.Fatalf("%s: %d chunks, want %d", name, i, len(want))
				}
				break
			}
			if err != nil || i >= len(want) || !bytes.Equal(ch, want[i]) {
				t.Fatalf("%s: chunk %d differs (%v)", name, i, err)
			}
		}
	}
}

func TestReadErrorIsReturned(t *testing.T) {
	c, err := New(iotest.TimeoutReader(bytes.NewReader(randomBytes(9, 100<<10))), NewGear([]byte("k")), testParams)
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := c.Next()
		if err == io.EOF {
			t.Fatal("read error swallowed")
		}
		if err != nil {
			if !errors.Is(err, iotest.ErrTimeout) {
				t.Fatal(err)
			}
			return
		}
	}
}

func TestResetCutsLikeNew(t *testing.T) {
	a, b := randomBytes(10, 300<<10), randomBytes(11, 200<<10)
	c, err := New(bytes.NewReader(a), NewGear([]byte("k")), testParams)
	if err != nil {
		t.Fatal(err)
	}
	c.Next() // part way through a
	c.Reset(bytes.NewReader(b))
	want := split(t, []byte("k"), testParams, b)
	for i := 0; ; i++ {
		ch, err := c.Next()
		if err == io.EOF {
			if i != len(want) {
				t.Fatalf("%d chunks after Reset, want %d", i, len(want))
			}
			return
		}
		if err != nil || !bytes.Equal(ch, want[i]) {
			t.Fatalf("chunk %d after Reset differs (%v)", i, err)
		}
	}
}
