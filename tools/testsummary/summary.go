// Package testsummary reads `go test -json` output and prints what a person
// wants from a long test run: each package's result as go test prints it,
// every failed test's output, every skipped test with its reason, and a
// closing line "N passed, N failed, N skipped".
package testsummary

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

// Counts are the totals of one run.
type Counts struct {
	Passed, Failed, Skipped int
	// BuildFailed counts packages that failed without a failing test (build
	// errors, panics outside tests, TestMain failures).
	BuildFailed int
}

// OK reports whether the run succeeded.
func (c Counts) OK() bool { return c.Failed == 0 && c.BuildFailed == 0 }

type key struct{ pkg, test string }

// Summarize reads events from r and writes the report to w. Lines that are
// not JSON (build errors, for example) are passed through.
func Summarize(r io.Reader, w io.Writer) (Counts, error) {
	var c Counts
	output := map[key]*strings.Builder{}
	var skips []string
	failedTests := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintln(w, string(line))
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "output":
			b := output[k]
			if b == nil {
				b = &strings.Builder{}
				output[k] = b
			}
			b.WriteString(e.Output)
		case "pass":
			if e.Test != "" {
				c.Passed++
			} else {
				fmt.Fprintf(w, "ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
			}
			delete(output, k)
		case "skip":
			if e.Test != "" {
				c.Skipped++
				skips = append(skips, fmt.Sprintf("%s %s: %s", e.Package, e.Test, reason(output[k])))
			} else {
				fmt.Fprintf(w, "?   \t%s\t[no test files]\n", e.Package)
			}
			delete(output, k)
		case "fail":
			if e.Test != "" {
				c.Failed++
				failedTests[e.Package] = true
				fmt.Fprintf(w, "--- FAIL: %s %s\n%s", e.Package, e.Test, text(output[k]))
			} else {
				if !failedTests[e.Package] {
					c.BuildFailed++
					fmt.Fprint(w, text(output[k]))
				}
				fmt.Fprintf(w, "FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
			}
			delete(output, k)
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("read test events: %w", err)
	}
	if len(skips) > 0 {
		sort.Strings(skips)
		fmt.Fprintln(w, "\nSkipped tests:")
		for _, s := range skips {
			fmt.Fprintln(w, "  "+s)
		}
	}
	fmt.Fprintln(w)
	if c.BuildFailed > 0 {
		fmt.Fprintf(w, "%d packages failed to build or run\n", c.BuildFailed)
	}
	fmt.Fprintf(w, "%d passed, %d failed, %d skipped\n", c.Passed, c.Failed, c.Skipped)
	return c, nil
}

func text(b *strings.Builder) string {
	if b == nil {
		return ""
	}
	return b.String()
}

// reason is the last meaningful line a skipped test printed (its t.Skip text).
func reason(b *strings.Builder) string {
	lines := strings.Split(strings.TrimSpace(text(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l != "" && !strings.HasPrefix(l, "--- SKIP") && !strings.HasPrefix(l, "=== ") {
			return l
		}
	}
	return "(no reason given)"
}
