package pki

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// The state file (stateFileName in the CA directory) holds the SHA-256 hashes
// of enrollment tokens and the record of issued certificates, including the
// revocation deny list. Tokens and certificates live in one file so that
// consuming a token and recording the certificate it produced is a single
// atomic write.
const (
	stateVersion = 1

	// maxTokens bounds the number of token records (pending, used or
	// recently expired) so that the file and the constant-time scan in
	// Enroll stay small. Reaching it means tokens are being minted far
	// faster than agents enroll, which is worth an error.
	maxTokens = 1000
	// maxCerts bounds the certificate records a state file may hold.
	maxCerts = 100000
	// tokenGrace keeps a used or expired token record this long after its
	// expiry, so that a late attempt gets ErrTokenUsed/ErrTokenExpired
	// (a useful diagnosis) rather than ErrTokenUnknown.
	tokenGrace = 24 * time.Hour
)

type tokenRecord struct {
	hash    [32]byte
	host    string
	created time.Time
	expires time.Time
	usedAt  time.Time // zero while unused
	serial  *big.Int  // certificate issued with the token, once used
}

type certRecord struct {
	serial    *big.Int
	host      string
	notAfter  time.Time
	revokedAt time.Time // zero unless revoked
}

type state struct {
	tokens []tokenRecord
	certs  []certRecord
}

// JSON shapes. Kept separate from the in-memory records so that the file
// format is explicit and every field is validated on the way in.
type stateJSON struct {
	Version int         `json:"version"`
	Tokens  []tokenJSON `json:"tokens"`
	Certs   []certJSON  `json:"certificates"`
}

type tokenJSON struct {
	SHA256  string     `json:"sha256"`
	Host    string     `json:"host"`
	Created time.Time  `json:"created"`
	Expires time.Time  `json:"expires"`
	UsedAt  *time.Time `json:"used_at,omitempty"`
	Serial  string     `json:"serial,omitempty"`
}

type certJSON struct {
	Serial    string     `json:"serial"`
	Host      string     `json:"host"`
	NotAfter  time.Time  `json:"not_after"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

func encodeState(s *state) ([]byte, error) {
	out := stateJSON{Version: stateVersion, Tokens: []tokenJSON{}, Certs: []certJSON{}}
	for _, t := range s.tokens {
		tj := tokenJSON{
			SHA256:  hex.EncodeToString(t.hash[:]),
			Host:    t.host,
			Created: t.created.UTC(),
			Expires: t.expires.UTC(),
		}
		if !t.usedAt.IsZero() {
			u := t.usedAt.UTC()
			tj.UsedAt = &u
		}
		if t.serial != nil {
			tj.Serial = t.serial.Text(16)
		}
		out.Tokens = append(out.Tokens, tj)
	}
	for _, c := range s.certs {
		cj := certJSON{Serial: c.serial.Text(16), Host: c.host, NotAfter: c.notAfter.UTC()}
		if !c.revokedAt.IsZero() {
			r := c.revokedAt.UTC()
			cj.RevokedAt = &r
		}
		out.Certs = append(out.Certs, cj)
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode enrollment state: %w", err)
	}
	return append(data, '\n'), nil
}

// decodeState parses a state file. The file is written only by this package,
// but it is decoded defensively (size, counts, every field validated,
// duplicates refused) because a corrupted state must fail loudly rather than,
// say, turn a used token back into an unknown one.
func decodeState(data []byte) (*state, error) {
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("state larger than %d bytes", maxFileSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var in stateJSON
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("decode JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("trailing data after JSON object")
	}
	if in.Version != stateVersion {
		return nil, fmt.Errorf("unsupported state version %d (this build reads %d)", in.Version, stateVersion)
	}
	if len(in.Tokens) > maxTokens {
		return nil, fmt.Errorf("%d token records, more than the limit %d", len(in.Tokens), maxTokens)
	}
	if len(in.Certs) > maxCerts {
		return nil, fmt.Errorf("%d certificate records, more than the limit %d", len(in.Certs), maxCerts)
	}
	s := &state{}
	seenTok := make(map[[32]byte]bool, len(in.Tokens))
	for i, tj := range in.Tokens {
		var t tokenRecord
		raw, err := hex.DecodeString(tj.SHA256)
		if err != nil || len(raw) != len(t.hash) {
			return nil, fmt.Errorf("token %d: invalid sha256", i)
		}
		copy(t.hash[:], raw)
		if seenTok[t.hash] {
			return nil, fmt.Errorf("token %d: duplicate hash", i)
		}
		seenTok[t.hash] = true
		if t.host, err = normalizeHost(tj.Host); err != nil || t.host != tj.Host {
			return nil, fmt.Errorf("token %d: invalid host %q", i, tj.Host)
		}
		if tj.Created.IsZero() || tj.Expires.IsZero() || !tj.Expires.After(tj.Created) {
			return nil, fmt.Errorf("token %d: invalid created/expires times", i)
		}
		t.created, t.expires = tj.Created, tj.Expires
		if tj.UsedAt != nil {
			if tj.UsedAt.IsZero() {
				return nil, fmt.Errorf("token %d: zero used_at", i)
			}
			t.usedAt = *tj.UsedAt
		}
		if tj.Serial != "" {
			if t.serial, err = parseSerial(tj.Serial); err != nil {
				return nil, fmt.Errorf("token %d: %w", i, err)
			}
		}
		if (t.serial != nil) != !t.usedAt.IsZero() {
			return nil, fmt.Errorf("token %d: used_at and serial must be set together", i)
		}
		s.tokens = append(s.tokens, t)
	}
	seenCert := make(map[string]bool, len(in.Certs))
	for i, cj := range in.Certs {
		var c certRecord
		var err error
		if c.serial, err = parseSerial(cj.Serial); err != nil {
			return nil, fmt.Errorf("certificate %d: %w", i, err)
		}
		if seenCert[c.serial.Text(16)] {
			return nil, fmt.Errorf("certificate %d: duplicate serial %s", i, cj.Serial)
		}
		seenCert[c.serial.Text(16)] = true
		if c.host, err = normalizeHost(cj.Host); err != nil || c.host != cj.Host {
			return nil, fmt.Errorf("certificate %d: invalid host %q", i, cj.Host)
		}
		if cj.NotAfter.IsZero() {
			return nil, fmt.Errorf("certificate %d: zero not_after", i)
		}
		c.notAfter = cj.NotAfter
		if cj.RevokedAt != nil {
			if cj.RevokedAt.IsZero() {
				return nil, fmt.Errorf("certificate %d: zero revoked_at", i)
			}
			c.revokedAt = *cj.RevokedAt
		}
		s.certs = append(s.certs, c)
	}
	return s, nil
}

func parseSerial(s string) (*big.Int, error) {
	if len(s) == 0 || len(s) > 40 {
		return nil, fmt.Errorf("invalid serial %q", s)
	}
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 {
		return nil, fmt.Errorf("invalid serial %q", s)
	}
	return n, nil
}

// prune drops token records past expiry plus tokenGrace and certificate
// records whose certificate has expired (an expired certificate fails TLS
// verification anyway, so its deny-list entry is no longer needed). It
// reports whether anything was dropped.
func (s *state) prune(now time.Time) bool {
	n0, c0 := len(s.tokens), len(s.certs)
	kept := s.tokens[:0]
	for _, t := range s.tokens {
		if now.Before(t.expires.Add(tokenGrace)) {
			kept = append(kept, t)
		}
	}
	s.tokens = kept
	keptC := s.certs[:0]
	for _, c := range s.certs {
		if now.Before(c.notAfter) {
			keptC = append(keptC, c)
		}
	}
	s.certs = keptC
	return len(s.tokens) != n0 || len(s.certs) != c0
}

// clone returns a deep-enough copy for copy-on-write updates: the CA mutates
// a clone, persists it, and only then swaps it in, so a failed write leaves
// the in-memory state equal to the file.
func (s *state) clone() *state {
	return &state{
		tokens: append([]tokenRecord(nil), s.tokens...),
		certs:  append([]certRecord(nil), s.certs...),
	}
}
