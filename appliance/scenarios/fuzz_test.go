package scenarios

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzDefinition feeds untrusted API bodies through decoding and Normalize:
// it must never panic, and whatever it accepts must hold the invariants the
// rest of the appliance relies on.
func FuzzDefinition(f *testing.F) {
	seed, _ := json.Marshal(validDef())
	f.Add(seed)
	f.Add([]byte(`{"name":"x","type":"fileserver","master":{"host":"localhost","roots":["/a","/a/b"]},"replicas":[{"host":"localhost","target":"/a"}]}`))
	f.Add([]byte(`{"name":"..","master":{"roots":["/../"]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var d Definition
		if json.Unmarshal(body, &d) != nil {
			return
		}
		if d.Normalize([]string{"localhost"}) != nil {
			return
		}
		if d.Name == "" || d.Type == "" || len(d.Master.Roots) == 0 || len(d.Replicas) == 0 || d.Suspend == nil {
			t.Fatalf("accepted an incomplete definition: %+v", d)
		}
		for _, p := range append(append([]string{}, d.Master.Roots...), d.Replicas[0].Target) {
			if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" || strings.Contains(p, "\x00") {
				t.Fatalf("accepted path %q", p)
			}
		}
		for _, r := range d.Replicas {
			for _, root := range d.Master.Roots {
				if within(r.Target, root) || within(root, r.Target) {
					t.Fatalf("accepted replica %q overlapping root %q", r.Target, root)
				}
			}
		}
	})
}
