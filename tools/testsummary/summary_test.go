package testsummary

import (
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     Counts
		contains []string
	}{
		{
			name: "pass skip fail",
			in: `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:9: needs qemu: not installed\n"}
{"Action":"output","Package":"p","Test":"TestB","Output":"--- SKIP: TestB (0.00s)\n"}
{"Action":"skip","Package":"p","Test":"TestB"}
{"Action":"output","Package":"p","Test":"TestC","Output":"    c_test.go:3: boom\n"}
{"Action":"fail","Package":"p","Test":"TestC"}
{"Action":"fail","Package":"p","Elapsed":0.5}
`,
			want:     Counts{Passed: 1, Failed: 1, Skipped: 1},
			contains: []string{"--- FAIL: p TestC", "boom", "p TestB: b_test.go:9: needs qemu: not installed", "1 passed, 1 failed, 1 skipped", "FAIL\tp"},
		},
		{
			name: "build failure passes through",
			in: `# p
p/x.go:1:1: syntax error
{"Action":"output","Package":"p","Output":"FAIL\tp [build failed]\n"}
{"Action":"fail","Package":"p"}
`,
			want:     Counts{BuildFailed: 1},
			contains: []string{"syntax error", "1 packages failed to build or run", "0 passed, 0 failed, 0 skipped"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			got, err := Summarize(strings.NewReader(tt.in), &out)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("counts = %+v, want %+v", got, tt.want)
			}
			if got.OK() != (tt.want.Failed == 0 && tt.want.BuildFailed == 0) {
				t.Errorf("OK() = %v", got.OK())
			}
			for _, c := range tt.contains {
				if !strings.Contains(out.String(), c) {
					t.Errorf("output lacks %q:\n%s", c, out.String())
				}
			}
		})
	}
}
