package scsi

import (
	"bufio"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// fixtureCase is one entry of a data-driven fixture file: "key: value"
// lines, entries separated by blank lines, "#" comments.
type fixtureCase map[string]string

func hexBytes(s string) ([]byte, error) {
	return hex.DecodeString(strings.Join(strings.Fields(s), ""))
}

func (c fixtureCase) bytes(t *testing.T) []byte {
	t.Helper()
	b, err := hexBytes(c["hex"])
	if err != nil {
		t.Fatalf("%s: bad hex: %v", c["name"], err)
	}
	return b
}

func loadCases(t testing.TB, path string) []fixtureCase {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open fixtures: %v", err)
	}
	defer f.Close()
	var out []fixtureCase
	cur := fixtureCase{}
	flush := func() {
		if len(cur) > 0 {
			out = append(out, cur)
			cur = fixtureCase{}
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
		case strings.TrimSpace(line) == "":
			flush()
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				t.Fatalf("%s: line %q has no key", path, line)
			}
			cur[k] = strings.TrimSpace(cur[k] + " " + strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read fixtures: %v", err)
	}
	flush()
	if len(out) == 0 {
		t.Fatalf("%s: no cases", path)
	}
	return out
}

// checkOutcome compares a rendered result or error with the case's want.
func checkOutcome(t *testing.T, c fixtureCase, got string, err error) {
	t.Helper()
	want := c["want"]
	if w, ok := strings.CutPrefix(want, "error: "); ok {
		if err == nil {
			t.Fatalf("%s: want error containing %q, got %q", c["name"], w, got)
		}
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("%s: error %q does not contain %q", c["name"], err, w)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s: unexpected error: %v", c["name"], err)
	}
	if got != want {
		t.Fatalf("%s:\n got  %s\n want %s", c["name"], got, want)
	}
}
