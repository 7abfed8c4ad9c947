// Package wire is the protocol between a master's remote replica client
// and the apply server on a replica host: the messages they exchange, their
// versioned and bounded binary encoding, and the cutting of messages larger
// than one transport frame into fragments (and their reassembly).
//
// A request travels as the payloads of one or more frames; the reply to it
// is the payload of the ack of its last frame. Replies always fit in one
// ack: what may be large (a signature, a scan) is asked for page by page.
//
// Every decoder here reads bytes from another host and is written for
// hostile input: every length is bounded before anything is allocated for
// it, and nothing panics.
package wire

import (
	"errors"
	"fmt"

	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/treesync"
)

// ProtocolVersion is what a Hello announces. A server refuses a client of
// another version rather than guess at what it means.
const ProtocolVersion = 1

// Limits on what one message may hold.
const (
	// MaxMessage bounds a reassembled request. A change carries at most
	// change.MaxData bytes, so one change always fits; a client cuts a
	// larger batch into several Apply messages.
	MaxMessage = 64 << 20
	// MaxReply bounds a reply: the payload of one ack.
	MaxReply = 1 << 20
	// MaxChanges bounds the changes of one Apply message.
	MaxChanges = 4096
	// MaxPage bounds the data of a SignaturePage and, roughly, the
	// encoded entries of a ScanPage, leaving room in a reply.
	MaxPage = MaxReply - 64<<10
	// MaxText bounds error texts and names; longer ones are cut.
	MaxText = 4096
)

// ErrInvalid is wrapped by every decoding failure.
var ErrInvalid = errors.New("invalid wire message")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Kind says what a message is; it is the byte after the version.
type Kind uint8

const (
	KindHello Kind = iota + 1
	KindHelloReply
	KindApply
	KindApplied
	KindFailure
	KindSignatureRequest
	KindSignaturePage
	KindScanRequest
	KindScanPage
	kindLimit
)

var kindNames = [...]string{"", "hello", "hello-reply", "apply", "applied", "failure",
	"signature-request", "signature-page", "scan-request", "scan-page"}

func (k Kind) String() string {
	if k > 0 && k < kindLimit {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Message is one of the message types of this package.
type Message interface {
	Kind() Kind
	appendFields(b []byte) []byte
}

// Hello opens a stream: the client says which replica of which scenario it
// wants to write. The reply is a HelloReply or a Failure.
type Hello struct {
	Version  uint32
	Scenario string
	Replica  string
}

// HelloReply tells the client where the replica stands.
type HelloReply struct {
	LastApplied uint64
}

// Apply asks the server to apply changes in order and reply once they are
// durable. The reply is Applied or Failure.
type Apply struct {
	Changes []change.Change
}

// Applied says every change of an Apply is durable.
type Applied struct {
	LastApplied uint64
}

// Code classifies a Failure so that the client can give its caller the
// same error a local replica would have.
type Code uint8

const (
	CodeOther         Code = iota + 1 // anything else; Text says what
	CodeNoSpace                       // apply.ErrNoSpace
	CodeEscape                        // apply.ErrEscape
	CodeBaseMismatch                  // apply.ErrBaseMismatch
	CodeInUse                         // apply.ErrInUse
	CodeNotAuthorized                 // the frame's sender may not write here
	CodeBadRequest                    // the request made no sense to the server
	codeLimit
)

// Failure is the reply to a request that failed. For an Apply, Change says
// the failure is one change's (Seq, Op, Path, NewPath name it), and
// LastApplied tells how far the batch got.
type Failure struct {
	Code        Code
	Change      bool
	Seq         uint64
	Op          change.Op
	Path        string
	NewPath     string
	Text        string
	LastApplied uint64
}

// SignatureRequest asks for the block signature of the replica's copy of
// Path, in its blocksync encoding, from byte Offset on. ID 0 asks for a
// fresh signature; later pages give the ID the first page returned.
type SignatureRequest struct {
	Path   string
	ID     uint64
	Offset int64
}

// SignaturePage is part of an encoded signature of Total bytes.
type SignaturePage struct {
	ID     uint64
	Total  int64
	Offset int64
	Data   []byte
}

// ScanRequest asks for the replica's tree from entry From on. ID 0 asks
// for a fresh scan; later pages give the ID the first page returned.
type ScanRequest struct {
	ID   uint64
	From uint64
}

// ScanPage is part of a scan. More says pages follow, from Next.
type ScanPage struct {
	ID       uint64
	Entries  []treesync.Entry
	Problems []Problem
	Next     uint64
	More     bool
}

// Problem is a treesync.ScanError as text.
type Problem struct {
	Path string
	Text string
}

func (Hello) Kind() Kind            { return KindHello }
func (HelloReply) Kind() Kind       { return KindHelloReply }
func (Apply) Kind() Kind            { return KindApply }
func (Applied) Kind() Kind          { return KindApplied }
func (Failure) Kind() Kind          { return KindFailure }
func (SignatureRequest) Kind() Kind { return KindSignatureRequest }
func (SignaturePage) Kind() Kind    { return KindSignaturePage }
func (ScanRequest) Kind() Kind      { return KindScanRequest }
func (ScanPage) Kind() Kind         { return KindScanPage }

// cut shortens s to at most MaxText bytes.
func cut(s string) string {
	if len(s) > MaxText {
		return s[:MaxText]
	}
	return s
}
