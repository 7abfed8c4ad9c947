package tcp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/holdfast/holdfast/plugins/sdk"
)

// The wire format between two tcp plugins, inside TLS 1.3. All integers are
// big-endian.
//
// The sending side opens with a hello:
//
//	magic "HFTS" | version u8 | session length u8 | session | stream id [16] | ack next u64
//
// "ack next" is one more than the highest sequence number whose ack this
// stream has already received (0: none), so the receiving side knows which
// of the acks it holds were lost with the previous connection.
//
// The receiving side answers:
//
//	magic "HFTR" | version u8 | status u8 | received next u64 | reason length u16 | reason
//
// "received next" is one more than the highest sequence number the
// receiving side holds for this stream (0: none); the sender resends only
// frames from there on. A status other than statusOK refuses the stream for
// the reason given and closes the connection.
//
// Then both sides exchange messages:
//
//	length u32 | type u8 | body (length-1 bytes)
//
// with bodies
//
//	msgFrame   (sender → receiver): seq u64 | flags u8 | payload
//	msgAck     (receiver → sender): seq u64 | flags u8 | reply
//	msgAckSeen (sender → receiver): ack next u64
//
// flags bit 0 says the payload is one zstd frame. Payloads and replies are
// at most sdk.MaxFramePayload bytes both on the wire and decompressed.
// msgAckSeen lets the receiving side forget acks the sender has.

const (
	wireVersion = 1

	magicHello  = "HFTS"
	magicAnswer = "HFTR"

	maxSessionLen = 255
	maxReasonLen  = 1024

	msgFrame   = 1
	msgAck     = 2
	msgAckSeen = 3

	flagZstd = 1

	// seqHeaderLen is type, seq and flags: the header of a message body.
	seqHeaderLen = 1 + 8 + 1
	// maxMessageLen bounds the length field of any message.
	maxMessageLen = seqHeaderLen + sdk.MaxFramePayload
)

const (
	statusOK         = 0
	statusRefused    = 1 // the session or stream is refused; reason says why
	statusBadVersion = 2 // the receiving side does not speak the version
	// statusNotAuthorized: the receiving host allows another sender on
	// the session.
	statusNotAuthorized = 3
)

// streamID identifies one Send stream. A new id for a session means the
// sending host started over: the receiving side drops what it held for the
// old stream instead of resuming it.
type streamID [16]byte

type hello struct {
	version uint8
	session string
	stream  streamID
	ackNext uint64
}

type answer struct {
	version      uint8
	status       uint8
	receivedNext uint64
	reason       string
}

func appendHello(b []byte, h hello) []byte {
	b = append(b, magicHello...)
	b = append(b, h.version, byte(len(h.session)))
	b = append(b, h.session...)
	b = append(b, h.stream[:]...)
	return binary.BigEndian.AppendUint64(b, h.ackNext)
}

func readHello(r io.Reader) (hello, error) {
	var head [6]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return hello{}, fmt.Errorf("read hello: %w", err)
	}
	if string(head[:4]) != magicHello {
		return hello{}, errors.New("read hello: bad magic")
	}
	h := hello{version: head[4]}
	n := int(head[5])
	if n == 0 {
		return hello{}, errors.New("read hello: empty session name")
	}
	rest := make([]byte, n+len(h.stream)+8)
	if _, err := io.ReadFull(r, rest); err != nil {
		return hello{}, fmt.Errorf("read hello: %w", err)
	}
	h.session = string(rest[:n])
	copy(h.stream[:], rest[n:])
	h.ackNext = binary.BigEndian.Uint64(rest[n+len(h.stream):])
	return h, nil
}

func appendAnswer(b []byte, a answer) []byte {
	reason := a.reason
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	b = append(b, magicAnswer...)
	b = append(b, a.version, a.status)
	b = binary.BigEndian.AppendUint64(b, a.receivedNext)
	b = binary.BigEndian.AppendUint16(b, uint16(len(reason)))
	return append(b, reason...)
}

func readAnswer(r io.Reader) (answer, error) {
	var head [4 + 1 + 1 + 8 + 2]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return answer{}, fmt.Errorf("read answer: %w", err)
	}
	if string(head[:4]) != magicAnswer {
		return answer{}, errors.New("read answer: bad magic")
	}
	a := answer{version: head[4], status: head[5], receivedNext: binary.BigEndian.Uint64(head[6:14])}
	n := int(binary.BigEndian.Uint16(head[14:]))
	if n > maxReasonLen {
		return answer{}, fmt.Errorf("read answer: reason of %d bytes, limit %d", n, maxReasonLen)
	}
	reason := make([]byte, n)
	if _, err := io.ReadFull(r, reason); err != nil {
		return answer{}, fmt.Errorf("read answer: %w", err)
	}
	a.reason = sdk.SanitizeText(string(reason), maxReasonLen)
	return a, nil
}

// message is one decoded message. For msgAckSeen only seq is set.
type message struct {
	typ   uint8
	seq   uint64
	flags uint8
	data  []byte
}

// writeMessage writes m to w (buffered; the caller flushes).
func writeMessage(w *bufio.Writer, m message) error {
	var head [4 + seqHeaderLen]byte
	n := 1 + 8
	if m.typ != msgAckSeen {
		n += 1 + len(m.data)
	}
	if n > maxMessageLen {
		return fmt.Errorf("message of %d bytes, limit %d", n, maxMessageLen)
	}
	binary.BigEndian.PutUint32(head[:4], uint32(n))
	head[4] = m.typ
	binary.BigEndian.PutUint64(head[5:13], m.seq)
	if m.typ == msgAckSeen {
		_, err := w.Write(head[:13])
		return err
	}
	head[13] = m.flags
	if _, err := w.Write(head[:]); err != nil {
		return err
	}
	_, err := w.Write(m.data)
	return err
}

// readMessage reads one message, refusing lengths beyond the limits before
// allocating anything.
func readMessage(r io.Reader) (message, error) {
	var head [4 + 1 + 8]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return message{}, err
	}
	n := binary.BigEndian.Uint32(head[:4])
	m := message{typ: head[4], seq: binary.BigEndian.Uint64(head[5:13])}
	switch m.typ {
	case msgAckSeen:
		if n != 1+8 {
			return message{}, fmt.Errorf("ack-seen message of %d bytes, want 9", n)
		}
		return m, nil
	case msgFrame, msgAck:
	default:
		return message{}, fmt.Errorf("unknown message type %d", m.typ)
	}
	if n < seqHeaderLen || n > maxMessageLen {
		return message{}, fmt.Errorf("message of %d bytes, want %d..%d", n, seqHeaderLen, maxMessageLen)
	}
	body := make([]byte, n-1-8)
	if _, err := io.ReadFull(r, body); err != nil {
		return message{}, fmt.Errorf("message body: %w", noEOF(err))
	}
	m.flags, m.data = body[0], body[1:]
	if m.flags&^flagZstd != 0 {
		return message{}, fmt.Errorf("unknown message flags %#x", m.flags)
	}
	return m, nil
}

// noEOF turns an EOF inside a message into ErrUnexpectedEOF: only an EOF
// between messages is a clean end.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
