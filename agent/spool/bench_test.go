package spool

import (
	"fmt"
	"testing"

	"github.com/holdfast/holdfast/agent/change"
)

// BenchmarkAppend measures appends of write changes with a fsync per
// append, and with one fsync per batch (group commit). It acknowledges
// every 64 MiB, as a live sender would, to stay under MaxBytes; those
// acknowledgements read nothing (they cover whole durable segments) but
// cost two fsyncs and the segment deletions.
func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct {
		data, syncEvery int
	}{
		{100, 1},
		{1024, 1},
		{100, 1000},
		{1024, 1000},
		{64 << 10, 100},
	} {
		b.Run(fmt.Sprintf("data=%d/sync-every=%d", bc.data, bc.syncEvery), func(b *testing.B) {
			s := openT(b, b.TempDir(), Options{})
			defer closeT(b, s)
			c := change.Change{Op: change.OpWrite, Path: "bench/file.db", Data: make([]byte, bc.data), Captured: 1_764_000_000_000_000_000}
			frame, err := appendChangeFrame(nil, &c)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(frame)))
			ackEvery := uint64(max(bc.syncEvery, (64<<20)/len(frame)))
			var seq uint64
			for b.Loop() {
				seq++
				c.Seq = seq
				if err := s.Append(c); err != nil {
					b.Fatal(err)
				}
				if seq%uint64(bc.syncEvery) == 0 {
					if err := s.Sync(); err != nil {
						b.Fatal(err)
					}
				}
				if seq%ackEvery == 0 {
					if err := s.Sync(); err != nil {
						b.Fatal(err)
					}
					if err := s.Ack(seq); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := s.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
