package datastream

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf8"
)

// Reader decodes a stream. It is not safe for concurrent use.
type Reader struct {
	r       *bufio.Reader
	lim     Limits
	off     int64 // offset of the next byte to read
	started bool
	err     error // sticky: a format error, or io.EOF after the end frame

	entries int64
	bytes   int64
	cur     Header
	gen     int64 // entry number the open content belongs to
	content *content
	payload []byte
}

// content is the state of the current file's content.
type content struct {
	rd      *Reader
	gen     int64
	got     int64  // data bytes seen
	pending []byte // rest of the current data frame
	done    bool
	end     error // io.EOF or a *SourceError once done
}

// NewReader returns a Reader of r with the given limits (zero fields take
// the defaults).
func NewReader(r io.Reader, lim Limits) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), lim: lim.withDefaults()}
}

// Next returns the next entry's header and, for files, its content:
// exactly Size bytes then io.EOF, or a *SourceError when the sender
// could not read the file, or a *FormatError. Content not read before
// the next call is read and checked anyway. At the end of a complete
// stream Next returns io.EOF; a malformed or cut stream gives a
// *FormatError, and every later call returns it again.
func (d *Reader) Next() (Header, io.Reader, error) {
	if d.err != nil {
		return Header{}, nil, d.err
	}
	if !d.started {
		if err := d.readMagic(); err != nil {
			return Header{}, nil, d.fail(err)
		}
	}
	if c := d.content; c != nil && !c.done {
		if _, err := io.Copy(io.Discard, c); err != nil {
			var se *SourceError
			if !errors.As(err, &se) {
				return Header{}, nil, err
			}
		}
	}
	d.content = nil
	at := d.off
	typ, payload, err := d.readFrame()
	if err != nil {
		return Header{}, nil, err
	}
	switch typ {
	case frameEnd:
		return Header{}, nil, d.finish(at, payload)
	case frameHeader:
	default:
		return Header{}, nil, d.fail(d.errAt(at, fmt.Sprintf("%s frame where a header or the end was expected", frameName(typ))))
	}
	d.entries++
	d.cur = Header{}
	h, err := parseHeader(payload)
	if err == nil {
		err = checkHeader(h, d.lim.MaxPath)
	}
	if err != nil {
		return Header{}, nil, d.fail(d.errAt(at, "header: "+err.Error()))
	}
	d.cur = h
	if d.entries > d.lim.MaxEntries {
		return Header{}, nil, d.fail(d.errAt(at, fmt.Sprintf("more than %d entries", d.lim.MaxEntries)))
	}
	if h.Type != File {
		return h, nil, nil
	}
	d.gen++
	d.content = &content{rd: d, gen: d.gen}
	return h, d.content, nil
}

func (d *Reader) readMagic() error {
	d.started = true
	var m [len(magic)]byte
	n, err := io.ReadFull(d.r, m[:])
	d.off += int64(n)
	if err != nil {
		return &FormatError{Offset: d.off, Reason: "stream ends inside its magic", Err: ErrTruncated}
	}
	if string(m[:4]) != string(magic[:4]) {
		return &FormatError{Reason: "not a Holdfast data stream (bad magic)"}
	}
	if m[4] != Version || m[5] != 0 || m[6] != 0 || m[7] != 0 {
		return &FormatError{Offset: 4, Reason: fmt.Sprintf("stream version %d; this reader knows %d", m[4], Version)}
	}
	return nil
}

// finish checks the end frame's counts and that nothing follows it.
func (d *Reader) finish(at int64, payload []byte) error {
	if len(payload) != 16 {
		return d.fail(d.errAt(at, fmt.Sprintf("end frame of %d bytes; want 16", len(payload))))
	}
	entries, bytes := binary.BigEndian.Uint64(payload), binary.BigEndian.Uint64(payload[8:])
	if entries != uint64(d.entries) || bytes != uint64(d.bytes) {
		return d.fail(d.errAt(at, fmt.Sprintf("end frame counts %d entries and %d bytes; the stream had %d and %d", entries, bytes, d.entries, d.bytes)))
	}
	if _, err := d.r.ReadByte(); err == nil {
		return d.fail(d.errAt(d.off, "data after the end frame"))
	} else if !errors.Is(err, io.EOF) {
		return d.fail(d.errAt(d.off, "after the end frame: "+err.Error()))
	}
	d.err = io.EOF
	return io.EOF
}

// readFrame reads one whole frame and checks its length and CRC. The
// payload is valid until the next call.
func (d *Reader) readFrame() (byte, []byte, error) {
	at := d.off
	var head [5]byte
	n, err := io.ReadFull(d.r, head[:])
	d.off += int64(n)
	if err != nil {
		return 0, nil, d.fail(d.cut(at, "frame header", err))
	}
	size := binary.BigEndian.Uint32(head[1:])
	if uint64(size) > uint64(d.lim.MaxFrame) {
		return 0, nil, d.fail(d.errAt(at, fmt.Sprintf("%s frame of %d bytes; at most %d", frameName(head[0]), size, d.lim.MaxFrame)))
	}
	if cap(d.payload) < int(size)+4 {
		d.payload = make([]byte, int(size)+4)
	}
	buf := d.payload[:int(size)+4]
	n, err = io.ReadFull(d.r, buf)
	d.off += int64(n)
	if err != nil {
		return 0, nil, d.fail(d.cut(at, frameName(head[0])+" frame", err))
	}
	crc := crc32.Update(0, crcTable, head[:])
	crc = crc32.Update(crc, crcTable, buf[:size])
	if want := binary.BigEndian.Uint32(buf[size:]); crc != want {
		return 0, nil, d.fail(d.errAt(at, fmt.Sprintf("CRC mismatch in %s frame (computed %08x, frame says %08x)", frameName(head[0]), crc, want)))
	}
	return head[0], buf[:size], nil
}

// cut describes a read that ended inside what it wanted.
func (d *Reader) cut(at int64, what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		e := d.errAt(at, "stream ends inside a "+what+" (no end frame)")
		e.Err = ErrTruncated
		return e
	}
	e := d.errAt(at, "read "+what+": "+err.Error())
	e.Err = err
	return e
}

func (d *Reader) errAt(at int64, reason string) *FormatError {
	return &FormatError{Offset: at, Entry: d.entries, Path: d.cur.Path, Reason: reason}
}

func (d *Reader) fail(err error) error {
	if d.err == nil {
		d.err = err
	}
	return d.err
}

// Read reads the current file's content.
func (c *content) Read(p []byte) (int, error) {
	d := c.rd
	if c.gen != d.gen || d.content != c {
		return 0, errors.New("datastream: content read after Next moved on")
	}
	for len(c.pending) == 0 {
		if c.done {
			return 0, c.end
		}
		if d.err != nil {
			return 0, d.err
		}
		if err := c.nextFrame(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *content) nextFrame() error {
	d := c.rd
	at := d.off
	typ, payload, err := d.readFrame()
	if err != nil {
		return err
	}
	size := d.cur.Size
	switch typ {
	case frameData:
		if len(payload) == 0 {
			return d.fail(d.errAt(at, "empty data frame"))
		}
		if c.got+int64(len(payload)) > size {
			return d.fail(d.errAt(at, fmt.Sprintf("content longer than the announced %d bytes", size)))
		}
		if d.bytes+int64(len(payload)) > d.lim.MaxBytes {
			return d.fail(d.errAt(at, fmt.Sprintf("more than %d content bytes in the stream", d.lim.MaxBytes)))
		}
		c.got += int64(len(payload))
		d.bytes += int64(len(payload))
		c.pending = payload
		return nil
	case frameFileEnd:
		if len(payload) < 9 || len(payload) > 9+maxSourceText {
			return d.fail(d.errAt(at, fmt.Sprintf("file-end frame of %d bytes", len(payload))))
		}
		if n := binary.BigEndian.Uint64(payload); n != uint64(c.got) {
			return d.fail(d.errAt(at, fmt.Sprintf("file-end frame counts %d bytes; %d were sent", n, c.got)))
		}
		text := payload[9:]
		switch payload[8] {
		case 0:
			if len(text) != 0 || c.got != size {
				return d.fail(d.errAt(at, fmt.Sprintf("content ends after %d of %d bytes without a reason", c.got, size)))
			}
			c.done, c.end = true, io.EOF
		case 1:
			if len(text) == 0 || !utf8.Valid(text) {
				return d.fail(d.errAt(at, "file-end reason is empty or not UTF-8"))
			}
			c.done, c.end = true, &SourceError{Path: d.cur.Path, Text: string(text)}
		default:
			return d.fail(d.errAt(at, fmt.Sprintf("file-end status %d", payload[8])))
		}
		return nil
	}
	return d.fail(d.errAt(at, fmt.Sprintf("%s frame inside the content of a file", frameName(typ))))
}

func parseHeader(p []byte) (Header, error) {
	if len(p) < headerFixed {
		return Header{}, fmt.Errorf("%d bytes; at least %d", len(p), headerFixed)
	}
	h := Header{
		Type:  Type(p[0]),
		Mode:  binary.BigEndian.Uint32(p[1:]),
		UID:   binary.BigEndian.Uint32(p[5:]),
		GID:   binary.BigEndian.Uint32(p[9:]),
		MTime: int64(binary.BigEndian.Uint64(p[13:])),
		Size:  int64(binary.BigEndian.Uint64(p[21:])),
	}
	rest := p[29:]
	pathLen := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) < pathLen+2 {
		return Header{}, fmt.Errorf("path of %d bytes does not fit", pathLen)
	}
	h.Path = string(rest[:pathLen])
	rest = rest[pathLen:]
	targetLen := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != targetLen {
		return Header{}, fmt.Errorf("symlink target of %d bytes in %d", targetLen, len(rest))
	}
	h.Target = string(rest)
	return h, nil
}

func frameName(t byte) string {
	switch t {
	case frameHeader:
		return "header"
	case frameData:
		return "data"
	case frameFileEnd:
		return "file-end"
	case frameEnd:
		return "end"
	}
	return fmt.Sprintf("unknown (%#02x)", t)
}
