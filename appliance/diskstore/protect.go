package diskstore

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Password-protected sessions. Chunks stay sealed with the store's data key
// (deduplication across sessions needs one key every session can use); a
// protected session's manifest and the root's description of it are sealed
// with a random per-session key, itself sealed under a key derived from the
// password. See docs/diskstore.md for what this hides and what it cannot.

// ErrPasswordRequired: the session is protected and no password was given.
var ErrPasswordRequired = errors.New("the session is protected by a password chosen at backup time: give that password to read it")

// ErrSessionPassword is returned when the password given does not open a
// protected session; it matches ErrWrongPassword with errors.Is.
type ErrSessionPassword struct{ Session string }

func (e *ErrSessionPassword) Error() string {
	return fmt.Sprintf("session %s: wrong password: it does not open the session; give the password chosen when it was backed up (nobody can read the session without it)", e.Session)
}

// Is makes errors.Is(err, ErrWrongPassword) true.
func (e *ErrSessionPassword) Is(target error) bool { return target == ErrWrongPassword }

// SessionOption changes how BeginSession writes a session.
type SessionOption func(*sessionOptions)

type sessionOptions struct {
	password string
}

// WithSessionPassword protects the session with a password: without it
// the session's files, metadata and chunks cannot be listed or read, not
// even with the store's key. An empty password protects nothing.
func WithSessionPassword(password string) SessionOption {
	return func(o *sessionOptions) { o.password = password }
}

// sessionLock is a protected session's password slot.
type sessionLock struct {
	iterations uint32
	salt       []byte
	nonce      []byte
	wrapped    []byte
}

func (l *sessionLock) encode(e *enc) {
	e.u32(l.iterations)
	e.bytes(l.salt)
	e.raw(l.nonce)
	e.bytes(l.wrapped)
}

func decodeSessionLock(d *dec) *sessionLock {
	l := &sessionLock{iterations: d.u32(), salt: d.bytes(64), nonce: d.take(12), wrapped: d.bytes(64)}
	if d.err == nil && (l.iterations < minPasswordIterations || l.iterations > maxPasswordIterations) {
		d.fail("session password iterations %d out of range", l.iterations)
	}
	if d.err == nil && len(l.wrapped) != 32+16 {
		d.fail("wrapped session key of %d bytes", len(l.wrapped))
	}
	return l
}

// aad binds sealed session data to the store, the session and the lock's
// parameters, so none can be moved or altered without failing to open.
func (k *keyring) sessionAAD(what, id string, l *sessionLock) []byte {
	var e enc
	e.str("holdfast session " + what)
	e.raw(k.storeID[:])
	e.str(id)
	e.u32(l.iterations)
	e.bytes(l.salt)
	return e.b
}

func (l *sessionLock) kek(password string) ([]byte, error) {
	k, err := pbkdf2.Key(sha256.New, password, l.salt, int(l.iterations), 32)
	if err != nil {
		return nil, fmt.Errorf("derive session key from password: %w", err)
	}
	return k, nil
}

// newSessionLock makes a random session key and seals it for password.
func (k *keyring) newSessionLock(id, password string, iterations int) (*sessionLock, []byte, error) {
	l := &sessionLock{iterations: uint32(iterations), salt: make([]byte, 32), nonce: make([]byte, 12)}
	rand.Read(l.salt)
	rand.Read(l.nonce)
	key := make([]byte, 32)
	rand.Read(key)
	kek, err := l.kek(password)
	if err != nil {
		return nil, nil, err
	}
	l.wrapped = newGCM(kek).Seal(nil, l.nonce, key, k.sessionAAD("key", id, l))
	return l, key, nil
}

// sessionKey unwraps a protected session's key with password.
func (k *keyring) sessionKey(id string, l *sessionLock, password string) ([]byte, error) {
	if password == "" {
		return nil, fmt.Errorf("session %s: %w", id, ErrPasswordRequired)
	}
	kek, err := l.kek(password)
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", id, err)
	}
	key, err := newGCM(kek).Open(nil, l.nonce, l.wrapped, k.sessionAAD("key", id, l))
	if err != nil {
		return nil, &ErrSessionPassword{Session: id}
	}
	return key, nil
}

// sealWith seals plain under a session key: nonce [12] | AES-256-GCM.
func sealWith(key, plain, aad []byte) []byte {
	nonce := make([]byte, 12, 12+len(plain)+16)
	rand.Read(nonce)
	return newGCM(key).Seal(nonce, nonce, plain, aad)
}

func openWith(key, sealed, aad []byte, what string) ([]byte, error) {
	if len(sealed) < 12+16 {
		return nil, corrupt("%s: %d bytes", what, len(sealed))
	}
	plain, err := newGCM(key).Open(nil, sealed[:12], sealed[12:], aad)
	if err != nil {
		return nil, corrupt("%s does not authenticate", what)
	}
	return plain, nil
}

// sealPrivate fills a protected root's private part from its info and
// manifest chunks.
func (k *keyring) sealPrivate(r *sessionRoot, key []byte) {
	var e enc
	e.raw([]byte(privateMagic))
	encodeBody(&e, r.info, r.manifestLen, r.manifest)
	r.private = sealWith(key, e.b, k.sessionAAD("root", r.info.ID, r.lock))
}

// unlock opens a protected root's private part with password, filling in
// its info and manifest chunks, and returns the session key.
func (k *keyring) unlock(r *sessionRoot, password string) ([]byte, error) {
	key, err := k.sessionKey(r.info.ID, r.lock, password)
	if err != nil {
		return nil, err
	}
	plain, err := openWith(key, r.private, k.sessionAAD("root", r.info.ID, r.lock), "private part of the session root")
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", r.info.ID, err)
	}
	d := dec{b: plain, what: "private part of the session root"}
	if string(d.take(len(privateMagic))) != privateMagic {
		d.fail("bad magic")
	}
	committed := r.info.Committed
	decodeBody(&d, r, rootVersion)
	if err := d.done(); err != nil {
		return nil, fmt.Errorf("session %s: %w", r.info.ID, err)
	}
	r.info.Committed, r.info.Protected = committed, true
	return key, nil
}
