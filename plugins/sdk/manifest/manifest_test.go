package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const goodSum = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

const good = `
name = "fileserver"
kind = "scenario"
type = "fileserver"
version = "1.2.3"
binary = "holdfast-fileserver"
sha256 = "` + goodSum + `"
protocols = [1, 2]
`

func TestParse(t *testing.T) {
	m, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := Manifest{Name: "fileserver", Kind: "scenario", Type: "fileserver", Version: "1.2.3",
		Binary: "holdfast-fileserver", SHA256: goodSum, Protocols: []int{1, 2}}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("Parse = %+v, want %+v", m, want)
	}
}

func TestParseErrors(t *testing.T) {
	replace := func(old, new string) string { return strings.Replace(good, old, new, 1) }
	tests := []struct {
		name   string
		text   string
		fields []string // every field that must be named
	}{
		{"unknown key", good + "colour = \"blue\"\n", []string{"colour"}},
		{"unknown table", good + "[extra]\na = 1\n", []string{"extra"}},
		{"missing name", replace(`name = "fileserver"`, ""), []string{"name"}},
		{"bad name", replace(`name = "fileserver"`, `name = "File Server"`), []string{"name"}},
		{"bad kind", replace(`kind = "scenario"`, `kind = "driver"`), []string{"kind"}},
		{"type not a string", replace(`type = "fileserver"`, `type = 7`), []string{"type"}},
		{"bad version", replace(`version = "1.2.3"`, `version = "1.2 beta"`), []string{"version"}},
		{"binary with slash", replace(`binary = "holdfast-fileserver"`, `binary = "../bin/sh"`), []string{"binary"}},
		{"binary dotdot", replace(`binary = "holdfast-fileserver"`, `binary = ".."`), []string{"binary"}},
		{"short sha", replace(goodSum, "abc"), []string{"sha256"}},
		{"upper sha", replace(goodSum, strings.ToUpper(goodSum)), []string{"sha256"}},
		{"protocols empty", replace("[1, 2]", "[]"), []string{"protocols"}},
		{"protocols zero", replace("[1, 2]", "[0]"), []string{"protocols"}},
		{"protocols strings", replace("[1, 2]", `["1"]`), []string{"protocols"}},
		{"protocols dup", replace("[1, 2]", "[1, 1]"), []string{"protocols"}},
		{"several", replace(`kind = "scenario"`, `kind = ""`) + "x = 1\n", []string{"kind", "x"}},
		{"empty", "", []string{"name", "kind", "type", "version", "binary", "sha256", "protocols"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.text))
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("Parse error = %v, want *Error", err)
			}
			for _, f := range tt.fields {
				if !me.Has(f) || !strings.Contains(err.Error(), f+":") {
					t.Errorf("error %q does not name field %q", err, f)
				}
			}
			if len(me.Fields) != len(tt.fields) {
				t.Errorf("error names %d fields, want %d: %v", len(me.Fields), len(tt.fields), err)
			}
		})
	}
}

func TestParseSyntax(t *testing.T) {
	if _, err := Parse([]byte("name = ")); err == nil || !strings.Contains(err.Error(), "syntax") {
		t.Fatalf("Parse of broken TOML = %v", err)
	}
	if _, err := Parse([]byte(strings.Repeat("#", MaxSize+1))); err == nil {
		t.Fatal("oversized manifest accepted")
	}
}

func TestSealAndLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "myplugin")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "holdfast-my")
	content := []byte("#!/bin/sh\nexit 0\n")
	if err := os.WriteFile(bin, content, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Seal(bin, Manifest{Kind: KindScenario, Type: "mine", Version: "0.1.0"}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("manifest mode %v, want 0644", st.Mode().Perm())
	}
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	want := Manifest{Name: "myplugin", Kind: KindScenario, Type: "mine", Version: "0.1.0", Binary: "holdfast-my",
		SHA256: hex.EncodeToString(sum[:]), Protocols: []int{1}}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("Load = %+v, want %+v", m, want)
	}
	if c, _ := m.Checksum(); !reflect.DeepEqual(c, sum[:]) {
		t.Fatalf("Checksum = %x", c)
	}
	// No temporary files are left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("folder holds %d entries, want binary and manifest", len(entries))
	}

	// Sealing again after a rebuild replaces the checksum.
	if err := os.WriteFile(bin, append(content, '#'), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Seal(bin, Manifest{Name: "renamed", Kind: KindScenario, Type: "mine", Version: "0.2.0", Protocols: []int{1, 2}}); err != nil {
		t.Fatal(err)
	}
	m2, err := Load(dir)
	if err != nil || m2.SHA256 == m.SHA256 || m2.Name != "renamed" || m2.Version != "0.2.0" {
		t.Fatalf("Load after reseal = %+v, %v", m2, err)
	}
}

func TestSealErrors(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "p")
	if err := os.WriteFile(bin, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok := Manifest{Name: "p", Kind: KindScenario, Type: "t", Version: "1"}
	if err := Seal(bin, ok); err == nil || !strings.Contains(err.Error(), "not executable") {
		t.Fatalf("Seal of non-executable = %v", err)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		m    Manifest
		want string
	}{
		{"bad kind", Manifest{Name: "p", Kind: "x", Type: "t", Version: "1"}, "kind:"},
		{"no version", Manifest{Name: "p", Kind: KindScenario, Type: "t"}, "version:"},
		{"other binary", Manifest{Name: "p", Kind: KindScenario, Type: "t", Version: "1", Binary: "q"}, "not the file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Seal(bin, tt.m); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Seal = %v, want error containing %q", err, tt.want)
			}
			if _, err := os.Stat(filepath.Join(dir, FileName)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatal("a failed Seal wrote a manifest")
			}
		})
	}
	if err := Seal(filepath.Join(dir, "absent"), ok); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Seal of missing binary = %v", err)
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load(t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of empty folder = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("name = 1\n[kind]\nx = [1,2]"))
	f.Add([]byte(`protocols = [1, 99999999999999999]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		// An accepted manifest is valid and survives a write and re-read.
		if err := m.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid manifest: %v", err)
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		m2, err := Parse(out)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip: %+v -> %q -> %+v, %v", m, out, m2, err)
		}
	})
}
