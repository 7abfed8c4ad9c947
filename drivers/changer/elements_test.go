package changer

import (
	"fmt"
	"github.com/holdfast/holdfast/drivers/internal/fixture"
	"strconv"
	"strings"
	"testing"
)

type fixtureCase = fixture.Case

func loadCases(t testing.TB, path string) []fixtureCase { return fixture.Load(t, path) }

func hexBytes(t testing.TB, s string) []byte {
	b, err := fixture.Hex(s)
	if err != nil {
		t.Fatalf("bad hex: %v", err)
	}
	return b
}

func render(els []Element) string {
	var parts []string
	for _, e := range els {
		parts = append(parts, e.String())
	}
	return strings.Join(parts, " | ")
}

func TestParseElementStatus(t *testing.T) {
	for _, c := range loadCases(t, "testdata/elements.txt") {
		t.Run(c["name"], func(t *testing.T) {
			alloc, err := strconv.Atoi(c["alloc"])
			if err != nil {
				t.Fatalf("alloc %q: %v", c["alloc"], err)
			}
			st, err := ParseElementStatus(hexBytes(t, c["hex"]), alloc, strings.Contains(c["request"], "dvcid"))
			got := render(st.Elements)
			if st.Truncated {
				got += " (truncated)"
			}
			if st.ShortBy > 0 {
				got += fmt.Sprintf(" (short by %d)", st.ShortBy)
			}
			want := c["want"]
			if w, ok := strings.CutPrefix(want, "error: "); ok {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("error %v, want one containing %q (parsed %s)", err, w, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got != want {
				t.Fatalf("\n got  %s\n want %s", got, want)
			}
		})
	}
}
