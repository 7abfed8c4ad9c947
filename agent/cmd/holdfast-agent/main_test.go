package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestDispatch(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		inStderr string
	}{
		{nil, 2, "enroll"},
		{[]string{"help"}, 0, "enroll"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"enroll", "-h"}, 0, "--appliance"},
		{[]string{"enroll", "extra"}, 2, "unexpected argument"},
		{[]string{"enroll", "--host", "web1", "--appliance", "127.0.0.1:1", "--fingerprint", "12"}, 1, "--fingerprint"},
		{[]string{"run", "-h"}, 0, "--listen"},
		{[]string{"run", "extra"}, 2, "unexpected argument"},
		{[]string{"run", "--capture", "dnotify"}, 2, "--capture"},
		{[]string{"run", "--log-level", "loud"}, 2, "--log-level"},
		{[]string{"run", "--bandwidth", "mon-fri 9-17 2MiB/s"}, 2, "--bandwidth: rule 1"},
		{[]string{"run", "--rewind-max-mib", "-1"}, 2, "--rewind-max-mib must be"},
		{[]string{"run", "--rewind-keep", "5s"}, 2, "--rewind-keep at least 1m"},
		{[]string{"run", "--state", "/nonexistent/holdfast-agent"}, 1, "holdfast-agent enroll"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := dispatch(context.Background(), tt.args, &out, &errOut)
			if code != tt.code || !strings.Contains(errOut.String(), tt.inStderr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errOut.String(), tt.code, tt.inStderr)
			}
		})
	}
}
