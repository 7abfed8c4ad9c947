package control

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDataAddress(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "data.addr")
	for _, c := range []struct {
		name              string
		listen, advertise string
		fileBody          string
		wantAddr          string
	}{
		{"master only", "", "", "", ""},
		{"advertised", "0.0.0.0:7431", "dc2.example:7431", "0.0.0.0:7431\n", "dc2.example:7431"},
		{"bound, from the transport", "127.0.0.1:0", "", "127.0.0.1:40001\n", "127.0.0.1:40001"},
		{"fixed port before the transport wrote", "10.0.0.2:7431", "", "", "10.0.0.2:7431"},
		{"port 0 before the transport wrote", "127.0.0.1:0", "", "", ""},
		{"torn address file", "127.0.0.1:0", "", "127.0.0", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			os.Remove(file)
			if c.fileBody != "" {
				if err := os.WriteFile(file, []byte(c.fileBody), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if got := DataAddress(c.listen, c.advertise, file); got != c.wantAddr {
				t.Fatalf("dataAddress = %q, want %q", got, c.wantAddr)
			}
		})
	}
}
