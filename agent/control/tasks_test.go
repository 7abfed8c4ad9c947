package control

import (
	"bytes"
	"strings"
	"testing"
)

func TestDecodeAssignmentsWithTasks(t *testing.T) {
	const dl = `"deadline":"2030-01-02T03:04:05Z"`
	for _, c := range []struct {
		name, tasks, err string
	}{
		{"restore", `{"id":"t1a2","kind":"restore","dir":"/srv/restore","policy":"skip",` + dl + `}`, ""},
		{"read with paths", `{"id":"t1a3","kind":"read","dir":"/srv","paths":["a","b/c"],` + dl + `}`, ""},
		{"read of all", `{"id":"t1a3","kind":"read","dir":"/",` + dl + `}`, ""},
		{"unknown kind", `{"id":"t1","kind":"delete","dir":"/srv",` + dl + `}`, "kind"},
		{"relative dir", `{"id":"t1","kind":"read","dir":"srv",` + dl + `}`, "dir"},
		{"unclean dir", `{"id":"t1","kind":"read","dir":"/srv/../etc",` + dl + `}`, "dir"},
		{"bad policy", `{"id":"t1","kind":"restore","dir":"/srv","policy":"merge",` + dl + `}`, "policy"},
		{"restore without policy", `{"id":"t1","kind":"restore","dir":"/srv",` + dl + `}`, "policy"},
		{"policy on a read", `{"id":"t1","kind":"read","dir":"/srv","policy":"skip",` + dl + `}`, "policy"},
		{"paths on a restore", `{"id":"t1","kind":"restore","dir":"/srv","policy":"skip","paths":["a"],` + dl + `}`, "paths"},
		{"escaping path", `{"id":"t1","kind":"read","dir":"/srv","paths":["../etc"],` + dl + `}`, "paths[0]"},
		{"absolute path", `{"id":"t1","kind":"read","dir":"/srv","paths":["/etc"],` + dl + `}`, "paths[0]"},
		{"bad id", `{"id":"../x","kind":"read","dir":"/srv",` + dl + `}`, "id"},
		{"dots id", `{"id":"..","kind":"read","dir":"/srv",` + dl + `}`, "id"},
		{"no deadline", `{"id":"t1","kind":"read","dir":"/srv"}`, "deadline"},
		{"id twice", `{"id":"t1","kind":"read","dir":"/a",` + dl + `},{"id":"t1","kind":"read","dir":"/b",` + dl + `}`, "twice"},
		{"unknown field", `{"id":"t1","kind":"read","dir":"/a","colour":1,` + dl + `}`, "unknown field"},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := `{"masters":[],"replicas":[],"tasks":[` + c.tasks + `]}`
			a, err := DecodeAssignments(strings.NewReader(body))
			if c.err == "" && (err != nil || len(a.Tasks) == 0) || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("DecodeAssignments = %v, want error containing %q", err, c.err)
			}
		})
	}
}

func TestDecodeTaskResult(t *testing.T) {
	for _, c := range []struct {
		name, body, err string
	}{
		{"good", `{"written":3,"skipped":1,"failed":1,"bytes":10,"problems":[{"path":"../x","kind":"refused","error":"unsafe"}],"left_out":2}`, ""},
		{"fatal", `{"written":0,"skipped":0,"failed":0,"bytes":0,"error":"destination: permission denied"}`, ""},
		{"negative", `{"written":-1,"skipped":0,"failed":0,"bytes":0}`, "negative"},
		{"unknown kind", `{"written":0,"skipped":0,"failed":0,"bytes":0,"problems":[{"path":"x","kind":"odd","error":"e"}]}`, "kind"},
		{"control character", `{"written":0,"skipped":0,"failed":0,"bytes":0,"problems":[{"path":"x\u0001","kind":"failed","error":"e"}]}`, "control"},
		{"too many", `{"written":0,"skipped":0,"failed":0,"bytes":0,"problems":[` + strings.Repeat(`{"path":"x","kind":"failed","error":"e"},`, MaxProblems) + `{"path":"x","kind":"failed","error":"e"}]}`, "problems"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeTaskResult(strings.NewReader(c.body))
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("DecodeTaskResult = %v, want error containing %q", err, c.err)
			}
		})
	}
}

// AddProblem keeps the list within what the appliance accepts.
func TestAddProblemBounded(t *testing.T) {
	var r TaskResult
	for i := 0; i < MaxProblems+7; i++ {
		r.AddProblem(TaskProblem{Path: "odd\x00name", Kind: ProblemFailed, Error: "e"})
	}
	if len(r.Problems) != MaxProblems || r.LeftOut != 7 {
		t.Fatalf("%d problems, %d left out; want %d and 7", len(r.Problems), r.LeftOut, MaxProblems)
	}
	if err := r.Check(); err != nil {
		t.Fatalf("bounded result refused: %v", err)
	}
}

func FuzzDecodeTaskResult(f *testing.F) {
	f.Add([]byte(`{"written":3,"skipped":1,"failed":1,"bytes":10,"problems":[{"path":"../x","kind":"refused","error":"unsafe"}],"left_out":2}`))
	f.Add([]byte(`{"masters":[],"replicas":[],"tasks":[{"id":"t1","kind":"read","dir":"/a","paths":["b"],"deadline":"2030-01-02T03:04:05Z"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if r, err := DecodeTaskResult(bytes.NewReader(data)); err == nil {
			if err := r.Check(); err != nil {
				t.Fatalf("decoded result fails its check: %v", err)
			}
		}
		if a, err := DecodeAssignments(bytes.NewReader(data)); err == nil {
			if err := a.Check(); err != nil {
				t.Fatalf("decoded assignments fail their check: %v", err)
			}
		}
	})
}
