package tcp

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/holdfast/holdfast/plugins/sdk"
)

func FuzzReadHello(f *testing.F) {
	f.Add(appendHello(nil, hello{version: wireVersion, session: "fs1", stream: streamID{1, 2, 3}, ackNext: 42}))
	f.Add(appendHello(nil, hello{version: 9, session: string(bytes.Repeat([]byte("s"), maxSessionLen))}))
	f.Add([]byte("HFTS\x01\x00"))
	f.Add([]byte("HFTR\x01\x05abc"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		h, err := readHello(r)
		if err != nil {
			return
		}
		if h.session == "" || len(h.session) > maxSessionLen {
			t.Fatalf("accepted session name of %d bytes", len(h.session))
		}
		used := data[:len(data)-r.Len()]
		if again := appendHello(nil, h); !bytes.Equal(again, used) {
			t.Fatalf("re-encoding %+v gives %x, read %x", h, again, used)
		}
	})
}

func FuzzReadAnswer(f *testing.F) {
	f.Add(appendAnswer(nil, answer{version: wireVersion, status: statusOK, receivedNext: 7}))
	f.Add(appendAnswer(nil, answer{version: wireVersion, status: statusRefused, reason: "a newer stream replaced this one"}))
	f.Add([]byte("HFTR\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := readAnswer(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(a.reason) > maxReasonLen*3 { // SanitizeText may widen bytes to U+FFFD
			t.Fatalf("reason of %d bytes", len(a.reason))
		}
	})
}

// FuzzReadMessage covers the message decoder and the decompression of
// payloads, as the receiving side runs them on a peer's bytes.
func FuzzReadMessage(f *testing.F) {
	seed := func(ms ...message) []byte {
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		for _, m := range ms {
			if err := writeMessage(w, m); err != nil {
				f.Fatal(err)
			}
		}
		w.Flush()
		return buf.Bytes()
	}
	text := bytes.Repeat([]byte("compressible "), 1000)
	z, flags := compress(text, true)
	f.Add(seed(message{typ: msgFrame, seq: 1, data: []byte("hello")}))
	f.Add(seed(message{typ: msgAck, seq: 2, flags: flags, data: z}, message{typ: msgAckSeen, seq: 3}))
	f.Add(seed(message{typ: msgAckSeen, seq: 9}))
	f.Add([]byte("\x00\x10\x00\x0b\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00"))
	f.Add([]byte("\xff\xff\xff\xff\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		for {
			m, err := readMessage(r)
			if err != nil {
				return
			}
			if len(m.data) > sdk.MaxFramePayload {
				t.Fatalf("message with %d bytes of data", len(m.data))
			}
			p, err := decompress(m.data, m.flags)
			if err != nil {
				continue
			}
			if len(p) > sdk.MaxFramePayload {
				t.Fatalf("decompressed to %d bytes", len(p))
			}
		}
	})
}

func TestCompressRoundTrip(t *testing.T) {
	for _, p := range [][]byte{nil, []byte("short"), bytes.Repeat([]byte("ab"), 5000), make([]byte, sdk.MaxFramePayload)} {
		data, flags := compress(p, true)
		got, err := decompress(data, flags)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("round trip of %d bytes: %d bytes, %v", len(p), len(got), err)
		}
	}
	random := make([]byte, sdk.MaxFramePayload)
	for i := range random {
		random[i] = byte(i*7919 ^ i>>3*131 ^ i>>11*17)
	}
	rand.New(rand.NewPCG(1, 1)).Shuffle(len(random), func(i, j int) { random[i], random[j] = random[j], random[i] })
	if _, flags := compress(random, true); flags != 0 {
		t.Fatal("incompressible payload sent compressed")
	}
	if data, flags := compress(bytes.Repeat([]byte("ab"), sdk.MaxFramePayload/2), true); flags != flagZstd || len(data) > 1<<12 {
		t.Fatalf("compressible payload: flags %d, %d bytes", flags, len(data))
	}
	// More than a payload may hold is refused even when it is valid zstd.
	big := encoder.EncodeAll(make([]byte, sdk.MaxFramePayload+1), nil)
	if _, err := decompress(big, flagZstd); err == nil {
		t.Fatal("decompressed a payload over the limit")
	}
}
