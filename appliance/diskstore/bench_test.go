package diskstore

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// BenchmarkAddFile stores 64 MiB, half random and half text, with the
// default chunk and pack sizes, into a fresh store each time.
func BenchmarkAddFile(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	data := randomData(rng, 32<<20)
	data = append(data, bytes.Repeat([]byte("2026-11-25 INFO a line of a log file\n"), (32<<20)/37)...)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		s, err := Create(b.TempDir(), WithApplianceKey(make([]byte, 32)), Options{})
		if err != nil {
			b.Fatal(err)
		}
		w := s.BeginSession(SessionMeta{})
		if err := w.AddFile(FileHeader{Path: "/f"}, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		if _, err := w.Commit(); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}
