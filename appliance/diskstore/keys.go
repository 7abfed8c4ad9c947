package diskstore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/holdfast/holdfast/appliance/diskstore/chunker"
)

// The key file (DIR/store.key) holds the store's secrets sealed once per
// key slot. A slot's key-encryption key comes from the appliance key
// (HKDF-SHA-256) or from a password (PBKDF2-HMAC-SHA-256, iterations in the
// slot: golang.org/x/crypto's scrypt is not among the modules we may use,
// and the standard library has PBKDF2).
//
//	"HFDSKEYS" | version u8 | store id [16] | slots uvarint |
//	  slot: kind u8 | iterations u32 | salt bytes | nonce [12] | sealed bytes
//	| SHA-256 of all before [32]
//
// The checksum tells a damaged file (ErrCorrupt) from a wrong password.
// Each slot's header is the AEAD's additional data, so a slot's parameters
// cannot be changed without the slot failing to open.

const (
	keyFileMagic   = "HFDSKEYS"
	keyFileVersion = 1
	slotAppliance  = 1
	slotPassword   = 2
	maxSlots       = 16
	// DefaultPasswordIterations is PBKDF2-HMAC-SHA-256's count for new
	// password slots (OWASP's 2023 figure).
	DefaultPasswordIterations = 600_000
	minPasswordIterations     = 1_000
	maxPasswordIterations     = 100_000_000
	secretsSize               = 3*32 + 3*4
)

// Unlock is what opens a store: the appliance key or a user's password.
type Unlock struct {
	applianceKey []byte
	password     string
	isPassword   bool
}

// WithApplianceKey unlocks with the appliance's 32-byte key.
func WithApplianceKey(key []byte) Unlock { return Unlock{applianceKey: bytes.Clone(key)} }

// WithPassword unlocks with a user's password.
func WithPassword(password string) Unlock { return Unlock{password: password, isPassword: true} }

func (u Unlock) check() error {
	if u.isPassword {
		if u.password == "" {
			return errors.New("empty password")
		}
		return nil
	}
	if len(u.applianceKey) != 32 {
		return fmt.Errorf("appliance key has %d bytes, want 32", len(u.applianceKey))
	}
	return nil
}

// secrets are the store's keys and its fixed chunking parameters.
type secrets struct {
	dataKey    [32]byte // AES-256-GCM for every blob
	idKey      [32]byte // HMAC-SHA-256 chunk ids
	chunkerKey [32]byte // gear table
	params     chunker.Params
}

func (s *secrets) encode() []byte {
	var e enc
	e.raw(s.dataKey[:])
	e.raw(s.idKey[:])
	e.raw(s.chunkerKey[:])
	e.u32(uint32(s.params.Min))
	e.u32(uint32(s.params.Avg))
	e.u32(uint32(s.params.Max))
	return e.b
}

func decodeSecrets(b []byte) (*secrets, error) {
	d := dec{b: b, what: "key file secrets"}
	var s secrets
	copy(s.dataKey[:], d.take(32))
	copy(s.idKey[:], d.take(32))
	copy(s.chunkerKey[:], d.take(32))
	s.params = chunker.Params{Min: int(d.u32()), Avg: int(d.u32()), Max: int(d.u32())}
	if err := d.done(); err != nil {
		return nil, err
	}
	if err := s.params.Validate(); err != nil {
		return nil, corrupt("key file: %v", err)
	}
	return &s, nil
}

type keySlot struct {
	kind       uint8
	iterations uint32
	salt       []byte
	nonce      []byte
	sealed     []byte
}

type keyFile struct {
	storeID [16]byte
	slots   []keySlot
}

func (s *keySlot) header(storeID [16]byte) []byte {
	var e enc
	e.raw([]byte(keyFileMagic))
	e.u8(keyFileVersion)
	e.raw(storeID[:])
	e.u8(s.kind)
	e.u32(s.iterations)
	e.bytes(s.salt)
	return e.b
}

func (k *keyFile) encode() []byte {
	var e enc
	e.raw([]byte(keyFileMagic))
	e.u8(keyFileVersion)
	e.raw(k.storeID[:])
	e.uvarint(uint64(len(k.slots)))
	for _, s := range k.slots {
		e.u8(s.kind)
		e.u32(s.iterations)
		e.bytes(s.salt)
		e.raw(s.nonce)
		e.bytes(s.sealed)
	}
	sum := sha256.Sum256(e.b)
	e.raw(sum[:])
	return e.b
}

func decodeKeyFile(b []byte) (*keyFile, error) {
	if len(b) < len(keyFileMagic)+32 {
		return nil, corrupt("key file: %d bytes", len(b))
	}
	body, sum := b[:len(b)-32], b[len(b)-32:]
	if want := sha256.Sum256(body); !bytes.Equal(sum, want[:]) {
		return nil, corrupt("key file: checksum mismatch")
	}
	return decodeKeyFileBody(body)
}

// decodeKeyFileBody reads a key file whose checksum was checked.
func decodeKeyFileBody(body []byte) (*keyFile, error) {
	d := dec{b: body, what: "key file"}
	if string(d.take(len(keyFileMagic))) != keyFileMagic {
		return nil, corrupt("key file: bad magic")
	}
	if v := d.u8(); d.err == nil && v != keyFileVersion {
		return nil, corrupt("key file: version %d not supported", v)
	}
	var k keyFile
	copy(k.storeID[:], d.take(16))
	n := d.count(maxSlots, 1+4+1+12+1)
	for range n {
		var s keySlot
		s.kind = d.u8()
		s.iterations = d.u32()
		s.salt = d.bytes(64)
		s.nonce = d.take(12)
		s.sealed = d.bytes(256)
		if d.err == nil && s.kind != slotAppliance && s.kind != slotPassword {
			d.fail("slot kind %d", s.kind)
		}
		if d.err == nil && s.kind == slotPassword && (s.iterations < minPasswordIterations || s.iterations > maxPasswordIterations) {
			d.fail("password slot iterations %d out of range", s.iterations)
		}
		k.slots = append(k.slots, s)
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return &k, nil
}

// kek derives a slot's key-encryption key.
func (s *keySlot) kek(u Unlock) ([]byte, error) {
	if s.kind == slotPassword {
		k, err := pbkdf2.Key(sha256.New, u.password, s.salt, int(s.iterations), 32)
		if err != nil {
			return nil, fmt.Errorf("derive key from password: %w", err)
		}
		return k, nil
	}
	k, err := hkdf.Key(sha256.New, u.applianceKey, s.salt, "holdfast diskstore key-encryption key", 32)
	if err != nil {
		return nil, fmt.Errorf("derive key from appliance key: %w", err)
	}
	return k, nil
}

func newGCM(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // only a key length other than 16/24/32 fails
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return g
}

// newSlot seals sec for u.
func newSlot(storeID [16]byte, u Unlock, sec *secrets, iterations int) (keySlot, error) {
	s := keySlot{kind: slotAppliance, salt: make([]byte, 32), nonce: make([]byte, 12)}
	if u.isPassword {
		s.kind = slotPassword
		s.iterations = uint32(iterations)
	}
	rand.Read(s.salt)
	rand.Read(s.nonce)
	kek, err := s.kek(u)
	if err != nil {
		return keySlot{}, err
	}
	s.sealed = newGCM(kek).Seal(nil, s.nonce, sec.encode(), s.header(storeID))
	return s, nil
}

// open unseals the secrets with u, trying every slot of u's kind.
func (k *keyFile) open(u Unlock) (*secrets, error) {
	kind, wrong := uint8(slotAppliance), ErrWrongKey
	if u.isPassword {
		kind, wrong = slotPassword, ErrWrongPassword
	}
	for _, s := range k.slots {
		if s.kind != kind {
			continue
		}
		kek, err := s.kek(u)
		if err != nil {
			return nil, err
		}
		plain, err := newGCM(kek).Open(nil, s.nonce, s.sealed, s.header(k.storeID))
		if err != nil {
			continue
		}
		return decodeSecrets(plain)
	}
	return nil, wrong
}
