// Package h1stream writes a Server-Sent Events response on an HTTP/1.1
// connection taken over from net/http, so that an idle stream holds no
// HTTP buffers. It knows nothing of events: the bridge's SSE handler writes
// frames to a [Stream] as to any [net/http.ResponseWriter].
package h1stream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// An SSE connection lives for minutes or hours and, once its headers are
// out, net/http has nothing left to do for it but hold memory: a 4 KiB read
// buffer, a 4 KiB write buffer, a 2 KiB response buffer and a handler
// goroutine whose stack grew to 8 KiB while it parsed the request. For an
// HTTP/1.1 stream the handler therefore takes the connection over
// (Hijack) once the request passed every check, and writes the response
// itself: a chunked body, one chunk per flush, from a buffer that exists
// only while there is something to send. The stream then runs on a
// goroutine of its own with a small stack, which can block in [Stream.Idle]
// until it has something to send (the bridge's streams doze there until
// their first event); from then on the goroutine the SSE library starts per
// request to wait for its end blocks in Read to see the client go, as
// net/http's own background read does ([WatchContext]).
//
// HTTP/2 streams cannot be taken over; they, HTTP/1.0 and any writer that
// cannot hijack keep net/http's write path ([New] returns nil for them).

const (
	// sizeRoom is the room kept at the start of a chunk buffer for the
	// chunk-size line: up to 8 hex digits and CRLF.
	sizeRoom = 10
	// spill: a body that would grow past this between flushes goes out as
	// a chunk first (net/http spills at its 4 KiB buffer the same way), so
	// a burst that is coalesced into one flush never sits in memory whole,
	// and a write blocked on a peer that stopped reading holds at most this
	// much of the stream's own.
	spill = 32 << 10
	// keepBuffer: a buffer that grew past this goes to the garbage
	// collector after use instead of back to the pool.
	keepBuffer = 64 << 10
	// maxStrayBytes is how much a client may send on a stream it
	// subscribed with (there is nothing it should send) before the bridge
	// closes it.
	maxStrayBytes = 4 << 10
)

// buffers recycles chunk buffers between flushes of every stream, so an
// idle connection holds none.
var buffers = sync.Pool{New: func() any {
	b := make([]byte, sizeRoom, 4<<10)
	return &b
}}

// crlf ends a chunk.
var crlf = []byte("\r\n")

// ErrClosed is what a write to a finished Stream returns.
var ErrClosed = errors.New("h1stream: stream closed")

// Stream is the http.ResponseWriter of an HTTP/1.1 SSE response whose
// connection the handler took over. It writes the status line and headers
// with the first flush, then the body in chunked encoding; Close ends the
// body (when nothing failed) and closes the connection.
//
// Header, WriteHeader, Write and Flush are called by one goroutine, the
// stream's; SetWriteDeadline may be called from any (an eviction). Every
// write after the first failure returns that failure.
type Stream struct {
	conn   net.Conn
	header http.Header // the handler's header map, as net/http had it
	status int         // 0 until WriteHeader
	sent   bool        // the status line and headers went out
	buf    *[]byte     // sizeRoom bytes of room, then the body since the last flush; nil while idle
	err    error
	closed bool
	stray  [64]byte // the reader's buffer: whatever a client sends is read and dropped
	// strayBytes counts what the client sent after its request.
	strayBytes int
}

// New takes over the HTTP/1.1 connection under w. It returns nil,
// and leaves w to net/http, when w cannot be taken over (HTTP/2, a test
// recorder) or r is not HTTP/1.1. Not inlined, like the bridge handler's
// other stages: the connect path's stack stays small.
//
//go:noinline
func New(w http.ResponseWriter, r *http.Request) *Stream {
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 {
		return nil // HTTP/1.0 has no chunked encoding
	}
	header := w.Header()
	nc, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil
	}
	// The read buffer net/http hands over holds nothing a subscriber needs:
	// a GET has no body, and anything sent after it is dropped (Idle).
	return &Stream{conn: nc, header: header}
}

// Header returns the response's header map, including what was set on it
// before the connection was taken over.
func (s *Stream) Header() http.Header { return s.header }

// WriteHeader records the status; it goes out with the first flush.
func (s *Stream) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}

// Write buffers p as part of the next chunk; what is buffered goes out
// first when p would take it past spill, so the buffer never holds more.
// A p of spill or more (a group of large events) is not copied: what is
// buffered goes first, then p as a chunk of its own, so a connection never
// holds a copy of a large write.
func (s *Stream) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.status == 0 {
		s.status = http.StatusOK
	}
	if s.buf != nil && len(*s.buf)-sizeRoom+len(p) > spill {
		if err := s.Flush(); err != nil {
			return 0, err
		}
	}
	if len(p) >= spill {
		if err := s.Flush(); err != nil {
			return 0, err
		}
		var room [sizeRoom]byte
		size := append(strconv.AppendInt(room[:0], int64(len(p)), 16), '\r', '\n')
		bufs := net.Buffers{size, p, crlf}
		if _, err := bufs.WriteTo(s.conn); err != nil {
			s.err = err
			return 0, err
		}
		return len(p), nil
	}
	if s.buf == nil {
		s.buf = buffers.Get().(*[]byte)
	}
	*s.buf = append(*s.buf, p...)
	return len(p), nil
}

// Buffers reports whether a Write of n bytes now would only add to the
// buffer, and so cannot block on the connection: the bridge's deadline
// writer arms no deadline for those.
func (s *Stream) Buffers(n int) bool {
	return s.err == nil && n < spill && (s.buf == nil || len(*s.buf)-sizeRoom+n <= spill)
}

// Flush sends the headers, if still due, and what was written since the
// last flush as one chunk, in one write to the connection.
func (s *Stream) Flush() error {
	if s.err != nil {
		return s.err
	}
	if s.status == 0 {
		s.status = http.StatusOK
	}
	var chunk []byte
	if s.buf != nil && len(*s.buf) > sizeRoom {
		b := *s.buf
		var tmp [sizeRoom]byte
		size := strconv.AppendInt(tmp[:0], int64(len(b)-sizeRoom), 16)
		size = append(size, '\r', '\n')
		start := sizeRoom - len(size)
		copy(b[start:], size)
		b = append(b, '\r', '\n')
		chunk = b[start:]
		*s.buf = b // append may have grown it: keep the larger one
	}
	var err error
	if !s.sent {
		// The head and the first chunk in one write (a connect costs one
		// packet, and writev's vectors would be garbage per connect).
		s.sent = true
		head := buffers.Get().(*[]byte)
		*head = append(s.appendHead((*head)[:0]), chunk...)
		_, err = s.conn.Write(*head)
		putBuffer(head)
	} else if chunk != nil {
		_, err = s.conn.Write(chunk)
	}
	if err != nil {
		s.err = err
	}
	s.release()
	return err
}

// release gives the chunk buffer back: an idle stream holds none. A stream
// whose write failed (a peer gone, or evicted) lets go of it instead: when
// thousands fail at once, their buffers would otherwise sit in the pool.
func (s *Stream) release() {
	if s.buf != nil {
		if s.err == nil {
			putBuffer(s.buf)
		}
		s.buf = nil
	}
}

// putBuffer returns b to buffers, emptied, unless it grew too large to
// keep.
func putBuffer(b *[]byte) {
	if cap(*b) <= keepBuffer {
		*b = (*b)[:sizeRoom]
		buffers.Put(b)
	}
}

// appendHead appends the status line and the headers to b. The framing
// headers are the writer's: the body is chunked and the connection closes
// after it (it is not net/http's any more, so it cannot serve another
// request).
func (s *Stream) appendHead(b []byte) []byte {
	if s.status == http.StatusOK {
		b = append(b, "HTTP/1.1 200 OK\r\n"...)
	} else {
		b = fmt.Appendf(b, "HTTP/1.1 %03d %s\r\n", s.status, http.StatusText(s.status))
	}
	b = append(b, "Date: "...)
	b = appendHTTPDate(b, time.Now())
	b = append(b, "\r\n"...)
	// Header.WriteSubset turns CR and LF in values into spaces: no header
	// value can add a line.
	w := appendWriter{b}
	_ = s.header.WriteSubset(&w, framingHeaders)
	return append(w.b, "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"...)
}

// appendHTTPDate appends t in the HTTP date format (http.TimeFormat),
// without the allocations of time.Time.AppendFormat.
func appendHTTPDate(b []byte, t time.Time) []byte {
	const days, months = "SunMonTueWedThuFriSat", "JanFebMarAprMayJunJulAugSepOctNovDec"
	t = t.UTC()
	yy, mm, dd := t.Date()
	hh, mn, ss := t.Clock()
	b = append(b, days[3*t.Weekday():][:3]...)
	b = append(b, ", "...)
	b = append2Digits(b, dd)
	b = append(b, ' ')
	b = append(b, months[3*(mm-1):][:3]...)
	b = append(b, ' ')
	b = append2Digits(append2Digits(b, yy/100), yy)
	b = append(b, ' ')
	b = append2Digits(b, hh)
	b = append(b, ':')
	b = append2Digits(b, mn)
	b = append(b, ':')
	b = append2Digits(b, ss)
	return append(b, " GMT"...)
}

// append2Digits appends the last two decimal digits of n (n >= 0).
func append2Digits(b []byte, n int) []byte {
	const digits = "0123456789"
	return append(b, digits[n/10%10], digits[n%10])
}

// appendWriter is an io.Writer that appends to b. It is an
// io.StringWriter too: Header.WriteSubset writes strings, and converts each
// to a new []byte for a writer that is not.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *appendWriter) WriteString(p string) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// framingHeaders are set by Stream itself, whatever the handler put in
// the header map.
var framingHeaders = map[string]bool{
	"Connection":        true,
	"Content-Length":    true,
	"Date":              true,
	"Keep-Alive":        true,
	"Transfer-Encoding": true,
	"Upgrade":           true,
}

// SetWriteDeadline sets the connection's write deadline; safe to call from
// any goroutine.
func (s *Stream) SetWriteDeadline(t time.Time) error { return s.conn.SetWriteDeadline(t) }

// Close ends the response and closes the connection: what is buffered and
// the last chunk go out first when clean (nothing failed and the headers or
// some body were sent), so the client sees a complete response. It is
// called once the stream's handler is done with s.
func (s *Stream) Close(clean bool) {
	if s.closed {
		return
	}
	s.closed = true
	if clean && s.err == nil {
		if err := s.Flush(); err == nil {
			_, _ = s.conn.Write([]byte("0\r\n\r\n"))
		}
	}
	s.release()
	s.err = ErrClosed
	_ = s.conn.Close()
}

// Watch reads from the connection until it fails, closes or is told to
// stop (StopWatching), and calls gone then: the client went away, or the
// stream is ending. A client that sends more than maxStrayBytes on a
// stream is cut off the same way. It runs on the library's goroutine that
// waits for the end of the request (see WatchContext).
func (s *Stream) Watch(gone context.CancelFunc) {
	defer gone()
	_ = s.Idle()
}

// Idle reads from the connection, and drops what it reads, until the read
// fails: it returns nil when the read deadline passed (StopWatching), else
// why the connection is over: the client went, or sent more than
// maxStrayBytes in all (there is nothing it should send).
func (s *Stream) Idle() error {
	for {
		n, err := s.conn.Read(s.stray[:])
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return err
		}
		s.strayBytes += n
		if s.strayBytes > maxStrayBytes {
			return ErrTooChatty
		}
	}
}

// ErrTooChatty is what Idle returns when a client sent more than
// maxStrayBytes on its stream: it has nothing to send, so the stream ends.
var ErrTooChatty = errors.New("h1stream: the client sent too much on its event stream")

// ResumeReading clears the read deadline that StopWatching set, so reads
// block again.
func (s *Stream) ResumeReading() {
	_ = s.conn.SetReadDeadline(time.Time{})
}

// StopWatching makes Watch and Idle return: the read it waits in fails at once.
// Safe to call from any goroutine, any number of times.
func (s *Stream) StopWatching() {
	_ = s.conn.SetReadDeadline(aLongTimeAgo)
}

// aLongTimeAgo is a deadline that has passed.
var aLongTimeAgo = time.Unix(1, 0)

// WatchContext returns the request context the SSE library gets for a
// stream on the taken-over connection s: ctx, whose first Done call watches
// s (Watch) and calls gone when the client went. See watchCtx.
func WatchContext(ctx context.Context, s *Stream, gone context.CancelFunc) context.Context {
	return &watchCtx{Context: ctx, hs: s, gone: gone}
}

// watchCtx is the request context the library gets for a stream on a
// taken-over connection. Something has to block in Read to see the client
// go (net/http's background read did that before the takeover), and the
// library already starts a goroutine per request whose only work is to wait
// for the context to end (r3labs/sse v2.10.0, http.go: <-r.Context().Done(),
// then it deregisters the subscriber). So the first Done call, made by that
// goroutine, watches the connection before it returns the channel: the
// stream costs no goroutine of the bridge's own, and the library's handler
// ends when the client goes, exactly as with a plain context. Pinned by
// TestLibWaitsForTheEndOnItsOwnGoroutine in internal/bridge.
//
// Every other method, and any later Done call, is the stream's context's.
type watchCtx struct {
	context.Context // the stream's; gone cancels it
	hs              *Stream
	gone            context.CancelFunc
	watching        atomic.Bool
}

// Done watches the connection on the first call (see watchCtx) and returns
// the stream context's Done channel, closed by then.
func (c *watchCtx) Done() <-chan struct{} {
	if c.watching.CompareAndSwap(false, true) {
		c.hs.Watch(c.gone)
	}
	return c.Context.Done()
}
