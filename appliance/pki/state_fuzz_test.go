package pki

import (
	"bytes"
	"math/big"
	"testing"
	"time"
)

func FuzzLoadTokens(f *testing.F) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	seed, err := encodeState(&state{
		tokens: []tokenRecord{{host: "agent1.test", created: now, expires: now.Add(time.Hour)}},
		certs:  []certRecord{{serial: bigOne(), host: "10.0.0.1", notAfter: now.Add(time.Hour), revokedAt: now}},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"version":1,"tokens":[],"certificates":[]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := decodeState(data)
		if err != nil {
			return
		}
		// Whatever decodes must survive a round trip unchanged.
		enc, err := encodeState(s)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		s2, err := decodeState(enc)
		if err != nil {
			t.Fatalf("decode of re-encoded state: %v", err)
		}
		enc2, err := encodeState(s2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip not stable:\n%s\n%s", enc, enc2)
		}
	})
}

func bigOne() *big.Int { return big.NewInt(1) }
