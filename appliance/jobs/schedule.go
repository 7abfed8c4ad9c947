package jobs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrSchedule is wrapped by every schedule the parser refuses and by a
// schedule that cannot run (a one-time run in the past).
var ErrSchedule = errors.New("jobs: bad schedule")

// ScheduleError says what is wrong with a schedule, where, and what to do.
type ScheduleError struct {
	Input   string // the schedule as given
	Column  int    // 1-based column of the offending word; 0 for the whole text
	Problem string
	Fix     string
}

func (e *ScheduleError) Error() string {
	where := ""
	if e.Column > 0 {
		where = fmt.Sprintf(", column %d", e.Column)
	}
	return fmt.Sprintf("schedule %q%s: %s; %s", e.Input, where, e.Problem, e.Fix)
}

func (e *ScheduleError) Unwrap() error { return ErrSchedule }

type scheduleKind uint8

const (
	runNow scheduleKind = iota
	runOnce
	runEvery
	runWeekly
)

// maxInterval bounds "every" so that next-run arithmetic cannot overflow.
const maxInterval = 366 * 24 * time.Hour

// Schedule says when a job runs: now, once at a wall-clock time, every fixed
// interval, or on some weekdays at a wall-clock time. Wall-clock times are
// read in the appliance's time zone when a run time is computed. The zero
// Schedule is "now".
type Schedule struct {
	kind     scheduleKind
	date     civilDate // runOnce
	hour     int       // runOnce, runWeekly
	minute   int       // runOnce, runWeekly
	interval time.Duration
	days     [7]bool // runWeekly, indexed by time.Weekday
}

type civilDate struct {
	year  int
	month time.Month
	day   int
}

// Repeats reports whether the schedule has runs after its first.
func (s Schedule) Repeats() bool { return s.kind == runEvery || s.kind == runWeekly }

// First is the first run time of a job submitted at now. A one-time run that
// is not after now is refused with ErrSchedule, since it could only run late.
func (s Schedule) First(now time.Time, loc *time.Location) (time.Time, error) {
	switch s.kind {
	case runOnce:
		t := wallTime(s.date, s.hour, s.minute, loc)
		if !t.After(now) {
			return time.Time{}, &ScheduleError{Input: s.String(), Problem: fmt.Sprintf("%s is already past (it is now %s)",
				t.Format("2006-01-02 15:04 MST"), now.In(loc).Format("2006-01-02 15:04 MST")),
				Fix: `give a later time, or "now" to run at once`}
		}
		return t, nil
	case runWeekly:
		t, _ := s.After(now, now, loc)
		return t, nil
	default: // now, and "every" starts with a run at once
		return now, nil
	}
}

// After is the run that follows one due at due, asked at now (after that run
// ended): the first interval step or weekday time later than now, so runs
// missed while a job ran long or the appliance was down are skipped rather
// than run in a burst. ok is false when the schedule does not repeat.
func (s Schedule) After(due, now time.Time, loc *time.Location) (next time.Time, ok bool) {
	switch s.kind {
	case runEvery:
		if !now.Before(due) {
			steps := now.Sub(due)/s.interval + 1
			return due.Add(steps * s.interval), true
		}
		return due.Add(s.interval), true
	case runWeekly:
		from := due
		if now.After(from) {
			from = now
		}
		local := from.In(loc)
		// A weekly schedule has a day within the next 7; the 8th covers a
		// time earlier today on the only scheduled weekday.
		for i := 0; i <= 7; i++ {
			d := civilDate{local.Year(), local.Month(), local.Day() + i}
			d = normalize(d)
			if !s.days[d.weekday()] {
				continue
			}
			if t := wallTime(d, s.hour, s.minute, loc); t.After(from) {
				return t, true
			}
		}
		// Unreachable for a parsed schedule; say so rather than loop.
		return time.Time{}, false
	default:
		return time.Time{}, false
	}
}

func normalize(d civilDate) civilDate {
	t := time.Date(d.year, d.month, d.day, 12, 0, 0, 0, time.UTC)
	return civilDate{t.Year(), t.Month(), t.Day()}
}

func (d civilDate) weekday() time.Weekday {
	return time.Date(d.year, d.month, d.day, 12, 0, 0, 0, time.UTC).Weekday()
}

// wallTime is the instant the clocks in loc show hour:minute on day d. A
// time the clocks skip (the spring-forward gap) runs at the jump, the first
// instant after the gap; a time the clocks show twice (fall back) runs at
// the first of the two, so a schedule runs once on a DST change day.
func wallTime(d civilDate, hour, minute int, loc *time.Location) time.Time {
	t := time.Date(d.year, d.month, d.day, hour, minute, 0, 0, loc)
	want := time.Date(d.year, d.month, d.day, hour, minute, 0, 0, time.UTC)
	got := time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), 0, 0, time.UTC)
	start, end := t.ZoneBounds()
	switch {
	case got.After(want): // in the gap, normalized past it
		if !start.IsZero() {
			return start
		}
	case got.Before(want): // in the gap, normalized before it
		if !end.IsZero() {
			return end
		}
	default:
		if start.IsZero() {
			return t
		}
		_, off := t.Zone()
		_, prevOff := start.Add(-time.Nanosecond).Zone()
		if prevOff > off {
			earlier := t.Add(-time.Duration(prevOff-off) * time.Second)
			e := earlier.In(loc)
			if earlier.Before(start) && e.Day() == d.day && e.Hour() == hour && e.Minute() == minute {
				return earlier
			}
		}
	}
	return t
}

var dayNames = [7]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

var fullDayNames = [7]string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}

// String is the schedule in canonical form, which ParseSchedule reads back
// to the same schedule.
func (s Schedule) String() string {
	switch s.kind {
	case runOnce:
		return fmt.Sprintf("once %04d-%02d-%02d %02d:%02d", s.date.year, int(s.date.month), s.date.day, s.hour, s.minute)
	case runEvery:
		return "every " + formatInterval(s.interval)
	case runWeekly:
		return fmt.Sprintf("%s %02d:%02d", formatDays(s.days), s.hour, s.minute)
	default:
		return "now"
	}
}

func formatInterval(d time.Duration) string {
	var b strings.Builder
	for _, u := range []struct {
		size time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}} {
		if n := d / u.size; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.size
		}
	}
	return b.String()
}

// formatDays lists days Monday first, runs of three or more as ranges.
func formatDays(days [7]bool) string {
	all := true
	for _, on := range days {
		all = all && on
	}
	if all {
		return "daily"
	}
	order := [7]time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday, time.Saturday, time.Sunday}
	var parts []string
	for i := 0; i < 7; {
		if !days[order[i]] {
			i++
			continue
		}
		j := i
		for j+1 < 7 && days[order[j+1]] {
			j++
		}
		switch {
		case j-i >= 2:
			parts = append(parts, dayNames[order[i]]+"-"+dayNames[order[j]])
		case j == i:
			parts = append(parts, dayNames[order[i]])
		default:
			parts = append(parts, dayNames[order[i]], dayNames[order[j]])
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

type word struct {
	text   string
	column int
}

func splitWords(s string) []word {
	var out []word
	start := -1
	for i, r := range s {
		space := r == ' ' || r == '\t'
		if !space && start < 0 {
			start = i
		}
		if space && start >= 0 {
			out = append(out, word{s[start:i], start + 1})
			start = -1
		}
	}
	if start >= 0 {
		out = append(out, word{s[start:], start + 1})
	}
	return out
}

const scheduleForms = `write "now", "once 2026-12-24 22:00", "every 6h" or days and a time such as "fri 22:00", "mon-fri 01:30", "sun,wed 12:00", "daily 02:00"`

// ParseSchedule reads a schedule, case-insensitively:
//
//	now
//	once YYYY-MM-DD HH:MM
//	every INTERVAL          (whole minutes as d, h, m: 6h, 1d12h, 90m)
//	DAYS HH:MM              (daily, or days and ranges: fri, mon-fri, sun,wed)
//
// A refused schedule is a *ScheduleError wrapping ErrSchedule.
func ParseSchedule(text string) (Schedule, error) {
	in := strings.ToLower(text)
	words := splitWords(in)
	fail := func(column int, fix, problem string, args ...any) (Schedule, error) {
		return Schedule{}, &ScheduleError{Input: text, Column: column, Problem: fmt.Sprintf(problem, args...), Fix: fix}
	}
	if len(words) == 0 {
		return fail(0, scheduleForms, "it is empty")
	}
	first := words[0]
	switch first.text {
	case "now":
		if len(words) > 1 {
			return fail(words[1].column, `write "now" alone`, "unexpected %q after now", words[1].text)
		}
		return Schedule{}, nil
	case "once":
		if len(words) != 3 {
			return fail(first.column, `write "once YYYY-MM-DD HH:MM", e.g. "once 2026-12-24 22:00"`, "once needs a date and a time, got %d words after it", len(words)-1)
		}
		date, err := parseDate(words[1])
		if err != nil {
			return fail(words[1].column, `write the date as YYYY-MM-DD, e.g. 2026-12-24`, "%v", err)
		}
		h, m, err := parseClock(words[2].text)
		if err != nil {
			return fail(words[2].column, clockFix, "%v", err)
		}
		return Schedule{kind: runOnce, date: date, hour: h, minute: m}, nil
	case "every":
		if len(words) != 2 {
			return fail(first.column, `write "every INTERVAL", e.g. "every 6h" or "every 1d12h"`, "every needs one interval, got %d words after it", len(words)-1)
		}
		d, err := parseInterval(words[1].text)
		if err != nil {
			return fail(words[1].column, `write the interval in whole minutes with d, h and m, e.g. 6h, 90m, 1d12h`, "%v", err)
		}
		return Schedule{kind: runEvery, interval: d}, nil
	}
	if len(words) != 2 {
		return fail(first.column, scheduleForms, "%q is not a schedule", text)
	}
	days, col, err := parseDays(first)
	if err != nil {
		return fail(col, `name days as mon tue wed thu fri sat sun, joined by commas or as ranges (mon-fri), or write "daily"`, "%v", err)
	}
	h, m, err := parseClock(words[1].text)
	if err != nil {
		return fail(words[1].column, clockFix, "%v", err)
	}
	return Schedule{kind: runWeekly, days: days, hour: h, minute: m}, nil
}

const clockFix = `write the time as HH:MM on a 24-hour clock, e.g. 22:00 or 01:30`

// number reads a plain decimal of at most max digits (no sign, no spaces).
func number(s string, max int) (int, bool) {
	if s == "" || len(s) > max {
		return 0, false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

func parseClock(s string) (hour, minute int, err error) {
	hs, ms, found := strings.Cut(s, ":")
	h, okH := number(hs, 2)
	m, okM := number(ms, 2)
	if !found || !okH || !okM || len(ms) != 2 {
		return 0, 0, fmt.Errorf("%q is not a time", s)
	}
	if h > 23 {
		return 0, 0, fmt.Errorf("hour %d is not 0-23", h)
	}
	if m > 59 {
		return 0, 0, fmt.Errorf("minute %d is not 0-59", m)
	}
	return h, m, nil
}

func parseDate(w word) (civilDate, error) {
	parts := strings.Split(w.text, "-")
	if len(parts) != 3 || len(parts[0]) != 4 || len(parts[1]) != 2 || len(parts[2]) != 2 {
		return civilDate{}, fmt.Errorf("%q is not a date", w.text)
	}
	y, okY := number(parts[0], 4)
	mo, okM := number(parts[1], 2)
	d, okD := number(parts[2], 2)
	if !okY || !okM || !okD || y < 1970 {
		return civilDate{}, fmt.Errorf("%q is not a date", w.text)
	}
	if mo < 1 || mo > 12 {
		return civilDate{}, fmt.Errorf("month %d is not 1-12", mo)
	}
	date := civilDate{y, time.Month(mo), d}
	if d < 1 || normalize(date) != date {
		return civilDate{}, fmt.Errorf("%s has no day %d", time.Month(mo), d)
	}
	return date, nil
}

func parseInterval(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("the interval is empty")
	}
	var total time.Duration
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) {
			return 0, fmt.Errorf("%q is not an interval", s)
		}
		n, ok := number(rest[:i], 6)
		if !ok {
			return 0, fmt.Errorf("%q is too long an interval", s)
		}
		var unit time.Duration
		switch rest[i] {
		case 'd':
			unit = 24 * time.Hour
		case 'h':
			unit = time.Hour
		case 'm':
			unit = time.Minute
		default:
			return 0, fmt.Errorf("unit %q in %q is not d, h or m", rest[i:i+1], s)
		}
		total += time.Duration(n) * unit
		if total > maxInterval {
			return 0, fmt.Errorf("%q is longer than 366 days", s)
		}
		rest = rest[i+1:]
	}
	if total < time.Minute {
		return 0, fmt.Errorf("%q is shorter than a minute", s)
	}
	return total, nil
}

func parseDay(s string) (time.Weekday, bool) {
	for i := range dayNames {
		if s == dayNames[i] || s == fullDayNames[i] {
			return time.Weekday(i), true
		}
	}
	return 0, false
}

// parseDays reads "daily" or a comma list of days and ranges; a range may
// wrap past Sunday (fri-mon). The column returned points at the bad part.
func parseDays(w word) (days [7]bool, column int, err error) {
	if w.text == "daily" {
		for i := range days {
			days[i] = true
		}
		return days, 0, nil
	}
	col := w.column
	for _, part := range strings.Split(w.text, ",") {
		from, to, isRange := strings.Cut(part, "-")
		a, okA := parseDay(from)
		if !okA {
			return days, col, fmt.Errorf("%q is not a day", from)
		}
		b := a
		if isRange {
			var okB bool
			if b, okB = parseDay(to); !okB {
				return days, col + len(from) + 1, fmt.Errorf("%q is not a day", to)
			}
		}
		for d := a; ; d = (d + 1) % 7 {
			days[d] = true
			if d == b {
				break
			}
		}
		col += len(part) + 1
	}
	return days, 0, nil
}
