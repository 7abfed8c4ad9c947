package throttle

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

func TestParseValid(t *testing.T) {
	tests := []struct {
		in   string
		want string // String() of the result
	}{
		{"mon-fri 08:00-18:00 2MiB/s; sat 09:00-13:00 5MiB/s; * unlimited",
			"mon-fri 08:00-18:00 2MiB/s; sat 09:00-13:00 5MiB/s; * unlimited"},
		{"* unlimited", "* unlimited"},
		{"* paused", "* paused"},
		{"* 0", "* paused"},
		{"* 0MiB/s", "* paused"},
		{"  MON-Fri  8:00-18:00   2 mib/s ;", "mon-fri 08:00-18:00 2MiB/s"},
		{"sat,sun 1.5Mbit/s", "sat-sun 1.5Mbit/s"},
		{"mon,wed,fri 00:00-24:00 10Kbit/s", "mon,wed,fri 10Kbit/s"},
		{"fri-mon 22:00-24:00 1GiB/s", "mon,fri-sun 22:00-24:00 1GiB/s"},
		{"tue 1.001KiB/s", "tue 1025B/s"},
		{"sun 123B/s; *,mon 4Gbit/s", "sun 123B/s; * 4Gbit/s"},
		{"wed 0.5KiB/s", "wed 0.5KiB/s"},
	}
	for _, tt := range tests {
		s, err := Parse(tt.in, time.UTC)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got := s.String(); got != tt.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseRates(t *testing.T) {
	tests := []struct {
		in        string
		bps       int64
		unlimited bool
	}{
		{"* 1B/s", 1, false},
		{"* 2KiB/s", 2 * kib, false},
		{"* 2MiB/s", 2 * mib, false},
		{"* 1GiB/s", 1 << 30, false},
		{"* 8Kbit/s", 1000, false},
		{"* 10Mbit/s", 1250000, false},
		{"* 1Gbit/s", 125000000, false},
		{"* 1.5MiB/s", 3 * mib / 2, false},
		{"* unlimited", 0, true},
		{"* paused", 0, false},
	}
	for _, tt := range tests {
		s, err := Parse(tt.in, time.UTC)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.in, err)
		}
		bps, unl := s.RateAt(time.Now())
		if bps != tt.bps || unl != tt.unlimited {
			t.Errorf("Parse(%q).RateAt = %d, %v; want %d, %v", tt.in, bps, unl, tt.bps, tt.unlimited)
		}
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		in   string
		want string // exact error message
	}{
		{"", `empty schedule (write "* unlimited" for no limit)`},
		{" ; ", `empty schedule (write "* unlimited" for no limit)`},
		{"mon-fri 08:00-18:00 2MiB/s; sat 9-13 5MiB/s",
			`rule 2 "sat 9-13 5MiB/s": time "9-13": want HH:MM-HH:MM`},
		{"* 2MiB/s;; * paused", `rule 2 "": empty rule`},
		{"mo 1MiB/s", `rule 1 "mo 1MiB/s": days "mo": unknown day "mo" (want mon..sun, a range like mon-fri, or *)`},
		{"mon-fry 1MiB/s", `rule 1 "mon-fry 1MiB/s": days "mon-fry": unknown day "fry" (want mon..sun, a range like mon-fri, or *)`},
		{"mon,,tue 1MiB/s", `rule 1 "mon,,tue 1MiB/s": days "mon,,tue": unknown day "" (want mon..sun, a range like mon-fri, or *)`},
		{"mon 25:00-26:00 1MiB/s", `rule 1 "mon 25:00-26:00 1MiB/s": time "25:00-26:00": want HH:MM-HH:MM`},
		{"mon 08:60-09:00 1MiB/s", `rule 1 "mon 08:60-09:00 1MiB/s": time "08:60-09:00": want HH:MM-HH:MM`},
		{"mon 08:00 1MiB/s", `rule 1 "mon 08:00 1MiB/s": time "08:00": want HH:MM-HH:MM`},
		{"mon 08:00-08:00 1MiB/s", `rule 1 "mon 08:00-08:00 1MiB/s": time "08:00-08:00": empty range`},
		{"mon 22:00-06:00 1MiB/s", `rule 1 "mon 22:00-06:00 1MiB/s": time "22:00-06:00": end before start; a range may not wrap midnight, write two rules (22:00-24:00 and 00:00-06:00)`},
		{"mon 08:00-18:00", `rule 1 "mon 08:00-18:00": missing rate (e.g. 2MiB/s, 10Mbit/s, unlimited, paused)`},
		{"mon 5MB/s", `rule 1 "mon 5MB/s": rate "5MB/s": ambiguous unit "MB/s", write MiB/s (bytes) or Mbit/s (bits)`},
		{"mon 5", `rule 1 "mon 5": rate "5": missing unit (B/s, KiB/s, MiB/s, GiB/s, Kbit/s, Mbit/s or Gbit/s)`},
		{"mon 5furlongs/s", `rule 1 "mon 5furlongs/s": rate "5furlongs/s": unknown unit "furlongs/s" (want B/s, KiB/s, MiB/s, GiB/s, Kbit/s, Mbit/s or Gbit/s)`},
		{"mon fast", `rule 1 "mon fast": rate "fast": want a number and unit (e.g. 2MiB/s, 10Mbit/s), "unlimited" or "paused"`},
		{"mon 1.2345MiB/s", `rule 1 "mon 1.2345MiB/s": rate "1.2345MiB/s": bad number "1.2345" (want digits with at most 3 decimals)`},
		{"mon 1.2.3MiB/s", `rule 1 "mon 1.2.3MiB/s": rate "1.2.3MiB/s": bad number "1.2.3" (want digits with at most 3 decimals)`},
		{"mon 2000GiB/s", `rule 1 "mon 2000GiB/s": rate "2000GiB/s": above the maximum of 1024GiB/s`},
		{"mon 0.001B/s", `rule 1 "mon 0.001B/s": rate "0.001B/s": below 1 B/s`},
		{"mon 2MiB/s 08:00-18:00", `rule 1 "mon 2MiB/s 08:00-18:00": unexpected "08:00-18:00" after rate "2MiB/s"`},
		{"* 1MiB/s; mon paused", `rule 2 "mon paused": unreachable: rule 1 already matches all days and times`},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in, time.UTC)
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want error %q", tt.in, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("Parse(%q) error:\n got %s\nwant %s", tt.in, err, tt.want)
		}
	}
}

func TestParseErrorType(t *testing.T) {
	_, err := Parse("* 1MiB/s; sat 9-13 5MiB/s", time.UTC)
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v is not a *ParseError", err)
	}
	if pe.Rule != 2 || pe.Text != "sat 9-13 5MiB/s" || !strings.HasPrefix(pe.Err.Error(), `time "9-13"`) {
		t.Errorf("ParseError = %+v", pe)
	}
}

func mustParse(t testing.TB, s string, loc *time.Location) Schedule {
	t.Helper()
	sched, err := Parse(s, loc)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return sched
}

// 2024-01-01 was a Monday.
func at(loc *time.Location, day, h, m, sec int) time.Time {
	return time.Date(2024, 1, day, h, m, sec, 0, loc)
}

func TestRateAtBoundaries(t *testing.T) {
	loc := time.FixedZone("branch", 2*3600)
	s := mustParse(t, "mon-fri 08:00-18:00 2MiB/s; sat 09:00-13:00 paused; * unlimited", loc)
	tests := []struct {
		t         time.Time
		bps       int64
		unlimited bool
	}{
		{at(loc, 1, 7, 59, 59), 0, true},      // mon just before start
		{at(loc, 1, 8, 0, 0), 2 * mib, false}, // start inclusive
		{at(loc, 1, 17, 59, 59), 2 * mib, false},
		{at(loc, 1, 18, 0, 0), 0, true}, // end exclusive
		{at(loc, 5, 12, 0, 0), 2 * mib, false},
		{at(loc, 6, 8, 59, 59), 0, true}, // sat
		{at(loc, 6, 9, 0, 0), 0, false},  // sat paused
		{at(loc, 6, 12, 59, 59), 0, false},
		{at(loc, 6, 13, 0, 0), 0, true},
		{at(loc, 7, 12, 0, 0), 0, true}, // sun
		// The same instant expressed in UTC is evaluated in loc.
		{at(loc, 1, 8, 0, 0).UTC(), 2 * mib, false},
		{time.Date(2024, 1, 1, 5, 59, 0, 0, time.UTC), 0, true}, // 07:59 in loc
	}
	for _, tt := range tests {
		bps, unl := s.RateAt(tt.t)
		if bps != tt.bps || unl != tt.unlimited {
			t.Errorf("RateAt(%v) = %d, %v; want %d, %v", tt.t, bps, unl, tt.bps, tt.unlimited)
		}
	}
}

func TestRateAtDayEdges(t *testing.T) {
	s := mustParse(t, "sun 22:00-24:00 1MiB/s; mon 00:00-06:00 1MiB/s; * 5MiB/s", time.UTC)
	tests := []struct {
		t   time.Time
		bps int64
	}{
		{at(time.UTC, 7, 21, 59, 59), 5 * mib},
		{at(time.UTC, 7, 22, 0, 0), 1 * mib},
		{time.Date(2024, 1, 7, 23, 59, 59, 999999999, time.UTC), 1 * mib},
		{at(time.UTC, 8, 0, 0, 0), 1 * mib}, // mon midnight
		{at(time.UTC, 8, 5, 59, 59), 1 * mib},
		{at(time.UTC, 8, 6, 0, 0), 5 * mib},
		{at(time.UTC, 1, 23, 0, 0), 5 * mib}, // mon night is not sun night
	}
	for _, tt := range tests {
		if bps, _ := s.RateAt(tt.t); bps != tt.bps {
			t.Errorf("RateAt(%v) = %d, want %d", tt.t, bps, tt.bps)
		}
	}
}

func TestZeroSchedule(t *testing.T) {
	var s Schedule
	if bps, unl := s.RateAt(time.Now()); !unl || bps != 0 {
		t.Errorf("zero RateAt = %d, %v; want unlimited", bps, unl)
	}
	if nc := s.NextChange(time.Now()); !nc.IsZero() {
		t.Errorf("zero NextChange = %v, want zero", nc)
	}
	if got := s.String(); got != "* unlimited" {
		t.Errorf("zero String = %q", got)
	}
}

func TestNextChange(t *testing.T) {
	loc := time.FixedZone("branch", -5*3600)
	s := mustParse(t, "mon-fri 08:00-18:00 2MiB/s; sat 09:00-13:00 5MiB/s; * unlimited", loc)
	tests := []struct {
		from, want time.Time
	}{
		{at(loc, 1, 0, 0, 0), at(loc, 1, 8, 0, 0)},
		{at(loc, 1, 7, 59, 59), at(loc, 1, 8, 0, 0)},
		{at(loc, 1, 8, 0, 0), at(loc, 1, 18, 0, 0)}, // strictly after t
		{at(loc, 1, 12, 30, 15), at(loc, 1, 18, 0, 0)},
		{at(loc, 1, 18, 0, 0), at(loc, 2, 8, 0, 0)}, // across midnight
		{at(loc, 5, 18, 0, 0), at(loc, 6, 9, 0, 0)}, // fri evening -> sat
		{at(loc, 6, 13, 0, 0), at(loc, 8, 8, 0, 0)}, // sat -> next mon
		{at(loc, 6, 10, 0, 0).UTC(), at(loc, 6, 13, 0, 0)},
	}
	for _, tt := range tests {
		if got := s.NextChange(tt.from); !got.Equal(tt.want) {
			t.Errorf("NextChange(%v) = %v, want %v", tt.from, got, tt.want)
		}
	}

	// Adjacent rules with the same rate are not a change.
	s = mustParse(t, "mon 00:00-12:00 1MiB/s; mon 12:00-24:00 1MiB/s; tue 1MiB/s; * unlimited", time.UTC)
	if got, want := s.NextChange(at(time.UTC, 1, 3, 0, 0)), at(time.UTC, 3, 0, 0, 0); !got.Equal(want) {
		t.Errorf("NextChange over equal rates = %v, want %v", got, want)
	}
	// A rate that never changes has no next change.
	for _, text := range []string{"* 1MiB/s", "mon-sun 00:00-24:00 paused", "mon 1MiB/s; tue-sun 1MiB/s"} {
		s = mustParse(t, text, time.UTC)
		if got := s.NextChange(at(time.UTC, 1, 3, 0, 0)); !got.IsZero() {
			t.Errorf("%q: NextChange = %v, want zero", text, got)
		}
	}
	// Consistency: the rate is constant on [t, next) and differs at next.
	s = mustParse(t, "mon-fri 08:00-18:00 2MiB/s; sat 09:00-13:00 5MiB/s; sun 3KiB/s; * unlimited", loc)
	for c := at(loc, 1, 0, 0, 0); c.Before(at(loc, 15, 0, 0, 0)); c = c.Add(37 * time.Minute) {
		n := s.NextChange(c)
		b0, u0 := s.RateAt(c)
		b1, u1 := s.RateAt(n.Add(-time.Nanosecond))
		b2, u2 := s.RateAt(n)
		if b0 != b1 || u0 != u1 || (b0 == b2 && u0 == u2) {
			t.Fatalf("NextChange(%v) = %v is not the first change", c, n)
		}
	}
}

func loadBerlin(t *testing.T) *time.Location {
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("Europe/Berlin not available (no tzdata on this machine): %v", err)
	}
	return loc
}

func TestDST(t *testing.T) {
	loc := loadBerlin(t)
	// The paused rule comes first so that it wins inside 01:00-04:00.
	s := mustParse(t, "sun 02:15-02:45 paused; sun 01:00-04:00 1MiB/s; * unlimited", loc)

	// 2024-03-31: clocks jump from 02:00 CET to 03:00 CEST.
	spring := func(h, m int) time.Time { return time.Date(2024, 3, 31, h, m, 0, 0, loc) }
	if bps, unl := s.RateAt(spring(1, 59)); bps != mib || unl {
		t.Errorf("spring 01:59: %d, %v", bps, unl)
	}
	// The throttled period is only 2 real hours long that night.
	if got := s.NextChange(spring(1, 0)); !got.Equal(spring(4, 0)) {
		t.Errorf("spring NextChange(01:00) = %v, want 04:00 CEST", got)
	}
	if d := spring(4, 0).Sub(spring(1, 0)); d != 2*time.Hour {
		t.Errorf("spring 01:00->04:00 = %v, want 2h", d)
	}
	// The paused rule falls into the skipped hour and never applies.
	for c := spring(0, 0); c.Before(spring(5, 0)); c = c.Add(time.Minute) {
		if bps, unl := s.RateAt(c); bps == 0 && !unl {
			t.Fatalf("spring %v paused", c)
		}
	}

	// 2024-10-27: clocks go back from 03:00 CEST to 02:00 CET; 02:30
	// happens twice and is paused both times.
	fall := time.Date(2024, 10, 26, 22, 0, 0, 0, time.UTC) // 00:00 CEST
	first := fall.Add(2*time.Hour + 30*time.Minute)        // 02:30 CEST
	second := first.Add(time.Hour)                         // 02:30 CET
	for _, c := range []time.Time{first, second} {
		if h, m, _ := c.In(loc).Clock(); h != 2 || m != 30 {
			t.Fatalf("%v is not 02:30 local", c)
		}
		if bps, unl := s.RateAt(c); bps != 0 || unl {
			t.Errorf("fall %v: %d, %v; want paused", c.In(loc), bps, unl)
		}
	}
	// From the first 02:30 the pause ends at the first 02:45 (CEST).
	if got, want := s.NextChange(first), first.Add(15*time.Minute); !got.Equal(want) {
		t.Errorf("fall NextChange(first 02:30) = %v, want %v", got, want)
	}
	// From 02:45 CEST the rate goes back to paused at 02:15 CET, when the
	// clock shows 02:15 again.
	if got, want := s.NextChange(first.Add(15*time.Minute)), first.Add(45*time.Minute); !got.Equal(want) {
		t.Errorf("fall NextChange(02:45 CEST) = %v, want %v", got, want)
	}
	// The throttled period 01:00-04:00 is 4 real hours long that night.
	s = mustParse(t, "sun 01:00-04:00 1MiB/s; * unlimited", loc)
	start := fall.Add(time.Hour)
	if got, want := s.NextChange(start), fall.Add(5*time.Hour); !got.Equal(want) {
		t.Errorf("fall NextChange(01:00) = %v, want %v", got.In(loc), want.In(loc))
	}
}

func TestStringRoundTrip(t *testing.T) {
	for _, text := range []string{
		"mon-fri 08:00-18:00 2MiB/s; sat 09:00-13:00 5MiB/s; * unlimited",
		"fri-tue 1.25Gbit/s",
		"mon,wed,fri-sat 00:01-23:59 999B/s; tue paused",
		"thu 7.5Kbit/s; sun 00:00-00:01 0.125MiB/s",
		"* 3.333KiB/s",
	} {
		s := mustParse(t, text, time.UTC)
		s2 := mustParse(t, s.String(), time.UTC)
		if !reflect.DeepEqual(s, s2) {
			t.Errorf("%q: round trip through %q changed the schedule", text, s.String())
		}
		if s2.String() != s.String() {
			t.Errorf("%q: String not stable: %q then %q", text, s.String(), s2.String())
		}
	}
}
