package changer

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// fixtureCase is one entry of a data-driven fixture file: "key: value"
// lines, entries separated by blank lines, "#" comments.
type fixtureCase map[string]string

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
	sc.Buffer(nil, 1<<20)
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

func hexBytes(t testing.TB, s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
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
