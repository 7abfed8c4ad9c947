package sdk

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on what a plugin may return. They are far above what a sane plugin
// needs and exist so that a broken or hostile plugin cannot make holdfastd
// store or display unbounded data.
const (
	MaxIdentLen        = 64    // types, kinds, capabilities, features, detail keys
	MaxTextLen         = 256   // display names, versions, hold ids
	MaxEntities        = 10000 // entities of one scenario
	MaxEntityNameLen   = 1024
	MaxPathsPerEntity  = 1024
	MaxPathLen         = 4096
	MaxDetailEntries   = 64
	MaxDetailValueLen  = 1024
	MaxCapabilities    = 32
	MaxProblems        = 1000
	MaxProblemLen      = 4096
	maxQuotedInMessage = 80
)

// ValidateInfo checks a ScenarioInfo a plugin returned.
func ValidateInfo(info ScenarioInfo) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(checkIdent("type", info.Type))
	add(checkText("display name", info.DisplayName, MaxTextLen, true))
	add(checkText("version", info.Version, MaxTextLen, true))
	add(checkIdent("entity kind", info.EntityKind))
	add(checkIdentList("capabilities", info.Capabilities))
	return errors.Join(errs...)
}

// ValidateTransportInfo checks a TransportInfo a plugin returned.
func ValidateTransportInfo(info TransportInfo) error {
	return errors.Join(
		checkIdent("name", info.Name),
		checkText("version", info.Version, MaxTextLen, true),
		checkIdentList("features", info.Features),
	)
}

// ValidateEntities checks the entities a plugin listed for cfg: at most
// MaxEntities; names non-empty, unique and printable; kinds non-empty; every
// entity has at least one path, and every path is absolute, clean and inside
// one of cfg.Roots; details bounded. The first problem found is returned.
func ValidateEntities(cfg ScenarioConfig, entities []Entity) error {
	if len(entities) > MaxEntities {
		return fmt.Errorf("%d entities, more than the limit of %d", len(entities), MaxEntities)
	}
	roots := make([]string, 0, len(cfg.Roots))
	for _, r := range cfg.Roots {
		if filepath.IsAbs(r) {
			roots = append(roots, filepath.Clean(r))
		}
	}
	seen := make(map[string]bool, len(entities))
	for i, e := range entities {
		if err := validateEntity(roots, e); err != nil {
			return fmt.Errorf("entity %d (%s): %w", i, quote(e.Name), err)
		}
		if seen[e.Name] {
			return fmt.Errorf("entity %d: name %s is used twice", i, quote(e.Name))
		}
		seen[e.Name] = true
	}
	return nil
}

func validateEntity(roots []string, e Entity) error {
	if err := checkText("name", e.Name, MaxEntityNameLen, true); err != nil {
		return err
	}
	if err := checkText("kind", e.Kind, MaxIdentLen, true); err != nil {
		return err
	}
	if len(e.Paths) == 0 {
		return errors.New("no paths")
	}
	if len(e.Paths) > MaxPathsPerEntity {
		return fmt.Errorf("%d paths, more than the limit of %d", len(e.Paths), MaxPathsPerEntity)
	}
	paths := make(map[string]bool, len(e.Paths))
	for _, p := range e.Paths {
		if err := checkPath(roots, p); err != nil {
			return err
		}
		if paths[p] {
			return fmt.Errorf("path %s is listed twice", quote(p))
		}
		paths[p] = true
	}
	if len(e.Detail) > MaxDetailEntries {
		return fmt.Errorf("%d detail entries, more than the limit of %d", len(e.Detail), MaxDetailEntries)
	}
	for k, v := range e.Detail {
		if err := checkText("detail key", k, MaxIdentLen, true); err != nil {
			return err
		}
		if err := checkText("detail "+quote(k), v, MaxDetailValueLen, false); err != nil {
			return err
		}
	}
	return nil
}

func checkPath(roots []string, p string) error {
	if err := checkText("path", p, MaxPathLen, true); err != nil {
		return err
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("path %s is not absolute", quote(p))
	}
	if filepath.Clean(p) != p {
		return fmt.Errorf("path %s is not clean (it should be %s)", quote(p), quote(filepath.Clean(p)))
	}
	for _, r := range roots {
		if Within(r, p) {
			return nil
		}
	}
	return fmt.Errorf("path %s is not inside any of the scenario's roots", quote(p))
}

// Within reports whether the clean absolute path p is root or below it.
func Within(root, p string) bool {
	if root == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == root || strings.HasPrefix(p, root+"/")
}

// ValidatePrepareResult checks the reply to PrepareBackup.
func ValidatePrepareResult(r PrepareResult) error {
	if err := checkText("hold id", r.HoldID, MaxTextLen, true); err != nil {
		return err
	}
	switch r.Consistency {
	case ConsistencyApplication, ConsistencyCrash:
		return nil
	}
	return fmt.Errorf("consistency %s is neither %q nor %q", quote(r.Consistency), ConsistencyApplication, ConsistencyCrash)
}

// ValidateVerifyResult checks the reply to Verify: Passed exactly when there
// are no problems, problems bounded and printable, duration not negative.
func ValidateVerifyResult(r VerifyResult) error {
	if len(r.Problems) > MaxProblems {
		return fmt.Errorf("%d problems, more than the limit of %d (summarize the rest in the last one)", len(r.Problems), MaxProblems)
	}
	for i, p := range r.Problems {
		if err := checkText(fmt.Sprintf("problem %d", i), p, MaxProblemLen, true); err != nil {
			return err
		}
	}
	if r.Passed && len(r.Problems) > 0 {
		return fmt.Errorf("passed, yet %d problems reported", len(r.Problems))
	}
	if !r.Passed && len(r.Problems) == 0 {
		return errors.New("failed without reporting a problem")
	}
	if r.Duration < 0 {
		return fmt.Errorf("negative duration %s", r.Duration)
	}
	return nil
}

// ValidateFrame checks a frame a transport delivered.
func ValidateFrame(f Frame) error {
	if len(f.Payload) > MaxFramePayload {
		return fmt.Errorf("frame %d: payload of %d bytes, more than the limit of %d", f.Seq, len(f.Payload), MaxFramePayload)
	}
	if len(f.Peer) > MaxIdentLen || !utf8.ValidString(f.Peer) || SanitizeText(f.Peer, MaxIdentLen) != f.Peer {
		return fmt.Errorf("frame %d: peer name %s is not a printable name of at most %d bytes", f.Seq, quote(SanitizeText(f.Peer, MaxIdentLen)), MaxIdentLen)
	}
	return nil
}

// ValidateAck checks an ack a transport delivered to the sending host.
func ValidateAck(a Ack) error {
	if len(a.Payload) > MaxFramePayload {
		return fmt.Errorf("ack %d: reply of %d bytes, more than the limit of %d", a.Seq, len(a.Payload), MaxFramePayload)
	}
	return nil
}

// checkIdent accepts lower-case identifiers: a letter or digit, then letters,
// digits, '.', '_' or '-'; at most MaxIdentLen bytes.
func checkIdent(field, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", field)
	}
	if len(s) > MaxIdentLen {
		return fmt.Errorf("%s is %d bytes long, more than the limit of %d", field, len(s), MaxIdentLen)
	}
	if !IsIdent(s) {
		return fmt.Errorf("%s %s: use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit", field, quote(s))
	}
	return nil
}

// IsIdent reports whether s has the shape of a type, kind or name: lower-case
// letters and digits, then also '.', '_' or '-'. Length is not checked.
func IsIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func checkIdentList(field string, list []string) error {
	if len(list) > MaxCapabilities {
		return fmt.Errorf("%s: %d entries, more than the limit of %d", field, len(list), MaxCapabilities)
	}
	seen := make(map[string]bool, len(list))
	for _, s := range list {
		if err := checkIdent(field+" entry", s); err != nil {
			return err
		}
		if seen[s] {
			return fmt.Errorf("%s: %s is listed twice", field, quote(s))
		}
		seen[s] = true
	}
	return nil
}

// checkText accepts valid UTF-8 without control or bidirectional-control
// characters (which could disguise a name in an operator's terminal), of at
// most max bytes.
func checkText(field, s string, max int, required bool) error {
	if s == "" {
		if required {
			return fmt.Errorf("%s is empty", field)
		}
		return nil
	}
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes long, more than the limit of %d", field, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %s is not valid UTF-8", field, quote(s))
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return fmt.Errorf("%s %s contains control character %U", field, quote(s), r)
		}
	}
	return nil
}

// quote renders untrusted text for an error message: quoted, escaped, cut.
func quote(s string) string {
	if len(s) > maxQuotedInMessage {
		cut := maxQuotedInMessage
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return fmt.Sprintf("%q...", s[:cut])
	}
	return fmt.Sprintf("%q", s)
}
