// Package throttle limits replication bandwidth according to a weekly
// schedule. Branch offices share their WAN with everyone else in the
// office, so replication to the central data center must stay small during
// business hours but may use the whole link at night and at weekends.
//
// An administrator writes the schedule in a config file as rules separated
// by ";", tried in order, first match wins:
//
//	mon-fri 08:00-18:00 2MiB/s; sat 09:00-13:00 5MiB/s; * unlimited
//
// A rule is "DAYS [HH:MM-HH:MM] RATE":
//
//   - DAYS is a day (mon..sun), a range (mon-fri, or wrapping like fri-mon),
//     a comma list of those (mon,wed,fri), or * for every day.
//   - The optional time range is wall-clock time in the appliance's zone,
//     start inclusive, end exclusive, 24:00 allowed as end. A range may not
//     wrap midnight ("22:00-06:00" is ambiguous about which day the morning
//     belongs to); write two rules instead. Without a range the rule covers
//     the whole day.
//   - RATE is a number (up to 3 decimals) with a unit: B/s, KiB/s, MiB/s,
//     GiB/s (powers of 1024), or Kbit/s, Mbit/s, Gbit/s (powers of 1000, as
//     WAN links are sold). "unlimited" means no limit; "0" or "paused" means
//     send nothing, so replication spools until the schedule allows again.
//
// When no rule matches, the rate is unlimited; end a schedule with a "*"
// rule to choose another default.
//
// Writer applies a Schedule to a stream with a golang.org/x/time/rate token
// bucket whose rate follows the schedule.
package throttle

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// maxRate bounds rates so that all unit arithmetic fits in an int64 and the
// limiter's burst fits in an int; 1 TiB/s is far beyond any WAN.
const maxRate = 1 << 40

const minutesPerDay = 24 * 60

// allDays is the day mask with every day set; bit i is day i, mon=0..sun=6.
const allDays = 1<<7 - 1

var dayNames = [7]string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

// unit is a rate unit; the schedule keeps the unit the administrator chose
// so that String prints "2Mbit/s" rather than "250000B/s".
type unit struct {
	name string
	mult int64 // bytes per second per 1 of this unit
}

var units = []unit{
	{"B/s", 1},
	{"KiB/s", 1 << 10},
	{"MiB/s", 1 << 20},
	{"GiB/s", 1 << 30},
	{"Kbit/s", 1000 / 8},
	{"Mbit/s", 1000 * 1000 / 8},
	{"Gbit/s", 1000 * 1000 * 1000 / 8},
}

// ambiguousUnits are spellings whose meaning (bits or bytes, 1000 or 1024)
// administrators disagree on; rejecting them avoids an 8x mistake.
var ambiguousUnits = map[string]string{
	"kb/s": "KiB/s (bytes) or Kbit/s (bits)",
	"mb/s": "MiB/s (bytes) or Mbit/s (bits)",
	"gb/s": "GiB/s (bytes) or Gbit/s (bits)",
	"kbps": "KiB/s (bytes) or Kbit/s (bits)",
	"mbps": "MiB/s (bytes) or Mbit/s (bits)",
	"gbps": "GiB/s (bytes) or Gbit/s (bits)",
}

// rule is one parsed "DAYS [HH:MM-HH:MM] RATE" clause.
type rule struct {
	days       uint8 // bit i set: applies on day i (mon=0)
	start, end int   // minutes since local midnight, [start, end)
	bps        int64 // bytes per second; 0 with !unlimited means paused
	unlimited  bool
	unit       int // index into units, for String
}

// Schedule is a parsed weekly bandwidth schedule. The zero Schedule is
// always unlimited. A Schedule is immutable and safe for concurrent use.
type Schedule struct {
	rules []rule
	loc   *time.Location
}

// ParseError reports which rule of a schedule is wrong, and why.
type ParseError struct {
	Rule int    // 1-based position of the rule in the schedule
	Text string // the rule as written, trimmed
	Err  error  // what is wrong with it, naming the offending part
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("rule %d %q: %v", e.Rule, e.Text, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// Parse parses a schedule (see the package documentation for the format).
// Times are interpreted in loc; nil means time.Local. Errors from a rule are
// *ParseError values such as
//
//	rule 2 "sat 9-13 5MiB/s": time "9-13": want HH:MM-HH:MM
func Parse(s string, loc *time.Location) (Schedule, error) {
	if loc == nil {
		loc = time.Local
	}
	// A trailing ";" is common in hand-written config; tolerate one.
	text := strings.TrimSuffix(strings.TrimSpace(s), ";")
	if strings.TrimSpace(text) == "" {
		return Schedule{}, errors.New(`empty schedule (write "* unlimited" for no limit)`)
	}
	parts := strings.Split(text, ";")
	sched := Schedule{rules: make([]rule, 0, len(parts)), loc: loc}
	catchAll := 0 // 1-based index of the first rule matching all times
	for i, p := range parts {
		p = strings.TrimSpace(p)
		r, err := parseRule(p)
		if err == nil && catchAll != 0 {
			// First match wins, so this rule could never apply; that is
			// almost certainly a mistake in the order of the rules.
			err = fmt.Errorf("unreachable: rule %d already matches all days and times", catchAll)
		}
		if err != nil {
			return Schedule{}, &ParseError{Rule: i + 1, Text: p, Err: err}
		}
		if r.days == allDays && r.start == 0 && r.end == minutesPerDay {
			catchAll = i + 1
		}
		sched.rules = append(sched.rules, r)
	}
	return sched, nil
}

func parseRule(s string) (rule, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return rule{}, errors.New("empty rule")
	}
	var r rule
	var err error
	if r.days, err = parseDays(fields[0]); err != nil {
		return rule{}, err
	}
	rest := fields[1:]
	r.start, r.end = 0, minutesPerDay
	// A time range starts with a digit and contains ":" or "-"; a rate
	// never contains either, so "sat 9-13 5MiB/s" is diagnosed as a bad
	// time, not as a bad rate.
	if len(rest) > 0 && rest[0][0] >= '0' && rest[0][0] <= '9' && strings.ContainsAny(rest[0], ":-") {
		if r.start, r.end, err = parseTimeRange(rest[0]); err != nil {
			return rule{}, err
		}
		rest = rest[1:]
	}
	switch {
	case len(rest) == 0:
		return rule{}, errors.New(`missing rate (e.g. 2MiB/s, 10Mbit/s, unlimited, paused)`)
	case len(rest) == 2 && isNumber(rest[0]):
		// "5 MiB/s": allow a space between number and unit.
		rest = []string{rest[0] + rest[1]}
	case len(rest) >= 2:
		return rule{}, fmt.Errorf("unexpected %q after rate %q", strings.Join(rest[1:], " "), rest[0])
	}
	if r.bps, r.unlimited, r.unit, err = parseRate(rest[0]); err != nil {
		return rule{}, err
	}
	return r, nil
}

func isNumber(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return s != ""
}

func dayIndex(s string) (int, bool) {
	for i, n := range dayNames {
		if s == n {
			return i, true
		}
	}
	return 0, false
}

func parseDays(s string) (uint8, error) {
	var mask uint8
	for _, item := range strings.Split(strings.ToLower(s), ",") {
		if item == "*" {
			mask = allDays
			continue
		}
		from, to, isRange := strings.Cut(item, "-")
		if !isRange {
			to = from
		}
		a, okA := dayIndex(from)
		b, okB := dayIndex(to)
		if !okA || !okB {
			bad := from
			if okA {
				bad = to
			}
			return 0, fmt.Errorf("days %q: unknown day %q (want mon..sun, a range like mon-fri, or *)", s, bad)
		}
		// Ranges may wrap the week (fri-mon), which is unambiguous.
		for i := a; ; i = (i + 1) % 7 {
			mask |= 1 << i
			if i == b {
				break
			}
		}
	}
	return mask, nil
}

func parseTimeRange(s string) (start, end int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("time %q: want HH:MM-HH:MM", s)
	}
	start, okA := parseClock(a)
	end, okB := parseClock(b)
	if !okA || !okB {
		return 0, 0, fmt.Errorf("time %q: want HH:MM-HH:MM", s)
	}
	switch {
	case start == end:
		return 0, 0, fmt.Errorf("time %q: empty range", s)
	case end < start:
		return 0, 0, fmt.Errorf("time %q: end before start; a range may not wrap midnight, write two rules (%s-24:00 and 00:00-%s)", s, a, b)
	}
	return start, end, nil
}

// parseClock parses H:MM or HH:MM from 00:00 to 24:00 into minutes.
func parseClock(s string) (int, bool) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) < 1 || len(h) > 2 || len(m) != 2 || !allDigits(h) || !allDigits(m) {
		return 0, false
	}
	hh, _ := strconv.Atoi(h)
	mm, _ := strconv.Atoi(m)
	if hh > 24 || mm > 59 || (hh == 24 && mm != 0) {
		return 0, false
	}
	return hh*60 + mm, true
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseRate parses "unlimited", "paused", "0", or NUMBER UNIT. The unit
// returned is the one to print the rate in: the one written if the rate is
// exactly representable in it with up to 3 decimals, else B/s.
func parseRate(s string) (bps int64, unlimited bool, unitIdx int, err error) {
	lower := strings.ToLower(s)
	switch lower {
	case "unlimited":
		return 0, true, 0, nil
	case "paused", "0":
		return 0, false, 0, nil
	}
	i := strings.IndexFunc(s, func(c rune) bool { return (c < '0' || c > '9') && c != '.' })
	if i < 0 {
		return 0, false, 0, fmt.Errorf("rate %q: missing unit (B/s, KiB/s, MiB/s, GiB/s, Kbit/s, Mbit/s or Gbit/s)", s)
	}
	num, unitName := s[:i], strings.ToLower(s[i:])
	if num == "" {
		return 0, false, 0, fmt.Errorf(`rate %q: want a number and unit (e.g. 2MiB/s, 10Mbit/s), "unlimited" or "paused"`, s)
	}
	if hint, ok := ambiguousUnits[unitName]; ok {
		return 0, false, 0, fmt.Errorf("rate %q: ambiguous unit %q, write %s", s, s[i:], hint)
	}
	unitIdx = -1
	for j, u := range units {
		if strings.ToLower(u.name) == unitName {
			unitIdx = j
		}
	}
	if unitIdx < 0 {
		return 0, false, 0, fmt.Errorf("rate %q: unknown unit %q (want B/s, KiB/s, MiB/s, GiB/s, Kbit/s, Mbit/s or Gbit/s)", s, s[i:])
	}
	mult := units[unitIdx].mult

	intPart, frac, hasFrac := strings.Cut(num, ".")
	if intPart == "" || (hasFrac && (frac == "" || len(frac) > 3)) || strings.Contains(frac, ".") {
		return 0, false, 0, fmt.Errorf("rate %q: bad number %q (want digits with at most 3 decimals)", s, num)
	}
	ip, err := strconv.ParseInt(intPart, 10, 64)
	if err != nil || ip > maxRate/mult {
		return 0, false, 0, fmt.Errorf("rate %q: above the maximum of 1024GiB/s", s)
	}
	frac += strings.Repeat("0", 3-len(frac))
	fp, _ := strconv.ParseInt(frac, 10, 64)
	// ip <= maxRate/mult keeps milli*mult below 2^51, so no overflow.
	milli := ip*1000 + fp
	bps = milli * mult / 1000
	switch {
	case bps > maxRate:
		return 0, false, 0, fmt.Errorf("rate %q: above the maximum of 1024GiB/s", s)
	case bps == 0 && milli > 0:
		return 0, false, 0, fmt.Errorf("rate %q: below 1 B/s", s)
	case bps == 0:
		return 0, false, 0, nil // "0MiB/s" is paused
	}
	if hi, lo := bits.Mul64(uint64(bps), 1000); hi != 0 || lo%uint64(mult) != 0 {
		unitIdx = 0 // not exact in the written unit (e.g. 1.001KiB/s)
	}
	return bps, false, unitIdx, nil
}

// String formats the schedule so that Parse(s.String(), loc) yields an
// equal schedule. The zero Schedule formats as "* unlimited".
func (s Schedule) String() string {
	if len(s.rules) == 0 {
		return "* unlimited"
	}
	var b strings.Builder
	for i, r := range s.rules {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(formatDays(r.days))
		if r.start != 0 || r.end != minutesPerDay {
			fmt.Fprintf(&b, " %02d:%02d-%02d:%02d", r.start/60, r.start%60, r.end/60, r.end%60)
		}
		b.WriteByte(' ')
		b.WriteString(formatRate(r))
	}
	return b.String()
}

func formatDays(mask uint8) string {
	if mask == allDays {
		return "*"
	}
	var parts []string
	for i := 0; i < 7; {
		if mask&(1<<i) == 0 {
			i++
			continue
		}
		j := i
		for j+1 < 7 && mask&(1<<(j+1)) != 0 {
			j++
		}
		if j == i {
			parts = append(parts, dayNames[i])
		} else {
			parts = append(parts, dayNames[i]+"-"+dayNames[j])
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

func formatRate(r rule) string {
	switch {
	case r.unlimited:
		return "unlimited"
	case r.bps == 0:
		return "paused"
	}
	u := units[r.unit]
	milli := r.bps * 1000 / u.mult
	s := strconv.FormatInt(milli/1000, 10)
	if f := milli % 1000; f != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%03d", f), "0")
	}
	return s + u.name
}

// match returns the rule that applies at t, or nil if none does.
func (s Schedule) match(t time.Time) *rule {
	if len(s.rules) == 0 {
		return nil
	}
	lt := t.In(s.loc)
	day := (int(lt.Weekday()) + 6) % 7 // time.Sunday is 0; we count from mon
	h, m, _ := lt.Clock()
	minute := h*60 + m
	for i := range s.rules {
		r := &s.rules[i]
		if r.days&(1<<day) != 0 && r.start <= minute && minute < r.end {
			return r
		}
	}
	return nil
}

// RateAt returns the bandwidth allowed at t: unlimited reports no limit,
// otherwise bytesPerSec is the limit, and 0 means paused (send nothing).
func (s Schedule) RateAt(t time.Time) (bytesPerSec int64, unlimited bool) {
	r := s.match(t)
	if r == nil {
		return 0, true
	}
	return r.bps, r.unlimited
}

// NextChange returns the first instant after t at which RateAt returns a
// different value, so a limiter can re-arm then; adjacent rules with the
// same rate do not count as a change. It returns the zero Time if the rate
// never changes. Boundaries are in wall-clock time, so on a DST change day
// "08:00" is still 08:00 local; a boundary inside a skipped hour takes effect
// when the clock jumps.
func (s Schedule) NextChange(t time.Time) time.Time {
	if len(s.rules) == 0 {
		return time.Time{}
	}
	// The rate can only change at a rule boundary, at midnight (the day
	// changes) or when the zone offset changes; step through those.
	var bounds []int
	for _, r := range s.rules {
		bounds = append(bounds, r.start, r.end)
	}
	bounds = append(bounds, minutesPerDay)

	curBps, curUnl := s.RateAt(t)
	// The schedule repeats weekly in wall-clock time; 8 days covers a week
	// even when DST shortens or lengthens a day.
	limit := t.Add(8 * 24 * time.Hour)
	for c := t; c.Before(limit); {
		lt := c.In(s.loc)
		h, m, sec := lt.Clock()
		minute := h*60 + m
		next := minutesPerDay
		for _, b := range bounds {
			if b > minute && b < next {
				next = b
			}
		}
		// Within one zone offset, wall time and absolute time advance
		// together, so the boundary is a fixed duration away.
		minuteStart := c.Add(-time.Duration(sec)*time.Second - time.Duration(lt.Nanosecond()))
		cand := minuteStart.Add(time.Duration(next-minute) * time.Minute)
		if _, zoneEnd := lt.ZoneBounds(); !zoneEnd.IsZero() && zoneEnd.Before(cand) {
			cand = zoneEnd
		}
		if bps, unl := s.RateAt(cand); bps != curBps || unl != curUnl {
			return cand
		}
		c = cand
	}
	return time.Time{}
}

// Location returns the time zone the schedule's times are in.
func (s Schedule) Location() *time.Location {
	if s.loc == nil {
		return time.Local
	}
	return s.loc
}
