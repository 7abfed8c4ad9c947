package tape

import (
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
)

// replyCase is one case of testdata/replies.txt.
type replyCase struct {
	parser, name string
	data         []byte
	want         string
}

func loadReplies(t testing.TB) []replyCase {
	t.Helper()
	b, err := os.ReadFile("testdata/replies.txt")
	if err != nil {
		t.Fatal(err)
	}
	var cases []replyCase
	var cur *replyCase
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "=>"):
			if cur == nil {
				t.Fatalf("line %d: expectation without a case", i+1)
			}
			cur.want = strings.TrimSpace(strings.TrimPrefix(line, "=>"))
			cases = append(cases, *cur)
			cur = nil
		case cur == nil:
			p, name, ok := strings.Cut(line, ":")
			if !ok {
				t.Fatalf("line %d: want PARSER: name", i+1)
			}
			cur = &replyCase{parser: p, name: strings.TrimSpace(name)}
		default:
			h, err := hex.DecodeString(strings.ReplaceAll(line, " ", ""))
			if err != nil {
				t.Fatalf("line %d: %v", i+1, err)
			}
			cur.data = append(cur.data, h...)
		}
	}
	return cases
}

// render runs one parser and renders its result as the fixtures do.
func render(parser string, b []byte) (string, bool) {
	errOr := func(s string, err error) string {
		if err != nil {
			return "error: " + err.Error()
		}
		return s
	}
	switch parser {
	case "sense":
		s, err := parseSense(b)
		return errOr(s.String(), err), true
	case "inquiry":
		q, err := parseInquiry(b)
		return errOr(fmt.Sprintf("type %d removable %v %q %q %q", q.PeripheralType, q.Removable, q.Vendor, q.Product, q.Revision), err), true
	case "serial":
		s, err := parseSerialVPD(b)
		return errOr(fmt.Sprintf("%q", s), err), true
	case "position-short", "position-long":
		p, err := parseReadPosition(b, parser == "position-long")
		return errOr(fmt.Sprintf("block %d file %d BOP %v EOP %v BPEW %v", p.Block, p.File, p.BOP, p.EOP, p.BPEW), err), true
	case "tapealert":
		a, err := parseTapeAlert(b)
		return errOr(fmt.Sprintf("alerts %#x clean %v", uint64(a), a.CleaningNeeded()), err), true
	case "mode":
		h, err := parseModeSense6(b)
		return errOr(fmt.Sprintf("block %d wp %v desc %v", h.BlockSize, h.WriteProtected, h.HasBlockDesc), err), true
	case "attribute":
		v, ok, err := parseAttribute(b, 0x0806)
		return errOr(fmt.Sprintf("%q %v", v, ok), err), true
	}
	return "", false
}

func TestReplies(t *testing.T) {
	cases := loadReplies(t)
	if len(cases) < 20 {
		t.Fatalf("only %d cases read", len(cases))
	}
	for _, c := range cases {
		t.Run(c.parser+"/"+c.name, func(t *testing.T) {
			got, ok := render(c.parser, c.data)
			if !ok {
				t.Fatalf("unknown parser %q", c.parser)
			}
			if got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		s    Sense
		want error
	}{
		{Sense{Key: 0, EOM: true, ASCQ: 2}, ErrEarlyWarning},
		{Sense{Key: 0xD, EOM: true, ASCQ: 2}, ErrEndOfMedium},
		{Sense{Key: 0, Filemark: true, ASCQ: 1}, ErrFilemark},
		{Sense{Key: 8, ASCQ: 5}, ErrEndOfData},
		{Sense{Key: 7, ASC: 0x27}, ErrWriteProtected},
		{Sense{Key: 2, ASC: 0x3A}, ErrNoMedium},
		{Sense{Key: 2, ASC: 0x04, ASCQ: 0x01}, ErrNotReady},
		{Sense{Key: 0, EOM: true, ASCQ: 4}, ErrBeginningOfTape},
		{Sense{Key: 3, ASC: 0x0C}, ErrMedium},
		{Sense{Key: 0, ILI: true}, nil},
		{Sense{Key: 5, ASC: 0x24}, nil},
	}
	for _, tc := range tests {
		if got := classify(tc.s); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.s, got, tc.want)
		}
	}
}

// fuzzReplies seeds a parser's fuzzer with its fixtures; the property is
// no panic, and a parse that succeeds renders.
func fuzzReplies(f *testing.F, parser string) {
	for _, c := range loadReplies(f) {
		if c.parser == parser {
			f.Add(c.data)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, ok := render(parser, b); !ok {
			t.Fatal("unknown parser")
		}
	})
}

func FuzzParseSense(f *testing.F)         { fuzzReplies(f, "sense") }
func FuzzParseInquiry(f *testing.F)       { fuzzReplies(f, "inquiry") }
func FuzzParseSerialVPD(f *testing.F)     { fuzzReplies(f, "serial") }
func FuzzParsePositionShort(f *testing.F) { fuzzReplies(f, "position-short") }
func FuzzParsePositionLong(f *testing.F)  { fuzzReplies(f, "position-long") }
func FuzzParseTapeAlert(f *testing.F)     { fuzzReplies(f, "tapealert") }
func FuzzParseModeSense(f *testing.F)     { fuzzReplies(f, "mode") }
func FuzzParseAttribute(f *testing.F)     { fuzzReplies(f, "attribute") }
