package sdk

import (
	"path/filepath"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/holdfast/holdfast/plugins/sdk/internal/pluginpb"
)

// The fuzzers start from raw protobuf bytes, as a plugin could send them,
// and go through the same decode and conversion the host client uses, so the
// whole path from the wire to a validated value is covered.

func mustMarshal(f *testing.F, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

func FuzzValidateEntities(f *testing.F) {
	f.Add("/srv\n/home", mustMarshal(f, &pluginpb.ListEntitiesResponse{Entities: []*pluginpb.Entity{
		{Name: "/srv", Kind: "volume", Paths: []string{"/srv", "/srv/a"}, Detail: map[string]string{"fstype": "xfs"}},
		{Name: "/home", Kind: "volume", Paths: []string{"/home"}},
	}}))
	f.Add("/srv", mustMarshal(f, &pluginpb.ListEntitiesResponse{Entities: []*pluginpb.Entity{
		{Name: "x", Kind: "volume", Paths: []string{"/srv/../etc"}},
	}}))
	f.Add("/", mustMarshal(f, &pluginpb.ListEntitiesResponse{Entities: []*pluginpb.Entity{
		{Name: "root", Kind: "v", Paths: []string{"/"}},
		{Name: "root", Kind: "v", Paths: []string{"/etc"}},
	}}))
	f.Add("", []byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, rootsText string, data []byte) {
		var resp pluginpb.ListEntitiesResponse
		if err := proto.Unmarshal(data, &resp); err != nil {
			return
		}
		cfg := ScenarioConfig{Roots: strings.Split(rootsText, "\n")}
		entities := entitiesFromPB(&resp)
		if err := ValidateEntities(cfg, entities); err != nil {
			return
		}
		// Whatever passes must honour every promise the validator makes.
		names := map[string]bool{}
		for _, e := range entities {
			if e.Name == "" || e.Kind == "" || names[e.Name] || !printable(e.Name) || !printable(e.Kind) {
				t.Fatalf("accepted bad entity name/kind %q/%q", e.Name, e.Kind)
			}
			names[e.Name] = true
			if len(e.Paths) == 0 {
				t.Fatalf("accepted entity %q without paths", e.Name)
			}
			for _, p := range e.Paths {
				if !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.Contains(p, "/../") || !printable(p) {
					t.Fatalf("accepted bad path %q", p)
				}
				inside := false
				for _, r := range cfg.Roots {
					if filepath.IsAbs(r) {
						rel, err := filepath.Rel(filepath.Clean(r), p)
						if err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
							inside = true
						}
					}
				}
				if !inside {
					t.Fatalf("accepted path %q outside roots %q", p, cfg.Roots)
				}
			}
			for k, v := range e.Detail {
				if k == "" || !printable(k) || (v != "" && !printable(v)) {
					t.Fatalf("accepted bad detail %q=%q", k, v)
				}
			}
		}
	})
}

func FuzzValidateInfo(f *testing.F) {
	f.Add(mustMarshal(f, &pluginpb.DescribeResponse{Info: &pluginpb.ScenarioInfo{
		Type: "fileserver", DisplayName: "File Server", Version: "1.0", EntityKind: "volume",
		Capabilities: []string{"granular-restore"},
	}}))
	f.Add(mustMarshal(f, &pluginpb.DescribeResponse{Info: &pluginpb.ScenarioInfo{Type: "A\x00"}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var resp pluginpb.DescribeResponse
		if err := proto.Unmarshal(data, &resp); err != nil {
			return
		}
		info := infoFromPB(&resp)
		if err := ValidateInfo(info); err != nil {
			return
		}
		if !IsIdent(info.Type) || len(info.Type) > MaxIdentLen || !IsIdent(info.EntityKind) ||
			!printable(info.DisplayName) || !printable(info.Version) {
			t.Fatalf("accepted bad info %+v", info)
		}
		for _, c := range info.Capabilities {
			if !IsIdent(c) {
				t.Fatalf("accepted bad capability %q", c)
			}
		}
	})
}

func FuzzValidateVerifyResult(f *testing.F) {
	f.Add(mustMarshal(f, &pluginpb.VerifyResponse{Passed: true, Checked: 10, DurationNanos: 5}))
	f.Add(mustMarshal(f, &pluginpb.VerifyResponse{Problems: []string{"a: unreadable"}, DurationNanos: -1}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var resp pluginpb.VerifyResponse
		if err := proto.Unmarshal(data, &resp); err != nil {
			return
		}
		r := verifyFromPB(&resp)
		if err := ValidateVerifyResult(r); err != nil {
			return
		}
		if r.Passed != (len(r.Problems) == 0) || r.Duration < 0 || len(r.Problems) > MaxProblems {
			t.Fatalf("accepted inconsistent result %+v", r)
		}
		for _, p := range r.Problems {
			if !printable(p) {
				t.Fatalf("accepted bad problem %q", p)
			}
		}
	})
}

func FuzzSanitizeText(f *testing.F) {
	f.Add("plain text", 20)
	f.Add("\x1b[2J\xff\u202e", 3)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 1<<16 {
			return
		}
		out := SanitizeText(s, max)
		if len(out) > max || !printable(out) && out != "" {
			t.Fatalf("SanitizeText(%q, %d) = %q", s, max, out)
		}
	})
}

func printable(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return false
		}
	}
	return true
}
