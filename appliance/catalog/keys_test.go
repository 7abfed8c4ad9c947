package catalog

import (
	"bytes"
	"math"
	"sort"
	"strings"
	"testing"
)

func TestPrefixesDoNotNest(t *testing.T) {
	for i, a := range keyLayouts {
		for j, b := range keyLayouts {
			if i != j && strings.HasPrefix(b.prefix, a.prefix) {
				t.Errorf("prefix %q is a prefix of %q: scans of one would read the other", a.prefix, b.prefix)
			}
		}
	}
}

// TestEscapedStringsKeepOrder checks that composite keys sort like their
// components: by the first string, then the next.
func TestEscapedStringsKeepOrder(t *testing.T) {
	strs := []string{"", "\x00", "\x00\x00", "\x00\x01", "\x00\xff", "\x01", "a", "a\x00", "a\x00b", "a\x01", "a/", "a/b", "a0", "ab", "b", "\xff", "\xff\xff"}
	type pair struct{ a, b string }
	var pairs []pair
	for _, a := range strs {
		for _, b := range strs {
			pairs = append(pairs, pair{a, b})
		}
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].a != pairs[j].a {
			return pairs[i].a < pairs[j].a
		}
		return pairs[i].b < pairs[j].b
	})
	for i := 1; i < len(pairs); i++ {
		k1 := appendEsc(appendEsc(nil, pairs[i-1].a), pairs[i-1].b)
		k2 := appendEsc(appendEsc(nil, pairs[i].a), pairs[i].b)
		if bytes.Compare(k1, k2) >= 0 {
			t.Errorf("(%q,%q) encodes >= (%q,%q)", pairs[i-1].a, pairs[i-1].b, pairs[i].a, pairs[i].b)
		}
	}
}

func TestKeyRoundTrip(t *testing.T) {
	tests := []struct {
		key  []byte
		want string
	}{
		{[]byte(keySchema), "meta/schema"},
		{seqKey(seqScenario), `seq/"scenario"`},
		{scenarioKey(7), "s/7"},
		{scenarioKey(math.MaxUint64), "s/18446744073709551615"},
		{scenarioNameKey("pay roll"), `sn/"pay roll"`},
		{entityKey(7, "vol\x00x"), `e/7/"vol\x00x"`},
		{hostKey("fs01"), `h/"fs01"`},
		{jobKey(1), "j/1"},
		{sessionKey(2), "ss/2"},
		{sessionJobKey(1, 2), "sj/1/2"},
		{sessionFileKey(3, "fs01", "/a b"), `sf/3/"fs01"/"/a b"`},
		{mediaKey(3), "m/3"},
		{fileKey("fs01", "/a/b", 9), `f/"fs01"/"/a/b"/9`},
		{fileNameKey("b", "fs01", "/a/b"), `fn/"b"/"fs01"/"/a/b"`},
		{activityKey(5), "a/5"},
		{activityJobKey(4, 5), "aj/4/5"},
		{[]byte("zz/unknown"), `"zz/unknown"`},
		{append(scenarioKey(1), 'x'), `"s/\x00\x00\x00\x00\x00\x00\x00\x01x"`},
		{[]byte("e/\x00\x00\x00\x00\x00\x00\x00\x01abc"), `"e/\x00\x00\x00\x00\x00\x00\x00\x01abc"`},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := FormatKey(tc.key); got != tc.want {
				t.Fatalf("FormatKey = %s, want %s", got, tc.want)
			}
			l, fields, err := parseKey(tc.key)
			if err != nil {
				return // the unparseable cases end here
			}
			if again := encodeKey(l, fields); !bytes.Equal(again, tc.key) {
				t.Fatalf("re-encoded key %q, want %q", again, tc.key)
			}
		})
	}
}

func TestDecodeEscRejects(t *testing.T) {
	for _, in := range []string{"", "abc", "a\x00", "a\x00\x02", "a\x00\xfe\x00\x01"} {
		if s, _, err := decodeEsc([]byte(in)); err == nil {
			t.Errorf("decodeEsc(%q) = %q, want an error", in, s)
		}
	}
}

func TestPrefixEnd(t *testing.T) {
	tests := []struct{ in, want []byte }{
		{[]byte("s/"), []byte("s0")},
		{[]byte{'a', 0xFF}, []byte{'b'}},
		{[]byte{0xFF, 0xFF}, nil},
		{[]byte{0x00, 0x01}, []byte{0x00, 0x02}},
	}
	for _, tc := range tests {
		if got := prefixEnd(tc.in); !bytes.Equal(got, tc.want) {
			t.Errorf("prefixEnd(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
