package treesync

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast/agent/change"
)

// BenchmarkPlanSync measures the master's side of a resynchronization:
// scanning both trees, comparing, and planning, for a tree of 1,000 small
// files of which 50 changed and one 8 MiB file with 1% changed (block
// level, so the replica's signature is computed too). The changes are
// discarded rather than applied, so every iteration finds the same work.
func BenchmarkPlanSync(b *testing.B) {
	base := b.TempDir()
	m, r := filepath.Join(base, "master"), filepath.Join(base, "replica")
	big := random(1, 8<<20)
	for _, root := range []string{m, r} {
		for i := range 1000 {
			write(b, root, fmt.Sprintf("d%02d/f%03d", i%20, i), random(uint64(i), 2<<10), 0o644)
		}
		write(b, root, "big.db", big, 0o600)
		// Equal times, as after an earlier synchronization.
		setMTime(b, root, "big.db", ns1)
		for i := range 1000 {
			setMTime(b, root, fmt.Sprintf("d%02d/f%03d", i%20, i), ns1)
		}
		for d := range 20 {
			setMTime(b, root, fmt.Sprintf("d%02d", d), ns2)
		}
	}
	for i := range 50 {
		p := fmt.Sprintf("d%02d/f%03d", i%20, i)
		write(b, m, p, random(uint64(i+5000), 2<<10), 0o644)
	}
	write(b, m, "big.db", edit(big, 0.01, 1), 0o600)
	rp := &replica{root: r}
	var st Stats
	b.ResetTimer()
	for b.Loop() {
		master, _, err := Scan(m, ScanOptions{})
		if err != nil {
			b.Fatal(err)
		}
		repl, _, err := Scan(r, ScanOptions{})
		if err != nil {
			b.Fatal(err)
		}
		diffs := Compare(master, repl)
		p := &Planner{MasterRoot: m, Signature: rp.signature, Emit: func(change.Change) error { return nil }, Links: Links(master)}
		if st, err = p.Sync(diffs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(st.Changes), "changes/op")
	b.ReportMetric(float64(st.BytesDelta+st.BytesWhole), "sent-bytes/op")
}
