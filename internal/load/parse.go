package load

import (
	"bytes"
	"errors"
	"io"
	"strconv"
)

// ErrLineTooLong is returned by [Parser.Next] for a line longer than the
// parser's limit.
var ErrLineTooLong = errors.New("load: SSE line too long")

// Event is one dispatched Server-Sent Event. Its slices point into the
// parser's buffers and are valid until the next call of [Parser.Next].
type Event struct {
	// ID is the stream's last event ID at dispatch: the `id:` of this event,
	// or of an earlier one when this one has none (as in a browser).
	ID []byte
	// Type is the `event:` field; empty means "message".
	Type []byte
	// Data is the `data:` lines joined with LF.
	Data []byte
}

// Parser reads Server-Sent Events as the WHATWG HTML standard defines them:
// lines end in LF, CRLF or CR; `data`, `event`, `id` and `retry` fields;
// comments; a leading byte order mark; an event without data is not
// dispatched; an incomplete event at the end of the stream is discarded.
//
// It is written to be cheap, because the load client shares the machine with
// the server it measures: one read buffer, lines found with
// [bytes.IndexByte], no allocation per event once the buffers have grown.
// A Parser is not safe for concurrent use.
type Parser struct {
	r        io.Reader
	buf      []byte
	pos, end int
	err      error // from r, returned once buf is drained
	maxLine  int
	started  bool // the byte order mark check is done

	data   []byte
	typ    []byte
	lastID []byte // the last event ID buffer
	id     []byte // the last event ID string, set at dispatch

	// Comments counts comment lines (": ping" heartbeats).
	Comments int64
	// Retry is the last valid `retry:` value in milliseconds, or -1.
	Retry int64
}

// NewParser returns a parser reading from r with an initial buffer of size
// bytes; lines may grow it up to maxLine bytes (at least size).
func NewParser(r io.Reader, size, maxLine int) *Parser {
	size = max(size, 64)
	return &Parser{r: r, buf: make([]byte, size), maxLine: max(maxLine, size), Retry: -1}
}

// Reset makes p read a new stream from r, keeping its buffers and its last
// event ID (a reconnecting browser keeps it too).
func (p *Parser) Reset(r io.Reader) {
	p.r, p.pos, p.end, p.err, p.started = r, 0, 0, nil, false
	p.data, p.typ = p.data[:0], p.typ[:0]
	p.lastID = append(p.lastID[:0], p.id...)
}

// LastEventID is what a browser would send as Last-Event-ID when it
// reconnects now: the id of the last dispatched event (empty when none).
func (p *Parser) LastEventID() []byte { return p.id }

// Next returns the next event. At the end of the stream it returns the
// reader's error (io.EOF for a clean end).
func (p *Parser) Next() (Event, error) {
	for {
		line, err := p.line()
		if err != nil {
			return Event{}, err
		}
		if len(line) == 0 {
			// Dispatch. The last event ID string is set even when there is
			// no data, as the standard says.
			p.id = append(p.id[:0], p.lastID...)
			if len(p.data) == 0 {
				p.typ = p.typ[:0]
				continue
			}
			ev := Event{ID: p.id, Type: p.typ, Data: p.data[:len(p.data)-1]}
			p.data, p.typ = p.data[:0], p.typ[:0]
			return ev, nil
		}
		if line[0] == ':' {
			p.Comments++
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) { // no allocation: the compiler compares in place
		case "data":
			p.data = append(p.data, value...)
			p.data = append(p.data, '\n')
		case "event":
			p.typ = append(p.typ[:0], value...)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				p.lastID = append(p.lastID[:0], value...)
			}
		case "retry":
			if ms, err := strconv.ParseUint(string(value), 10, 63); err == nil { // digits only
				p.Retry = int64(ms)
			}
		}
	}
}

// line returns the next line without its end, pointing into p.buf.
func (p *Parser) line() ([]byte, error) {
	for {
		b := p.buf[p.pos:p.end]
		if !p.started {
			if len(b) < 3 && p.err == nil && bytes.HasPrefix([]byte("\xEF\xBB\xBF"), b) {
				if err := p.fill(); err != nil {
					return nil, err
				}
				continue
			}
			p.started = true
			if bytes.HasPrefix(b, []byte("\xEF\xBB\xBF")) {
				p.pos += 3
				b = b[3:]
			}
		}
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			if j := bytes.IndexByte(b[:i], '\r'); j >= 0 {
				if j+1 == i { // CRLF
					p.pos += i + 1
				} else { // a lone CR ends this line
					p.pos += j + 1
				}
				return b[:j], nil
			}
			p.pos += i + 1
			return b[:i], nil
		}
		// No LF buffered. A CR ends a line unless it is the last byte
		// buffered: then an LF may follow in the next read.
		if j := bytes.IndexByte(b, '\r'); j >= 0 && (j+1 < len(b) || p.err != nil) {
			p.pos += j + 1
			return b[:j], nil
		}
		if p.err != nil {
			return nil, p.err // an incomplete line at the end is discarded
		}
		if err := p.fill(); err != nil {
			return nil, err
		}
	}
}

// fill reads more into p.buf, moving the unread bytes to its start and
// growing it when a line fills it. A read error is kept for after the
// buffered bytes; fill itself fails only for a line over the limit.
func (p *Parser) fill() error {
	if p.pos > 0 {
		p.end = copy(p.buf, p.buf[p.pos:p.end])
		p.pos = 0
	}
	if p.end == len(p.buf) {
		if len(p.buf) >= p.maxLine {
			return ErrLineTooLong
		}
		nb := make([]byte, min(2*len(p.buf), p.maxLine))
		copy(nb, p.buf[:p.end])
		p.buf = nb
	}
	for range 100 { // io.Reader allows (0, nil); do not spin on it forever
		n, err := p.r.Read(p.buf[p.end:])
		p.end += n
		if err != nil {
			p.err = err
			return nil
		}
		if n > 0 {
			return nil
		}
	}
	p.err = io.ErrNoProgress
	return nil
}
