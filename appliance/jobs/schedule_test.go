package jobs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func paris(t testing.TB) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatalf("load Europe/Paris: %v", err)
	}
	return loc
}

func TestParseSchedule(t *testing.T) {
	tests := []struct {
		in        string
		canonical string
		repeats   bool
	}{
		{"now", "now", false},
		{"  NOW ", "now", false},
		{"once 2026-12-24 22:00", "once 2026-12-24 22:00", false},
		{"once 2028-02-29 00:00", "once 2028-02-29 00:00", false},
		{"every 6h", "every 6h", true},
		{"every 90m", "every 1h30m", true},
		{"every 1d12h", "every 1d12h", true},
		{"every 2d", "every 2d", true},
		{"fri 22:00", "fri 22:00", true},
		{"Friday 22:00", "fri 22:00", true},
		{"mon-fri 01:30", "mon-fri 01:30", true},
		{"sun,wed 12:00", "wed,sun 12:00", true},
		{"fri-mon 3:05", "mon,fri-sun 03:05", true},
		{"mon-sun 00:00", "daily 00:00", true},
		{"daily 02:00", "daily 02:00", true},
		{"mon,tue 23:59", "mon,tue 23:59", true},
	}
	for _, tc := range tests {
		s, err := ParseSchedule(tc.in)
		if err != nil {
			t.Errorf("ParseSchedule(%q): %v", tc.in, err)
			continue
		}
		if got := s.String(); got != tc.canonical {
			t.Errorf("ParseSchedule(%q).String() = %q, want %q", tc.in, got, tc.canonical)
		}
		if s.Repeats() != tc.repeats {
			t.Errorf("ParseSchedule(%q).Repeats() = %v", tc.in, s.Repeats())
		}
		again, err := ParseSchedule(s.String())
		if err != nil || again != s {
			t.Errorf("canonical %q does not read back: %v", s.String(), err)
		}
	}
}

func TestParseScheduleRefused(t *testing.T) {
	tests := []struct {
		in      string
		column  int
		problem string // part of the message
	}{
		{"", 0, "empty"},
		{"now please", 5, `unexpected "please"`},
		{"once 2026-12-24", 1, "once needs a date and a time"},
		{"once 2026-02-30 10:00", 6, "February has no day 30"},
		{"once 2026-13-01 10:00", 6, "month 13"},
		{"once 26-12-24 10:00", 6, "not a date"},
		{"once 2026-12-24 24:00", 17, "hour 24"},
		{"every", 1, "every needs one interval"},
		{"every 30s", 7, `unit "s"`},
		{"every 0m", 7, "shorter than a minute"},
		{"every 400d", 7, "longer than 366 days"},
		{"every 6", 7, "not an interval"},
		{"every h", 7, "not an interval"},
		{"every -6h", 7, "not an interval"},
		{"fri 25:00", 5, "hour 25 is not 0-23"},
		{"fri 22:60", 5, "minute 60"},
		{"fri 22", 5, "not a time"},
		{"fri 22:0", 5, "not a time"},
		{"fry 22:00", 1, `"fry" is not a day`},
		{"mon,fry 22:00", 5, `"fry" is not a day`},
		{"mon-fry 22:00", 5, `"fry" is not a day`},
		{"mon, 22:00", 5, `"" is not a day`},
		{"mon wed 10:00", 1, "is not a schedule"},
		{"tomorrow", 1, "is not a schedule"},
	}
	for _, tc := range tests {
		_, err := ParseSchedule(tc.in)
		var se *ScheduleError
		if !errors.As(err, &se) || !errors.Is(err, ErrSchedule) {
			t.Errorf("ParseSchedule(%q): err = %v, want a *ScheduleError wrapping ErrSchedule", tc.in, err)
			continue
		}
		if se.Column != tc.column || !strings.Contains(se.Problem, tc.problem) || se.Fix == "" {
			t.Errorf("ParseSchedule(%q) = column %d, %q, fix %q; want column %d and %q",
				tc.in, se.Column, se.Problem, se.Fix, tc.column, tc.problem)
		}
	}
}

func TestScheduleRuns(t *testing.T) {
	loc := paris(t)
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name     string
		schedule string
		due, now string // After(due, now); due "" means First(now)
		want     string // "" means no further run
	}{
		{"weekday later today", "fri 22:00", "", "2026-11-27T21:59:00+01:00", "2026-11-27T22:00:00+01:00"},
		{"weekday time just passed", "fri 22:00", "", "2026-11-27T22:00:00+01:00", "2026-12-04T22:00:00+01:00"},
		{"weekday range skips weekend", "mon-fri 22:00", "2026-11-27T22:00:00+01:00", "2026-11-27T23:10:00+01:00", "2026-11-30T22:00:00+01:00"},
		{"list wraps the week", "sun,wed 12:00", "2026-11-29T12:00:00+01:00", "2026-11-29T12:30:00+01:00", "2026-12-02T12:00:00+01:00"},
		{"long run skips a missed day", "daily 01:30", "2026-11-25T01:30:00+01:00", "2026-11-26T02:00:00+01:00", "2026-11-27T01:30:00+01:00"},
		// Spring forward in Paris: 2026-03-29 02:00 CET becomes 03:00 CEST.
		{"gap runs at the jump", "sun 02:30", "", "2026-03-28T12:00:00+01:00", "2026-03-29T03:00:00+02:00"},
		{"daily across spring forward", "daily 01:30", "2026-03-28T01:30:00+01:00", "2026-03-28T01:45:00+01:00", "2026-03-29T01:30:00+01:00"},
		{"daily after spring forward", "daily 01:30", "2026-03-29T01:30:00+01:00", "2026-03-29T01:45:00+01:00", "2026-03-30T01:30:00+02:00"},
		{"once in the gap", "once 2026-03-29 02:15", "", "2026-03-01T00:00:00+01:00", "2026-03-29T03:00:00+02:00"},
		// Fall back in Paris: 2026-10-25 03:00 CEST becomes 02:00 CET.
		{"repeated hour runs at the first", "sun 02:30", "", "2026-10-24T12:00:00+02:00", "2026-10-25T02:30:00+02:00"},
		{"repeated hour runs once", "sun 02:30", "2026-10-25T02:30:00+02:00", "2026-10-25T02:40:00+02:00", "2026-11-01T02:30:00+01:00"},
		{"daily across fall back", "daily 12:00", "2026-10-24T12:00:00+02:00", "2026-10-24T12:05:00+02:00", "2026-10-25T12:00:00+01:00"},
		// Intervals are elapsed time, not wall-clock time.
		{"interval across spring forward", "every 6h", "2026-03-29T00:00:00+01:00", "2026-03-29T00:10:00+01:00", "2026-03-29T07:00:00+02:00"},
		{"interval skips missed steps", "every 6h", "2026-11-25T00:00:00Z", "2026-11-25T13:00:00Z", "2026-11-25T18:00:00Z"},
		{"interval on the step", "every 6h", "2026-11-25T00:00:00Z", "2026-11-25T06:00:00Z", "2026-11-25T12:00:00Z"},
		{"interval starts now", "every 6h", "", "2026-11-25T10:00:00Z", "2026-11-25T10:00:00Z"},
		{"now", "now", "", "2026-11-25T10:00:00Z", "2026-11-25T10:00:00Z"},
		{"now does not repeat", "now", "2026-11-25T10:00:00Z", "2026-11-25T10:00:00Z", ""},
		{"once does not repeat", "once 2026-12-24 22:00", "2026-12-24T22:00:00+01:00", "2026-12-24T23:00:00+01:00", ""},
	}
	for _, tc := range tests {
		s, err := ParseSchedule(tc.schedule)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got time.Time
		if tc.due == "" {
			got, err = s.First(at(tc.now), loc)
			if err != nil {
				t.Errorf("%s: First: %v", tc.name, err)
				continue
			}
		} else {
			var ok bool
			got, ok = s.After(at(tc.due), at(tc.now), loc)
			if ok != (tc.want != "") {
				t.Errorf("%s: After ok = %v", tc.name, ok)
				continue
			}
		}
		if tc.want == "" {
			continue
		}
		if want := at(tc.want); !got.Equal(want) {
			t.Errorf("%s: %s from %s = %s, want %s", tc.name, tc.schedule, tc.now, got.In(loc), want.In(loc))
		}
	}
}

func TestOnceInThePastIsRefused(t *testing.T) {
	loc := paris(t)
	s, err := ParseSchedule("once 2026-11-25 10:00")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, loc)
	if _, err := s.First(now, loc); !errors.Is(err, ErrSchedule) || !strings.Contains(err.Error(), "already past") {
		t.Fatalf("First at the very time: err = %v, want ErrSchedule saying it is past", err)
	}
	if got, err := s.First(now.Add(-time.Minute), loc); err != nil || !got.Equal(now) {
		t.Fatalf("First a minute before = %v, %v", got, err)
	}
}

func FuzzParseSchedule(f *testing.F) {
	for _, seed := range []string{"now", "once 2026-12-24 22:00", "every 6h", "every 1d12h30m", "fri 22:00",
		"mon-fri 01:30", "sun,wed 12:00", "fri-mon 3:05", "daily 02:00", "once 2026-03-29 02:30", "every 999999d", "mon,,tue 1:1"} {
		f.Add(seed, int64(1774746000)) // 2026-03-29 01:00 UTC, the Paris spring jump
	}
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string, unix int64) {
		s, err := ParseSchedule(text)
		if err != nil {
			var se *ScheduleError
			if !errors.As(err, &se) || se.Fix == "" {
				t.Fatalf("ParseSchedule(%q): error %v is not a *ScheduleError with a fix", text, err)
			}
			return
		}
		again, err := ParseSchedule(s.String())
		if err != nil || again != s {
			t.Fatalf("ParseSchedule(%q): canonical %q reads back as %v, %v", text, s.String(), again, err)
		}
		// Keep to the years the zone database describes in full.
		now := time.Unix(1_000_000_000+unix%2_000_000_000, 0)
		if !s.Repeats() {
			return
		}
		next, ok := s.After(now, now, loc)
		if !ok || !next.After(now) {
			t.Fatalf("%q: After(%v) = %v, %v; want a later run", s, now, next, ok)
		}
		if s.kind == runWeekly && next.Sub(now) > 8*24*time.Hour {
			t.Fatalf("%q: After(%v) = %v, more than a week later", s, now, next)
		}
	})
}
