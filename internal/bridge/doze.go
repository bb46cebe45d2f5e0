package bridge

import (
	"context"
	"net/http"
	"slices"

	"github.com/r3labs/sse/v2"
)

// Most SSE connections are idle most of the time, and many never get an
// event before they go. Until its first event, a stream taken over from
// net/http (h1stream.go) that has nothing to replay (a new one, or a resume
// whose history read found nothing it missed: hub.checkResume) therefore
// dozes: its headers and retry: are out, its one goroutine (the stream's)
// blocks in Read to see the client go, and it has no library stream yet, so
// neither the library's goroutine per stream nor its goroutine per request
// exists (three goroutines become one, and a connect does no hand-off
// between them). The first event held for it (hub.hold) wakes it: only then does the
// stream create its library stream and hand itself to the library, which
// writes that event and every later one, as for any other connection. A
// heartbeat that finds it dozing wakes it only to write the ping, which the
// stream writes itself, in the library's bytes (pingBytes), and it dozes on.
//
// Everything that ends a connection (the client going, an eviction, a
// shutdown, a token expiry) ends a dozing one the same way: each cancels the
// connection, and the cancel interrupts the Read (h1Stream.stopWatching).
//
// Waking is the same interruption: whoever wakes a connection (under its
// mu) records why in wakeFor and sets a read deadline that has passed; the
// dozer takes the reasons and clears the deadline under mu too, so no wake
// is lost between the two.

// Reasons to wake a dozing connection (conn.wakeFor).
const (
	wakeEvent = 1 << iota // an event is held for it: hand it to the library
	wakePing              // a heartbeat is due: write the ping, doze on
)

// pingBytes is pingFrame as the library writes it (a comment, then the
// blank line that ends the frame); TestDozingPingIsTheLibrarys pins it.
var pingBytes = []byte(": " + string(pingFrame.Comment) + "\n\n")

// setLibHeaders sets on h the headers the library's handler sets on every
// stream of lib (r3labs/sse v2.10.0, http.go), so a dozing stream's headers,
// sent before the library sees the connection, are those the library would
// have sent; TestDozingHeadersAreTheLibrarys pins them.
func setLibHeaders(h http.Header, lib *sse.Server) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	for k, v := range lib.Headers {
		h.Set(k, v)
	}
}

// libHeaders returns the headers setLibHeaders sets for lib, once: a stream
// copies their values into its header map (setHeaders) instead of a new
// slice per header and connect. Each value slice is full (len == cap), so
// an Add to one of them copies it, and Set replaces it.
func libHeaders(lib *sse.Server) http.Header {
	h := make(http.Header)
	setLibHeaders(h, lib)
	for k, v := range h {
		h[k] = slices.Clip(v)
	}
	return h
}

// setHeaders sets every header of from on to, sharing the values (see
// libHeaders).
func setHeaders(to, from http.Header) {
	for k, v := range from {
		to[k] = v
	}
}

// doze sends c's headers and retry:, then lets c doze until an event is held
// for it (true: hand c to the library now) or it ends (false: the client
// went, the connection was cancelled or a write failed). It runs on c's
// stream goroutine, whose writer dw is.
func (s *sseHandler) doze(ctx context.Context, hs *h1Stream, dw *deadlineWriter, c *conn) (wake bool) {
	setHeaders(hs.Header(), s.hub.streamHeaders)
	dw.WriteHeader(http.StatusOK)
	dw.retry = 0 // sent: the library's own WriteHeader later must not repeat it
	// The headers and the retry: are a few hundred bytes, which the socket
	// buffer of a new connection always takes at once: no deadline (as in
	// deadlineWriter.Flush).
	if err := hs.Flush(); err != nil {
		dw.failed(err)
		return false
	}
	c.mu.Lock()
	if len(c.pending) > 0 || c.overflow { // an event came already
		c.mu.Unlock()
		return true
	}
	c.sleeper = hs
	s.hub.stats.dozing.Add(1)
	c.mu.Unlock()
	defer s.hub.stats.dozing.Add(-1)
	defer func() {
		if !wake {
			c.mu.Lock()
			c.sleeper = nil
			c.mu.Unlock()
		}
	}()
	for {
		if err := hs.idle(); err != nil {
			c.cancel() // the client went (or sent what it must not)
			return false
		}
		c.mu.Lock()
		why := c.wakeFor
		c.wakeFor = 0
		if why&wakeEvent != 0 {
			c.sleeper = nil
		}
		hs.resumeReading()
		c.mu.Unlock()
		switch {
		case ctx.Err() != nil:
			return false
		case why&wakeEvent != 0:
			return true
		case why&wakePing != 0 && !ping(dw):
			return false
		}
	}
}

// ping writes a heartbeat to a dozing connection, with the write deadline
// every write has; false when the write failed (the connection is then
// evicted or cancelled, see deadlineWriter.failed).
func ping(dw *deadlineWriter) bool {
	if _, err := dw.Write(pingBytes); err != nil {
		return false
	}
	if err := dw.c.out.Flush(); err != nil {
		dw.failed(err)
		return false
	}
	return true
}

// wake wakes c for why when it dozes (see doze); c.mu must be held.
func (c *conn) wake(why uint8) {
	if c.sleeper == nil {
		return
	}
	if c.wakeFor == 0 {
		c.sleeper.stopWatching()
	}
	c.wakeFor |= why
}
