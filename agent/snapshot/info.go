package snapshot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"time"
	"unicode/utf8"
)

// Method is how a snapshot's file contents were made.
type Method string

const (
	// Reflink: every file is a copy-on-write clone (FICLONE).
	Reflink Method = "reflink"
	// Copy: some or all file contents were copied (copy_file_range).
	Copy Method = "copy"
)

// Consistency values a snapshot carries.
const (
	// CrashConsistent: the tree as a crash would have left it.
	CrashConsistent = "crash"
	// ApplicationConsistent: the application was quiesced, or an Assured
	// Recovery test started it on this snapshot successfully.
	ApplicationConsistent = "application"
)

// Info describes one snapshot.
type Info struct {
	ID          string
	Time        time.Time
	Scenario    string
	Method      Method
	Files       int64 // regular files, each name of a hard link counted once
	Bytes       int64 // their logical sizes
	Consistency string
	Label       string
}

// Meta is what the caller says about a snapshot it creates.
type Meta struct {
	Scenario    string
	Consistency string // CrashConsistent (the default when empty) or ApplicationConsistent
	Label       string
}

const (
	infoVersion  = 1
	maxInfoBytes = 16 << 10
	maxTextLen   = 1024 // Scenario and Label
)

// infoFile is info.json on disk; the version lets a later format be told
// apart from a damaged file.
type infoFile struct {
	Version     int       `json:"version"`
	ID          string    `json:"id"`
	Time        time.Time `json:"time"`
	Scenario    string    `json:"scenario,omitempty"`
	Method      Method    `json:"method"`
	Files       int64     `json:"files"`
	Bytes       int64     `json:"bytes"`
	Consistency string    `json:"consistency"`
	Label       string    `json:"label,omitempty"`
}

var errBadInfo = errors.New("invalid snapshot info")

func encodeInfo(in Info) ([]byte, error) {
	if err := checkInfo(in); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(infoFile{
		Version: infoVersion, ID: in.ID, Time: in.Time.UTC(), Scenario: in.Scenario, Method: in.Method,
		Files: in.Files, Bytes: in.Bytes, Consistency: in.Consistency, Label: in.Label,
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode snapshot info %s: %w", in.ID, err)
	}
	return append(b, '\n'), nil
}

// decodeInfo reads info.json, which is read from disk and so may be
// truncated or damaged: it is bounded, strict about fields, and every value
// is checked.
func decodeInfo(b []byte) (Info, error) {
	if len(b) > maxInfoBytes {
		return Info{}, fmt.Errorf("%w: %d bytes, more than %d", errBadInfo, len(b), maxInfoBytes)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var f infoFile
	if err := d.Decode(&f); err != nil {
		return Info{}, fmt.Errorf("%w: %w", errBadInfo, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return Info{}, fmt.Errorf("%w: data after the object", errBadInfo)
	}
	if f.Version != infoVersion {
		return Info{}, fmt.Errorf("%w: version %d, this build reads %d", errBadInfo, f.Version, infoVersion)
	}
	in := Info{ID: f.ID, Time: f.Time.UTC(), Scenario: f.Scenario, Method: f.Method, Files: f.Files,
		Bytes: f.Bytes, Consistency: f.Consistency, Label: f.Label}
	if err := checkInfo(in); err != nil {
		return Info{}, err
	}
	return in, nil
}

func checkInfo(in Info) error {
	if _, _, err := parseID(in.ID); err != nil {
		return err
	}
	switch {
	case in.Method != Reflink && in.Method != Copy:
		return fmt.Errorf("%w: method %q", errBadInfo, in.Method)
	case in.Consistency != CrashConsistent && in.Consistency != ApplicationConsistent:
		return fmt.Errorf("%w: consistency %q", errBadInfo, in.Consistency)
	case in.Files < 0 || in.Bytes < 0:
		return fmt.Errorf("%w: negative counts", errBadInfo)
	case in.Time.IsZero():
		return fmt.Errorf("%w: no time", errBadInfo)
	}
	for _, s := range []string{in.Scenario, in.Label} {
		if len(s) > maxTextLen || !utf8.ValidString(s) {
			return fmt.Errorf("%w: scenario or label longer than %d bytes or not UTF-8", errBadInfo, maxTextLen)
		}
	}
	return nil
}

const idTimeLayout = "20060102T150405.000Z"

// idPattern: the creation time to the millisecond, UTC, and a sequence
// number that tells apart snapshots of the same millisecond.
var idPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}\.[0-9]{3}Z-[0-9]{3,9}$`)

func formatID(t time.Time, n int) string {
	return fmt.Sprintf("%s-%03d", t.UTC().Format(idTimeLayout), n)
}

// parseID returns the time and sequence number of an ID.
func parseID(id string) (time.Time, int, error) {
	if !idPattern.MatchString(id) {
		return time.Time{}, 0, fmt.Errorf("%w: id %q", errBadInfo, id)
	}
	ts, num := id[:len(idTimeLayout)], id[len(idTimeLayout)+1:]
	t, err := time.Parse(idTimeLayout, ts)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("%w: id %q: %w", errBadInfo, id, err)
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("%w: id %q: %w", errBadInfo, id, err)
	}
	return t, n, nil
}

// idLess orders IDs by time, then sequence number (which may outgrow its
// three digits, so plain string order is not enough).
func idLess(a, b string) bool {
	ta, na, _ := parseID(a)
	tb, nb, _ := parseID(b)
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	return na < nb
}
