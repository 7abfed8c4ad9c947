package lab

import (
	"strings"
	"testing"
)

func TestParseSerial(t *testing.T) {
	for _, tc := range []struct {
		name    string
		console string
		records int
		err     string
	}{
		{"ok", "[ 1.0] boot\r\nLAB-BOOT uptime=5.1\r\nLAB devices [1,2]\r\nLAB reply {\"a\":1}\r\nLAB-END ok\r\n", 2, ""},
		{"guest failure", "LAB x 1\nLAB-END fail \"no changer\"\n", 1, "guest failed: no changer"},
		{"never finished", "LAB x 1\nKernel panic - not syncing\n", 1, "Kernel panic"},
		{"garbled record", "LAB x {\"a\":[ 2.1] sd 0:0:0:0\nLAB-END ok\n", 0, "garbled"},
		{"empty", "", 0, "did not finish"},
	} {
		r, err := ParseSerial([]byte(tc.console))
		if len(r.Records) != tc.records {
			t.Errorf("%s: %d records, want %d", tc.name, len(r.Records), tc.records)
		}
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
	r, _ := ParseSerial([]byte("LAB a 1\nLAB b 2\nLAB a 3\nLAB-END ok\n"))
	if got := r.All("a"); len(got) != 2 || string(got[1]) != "3" {
		t.Errorf("All(a) = %s", got)
	}
}

func FuzzParseSerial(f *testing.F) {
	f.Add([]byte("LAB-BOOT uptime=1\nLAB k {\"x\":1}\nLAB-END ok\n"))
	f.Add([]byte("LAB-END fail \"x\"\n"))
	f.Add([]byte("LAB \nLAB-END \n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, _ := ParseSerial(b)
		for _, rec := range r.Records {
			if rec.Key == "" || strings.Contains(rec.Key, " ") {
				t.Fatalf("record key %q", rec.Key)
			}
		}
	})
}
