package blocksync

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

const benchSize = 64 << 20

// benchFiles returns 64 MiB of random data and a copy with 1% of it
// overwritten in 4 KiB regions at random (unaligned) offsets: the shape of
// a database or VM image after some hours of work.
func benchFiles() (old, newData []byte) {
	old = make([]byte, benchSize)
	_, _ = rand.NewChaCha8([32]byte{7}).Read(old) // ChaCha8.Read never fails
	newData = bytes.Clone(old)
	rng := rand.New(rand.NewPCG(51, 52))
	for range benchSize / 100 / 4096 {
		at := rng.IntN(benchSize - 4096)
		copy(newData[at:at+4096], randBytes(rng, 4096))
	}
	return old, newData
}

func BenchmarkSignature(b *testing.B) {
	old, _ := benchFiles()
	bs := BlockSize(benchSize)
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := ComputeSignature(bytes.NewReader(old), bs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDiff(b *testing.B) {
	old, newData := benchFiles()
	for _, bs := range []int{BlockSize(benchSize), 4096} {
		sig := sigOf(b, old, bs)
		b.Run(fmt.Sprintf("bs=%d", bs), func(b *testing.B) {
			b.SetBytes(benchSize)
			var st Stats
			for b.Loop() {
				var err error
				if st, err = Diff(sig, bytes.NewReader(newData), func(Op) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(st.LiteralBytes)/float64(benchSize)*100, "%literal")
		})
	}
}

// BenchmarkDiffNoMatch is the worst case for the scan: nothing matches, so
// the window rolls over every byte.
func BenchmarkDiffNoMatch(b *testing.B) {
	old, _ := benchFiles()
	other := make([]byte, 16<<20)
	_, _ = rand.NewChaCha8([32]byte{8}).Read(other)
	sig := sigOf(b, old, 4096)
	b.SetBytes(int64(len(other)))
	for b.Loop() {
		if _, err := Diff(sig, bytes.NewReader(other), func(Op) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPatch(b *testing.B) {
	old, newData := benchFiles()
	ops, _ := delta(b, old, newData, BlockSize(benchSize), DiffOptions{})
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := Patch(bytes.NewReader(old), benchSize, SliceOps(ops), io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
