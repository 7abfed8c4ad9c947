// Package manifest reads, checks and writes a plugin's manifest.toml: the
// file next to each plugin binary that says what the plugin is (name, kind,
// type, version), which file to run, the SHA-256 that file must have, and
// the plugin protocol versions it speaks.
//
// holdfastd refuses a plugin whose manifest does not parse or whose binary
// does not match the checksum, so a partner ships the binary and the
// manifest together; Seal writes the manifest for a freshly built binary.
// Parsing is strict (unknown keys are errors) because a misspelt key would
// otherwise be silently ignored.
package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// FileName is the manifest's name inside a plugin's folder.
const FileName = "manifest.toml"

// MaxSize bounds a manifest file; a real one is a few hundred bytes.
const MaxSize = 64 << 10

// Plugin kinds.
const (
	KindScenario  = "scenario"
	KindTransport = "transport"
)

// Manifest is the content of manifest.toml.
type Manifest struct {
	Name      string // the plugin's name, e.g. "fileserver"; lower-case identifier
	Kind      string // KindScenario or KindTransport
	Type      string // scenario type or transport name it serves, e.g. "fileserver"
	Version   string // the plugin's version, e.g. "1.4.2"
	Binary    string // file name of the executable in the same folder; no slashes
	SHA256    string // hex SHA-256 of the binary, 64 lower-case digits
	Protocols []int  // plugin protocol versions the binary speaks (sdk.ProtocolVersions)
}

// FieldError is one problem with one field of a manifest.
type FieldError struct {
	Field   string // the TOML key, e.g. "sha256"
	Problem string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Problem }

// Error lists every problem found in a manifest, each naming its field.
type Error struct {
	Fields []FieldError
}

func (e *Error) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Error()
	}
	return strings.Join(parts, "; ")
}

// Has reports whether field is among the fields in error.
func (e *Error) Has(field string) bool {
	for _, f := range e.Fields {
		if f.Field == field {
			return true
		}
	}
	return false
}

// keys in the order they are written and reported.
var keys = []string{"name", "kind", "type", "version", "binary", "sha256", "protocols"}

const maxVersionLen = 64
const maxBinaryLen = 255
const maxProtocol = 1 << 16

// Parse decodes and validates a manifest. Unknown keys, missing keys, values
// of the wrong type and out-of-range values are all reported, each naming
// its key, in one *Error. A TOML syntax error is returned as is.
func Parse(data []byte) (Manifest, error) {
	if len(data) > MaxSize {
		return Manifest{}, fmt.Errorf("manifest is %d bytes, more than the limit of %d", len(data), MaxSize)
	}
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		return Manifest{}, fmt.Errorf("manifest syntax: %w", err)
	}
	var m Manifest
	var errs []FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	unknown := make([]string, 0)
	for k := range raw {
		if !slices.Contains(keys, k) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		bad(k, "unknown key (known keys: %s)", strings.Join(keys, ", "))
	}
	str := func(key string, dst *string) {
		v, ok := raw[key]
		if !ok {
			bad(key, "missing")
			return
		}
		s, ok := v.(string)
		if !ok {
			bad(key, "must be a string, not %s", tomlType(v))
			return
		}
		*dst = s
	}
	str("name", &m.Name)
	str("kind", &m.Kind)
	str("type", &m.Type)
	str("version", &m.Version)
	str("binary", &m.Binary)
	str("sha256", &m.SHA256)
	if v, ok := raw["protocols"]; !ok {
		bad("protocols", "missing")
	} else if list, ok := v.([]any); !ok {
		bad("protocols", "must be a list of integers, not %s", tomlType(v))
	} else {
		m.Protocols = []int{}
		for _, e := range list {
			n, ok := e.(int64)
			if !ok || n < 1 || n > maxProtocol {
				bad("protocols", "entries must be integers from 1 to %d", maxProtocol)
				m.Protocols = nil
				break
			}
			m.Protocols = append(m.Protocols, int(n))
		}
	}
	// Check the values that decoded; keys already reported are skipped so
	// each field is named once.
	for _, fe := range m.problems() {
		if !hasField(errs, fe.Field) {
			errs = append(errs, fe)
		}
	}
	if len(errs) > 0 {
		sortFields(errs)
		return Manifest{}, &Error{Fields: errs}
	}
	return m, nil
}

// Validate checks every field of m.
func (m Manifest) Validate() error {
	if errs := m.problems(); len(errs) > 0 {
		return &Error{Fields: errs}
	}
	return nil
}

func (m Manifest) problems() []FieldError {
	var errs []FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	checkIdent := func(field, v string) {
		if v == "" {
			bad(field, "is empty")
		} else if len(v) > sdk.MaxIdentLen || !sdk.IsIdent(v) {
			bad(field, "%q: use at most %d lower-case letters, digits, '.', '_' and '-', starting with a letter or digit", v, sdk.MaxIdentLen)
		}
	}
	checkIdent("name", m.Name)
	if m.Kind != KindScenario && m.Kind != KindTransport {
		bad("kind", "%q: must be %q or %q", m.Kind, KindScenario, KindTransport)
	}
	checkIdent("type", m.Type)
	switch {
	case m.Version == "":
		bad("version", "is empty")
	case len(m.Version) > maxVersionLen || strings.IndexFunc(m.Version, notVersionChar) >= 0:
		bad("version", "%q: use at most %d letters, digits, '.', '+', '_' and '-'", m.Version, maxVersionLen)
	}
	switch {
	case m.Binary == "":
		bad("binary", "is empty")
	case m.Binary == "." || m.Binary == ".." || m.Binary == FileName || len(m.Binary) > maxBinaryLen ||
		strings.ContainsAny(m.Binary, `/\`) || strings.IndexFunc(m.Binary, isControl) >= 0:
		bad("binary", "%q: must be the name of a file in the plugin's folder (no slashes)", m.Binary)
	}
	if len(m.SHA256) != 2*sha256.Size || strings.IndexFunc(m.SHA256, notLowerHex) >= 0 {
		bad("sha256", "%q: must be %d lower-case hexadecimal digits", m.SHA256, 2*sha256.Size)
	}
	if len(m.Protocols) == 0 {
		bad("protocols", "is empty: list the plugin protocol versions the binary speaks")
	} else {
		seen := map[int]bool{}
		for _, p := range m.Protocols {
			if p < 1 || p > maxProtocol {
				bad("protocols", "%d: entries must be from 1 to %d", p, maxProtocol)
				break
			}
			if seen[p] {
				bad("protocols", "%d is listed twice", p)
				break
			}
			seen[p] = true
		}
	}
	return errs
}

// Checksum returns the binary's expected SHA-256 as bytes.
func (m Manifest) Checksum() ([]byte, error) {
	sum, err := hex.DecodeString(m.SHA256)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("sha256 %q is not a SHA-256 in hex", m.SHA256)
	}
	return sum, nil
}

// Marshal renders m as manifest.toml content. It does not validate.
func (m Manifest) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# Holdfast plugin manifest (docs/plugins.md). Written by 'holdfast plugins seal';\n")
	buf.WriteString("# sha256 must match the binary, or holdfastd refuses to run it.\n")
	enc := toml.NewEncoder(&buf)
	err := enc.Encode(struct {
		Name      string `toml:"name"`
		Kind      string `toml:"kind"`
		Type      string `toml:"type"`
		Version   string `toml:"version"`
		Binary    string `toml:"binary"`
		SHA256    string `toml:"sha256"`
		Protocols []int  `toml:"protocols"`
	}{m.Name, m.Kind, m.Type, m.Version, m.Binary, m.SHA256, m.Protocols})
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return buf.Bytes(), nil
}

// LoadError is the error Load returns: the manifest's path and what is wrong
// with it (an *Error, a syntax error, or a file-system error).
type LoadError struct {
	Path string
	Err  error
}

func (e *LoadError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *LoadError) Unwrap() error { return e.Err }

// Load reads and parses dir/manifest.toml. A missing file gives an error
// matching fs.ErrNotExist.
func Load(dir string) (Manifest, error) {
	path := filepath.Join(dir, FileName)
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in LoadError already
		}
		return Manifest{}, &LoadError{Path: path, Err: err}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return Manifest{}, &LoadError{Path: path, Err: err}
	}
	m, err := Parse(data)
	if err != nil {
		return Manifest{}, &LoadError{Path: path, Err: err}
	}
	return m, nil
}

// HashFile returns the hex SHA-256 of the file at path.
func HashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Seal computes the SHA-256 of the binary at binaryPath and writes
// manifest.toml next to it (mode 0644), replacing any previous one
// atomically: a reader sees the old manifest or the new one, never a mix.
//
// Empty fields of m get defaults: Binary the binary's file name, Name the
// name of the folder it is in, Protocols sdk.ProtocolVersions (the versions
// of the SDK the binary was built with, when it was built in this tree).
// SHA256 is always computed; any value in m is ignored.
func Seal(binaryPath string, m Manifest) error {
	st, err := os.Stat(binaryPath)
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("seal: %s is not a regular file", binaryPath)
	}
	if st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("seal: %s is not executable", binaryPath)
	}
	base := filepath.Base(binaryPath)
	dir := filepath.Dir(binaryPath)
	if m.Binary == "" {
		m.Binary = base
	} else if m.Binary != base {
		return fmt.Errorf("seal: binary %q is not the file being sealed (%s)", m.Binary, base)
	}
	if m.Name == "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("seal: %w", err)
		}
		m.Name = filepath.Base(abs)
	}
	if len(m.Protocols) == 0 {
		m.Protocols = slices.Clone(sdk.ProtocolVersions)
	}
	if m.SHA256, err = HashFile(binaryPath); err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("seal %s: %w", binaryPath, err)
	}
	data, err := m.Marshal()
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, FileName), data, 0o644); err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	return nil
}

func hasField(errs []FieldError, field string) bool {
	for _, e := range errs {
		if e.Field == field {
			return true
		}
	}
	return false
}

// sortFields orders errors as the keys are documented, unknown keys last.
func sortFields(errs []FieldError) {
	rank := func(f string) int {
		if i := slices.Index(keys, f); i >= 0 {
			return i
		}
		return len(keys)
	}
	sort.SliceStable(errs, func(i, j int) bool { return rank(errs[i].Field) < rank(errs[j].Field) })
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "a list"
	case map[string]any:
		return "a table"
	}
	return "a date or time"
}

func notVersionChar(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '+' || r == '_' || r == '-')
}

func notLowerHex(r rune) bool { return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') }

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 }
