package sdk

import (
	"context"
	"errors"
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
	// Peer is the authenticated name of the sending host (from its
	// certificate), set by the receiving transport. The host decides from
	// it whether the sender may write to the session; it is ignored on
	// the sending side.
	Peer string
}

// Ack acknowledges the frame with sequence number Seq. On the sending side
// the transport acks a frame once it has taken responsibility for it (handed
// it to the peer, or to durable storage); acks come in the order the frames
// were sent. On the receiving side the host acks a frame once it has stored
// it, and the transport may then tell the sending peer.
//
// Payload is the receiving host's reply to the frame (at most
// MaxFramePayload bytes), which the transport carries back to the sender
// with the ack; most acks have none. A transport with the FeatureReplies
// feature delivers on the sending side only the acks (and replies) the
// receiving host gave, so an ack there means the peer stored the frame.
type Ack struct {
	Seq     uint64
	Payload []byte
}

// FeatureReplies is the feature a transport declares when its sending-side
// acks are the receiving host's own acks, replies included. Replication
// needs it: it acknowledges a change only once the replica made it durable.
const FeatureReplies = "replies"

// ErrNotAuthorized is what a transport returns (wrapped or not) when the
// peer refused this host's certificate or showed one this host does not
// trust. The host reports it as Not Authorized rather than as a network
// failure: retrying does not help until an operator enrolls the host again.
var ErrNotAuthorized = errors.New("peer not authorized")

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
	// Configure gives the transport its settings before any stream opens:
	// which keys exist is the transport's own business (documented with
	// it); it must refuse unknown keys and bad values with an error that
	// names them. The host calls it again after every restart of the
	// plugin.
	Configure(ctx context.Context, settings map[string]string) error
	// Send opens the sending side of session towards peer.
	Send(ctx context.Context, peer, session string) (FrameSender, error)
	// Receive opens the receiving side of session: frames peers sent for it.
	// When peer is not empty, only that host (the name in its certificate)
	// may send on the session: the transport refuses other senders with
	// ErrNotAuthorized before they can disturb the session. Empty allows
	// any peer the transport trusts; the host then checks Frame.Peer.
	Receive(ctx context.Context, session, peer string) (FrameReceiver, error)
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
