package enroll

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestApplianceFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	want := Appliance{Address: "10.0.0.5:7421", HostName: "backup1", CAFingerprint: strings.Repeat("0a", 32), Enrolled: time.Now().UTC().Truncate(time.Second)}
	if err := saveAppliance(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadAppliance(dir)
	if err != nil || got != want {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
	fi, err := os.Stat(filepath.Join(dir, ApplianceFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v", fi.Mode().Perm(), err)
	}
	for name, text := range map[string]string{
		"damaged":         "{",
		"unknown field":   `{"address":"a:1","host_name":"b","ca_fingerprint":"` + strings.Repeat("0a", 32) + `","x":1}`,
		"no address":      `{"host_name":"b","ca_fingerprint":"` + strings.Repeat("0a", 32) + `"}`,
		"bad fingerprint": `{"address":"a:1","host_name":"b","ca_fingerprint":"zz"}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, ApplianceFile), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadAppliance(dir); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Option and state-directory checks happen before anything is sent.
func TestEnrollRefusesBeforeDialing(t *testing.T) {
	fp := strings.Repeat("0a", 32)
	open := t.TempDir()
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	enrolled := t.TempDir()
	if err := os.Chmod(enrolled, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(enrolled, "agent.crt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Port 1 on loopback: nothing listens, so reaching the network would
	// show as a connection error instead of the expected refusal.
	base := Options{Appliance: "127.0.0.1:1", ServerName: "backup1", Token: "hfe1_x", Fingerprint: fp, Host: "web1", StateDir: filepath.Join(t.TempDir(), "new")}
	tests := []struct {
		name    string
		change  func(o *Options)
		wantErr string
	}{
		{"bad host", func(o *Options) { o.Host = "web_1" }, "--host"},
		{"bad fingerprint", func(o *Options) { o.Fingerprint = "12" }, "--fingerprint"},
		{"no token", func(o *Options) { o.Token = "" }, "--token is required"},
		{"no port", func(o *Options) { o.Appliance = "backup1" }, "--appliance"},
		{"no state", func(o *Options) { o.StateDir = "" }, "--state is required"},
		{"state readable by others", func(o *Options) { o.StateDir = open }, "chmod 700"},
		{"already enrolled", func(o *Options) { o.StateDir = enrolled }, "--force"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.change(&o)
			_, err := Enroll(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
	o := base
	o.StateDir = enrolled
	if _, err := Enroll(context.Background(), o); !errors.Is(err, ErrAlreadyEnrolled) {
		t.Errorf("err = %v, want ErrAlreadyEnrolled", err)
	}
	o.Force = true
	if _, err := Enroll(context.Background(), o); err == nil || !strings.Contains(err.Error(), "connect to") {
		t.Errorf("with --force: %v, want a connection error (the check passed)", err)
	}
}
