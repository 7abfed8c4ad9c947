package catalog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Key prefixes, one per record kind. No prefix is a prefix of another, so a
// bounded scan of one kind never strays into the next. docs/catalog.md has the
// full layout of each key.
const (
	keySchema          = "meta/schema"
	prefixSeq          = "seq/"
	prefixScenario     = "s/"
	prefixScenarioKey  = "sn/"
	prefixEntity       = "e/"
	prefixHost         = "h/"
	prefixJob          = "j/"
	prefixSession      = "ss/"
	prefixSessionJob   = "sj/"
	prefixSessionFile  = "sf/"
	prefixMedia        = "m/"
	prefixFile         = "f/"
	prefixFileName     = "fn/"
	prefixActivity     = "a/"
	prefixActivityJob  = "aj/"
	prefixRecoveryTest = "rt/"
)

// Sequence names, stored under prefixSeq.
const (
	seqScenario     = "scenario"
	seqJob          = "job"
	seqSession      = "session"
	seqMedia        = "media"
	seqActivity     = "activity"
	seqRecoveryTest = "recovery-test"
)

// keyPart is one component of a composite key.
type keyPart uint8

const (
	partU64    keyPart = iota + 1 // big-endian uint64
	partInvU64                    // big-endian ^uint64, so larger values sort first
	partEsc                       // escaped, terminated string
	partRest                      // raw string running to the end of the key
)

// keyLayout describes one key family: its prefix, its components, and the
// record kind its values must carry.
type keyLayout struct {
	prefix string
	parts  []keyPart
	kind   recordKind
}

// keyLayouts lists every key family the catalog writes. Decoding a key walks
// this table, so adding a family here is enough for FormatKey to print it.
var keyLayouts = []keyLayout{
	{keySchema, nil, kindMeta},
	{prefixSeq, []keyPart{partRest}, kindSequence},
	{prefixScenario, []keyPart{partU64}, kindScenario},
	{prefixScenarioKey, []keyPart{partRest}, kindScenarioRef},
	{prefixEntity, []keyPart{partU64, partEsc}, kindEntity},
	{prefixHost, []keyPart{partRest}, kindHost},
	{prefixJob, []keyPart{partU64}, kindJob},
	{prefixSession, []keyPart{partU64}, kindSession},
	{prefixSessionJob, []keyPart{partU64, partU64}, kindMarker},
	{prefixSessionFile, []keyPart{partU64, partEsc, partEsc}, kindMarker},
	{prefixMedia, []keyPart{partU64}, kindMedia},
	{prefixFile, []keyPart{partEsc, partEsc, partInvU64}, kindFileVersion},
	{prefixFileName, []keyPart{partEsc, partEsc, partEsc}, kindMarker},
	{prefixActivity, []keyPart{partU64}, kindActivity},
	{prefixActivityJob, []keyPart{partU64, partU64}, kindMarker},
	{prefixRecoveryTest, []keyPart{partU64, partInvU64}, kindRecoveryTest},
}

// keyField is one decoded key component: u for integer parts, s for strings.
type keyField struct {
	u uint64
	s string
}

var errKeyTruncated = errors.New("key truncated")

// appendU64 appends v big-endian and fixed-width, so byte order is numeric
// order.
func appendU64(b []byte, v uint64) []byte {
	return binary.BigEndian.AppendUint64(b, v)
}

func decodeU64(b []byte) (uint64, []byte, error) {
	if len(b) < 8 {
		return 0, nil, errKeyTruncated
	}
	return binary.BigEndian.Uint64(b), b[8:], nil
}

// Strings inside composite keys are escaped so that they keep their byte
// order and cannot run into the next component: 0x00 becomes 0x00 0xFF and
// the string ends with 0x00 0x01. The terminator sorts below every escaped
// byte, so "a" < "a\x00" < "ab" still holds after encoding.
const (
	escByte   = 0x00
	escZero   = 0xFF
	escFinish = 0x01
)

// appendEscPrefix appends s escaped but unterminated: every key whose string
// component starts with s starts with these bytes.
func appendEscPrefix(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == escByte {
			b = append(b, escByte, escZero)
		} else {
			b = append(b, s[i])
		}
	}
	return b
}

func appendEsc(b []byte, s string) []byte {
	return append(appendEscPrefix(b, s), escByte, escFinish)
}

// decodeEsc reads one escaped string component. It accepts only the
// canonical encoding, so a decoded key re-encodes to the same bytes.
func decodeEsc(b []byte) (string, []byte, error) {
	var sb []byte
	for i := 0; i < len(b); i++ {
		if b[i] != escByte {
			continue
		}
		if i+1 >= len(b) {
			return "", nil, errKeyTruncated
		}
		switch b[i+1] {
		case escFinish:
			if sb == nil {
				return string(b[:i]), b[i+2:], nil
			}
			sb = append(sb, b[:i]...)
			return string(sb), b[i+2:], nil
		case escZero:
			sb = append(sb, b[:i]...)
			sb = append(sb, escByte)
			b = b[i+2:]
			i = -1
		default:
			return "", nil, fmt.Errorf("bad escape 0x00 0x%02x in key string", b[i+1])
		}
	}
	return "", nil, errKeyTruncated
}

// prefixEnd returns the smallest key greater than every key that starts with
// prefix, for use as an exclusive upper bound. It returns nil (no bound) when
// the prefix is all 0xFF.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xFF {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// layoutOf finds the key family of key by its prefix.
func layoutOf(key []byte) (*keyLayout, bool) {
	for i := range keyLayouts {
		l := &keyLayouts[i]
		if l.parts == nil {
			if string(key) == l.prefix {
				return l, true
			}
			continue
		}
		if strings.HasPrefix(string(key), l.prefix) {
			return l, true
		}
	}
	return nil, false
}

// parseKey splits key into its family and components. It never panics; a
// key that does not fit any family, or has bytes left over, is an error.
func parseKey(key []byte) (*keyLayout, []keyField, error) {
	l, ok := layoutOf(key)
	if !ok {
		return nil, nil, errors.New("unknown key prefix")
	}
	rest := key[len(l.prefix):]
	fields := make([]keyField, 0, len(l.parts))
	for _, p := range l.parts {
		var f keyField
		var err error
		switch p {
		case partU64:
			f.u, rest, err = decodeU64(rest)
		case partInvU64:
			f.u, rest, err = decodeU64(rest)
			f.u = ^f.u
		case partEsc:
			f.s, rest, err = decodeEsc(rest)
		case partRest:
			f.s, rest = string(rest), nil
		}
		if err != nil {
			return nil, nil, err
		}
		fields = append(fields, f)
	}
	if len(rest) != 0 {
		return nil, nil, fmt.Errorf("%d unexpected bytes after key components", len(rest))
	}
	return l, fields, nil
}

// encodeKey is parseKey's inverse.
func encodeKey(l *keyLayout, fields []keyField) []byte {
	b := []byte(l.prefix)
	for i, p := range l.parts {
		if i >= len(fields) {
			break
		}
		switch p {
		case partU64:
			b = appendU64(b, fields[i].u)
		case partInvU64:
			b = appendU64(b, ^fields[i].u)
		case partEsc:
			b = appendEsc(b, fields[i].s)
		case partRest:
			b = append(b, fields[i].s...)
		}
	}
	return b
}

// FormatKey renders a catalog key for people: the prefix, then each
// component, integers in decimal and strings quoted, e.g. e/7/"vol1". Keys
// that do not parse are printed as a quoted byte string.
func FormatKey(key []byte) string {
	l, fields, err := parseKey(key)
	if err != nil {
		return strconv.Quote(string(key))
	}
	var sb strings.Builder
	sb.WriteString(l.prefix)
	for i, p := range l.parts {
		if i > 0 {
			sb.WriteByte('/')
		}
		switch p {
		case partU64, partInvU64:
			sb.WriteString(strconv.FormatUint(fields[i].u, 10))
		default:
			sb.WriteString(strconv.Quote(fields[i].s))
		}
	}
	return sb.String()
}

// Key constructors, one per family.

func seqKey(name string) []byte { return append([]byte(prefixSeq), name...) }

func scenarioKey(id uint64) []byte { return appendU64([]byte(prefixScenario), id) }

func scenarioNameKey(name string) []byte { return append([]byte(prefixScenarioKey), name...) }

func entityPrefix(scenarioID uint64) []byte { return appendU64([]byte(prefixEntity), scenarioID) }

func entityKey(scenarioID uint64, name string) []byte {
	return appendEsc(entityPrefix(scenarioID), name)
}

func hostKey(name string) []byte { return append([]byte(prefixHost), name...) }

func jobKey(id uint64) []byte { return appendU64([]byte(prefixJob), id) }

func sessionKey(id uint64) []byte { return appendU64([]byte(prefixSession), id) }

func sessionJobPrefix(jobID uint64) []byte { return appendU64([]byte(prefixSessionJob), jobID) }

func sessionJobKey(jobID, sessionID uint64) []byte {
	return appendU64(sessionJobPrefix(jobID), sessionID)
}

// sessionFilePrefix starts the keys of the per-session index of file
// versions, which lets DeleteSession find a session's versions without
// scanning every file.
func sessionFilePrefix(sessionID uint64) []byte {
	return appendU64([]byte(prefixSessionFile), sessionID)
}

func sessionFileKey(sessionID uint64, host, path string) []byte {
	return appendEsc(appendEsc(sessionFilePrefix(sessionID), host), path)
}

func mediaKey(id uint64) []byte { return appendU64([]byte(prefixMedia), id) }

func filePathPrefix(host, path string) []byte {
	return appendEsc(appendEsc([]byte(prefixFile), host), path)
}

func fileKey(host, path string, sessionID uint64) []byte {
	return appendU64(filePathPrefix(host, path), ^sessionID)
}

func fileNameKey(base, host, path string) []byte {
	return appendEsc(appendEsc(appendEsc([]byte(prefixFileName), base), host), path)
}

func activityKey(seq uint64) []byte { return appendU64([]byte(prefixActivity), seq) }

func activityJobPrefix(jobID uint64) []byte { return appendU64([]byte(prefixActivityJob), jobID) }

func activityJobKey(jobID, seq uint64) []byte {
	return appendU64(activityJobPrefix(jobID), seq)
}

func recoveryTestPrefix(scenarioID uint64) []byte {
	return appendU64([]byte(prefixRecoveryTest), scenarioID)
}

func recoveryTestKey(scenarioID, id uint64) []byte {
	return appendU64(recoveryTestPrefix(scenarioID), ^id)
}
