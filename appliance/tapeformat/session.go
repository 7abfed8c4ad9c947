package tapeformat

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
)

// Drive is what the format writes through: a tape drive positioned where
// the next tape file goes.
type Drive interface {
	// WriteBlock writes one block. ErrEarlyWarning means it was written
	// and the tape is nearly full; ErrEndOfMedium that it was not.
	WriteBlock(p []byte) error
	WriteFilemarks(n int) error
}

// Source is what the format reads from.
type Source interface {
	// ReadBlock reads the next block into p and returns its length;
	// ErrFilemark when it met a filemark (and moved past it),
	// ErrEndOfData at the end of what was written.
	ReadBlock(p []byte) (int, error)
}

// Conditions a Drive or Source reports; a driver adapter maps its own
// errors to these.
var (
	ErrEarlyWarning = errors.New("early warning: the tape is nearly full")
	ErrEndOfMedium  = errors.New("end of medium")
	ErrFilemark     = errors.New("filemark")
	ErrEndOfData    = errors.New("end of data")
)

// ErrVolumeFull is returned by SessionWriter.Write once the tape is
// full: load the next volume, label it, and call Continue.
var ErrVolumeFull = errors.New("the tape is full: continue the session on the next volume")

// ErrNeedNextVolume is returned by SessionReader.Read at the end of a
// volume's part of a session: load the next volume, read past its label,
// and call Continue.
var ErrNeedNextVolume = errors.New("the session continues on the next volume")

// FormatName marks a Holdfast label.
const FormatName = "holdfast-tape"

// Label is a volume's first tape file.
type Label struct {
	Format   string    `json:"format"`
	Barcode  string    `json:"barcode"`
	Label    string    `json:"label,omitempty"`
	Pool     string    `json:"pool,omitempty"`
	MediaSet string    `json:"media_set,omitempty"`
	Sequence int       `json:"sequence"` // the volume's place in its media set, from 1
	Created  time.Time `json:"created"`
}

// SessionInfo heads a session's tape file, and every continuation of it.
type SessionInfo struct {
	Stored      string    `json:"stored"` // the session's identity (its disk store id)
	Scenario    string    `json:"scenario,omitempty"`
	Host        string    `json:"host"`
	Entity      string    `json:"entity"`
	Consistency string    `json:"consistency,omitempty"`
	JobID       uint64    `json:"job_id,omitempty"`
	JobName     string    `json:"job_name,omitempty"`
	Started     time.Time `json:"started"`
	// Volume is the part of the session this header starts: 1 on the
	// volume where the session begins, 2 on the next, and so on.
	Volume int `json:"volume"`
}

// Trailer ends a session's last tape file.
type Trailer struct {
	Blocks uint64 `json:"blocks"` // data blocks
	Bytes  uint64 `json:"bytes"`  // payload bytes
	SHA256 string `json:"sha256"` // of the payload, hex
}

// maxDoc bounds a label, header or trailer document.
const maxDoc = 64 << 10

func decodeDoc(b Block, kind Kind, v any) error {
	if b.Kind != kind {
		return fmt.Errorf("%w: a %s block where a %s was expected", ErrDamaged, b.Kind, kind)
	}
	if len(b.Payload) > maxDoc {
		return fmt.Errorf("%w: %s of %d bytes", ErrDamaged, kind, len(b.Payload))
	}
	d := json.NewDecoder(bytes.NewReader(b.Payload))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrDamaged, kind, err)
	}
	return nil
}

// WriteLabel writes a volume's label as its first tape file.
func WriteLabel(d Drive, l Label) error {
	l.Format = FormatName
	doc, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if err := d.WriteBlock(AppendBlock(nil, Block{Kind: KindLabel, Payload: doc})); err != nil && !errors.Is(err, ErrEarlyWarning) {
		return fmt.Errorf("write the label of %s: %w", l.Barcode, err)
	}
	if err := d.WriteFilemarks(1); err != nil {
		return fmt.Errorf("write the label of %s: %w", l.Barcode, err)
	}
	return nil
}

// ReadLabel reads a volume's label from the beginning of the tape.
func ReadLabel(s Source) (Label, error) {
	buf := make([]byte, MaxBlockSize)
	n, err := s.ReadBlock(buf)
	if err != nil {
		return Label{}, fmt.Errorf("read the label: %w", err)
	}
	b, err := DecodeBlock(buf[:n])
	if err != nil {
		return Label{}, fmt.Errorf("read the label: %w", err)
	}
	var l Label
	if err := decodeDoc(b, KindLabel, &l); err != nil {
		return Label{}, fmt.Errorf("read the label: %w", err)
	}
	if l.Format != FormatName || l.Sequence < 1 {
		return Label{}, fmt.Errorf("read the label: %w: format %q, sequence %d", ErrDamaged, l.Format, l.Sequence)
	}
	if _, err := s.ReadBlock(buf); !errors.Is(err, ErrFilemark) {
		return Label{}, fmt.Errorf("read the label: %w: no filemark after it (%v)", ErrDamaged, err)
	}
	return l, nil
}

// Position is where a byte of a session's payload lies on tape: in the
// block with sequence Seq (on volume part Volume), Offset bytes into its
// payload. The catalog records it per file; a restore of one file
// positions the drive at the block and reads from there.
type Position struct {
	Volume int
	Seq    uint64
	Offset int
}

// SessionWriter writes one session as a tape file (or several, across
// volumes). Data blocks are numbered from 1 and the numbers run on
// across volumes; a header or trailer block carries the number of the
// data block that follows it.
type SessionWriter struct {
	d       Drive
	max     int // payload bytes per block
	info    SessionInfo
	stream  [16]byte
	next    uint64 // number of the next data block
	buf     []byte
	pending []byte // an encoded data block the drive refused at end of medium
	full    bool
	bytes   uint64
	sum     hash.Hash
}

// NewSessionWriter starts a session's tape file with its header.
func NewSessionWriter(d Drive, info SessionInfo, blockSize int) (*SessionWriter, error) {
	if blockSize <= HeaderSize || blockSize > MaxBlockSize {
		return nil, fmt.Errorf("block size %d: use %d to %d bytes", blockSize, HeaderSize+1, MaxBlockSize)
	}
	w := &SessionWriter{d: d, max: blockSize - HeaderSize, info: info, next: 1, sum: sha256.New()}
	if _, err := rand.Read(w.stream[:]); err != nil {
		return nil, err
	}
	w.info.Volume = 1
	if err := w.header(0); err != nil {
		return nil, err
	}
	return w, nil
}

// header writes a session header block.
func (w *SessionWriter) header(flags uint8) error {
	doc, err := json.Marshal(w.info)
	if err != nil {
		return err
	}
	if len(doc) > w.max {
		return fmt.Errorf("session header of %d bytes does not fit a block", len(doc))
	}
	b := AppendBlock(nil, Block{Kind: KindSessionHeader, Flags: flags, Stream: w.stream, Seq: w.next, Payload: doc})
	if err := w.d.WriteBlock(b); err != nil && !errors.Is(err, ErrEarlyWarning) {
		return fmt.Errorf("write the header of session %s: %w", w.info.Stored, err)
	}
	return nil
}

// Tell returns where the next payload byte written will lie. If the tape
// fills before that block is written, the block is on the next volume.
func (w *SessionWriter) Tell() Position {
	return Position{Volume: w.info.Volume, Seq: w.next, Offset: len(w.buf)}
}

// Write adds payload. When the tape reaches its early-warning zone the
// volume's part of the session is closed, and Write returns how much it
// took with ErrVolumeFull; nothing is lost.
func (w *SessionWriter) Write(p []byte) (int, error) {
	if w.full {
		return 0, ErrVolumeFull
	}
	n := 0
	for len(p) > 0 {
		take := min(len(p), w.max-len(w.buf))
		w.buf = append(w.buf, p[:take]...)
		p = p[take:]
		n += take
		if len(w.buf) == w.max {
			if err := w.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// flush writes the buffered payload as one data block.
func (w *SessionWriter) flush() error {
	b := AppendBlock(nil, Block{Kind: KindData, Stream: w.stream, Seq: w.next, Payload: w.buf})
	err := w.d.WriteBlock(b)
	switch {
	case err == nil, errors.Is(err, ErrEarlyWarning):
		w.sum.Write(w.buf)
		w.bytes += uint64(len(w.buf))
		w.next++
		w.buf = w.buf[:0]
		if err != nil {
			return w.endVolume(true)
		}
		return nil
	case errors.Is(err, ErrEndOfMedium):
		// Not written: it goes first on the next volume.
		w.pending = b
		return w.endVolume(false)
	}
	return fmt.Errorf("write block %d of session %s: %w", w.next, w.info.Stored, err)
}

// endVolume closes this volume's part of the session: a marker block that
// says "continued" (when there is room for it), then a filemark.
func (w *SessionWriter) endVolume(room bool) error {
	w.full = true
	if room {
		marker := AppendBlock(nil, Block{Kind: KindData, Flags: FlagContinued, Stream: w.stream, Seq: w.next})
		if err := w.d.WriteBlock(marker); err != nil && !errors.Is(err, ErrEarlyWarning) {
			return fmt.Errorf("end volume %d of session %s: %w", w.info.Volume, w.info.Stored, err)
		}
	}
	if err := w.d.WriteFilemarks(1); err != nil && !errors.Is(err, ErrEarlyWarning) {
		return fmt.Errorf("end volume %d of session %s: %w", w.info.Volume, w.info.Stored, err)
	}
	return ErrVolumeFull
}

// Continue goes on with the session on the next volume, on a drive
// positioned after that volume's label.
func (w *SessionWriter) Continue(d Drive) error {
	if !w.full {
		return errors.New("continue: the current volume is not full")
	}
	w.d = d
	w.info.Volume++
	w.full = false
	if err := w.header(FlagContinuation); err != nil {
		return err
	}
	if w.pending != nil {
		b := w.pending
		w.pending = nil
		if err := w.d.WriteBlock(b); err != nil && !errors.Is(err, ErrEarlyWarning) {
			return fmt.Errorf("write block %d of session %s: %w", w.next, w.info.Stored, err)
		}
		dec, _ := DecodeBlock(b)
		w.sum.Write(dec.Payload)
		w.bytes += uint64(len(dec.Payload))
		w.next++
	}
	return nil
}

// Close writes what is buffered, the trailer and the closing filemark.
func (w *SessionWriter) Close() (Trailer, error) {
	if w.full {
		return Trailer{}, ErrVolumeFull
	}
	if len(w.buf) > 0 {
		if err := w.flush(); err != nil {
			return Trailer{}, err
		}
	}
	t := Trailer{Blocks: w.next - 1, Bytes: w.bytes, SHA256: hex.EncodeToString(w.sum.Sum(nil))}
	doc, err := json.Marshal(t)
	if err != nil {
		return Trailer{}, err
	}
	b := AppendBlock(nil, Block{Kind: KindSessionTrailer, Stream: w.stream, Seq: w.next, Payload: doc})
	if err := w.d.WriteBlock(b); err != nil && !errors.Is(err, ErrEarlyWarning) {
		return Trailer{}, fmt.Errorf("write the trailer of session %s: %w", w.info.Stored, err)
	}
	if err := w.d.WriteFilemarks(1); err != nil && !errors.Is(err, ErrEarlyWarning) {
		return Trailer{}, fmt.Errorf("write the trailer of session %s: %w", w.info.Stored, err)
	}
	return t, nil
}

// SessionReader reads a session's payload back, checking every block,
// their order, and at the end the trailer's counts and digest.
type SessionReader struct {
	s       Source
	buf     []byte
	info    SessionInfo
	stream  [16]byte
	next    uint64
	pending []byte
	more    bool // the last block said the session is continued
	done    bool
	partial bool // started mid-session: no digest to check
	bytes   uint64
	sum     hash.Hash
}

// NewSessionReader reads a session header from s (at the start of a
// session's tape file).
func NewSessionReader(s Source) (*SessionReader, error) {
	r := &SessionReader{s: s, buf: make([]byte, MaxBlockSize), next: 1, sum: sha256.New()}
	b, err := r.block()
	if err != nil {
		return nil, fmt.Errorf("read a session header: %w", err)
	}
	if err := decodeDoc(b, KindSessionHeader, &r.info); err != nil {
		return nil, err
	}
	if b.Flags&FlagContinuation != 0 || b.Seq != 1 {
		return nil, fmt.Errorf("%w: the session header is a continuation (part %d, block %d): start from its first volume", ErrDamaged, r.info.Volume, b.Seq)
	}
	r.stream = b.Stream
	return r, nil
}

// NewSessionReaderAt reads from the middle of a session: s is positioned
// at data block pos.Seq of a session whose stream id is stream; the
// first pos.Offset payload bytes of that block are skipped. The session's
// digest cannot be checked from there; every block still is.
func NewSessionReaderAt(s Source, stream [16]byte, pos Position) (*SessionReader, error) {
	r := &SessionReader{s: s, buf: make([]byte, MaxBlockSize), stream: stream, next: pos.Seq, partial: true, sum: sha256.New()}
	if err := r.fill(); err != nil {
		return nil, err
	}
	if pos.Offset > len(r.pending) {
		return nil, fmt.Errorf("%w: offset %d beyond the %d bytes of block %d", ErrDamaged, pos.Offset, len(r.pending), pos.Seq)
	}
	r.pending = r.pending[pos.Offset:]
	return r, nil
}

// Info returns the session's header.
func (r *SessionReader) Info() SessionInfo { return r.info }

// Stream returns the session's stream id, for NewSessionReaderAt.
func (r *SessionReader) Stream() [16]byte { return r.stream }

func (r *SessionReader) block() (Block, error) {
	n, err := r.s.ReadBlock(r.buf)
	if err != nil {
		return Block{}, err
	}
	return DecodeBlock(r.buf[:n])
}

// Read returns payload. At the end of a volume's part of a continued
// session it returns ErrNeedNextVolume; at the end, io.EOF after the
// trailer checked.
func (r *SessionReader) Read(p []byte) (int, error) {
	for len(r.pending) == 0 {
		if r.done {
			return 0, io.EOF
		}
		if r.more {
			return 0, ErrNeedNextVolume
		}
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

// fill reads the next block of the session.
func (r *SessionReader) fill() error {
	b, err := r.block()
	if errors.Is(err, ErrFilemark) || errors.Is(err, ErrEndOfData) {
		return fmt.Errorf("%w: session %s cut short before block %d (%v)", ErrDamaged, r.info.Stored, r.next, err)
	}
	if err != nil {
		return fmt.Errorf("session %s, block %d: %w", r.info.Stored, r.next, err)
	}
	if b.Stream != r.stream {
		return fmt.Errorf("%w: block %d belongs to another session", ErrDamaged, r.next)
	}
	if b.Seq != r.next {
		return fmt.Errorf("%w: session %s: block %d where block %d was expected", ErrDamaged, r.info.Stored, b.Seq, r.next)
	}
	switch b.Kind {
	case KindData:
		if b.Flags&FlagContinued != 0 {
			if len(b.Payload) != 0 {
				return fmt.Errorf("%w: continuation marker with payload", ErrDamaged)
			}
			if _, err := r.s.ReadBlock(r.buf); !errors.Is(err, ErrFilemark) {
				return fmt.Errorf("%w: no filemark after the continuation marker (%v)", ErrDamaged, err)
			}
			r.more = true
			return nil
		}
		r.pending = b.Payload
		r.sum.Write(b.Payload)
		r.bytes += uint64(len(b.Payload))
		r.next++
		return nil
	case KindSessionTrailer:
		var t Trailer
		if err := decodeDoc(b, KindSessionTrailer, &t); err != nil {
			return err
		}
		if !r.partial {
			if got := hex.EncodeToString(r.sum.Sum(nil)); t.Blocks != r.next-1 || t.Bytes != r.bytes || t.SHA256 != got {
				return fmt.Errorf("%w: session %s: read %d blocks, %d bytes, sha256 %s; the trailer says %d, %d, %s",
					ErrDamaged, r.info.Stored, r.next-1, r.bytes, got, t.Blocks, t.Bytes, t.SHA256)
			}
		}
		if _, err := r.s.ReadBlock(r.buf); !errors.Is(err, ErrFilemark) {
			return fmt.Errorf("%w: no filemark after the trailer (%v)", ErrDamaged, err)
		}
		r.done = true
		return nil
	}
	return fmt.Errorf("%w: a %s block inside session %s", ErrDamaged, b.Kind, r.info.Stored)
}

// Continue goes on reading on the next volume, positioned after its
// label: it expects the session's continuation header.
func (r *SessionReader) Continue(s Source) error {
	if !r.more {
		return errors.New("continue: the session does not continue on another volume here")
	}
	r.s = s
	b, err := r.block()
	if err != nil {
		return fmt.Errorf("read the continuation of session %s: %w", r.info.Stored, err)
	}
	var info SessionInfo
	if err := decodeDoc(b, KindSessionHeader, &info); err != nil {
		return err
	}
	if b.Stream != r.stream || b.Flags&FlagContinuation == 0 || b.Seq != r.next {
		return fmt.Errorf("%w: this volume does not continue session %s at block %d (it holds block %d of another part)", ErrDamaged, r.info.Stored, r.next, b.Seq)
	}
	r.info.Volume = info.Volume
	r.more = false
	return nil
}
