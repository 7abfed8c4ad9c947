package messages

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/appliance/catalog"
)

var update = flag.Bool("update", false, "rewrite docs/messages.md from the catalog")

func TestCatalogEntries(t *testing.T) {
	codeRE := regexp.MustCompile(`^HF-([IWE])([1-8])\d{3}$`)
	letter := map[catalog.Severity]string{catalog.Info: "I", catalog.Warning: "W", catalog.Error: "E"}
	for _, m := range All() {
		t.Run(string(m.Code), func(t *testing.T) {
			sub := codeRE.FindStringSubmatch(string(m.Code))
			if sub == nil {
				t.Fatalf("code %q does not match %s", m.Code, codeRE)
			}
			if sub[1] != letter[m.Severity] {
				t.Errorf("code letter %s does not match severity %s", sub[1], m.Severity)
			}
			if m.Module == "" || m.Text == "" {
				t.Error("module and text are required")
			}
			if m.Severity != catalog.Info && (m.Reason == "" || m.Action == "") {
				t.Error("warnings and errors need a reason and an action")
			}
		})
	}
}

// The product we replace documents these integration messages; each must
// have an equivalent of ours so operators' runbooks map one to one.
func TestLegacyCoverage(t *testing.T) {
	legacy := []string{"E3370", "E3371", "AE0457", "AE0458", "AE0459", "AE0460", "AE0461", "AE0463",
		"AE0464", "AE0465", "AE0467", "AE0468", "AE0469", "AE0470", "AE0471", "AE0472"}
	have := map[string]Code{}
	for _, m := range All() {
		if m.Legacy != "" {
			if prev, dup := have[m.Legacy]; dup {
				t.Errorf("legacy %s mapped twice: %s and %s", m.Legacy, prev, m.Code)
			}
			have[m.Legacy] = m.Code
		}
	}
	for _, l := range legacy {
		if _, ok := have[l]; !ok {
			t.Errorf("no message covers legacy %s", l)
		}
	}
}

func TestErrorText(t *testing.T) {
	cause := errors.New("disk full")
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"template without cause", New(ScenarioExists, "docs"), `HF-E4004 a scenario named "docs" already exists`},
		{"cause appended", Wrap(cause, ScenarioInvalid, "name: missing"), "HF-E4003 scenario definition is invalid: name: missing: disk full"},
		{"cause already in template", Wrap(cause, CatalogWriteFailed, cause), "HF-E2003 catalog write failed: disk full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("got %q want %q", got, tt.want)
			}
			wrapped := fmt.Errorf("outer: %w", tt.err)
			if CodeOf(wrapped) != tt.err.Code {
				t.Errorf("CodeOf lost the code through wrapping")
			}
		})
	}
	if !errors.Is(Wrap(cause, ScenarioInvalid, "x"), cause) {
		t.Error("Wrap must keep the cause reachable with errors.Is")
	}
}

// docs/messages.md is generated from the catalog, so the two cannot drift.
func TestDocsUpToDate(t *testing.T) {
	want := Markdown()
	const path = "../../docs/messages.md"
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run: go test ./appliance/messages -update)", err)
	}
	if string(got) != want {
		t.Errorf("docs/messages.md is stale: run go test ./appliance/messages -update")
	}
}

func TestMarkdownHasEveryCode(t *testing.T) {
	md := Markdown()
	for _, m := range All() {
		if !strings.Contains(md, "## "+string(m.Code)) {
			t.Errorf("markdown lacks %s", m.Code)
		}
	}
}
