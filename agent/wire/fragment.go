package wire

import (
	"github.com/holdfast/holdfast/plugins/sdk"
)

// A frame's payload is one fragment of a message: a magic byte, the
// fragment format version, a flags byte, then a piece of the message. The
// flag "first" starts a message, "more" says it goes on in the next frame
// of the stream; frames arrive in order, so no offsets are needed. A
// message begun and never finished (its stream broke) is dropped by the
// next "first".
const (
	fragMagic   = 0xD8
	fragVersion = 1
	fragHeader  = 3
	flagMore    = 1
	flagFirst   = 2

	// FragmentData is the most message bytes one frame carries.
	FragmentData = sdk.MaxFramePayload - fragHeader
)

// Split cuts an encoded message into frame payloads of at most
// sdk.MaxFramePayload bytes each.
func Split(msg []byte) [][]byte {
	var out [][]byte
	for first := true; first || len(msg) > 0; first = false {
		n := min(len(msg), FragmentData)
		flags := byte(0)
		if first {
			flags |= flagFirst
		}
		if n < len(msg) {
			flags |= flagMore
		}
		p := make([]byte, 0, fragHeader+n)
		p = append(p, fragMagic, fragVersion, flags)
		out = append(out, append(p, msg[:n]...))
		msg = msg[n:]
	}
	return out
}

// Assembler puts fragments back together into messages of at most
// MaxMessage bytes. After an error it starts afresh with the next
// fragment; the stream that sent the bad one should be dropped.
type Assembler struct {
	buf []byte
}

// Add takes the next frame payload. It returns the message once its last
// fragment arrived (done true); the message is the caller's to keep.
func (a *Assembler) Add(payload []byte) (msg []byte, done bool, err error) {
	if len(payload) < fragHeader {
		a.buf = nil
		return nil, false, invalid("fragment of %d bytes is too short", len(payload))
	}
	if len(payload) > sdk.MaxFramePayload {
		a.buf = nil
		return nil, false, invalid("fragment of %d bytes; at most %d", len(payload), sdk.MaxFramePayload)
	}
	if payload[0] != fragMagic || payload[1] != fragVersion {
		a.buf = nil
		return nil, false, invalid("fragment header %#x %d; this build reads %#x %d", payload[0], payload[1], fragMagic, fragVersion)
	}
	if payload[2]&^(flagMore|flagFirst) != 0 {
		a.buf = nil
		return nil, false, invalid("fragment flags %#x", payload[2])
	}
	if payload[2]&flagFirst != 0 {
		a.buf = nil // a message its sender abandoned
	} else if a.buf == nil {
		return nil, false, invalid("fragment continues a message never begun")
	}
	data := payload[fragHeader:]
	if len(a.buf)+len(data) > MaxMessage {
		a.buf = nil
		return nil, false, invalid("message longer than %d bytes", MaxMessage)
	}
	if need := len(a.buf) + len(data); need > cap(a.buf) || a.buf == nil {
		// Doubling, where append grows large slices by a quarter: a
		// message of many fragments is then copied about once, not
		// four times over.
		grown := make([]byte, len(a.buf), min(max(need, 2*cap(a.buf)), MaxMessage))
		copy(grown, a.buf)
		a.buf = grown
	}
	a.buf = append(a.buf, data...)
	if payload[2]&flagMore != 0 {
		return nil, false, nil
	}
	msg, a.buf = a.buf, nil
	return msg, true, nil
}

// Pending says a message was begun and not finished.
func (a *Assembler) Pending() bool { return a.buf != nil }

// Reset drops a message begun, for a new stream.
func (a *Assembler) Reset() { a.buf = nil }
