package lab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/holdfast/holdfast/tools/lab/guest"
)

// Record is one `LAB <key> <json>` line the guest printed.
type Record struct {
	Key   string
	Value json.RawMessage
}

// Report is what the guest program said.
type Report struct {
	Records []Record
}

// All returns the values recorded under key, in order.
func (r Report) All(key string) []json.RawMessage {
	var out []json.RawMessage
	for _, rec := range r.Records {
		if rec.Key == key {
			out = append(out, rec.Value)
		}
	}
	return out
}

// ParseSerial reads the guest's records from its console. It fails
// unless the guest reached its end line with success: the error then
// carries the guest's own failure, or the console's last lines when the
// guest never finished (a kernel panic, a hang cut by the timeout).
func ParseSerial(console []byte) (Report, error) {
	var r Report
	lines := strings.Split(string(console), "\n")
	for _, raw := range lines {
		line := strings.TrimRight(raw, "\r")
		if rest, ok := strings.CutPrefix(line, guest.EndPrefix+" "); ok {
			if rest == "ok" {
				return r, nil
			}
			var msg string
			if m, ok := strings.CutPrefix(rest, "fail "); ok && json.Unmarshal([]byte(m), &msg) == nil {
				return r, fmt.Errorf("guest failed: %s", msg)
			}
			return r, fmt.Errorf("guest failed: %q", rest)
		}
		rest, ok := strings.CutPrefix(line, guest.RecordPrefix+" ")
		if !ok {
			continue
		}
		key, val, ok := strings.Cut(rest, " ")
		if !ok || key == "" || !json.Valid([]byte(val)) {
			// A kernel message can cut into a line on the console.
			return r, fmt.Errorf("guest record garbled: %q", line)
		}
		r.Records = append(r.Records, Record{Key: key, Value: json.RawMessage(val)})
	}
	tail := lines[max(0, len(lines)-15):]
	return r, fmt.Errorf("guest did not finish; console ends:\n%s", bytes.TrimSpace([]byte(strings.Join(tail, "\n"))))
}
