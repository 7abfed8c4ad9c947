package datastream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

// chunkSize is the content a Writer puts in one data frame.
const chunkSize = 256 << 10

// maxSourceText bounds the sender's explanation in a file-end frame.
const maxSourceText = 1024

// ErrContent is wrapped by Put's errors about a file's content that could
// not be read to its announced size. The entry went out marked
// incomplete and the stream is still good: go on with the next entry.
var ErrContent = errors.New("content incomplete")

// Writer encodes entries. It is not safe for concurrent use.
type Writer struct {
	w       io.Writer
	started bool
	entries uint64
	bytes   uint64
	err     error // sticky: the underlying writer failed or Close ran
	frame   []byte
	chunk   []byte
	out     []byte // a frame with its framing, reused
}

// NewWriter returns a Writer to w. Nothing is written before the first
// Put or Close.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w}
}

// Put writes one entry. For a file, exactly h.Size bytes are read from
// content; a content that ends early or fails is sent as far as it went
// and marked incomplete, and Put returns an error wrapping ErrContent.
// Any other error means the stream is broken and the Writer unusable.
// Put refuses headers the format cannot carry, but not unsafe paths:
// judging them is the receiving writer's job.
func (w *Writer) Put(h Header, content io.Reader) error {
	if w.err != nil {
		return w.err
	}
	if err := checkHeader(h, 0xffff); err != nil {
		return fmt.Errorf("datastream: put %q: %w", h.Path, err)
	}
	if err := w.start(); err != nil {
		return err
	}
	w.frame = appendHeader(w.frame[:0], h)
	if err := w.writeFrame(frameHeader, w.frame); err != nil {
		return err
	}
	w.entries++
	if h.Type != File {
		return nil
	}
	if w.chunk == nil {
		w.chunk = make([]byte, chunkSize)
	}
	var sent int64
	var readErr error
	if content == nil {
		content = strings.NewReader("")
	}
	for sent < h.Size {
		n, err := io.ReadFull(content, w.chunk[:min(int64(chunkSize), h.Size-sent)])
		if n > 0 {
			if err := w.writeFrame(frameData, w.chunk[:n]); err != nil {
				return err
			}
			sent += int64(n)
			w.bytes += uint64(n)
		}
		if err != nil {
			readErr = err
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				readErr = fmt.Errorf("content ended after %d of %d bytes", sent, h.Size)
			}
			break
		}
	}
	w.frame = binary.BigEndian.AppendUint64(w.frame[:0], uint64(sent))
	if readErr == nil {
		w.frame = append(w.frame, 0)
	} else {
		text := readErr.Error()
		if text == "" {
			text = "unknown error"
		}
		if len(text) > maxSourceText {
			text = strings.ToValidUTF8(text[:maxSourceText], "")
		}
		w.frame = append(append(w.frame, 1), text...)
	}
	if err := w.writeFrame(frameFileEnd, w.frame); err != nil {
		return err
	}
	if readErr != nil {
		return fmt.Errorf("datastream: put %q: %w: %w", h.Path, ErrContent, readErr)
	}
	return nil
}

// Close writes the end frame. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		if errors.Is(w.err, errClosed) {
			return nil
		}
		return w.err
	}
	if err := w.start(); err != nil {
		return err
	}
	w.frame = binary.BigEndian.AppendUint64(w.frame[:0], w.entries)
	w.frame = binary.BigEndian.AppendUint64(w.frame, w.bytes)
	if err := w.writeFrame(frameEnd, w.frame); err != nil {
		return err
	}
	w.err = errClosed
	return nil
}

var errClosed = errors.New("datastream: writer closed")

func (w *Writer) start() error {
	if w.started {
		return nil
	}
	w.started = true
	if _, err := w.w.Write(magic[:]); err != nil {
		w.err = fmt.Errorf("datastream: write: %w", err)
		return w.err
	}
	return nil
}

// writeFrame writes one frame; the payload is copied into one buffer
// with its framing so the underlying writer sees one Write per frame.
func (w *Writer) writeFrame(typ byte, payload []byte) error {
	var head [5]byte
	head[0] = typ
	binary.BigEndian.PutUint32(head[1:], uint32(len(payload)))
	crc := crc32.Update(0, crcTable, head[:])
	crc = crc32.Update(crc, crcTable, payload)
	w.out = append(append(w.out[:0], head[:]...), payload...)
	w.out = binary.BigEndian.AppendUint32(w.out, crc)
	if _, err := w.w.Write(w.out); err != nil {
		w.err = fmt.Errorf("datastream: write: %w", err)
		return w.err
	}
	return nil
}
