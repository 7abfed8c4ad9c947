package sdk

import (
	"context"
)

// MaxFramePayload bounds the payload of one Frame. Replication cuts its data
// into frames no larger than this, so one frame always fits in one gRPC
// message with room to spare.
const MaxFramePayload = 1 << 20

// TransportInfo describes a transport plugin. Name must equal the type in
// the plugin's manifest.
type TransportInfo struct {
	Name     string   // e.g. "tcp", "quic"
	Version  string   // the plugin's own version
	Features []string // optional features, e.g. "compression"; unknown ones are ignored
}

// Frame is one unit of replication data. Within a session the host numbers
// frames with strictly increasing Seq values; the payload is opaque to the
// transport.
type Frame struct {
	Seq     uint64
	Payload []byte
}

// Ack acknowledges the frame with sequence number Seq. On the sending side
// the transport acks a frame once it has taken responsibility for it (handed
// it to the peer, or to durable storage); acks come in the order the frames
// were sent. On the receiving side the host acks a frame once it has stored
// it, and the transport may then tell the sending peer.
type Ack struct {
	Seq uint64
}

// Transport is what a transport plugin implements: it carries frames to and
// from other appliances. A session is a named, ordered flow of frames
// between two appliances; peer names the remote appliance as holdfastd knows
// it (an address the transport understands).
//
// Streams live as long as the ctx given to Send or Receive: when it ends,
// every method of the stream must return promptly.
type Transport interface {
	// Describe returns the transport's identity. It is called once after
	// each start and must be quick.
	Describe(ctx context.Context) (TransportInfo, error)
	// Send opens the sending side of session towards peer.
	Send(ctx context.Context, peer, session string) (FrameSender, error)
	// Receive opens the receiving side of session: frames peers sent for it.
	Receive(ctx context.Context, session string) (FrameReceiver, error)
}

// FrameSender is the sending side of a session. The host calls Send for
// each frame and, concurrently, Recv for the acks.
type FrameSender interface {
	// Send queues f for the peer.
	Send(f Frame) error
	// Recv returns the next ack. After CloseSend and once every frame has
	// been acked it returns io.EOF.
	Recv() (Ack, error)
	// CloseSend says no more frames follow.
	CloseSend() error
}

// FrameReceiver is the receiving side of a session. The host calls Recv for
// each frame and Ack once it has stored it.
type FrameReceiver interface {
	// Recv returns the next frame; io.EOF once the session is over.
	Recv() (Frame, error)
	// Ack acknowledges a frame Recv returned.
	Ack(a Ack) error
	// Close ends the receiving side; Recv then returns io.EOF.
	Close() error
}
