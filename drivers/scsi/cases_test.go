package scsi

import (
	"github.com/holdfast/holdfast/drivers/internal/fixture"
	"strings"
	"testing"
)

type fixtureCase = fixture.Case

func hexBytes(s string) ([]byte, error) { return fixture.Hex(s) }

func caseBytes(t *testing.T, c fixtureCase) []byte {
	t.Helper()
	b, err := hexBytes(c["hex"])
	if err != nil {
		t.Fatalf("%s: bad hex: %v", c["name"], err)
	}
	return b
}

func loadCases(t testing.TB, path string) []fixtureCase { return fixture.Load(t, path) }

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
