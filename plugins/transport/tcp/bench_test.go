package tcp

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/holdfast/holdfast/plugins/sdk"
)

// BenchmarkThroughput sends 1 MiB frames over loopback through TLS, with
// and without zstd, of text (compressible) and random (incompressible)
// data, the receiving host acking each one.
func BenchmarkThroughput(b *testing.B) {
	r := rand.New(rand.NewPCG(11, 12))
	text := make([]byte, 0, sdk.MaxFramePayload+200)
	for len(text) < sdk.MaxFramePayload {
		text = fmt.Appendf(text, "%s host=%d op=write path=/srv/share/%x size=%d\n",
			time.Unix(1.7e9+r.Int64N(1e6), 0).UTC().Format(time.RFC3339), r.IntN(50), r.Uint32(), r.IntN(1<<20))
	}
	data := map[string][]byte{
		"text":   text[:sdk.MaxFramePayload],
		"random": randomPayload(r, 1)[:0],
	}
	random := make([]byte, sdk.MaxFramePayload)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	data["random"] = random
	for _, compression := range []string{"zstd", "none"} {
		for _, kind := range []string{"text", "random"} {
			b.Run(compression+"/"+kind, func(b *testing.B) {
				p := newPair(b, map[string]string{"compression": compression})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				startReceivingHost(b, ctx, p.recv, "bench")
				fs, err := p.send.Send(ctx, "replica.test@"+p.recvAddr, "bench")
				if err != nil {
					b.Fatal(err)
				}
				payload := data[kind]
				b.SetBytes(int64(len(payload)))
				b.ResetTimer()
				start := time.Now()
				go func() {
					for i := range b.N {
						if err := fs.Send(sdk.Frame{Seq: uint64(i + 1), Payload: payload}); err != nil {
							return
						}
					}
				}()
				for range b.N {
					if _, err := fs.Recv(); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				mib := float64(b.N) * float64(len(payload)) / (1 << 20)
				b.ReportMetric(mib/time.Since(start).Seconds(), "MiB/s")
			})
		}
	}
}

// BenchmarkCodec measures compress and decompress of one 1 MiB payload
// alone, without the network.
func BenchmarkCodec(b *testing.B) {
	r := rand.New(rand.NewPCG(11, 12))
	text := make([]byte, 0, sdk.MaxFramePayload+200)
	for len(text) < sdk.MaxFramePayload {
		text = fmt.Appendf(text, "host=%d op=write path=/srv/share/%x size=%d\n", r.IntN(50), r.Uint32(), r.IntN(1<<20))
	}
	text = text[:sdk.MaxFramePayload]
	b.Run("compress", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for range b.N {
			compress(text, true)
		}
	})
	z, flags := compress(text, true)
	b.Logf("text compresses to %d of %d bytes", len(z), len(text))
	b.Run("decompress", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for range b.N {
			if _, err := decompress(z, flags); err != nil {
				b.Fatal(err)
			}
		}
	})
}
