package throttle

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// chunkRecorder records the size of every write it receives.
type chunkRecorder struct {
	bytes.Buffer
	sizes []int
}

func (c *chunkRecorder) Write(p []byte) (int, error) {
	c.sizes = append(c.sizes, len(p))
	return c.Buffer.Write(p)
}

func payload(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i * 7)
	}
	return p
}

func TestWriterRateLowerBound(t *testing.T) {
	const bps = 512 * kib // burst is minBurst (64 KiB) at this rate
	s := mustParse(t, "* 512KiB/s", time.UTC)
	var dst chunkRecorder
	w := NewWriter(&dst, s, nil)
	data := payload(320 * kib)

	start := time.Now()
	n, err := w.Write(data)
	elapsed := time.Since(start)
	if err != nil || n != len(data) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if !bytes.Equal(dst.Bytes(), data) {
		t.Fatal("bytes written differ from input")
	}
	for _, sz := range dst.sizes {
		if sz > minBurst {
			t.Fatalf("underlying write of %d bytes exceeds burst %d", sz, minBurst)
		}
	}
	// The bucket starts full, so one burst goes out at once; the rest
	// cannot go faster than the rate. Only a lower bound: the machine is
	// shared and may be arbitrarily slow.
	minimum := time.Duration(float64(len(data)-minBurst) / bps * float64(time.Second))
	if elapsed < minimum-10*time.Millisecond {
		t.Errorf("wrote %d bytes at %d B/s in %v, want at least %v", len(data), bps, elapsed, minimum)
	}
	t.Logf("wrote %d bytes in %v (minimum %v)", len(data), elapsed, minimum)
}

func TestWriterUnlimited(t *testing.T) {
	var dst chunkRecorder
	w := NewWriter(&dst, mustParse(t, "* unlimited", time.UTC), nil)
	data := payload(4 * mib)
	if n, err := w.Write(data); err != nil || n != len(data) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if len(dst.sizes) != 1 {
		t.Errorf("unlimited write split into %d writes", len(dst.sizes))
	}
}

func TestWriterPausedHonorsContext(t *testing.T) {
	var dst bytes.Buffer
	w := NewWriter(&dst, mustParse(t, "* paused", time.UTC), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var n int
	var err error
	go func() {
		defer close(done)
		n, err = w.WriteContext(ctx, payload(100))
	}()
	select {
	case <-done:
		t.Fatalf("paused write returned early: %d, %v", n, err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	<-done
	if n != 0 || !errors.Is(err, context.Canceled) || dst.Len() != 0 {
		t.Errorf("WriteContext = %d, %v (wrote %d); want 0, context.Canceled", n, err, dst.Len())
	}
}

func TestWriterPausedUntilChange(t *testing.T) {
	// The schedule clock starts 150ms before the pause ends and runs at
	// real speed, so the write must wait for the change, then go out.
	s := mustParse(t, "mon 00:00-08:00 paused; * unlimited", time.UTC)
	base := time.Date(2024, 1, 1, 7, 59, 59, 850_000_000, time.UTC)
	start := time.Now()
	clock := func() time.Time { return base.Add(time.Since(start)) }
	var dst bytes.Buffer
	w := NewWriter(&dst, s, clock)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := w.WriteContext(ctx, payload(1000))
	if err != nil || n != 1000 {
		t.Fatalf("WriteContext = %d, %v", n, err)
	}
	if elapsed := time.Since(start); elapsed < 150*time.Millisecond {
		t.Errorf("write finished after %v, before the pause ended", elapsed)
	}
}

func TestWriterRateChangeCancelsWait(t *testing.T) {
	// At 1 KiB/s a second 64 KiB chunk would wait a minute, but the
	// schedule turns unlimited 100ms in; the writer must notice.
	s := mustParse(t, "mon 00:00-08:00 1KiB/s; * unlimited", time.UTC)
	base := time.Date(2024, 1, 1, 7, 59, 59, 900_000_000, time.UTC)
	start := time.Now()
	clock := func() time.Time { return base.Add(time.Since(start)) }
	var dst bytes.Buffer
	w := NewWriter(&dst, s, clock)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data := payload(3 * minBurst)
	if n, err := w.WriteContext(ctx, data); err != nil || n != len(data) {
		t.Fatalf("WriteContext = %d, %v", n, err)
	}
	if !bytes.Equal(dst.Bytes(), data) {
		t.Fatal("bytes written differ from input")
	}
}

func TestWriterContextDuringThrottle(t *testing.T) {
	var dst bytes.Buffer
	w := NewWriter(&dst, mustParse(t, "* 1KiB/s", time.UTC), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	n, err := w.WriteContext(ctx, payload(2*minBurst))
	if n != minBurst || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WriteContext = %d, %v; want %d (one burst), deadline exceeded", n, err, minBurst)
	}
}

type failWriter struct{ err error }

func (f failWriter) Write(p []byte) (int, error) { return 0, f.err }

func TestWriterPassesErrors(t *testing.T) {
	boom := errors.New("boom")
	w := NewWriter(failWriter{boom}, mustParse(t, "* 1MiB/s", time.UTC), nil)
	if _, err := w.Write(payload(10)); !errors.Is(err, boom) {
		t.Errorf("Write error = %v, want %v", err, boom)
	}
}

func TestBurstFor(t *testing.T) {
	for _, tt := range []struct {
		bps  int64
		want int
	}{{1, minBurst}, {640 * kib, minBurst}, {10 * mib, mib}, {maxRate, maxBurst}} {
		if got := burstFor(tt.bps); got != tt.want {
			t.Errorf("burstFor(%d) = %d, want %d", tt.bps, got, tt.want)
		}
	}
}
