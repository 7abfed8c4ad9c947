package throttle

import (
	"reflect"
	"testing"
	"time"
)

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"mon-fri 08:00-18:00 2MiB/s; sat 09:00-13:00 5MiB/s; * unlimited",
		"sat 9-13 5MiB/s",
		"fri-mon,wed 22:00-24:00 1.5Mbit/s; * paused",
		"* 0", "sun 1.001KiB/s;", "mon 5 MiB/s", "tue 00:00-24:00 3Gbit/s",
		"", ";", "* 1MiB/s; mon paused", "mon 22:00-06:00 1MiB/s",
	} {
		f.Add(seed)
	}
	loc := time.FixedZone("fuzz", 90*60)
	f.Fuzz(func(t *testing.T, text string) {
		s, err := Parse(text, loc)
		if err != nil {
			return
		}
		out := s.String()
		s2, err := Parse(out, loc)
		if err != nil {
			t.Fatalf("Parse(%q) ok, but its String %q does not parse: %v", text, out, err)
		}
		if !reflect.DeepEqual(s, s2) {
			t.Fatalf("Parse(%q) round trip through %q changed the schedule", text, out)
		}
		if out2 := s2.String(); out2 != out {
			t.Fatalf("String not stable: %q then %q", out, out2)
		}
		// NextChange must make progress and agree with RateAt.
		from := time.Date(2024, 3, 4, 5, 6, 7, 0, loc)
		if n := s.NextChange(from); !n.IsZero() {
			b0, u0 := s.RateAt(from)
			b1, u1 := s.RateAt(n)
			if !n.After(from) || (b0 == b1 && u0 == u1) {
				t.Fatalf("%q: NextChange(%v) = %v without a change", out, from, n)
			}
		}
	})
}
