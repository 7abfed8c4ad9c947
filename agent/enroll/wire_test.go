package enroll

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/appliance/pki"
)

func validRequest(t testing.TB) []byte {
	t.Helper()
	_, csr, err := pki.NewKeyAndCSR("web1.example")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(Request{Token: "hfe1_" + strings.Repeat("x", 43), CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeRequest(t *testing.T) {
	valid := validRequest(t)
	tests := []struct {
		name    string
		body    string
		wantErr string
	}{
		{"valid", string(valid), ""},
		{"empty", "", "not valid JSON"},
		{"not JSON", "{", "not valid JSON"},
		{"unknown field", `{"token":"t","csr":"AAAA","host":"x"}`, "not valid JSON"},
		{"two values", string(valid) + string(valid), "more than one"},
		{"no token", `{"csr":"AAAA"}`, "no token"},
		{"no csr", `{"token":"t"}`, "no csr"},
		{"csr not base64", `{"token":"t","csr":"!!"}`, "not valid JSON"},
		{"token with space", `{"token":"a b","csr":"AAAA"}`, "printable ASCII"},
		{"token with newline", `{"token":"a\nb","csr":"AAAA"}`, "printable ASCII"},
		{"long token", `{"token":"` + strings.Repeat("a", 300) + `","csr":"AAAA"}`, "longer than"},
		{"huge", `{"token":"t","csr":"` + strings.Repeat("A", MaxRequestBytes) + `"}`, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeRequest(strings.NewReader(tt.body))
			if tt.wantErr == "" {
				if err != nil || req.Token == "" || len(req.CSR) == 0 {
					t.Fatalf("%+v, %v", req, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// FuzzDecodeRequest feeds the decoder of the appliance's only
// unauthenticated route arbitrary bytes: it must not panic, and what it
// accepts must respect the limits and survive a round trip.
func FuzzDecodeRequest(f *testing.F) {
	f.Add(validRequest(f))
	f.Add([]byte(`{"token":"t","csr":"AAAA"}`))
	f.Add([]byte(`{"token":"t","csr":"AAAA"} {}`))
	f.Add([]byte(`{"token":"\u0000","csr":null}`))
	f.Add([]byte(`[1,2,3]`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeRequest(bytes.NewReader(data))
		if err != nil {
			return
		}
		if req.Token == "" || len(req.Token) > maxTokenLen || len(req.CSR) == 0 || len(req.CSR) > maxCSRLen {
			t.Fatalf("accepted out-of-limit request: token %d bytes, csr %d bytes", len(req.Token), len(req.CSR))
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeRequest(bytes.NewReader(again))
		if err != nil || back.Token != req.Token || !bytes.Equal(back.CSR, req.CSR) {
			t.Fatalf("round trip: %+v, %v", back, err)
		}
	})
}
