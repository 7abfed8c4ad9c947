package tcp

import (
	"fmt"

	"github.com/klauspost/compress/zstd"

	"github.com/holdfast/holdfast/plugins/sdk"
)

// Payloads are compressed one by one (one zstd frame each) rather than as
// a stream: a frame resent after a reconnect then needs no compressor state
// shared with the lost connection, and a payload that does not shrink goes
// raw, so incompressible data costs one failed compression attempt and no
// bytes. The encoder at its fastest level keeps that attempt cheap.
var (
	encoder, _ = zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(1),
		zstd.WithZeroFrames(true))
	// The decoder refuses frames declaring (or growing to) more than a
	// payload may hold, so a hostile peer cannot make us allocate more.
	decoder, _ = zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(sdk.MaxFramePayload),
		zstd.WithDecoderMaxWindow(sdk.MaxFramePayload))
)

// Large payloads are probed first: a sample from their middle that does
// not shrink by a tenth marks data already compressed or encrypted, sent
// raw for the price of compressing the sample only (without the probe,
// incompressible data crossed loopback at a third of the speed).
const (
	probeAbove = 128 << 10
	probeSize  = 32 << 10
)

// compress returns the payload to put on the wire and its flags.
func compress(p []byte, enabled bool) ([]byte, uint8) {
	if !enabled || len(p) < 64 {
		return p, 0
	}
	if len(p) > probeAbove {
		mid := len(p) / 2
		sample := p[mid-probeSize/2 : mid+probeSize/2]
		if c := encoder.EncodeAll(sample, make([]byte, 0, probeSize)); len(c) > probeSize*9/10 {
			return p, 0
		}
	}
	c := encoder.EncodeAll(p, make([]byte, 0, len(p)))
	if len(c) >= len(p) {
		return p, 0
	}
	return c, flagZstd
}

// decompress undoes compress.
func decompress(data []byte, flags uint8) ([]byte, error) {
	if flags&flagZstd == 0 {
		return data, nil
	}
	// A buffer of the declared size up front spares the decoder its
	// growing (and slower, bounds-checked) path.
	var dst []byte
	var h zstd.Header
	if h.Decode(data) == nil && h.HasFCS && h.FrameContentSize <= sdk.MaxFramePayload {
		dst = make([]byte, 0, h.FrameContentSize)
	}
	p, err := decoder.DecodeAll(data, dst)
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	if len(p) > sdk.MaxFramePayload {
		return nil, fmt.Errorf("decompress: %d bytes, limit %d", len(p), sdk.MaxFramePayload)
	}
	return p, nil
}
