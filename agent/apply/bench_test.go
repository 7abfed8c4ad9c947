package apply

import (
	"fmt"
	"testing"

	"github.com/holdfast/holdfast/agent/change"
)

// BenchmarkApplyWrite applies small writes (512 bytes, spread over four
// files) to a replica on the disk holding the temporary directory: one
// change at a time, each durable on return, against ApplyBatch group
// commit. Run it on the filesystem the replicas will use; on tmpfs fsync
// is free and the comparison means nothing.
func BenchmarkApplyWrite(b *testing.B) {
	data := make([]byte, 512)
	for _, batch := range []int{1, 16, 128} {
		name := "apply"
		if batch > 1 {
			name = fmt.Sprintf("batch=%d", batch)
		}
		b.Run(name, func(b *testing.B) {
			tr := newTree(b)
			a := openT(b, tr.target)
			seq := uint64(0)
			next := func() change.Change {
				seq++
				return change.Change{Seq: seq, Op: change.OpWrite, Path: fmt.Sprintf("f%d", seq%4),
					Offset: int64(seq%2048) * 512, Data: data}
			}
			// Create the files first, so the loop measures writes in place.
			for range 4 {
				if err := a.Apply(next()); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			cs := make([]change.Change, 0, batch)
			for done := 0; done < b.N; done += len(cs) {
				cs = cs[:0]
				for range min(batch, b.N-done) {
					cs = append(cs, next())
				}
				var err error
				if batch == 1 {
					err = a.Apply(cs[0])
				} else {
					err = a.ApplyBatch(cs)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

// BenchmarkApplyWholeFiles applies new small files as the initial
// synchronization and the capture stage send them (OpReplaceFile, then the
// owner), in batches the size the replication engine uses, on the disk
// holding the temporary directory.
func BenchmarkApplyWholeFiles(b *testing.B) {
	data := make([]byte, 4096)
	for _, batch := range []int{2, 64, 512} {
		b.Run(fmt.Sprintf("files=%d", batch), func(b *testing.B) {
			tr := newTree(b)
			a := openT(b, tr.target)
			seq := uint64(0)
			if err := a.Apply(change.Change{Seq: 1, Op: change.OpMkdir, Path: "d", Mode: 0o755}); err != nil {
				b.Fatal(err)
			}
			seq = 1
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			cs := make([]change.Change, 0, batch)
			for done := 0; done < b.N; {
				cs = cs[:0]
				for ; len(cs) < batch && done < b.N; done++ {
					p := fmt.Sprintf("d/f%d", done)
					cs = append(cs,
						change.Change{Seq: seq + 1, Op: change.OpReplaceFile, Path: p, Data: data, Mode: 0o644, MTime: t1},
						change.Change{Seq: seq + 2, Op: change.OpChown, Path: p, UID: 1000, GID: 1000})
					seq += 2
				}
				if err := a.ApplyBatch(cs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "files/s")
		})
	}
}
