package sdk

import (
	"strings"
	"testing"
	"time"
)

func TestValidateEntities(t *testing.T) {
	cfg := ScenarioConfig{Roots: []string{"/srv/data/", "/home", "relative/ignored"}}
	ok := func(name string, paths ...string) Entity {
		return Entity{Name: name, Kind: "volume", Paths: paths, Detail: map[string]string{"fstype": "ext4"}}
	}
	many := make([]Entity, MaxEntities+1)
	for i := range many {
		many[i] = ok(strings.Repeat("x", 1+i%50)+string(rune('a'+i%26)), "/home")
	}
	tests := []struct {
		name     string
		entities []Entity
		wantErr  string // substring; "" means valid
	}{
		{"none", nil, ""},
		{"one", []Entity{ok("/srv", "/srv/data")}, ""},
		{"nested paths", []Entity{ok("a", "/srv/data/x/y", "/home/u")}, ""},
		{"utf8 name", []Entity{ok("Données", "/home")}, ""},
		{"empty name", []Entity{ok("", "/home")}, "name is empty"},
		{"duplicate name", []Entity{ok("a", "/home"), ok("a", "/srv/data")}, "used twice"},
		{"control char", []Entity{ok("a\x1b[2J", "/home")}, "control character"},
		{"bidi override", []Entity{ok("a\u202eb", "/home")}, "control character"},
		{"invalid utf8", []Entity{ok("a\xff", "/home")}, "not valid UTF-8"},
		{"long name", []Entity{ok(strings.Repeat("n", MaxEntityNameLen+1), "/home")}, "limit"},
		{"empty kind", []Entity{{Name: "a", Paths: []string{"/home"}}}, "kind is empty"},
		{"no paths", []Entity{{Name: "a", Kind: "v"}}, "no paths"},
		{"relative path", []Entity{ok("a", "home")}, "not absolute"},
		{"dot dot", []Entity{ok("a", "/home/../etc")}, "not clean"},
		{"escape via dotdot suffix", []Entity{ok("a", "/srv/data/../../etc/passwd")}, "not clean"},
		{"trailing slash", []Entity{ok("a", "/home/")}, "not clean"},
		{"outside roots", []Entity{ok("a", "/etc")}, "not inside"},
		{"prefix but not inside", []Entity{ok("a", "/homework")}, "not inside"},
		{"relative root ignored", []Entity{ok("a", "/relative/ignored")}, "not inside"},
		{"duplicate path", []Entity{ok("a", "/home", "/home")}, "listed twice"},
		{"nul in path", []Entity{ok("a", "/home/\x00")}, "control character"},
		{"bad detail value", []Entity{{Name: "a", Kind: "v", Paths: []string{"/home"}, Detail: map[string]string{"k": "\n"}}}, "control character"},
		{"empty detail key", []Entity{{Name: "a", Kind: "v", Paths: []string{"/home"}, Detail: map[string]string{"": "v"}}}, "detail key is empty"},
		{"too many", many, "more than the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateEntities(cfg, tt.entities)
			checkErr(t, err, tt.wantErr)
		})
	}
}

func TestValidateEntitiesSlashRoot(t *testing.T) {
	cfg := ScenarioConfig{Roots: []string{"/"}}
	if err := ValidateEntities(cfg, []Entity{{Name: "/", Kind: "volume", Paths: []string{"/", "/etc"}}}); err != nil {
		t.Fatalf("root / should contain everything: %v", err)
	}
}

func TestValidateInfo(t *testing.T) {
	good := ScenarioInfo{Type: "fileserver", DisplayName: "File Server", Version: "1.0.0", EntityKind: "volume",
		Capabilities: []string{CapabilityGranularRestore, CapabilityAssuredRecovery}}
	mod := func(f func(*ScenarioInfo)) ScenarioInfo { i := good; f(&i); return i }
	tests := []struct {
		name    string
		info    ScenarioInfo
		wantErr string
	}{
		{"good", good, ""},
		{"unknown capability is fine", mod(func(i *ScenarioInfo) { i.Capabilities = []string{"teleport"} }), ""},
		{"empty type", mod(func(i *ScenarioInfo) { i.Type = "" }), "type is empty"},
		{"upper-case type", mod(func(i *ScenarioInfo) { i.Type = "FileServer" }), "lower-case"},
		{"type with slash", mod(func(i *ScenarioInfo) { i.Type = "a/b" }), "lower-case"},
		{"leading dash", mod(func(i *ScenarioInfo) { i.Type = "-x" }), "lower-case"},
		{"long type", mod(func(i *ScenarioInfo) { i.Type = strings.Repeat("a", MaxIdentLen+1) }), "limit"},
		{"no display name", mod(func(i *ScenarioInfo) { i.DisplayName = "" }), "display name is empty"},
		{"no version", mod(func(i *ScenarioInfo) { i.Version = "" }), "version is empty"},
		{"no entity kind", mod(func(i *ScenarioInfo) { i.EntityKind = "" }), "entity kind is empty"},
		{"dup capability", mod(func(i *ScenarioInfo) { i.Capabilities = []string{"a", "a"} }), "twice"},
		{"too many capabilities", mod(func(i *ScenarioInfo) { i.Capabilities = make([]string, MaxCapabilities+1) }), "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkErr(t, ValidateInfo(tt.info), tt.wantErr) })
	}
}

func TestValidateResults(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		wantErr string
	}{
		{"prepare ok", ValidatePrepareResult(PrepareResult{HoldID: "h1", Consistency: ConsistencyCrash}), ""},
		{"prepare app", ValidatePrepareResult(PrepareResult{HoldID: "h1", Consistency: ConsistencyApplication}), ""},
		{"prepare no id", ValidatePrepareResult(PrepareResult{Consistency: ConsistencyCrash}), "hold id is empty"},
		{"prepare bad consistency", ValidatePrepareResult(PrepareResult{HoldID: "h", Consistency: "maybe"}), "neither"},
		{"verify passed", ValidateVerifyResult(VerifyResult{Passed: true, Checked: 3, Duration: time.Second}), ""},
		{"verify failed", ValidateVerifyResult(VerifyResult{Problems: []string{"x: unreadable"}}), ""},
		{"verify passed with problems", ValidateVerifyResult(VerifyResult{Passed: true, Problems: []string{"p"}}), "yet"},
		{"verify failed silently", ValidateVerifyResult(VerifyResult{}), "without reporting"},
		{"verify negative", ValidateVerifyResult(VerifyResult{Passed: true, Duration: -1}), "negative"},
		{"verify many problems", ValidateVerifyResult(VerifyResult{Problems: make([]string, MaxProblems+1)}), "limit"},
		{"verify control", ValidateVerifyResult(VerifyResult{Problems: []string{"a\rb"}}), "control"},
		{"transport ok", ValidateTransportInfo(TransportInfo{Name: "tcp", Version: "1", Features: []string{"zstd"}}), ""},
		{"transport bad name", ValidateTransportInfo(TransportInfo{Name: "TCP", Version: "1"}), "name"},
		{"frame ok", ValidateFrame(Frame{Seq: 1, Payload: make([]byte, MaxFramePayload)}), ""},
		{"frame big", ValidateFrame(Frame{Seq: 1, Payload: make([]byte, MaxFramePayload+1)}), "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkErr(t, tt.err, tt.wantErr) })
	}
}

func TestSanitizeText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"a\nb\tc", "a b c"},
		{"\x1b[31mred", "\uFFFD[31mred"},
		{"bad\xffutf8", "bad\uFFFDutf8"},
		{"\u202egnp.exe", "\uFFFDgnp.exe"},
		{strings.Repeat("é", 10), strings.Repeat("é", 5)}, // max 11 bytes: 5 runes fit
	}
	for _, tt := range tests {
		max := 100
		if strings.HasPrefix(tt.in, "é") {
			max = 11
		}
		if got := SanitizeText(tt.in, max); got != tt.want {
			t.Errorf("SanitizeText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
}
