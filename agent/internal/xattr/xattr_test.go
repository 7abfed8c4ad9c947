package xattr

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// growing is an attribute that another process rewrites: after each size
// query it takes the next of its values, so a buffer sized by the query
// may be too small for the read that follows.
type growing struct {
	values []string
	i      int
}

func (g *growing) get(b []byte) (int, error) {
	cur := g.values[g.i]
	if b == nil {
		g.i = min(g.i+1, len(g.values)-1)
		return len(cur), nil
	}
	if len(b) < len(cur) {
		return 0, unix.ERANGE
	}
	return copy(b, cur), nil
}

func TestRead(t *testing.T) {
	tests := []struct {
		name    string
		values  []string
		want    string
		wantErr error
	}{
		{name: "stable", values: []string{"hello"}, want: "hello"},
		{name: "empty", values: []string{""}, want: ""},
		{name: "grew once", values: []string{"hi", "hello"}, want: "hello"},
		{name: "keeps growing", values: []string{"a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "abcdefgh", "abcdefghi", "abcdefghij", "abcdefghijk"}, wantErr: unix.ERANGE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &growing{values: tt.values}
			got, err := Read(g.get)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("Read = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
