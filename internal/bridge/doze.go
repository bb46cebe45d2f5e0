package bridge

import (
	"context"
	"net/http"
	"slices"

	"github.com/r3labs/sse/v2"

	"github.com/sse-bridge/bridge/internal/h1stream"
)

// Most SSE connections are idle most of the time, and many never get an
// event before they go. Until its first event, a stream that has nothing to
// replay (a new one, or a resume whose history read found nothing it
// missed: hub.checkResume) therefore dozes: its headers and retry: are out,
// its one goroutine (the stream's) waits to see the client go, and it has no
// library stream yet, so neither the library's goroutine per stream nor its
// goroutine per request exists (three goroutines become one, and a connect
// does no hand-off between them). The first event held for it (hub.hold)
// wakes it: only then does the stream create its library stream and hand
// itself to the library, which writes that event and every later one, as
// for any other connection. A heartbeat that finds it dozing wakes it only
// to write the ping, which the stream writes itself, in the library's bytes
// (pingBytes), and it dozes on.
//
// What a dozing stream waits in depends on its connection. A connection
// taken over from net/http (internal/h1stream) has nothing else reading it: the
// stream blocks in Read, which ends when the client goes, and a read
// deadline in the past wakes it. One that net/http keeps (HTTP/2, HTTP/1.0)
// has net/http watching it, which ends the request's context when the
// client goes: the stream waits for that context or a wake-up on a channel.
//
// Everything that ends a connection (the client going, an eviction, a
// shutdown, a token expiry) ends a dozing one the same way: each cancels the
// connection, which ends the wait (h1stream.Stream.StopWatching, or the context).
//
// Whoever wakes a connection does so under its mu and records why in
// wakeFor; the dozer takes the reasons and re-arms its wait under mu too, so
// no wake is lost between the two.

// A dozer is what a dozing stream waits in (see above).
type dozer interface {
	// wait blocks until the dozer is woken (nil), or returns why the
	// connection is over. Called by the stream's goroutine only.
	wait(ctx context.Context) error
	// wake makes wait return (or the next one, at once). Called with the
	// connection's mu held.
	wake()
	// rearm makes the next wait block again after a wake. Called with the
	// connection's mu held.
	rearm()
}

// Reasons to wake a dozing connection (conn.wakeFor).
const (
	wakeEvent = 1 << iota // an event is held for it: hand it to the library
	wakePing              // a heartbeat is due: write the ping, doze on
)

// pingBytes is pingFrame as the library writes it (a comment, then the
// blank line that ends the frame); TestLibCommentEventIsKeepAlive pins it.
var pingBytes = []byte(": " + string(pingFrame.Comment) + "\n\n")

// setLibHeaders sets on h the headers the library's handler sets on every
// stream of lib (r3labs/sse v2.10.0, http.go), so a dozing stream's headers,
// sent before the library sees the connection, are those the library would
// have sent; TestLibResponseHeaders pins them.
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

// doze sends c's headers and retry:, then lets c doze in d until an event is
// held for it (true: hand c to the library now) or it ends (false: the
// client went, the connection was cancelled or a write failed). It runs on
// c's stream goroutine, whose writer dw is.
func (s *sseHandler) doze(ctx context.Context, d dozer, dw *deadlineWriter, c *conn) (wake bool) {
	setHeaders(dw.Header(), s.hub.streamHeaders)
	dw.WriteHeader(http.StatusOK) // the library's own, later, does nothing
	// The headers and the retry: are a few hundred bytes, which the socket
	// buffer of a new connection always takes at once: no deadline (as in
	// deadlineWriter.Flush).
	if err := c.out.Flush(); err != nil {
		dw.failed(err)
		return false
	}
	c.mu.Lock()
	if len(c.pending) > 0 || c.overflow { // an event came already
		c.mu.Unlock()
		return true
	}
	c.sleeper = d
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
		if err := d.wait(ctx); err != nil {
			c.cancel() // the client went (or sent what it must not)
			return false
		}
		c.mu.Lock()
		why := c.wakeFor
		c.wakeFor = 0
		if why&wakeEvent != 0 {
			c.sleeper = nil
		}
		d.rearm()
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

// chanDozer is the dozer of a stream whose connection net/http keeps: it
// waits for the stream's context (which net/http ends when the client goes)
// or a wake-up.
type chanDozer chan struct{}

// dozerOf returns what a stream dozes in: its taken-over connection hs, or,
// when net/http keeps the connection (hs nil), a new chanDozer.
func dozerOf(hs *h1stream.Stream) dozer {
	if hs == nil {
		return make(chanDozer, 1)
	}
	return h1Dozer{hs}
}

func (d chanDozer) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-d:
		return nil
	}
}

func (d chanDozer) wake() {
	select {
	case d <- struct{}{}:
	default: // a wake-up is pending already
	}
}

func (d chanDozer) rearm() {}

// h1Dozer is the dozer of a taken-over connection: the Read it blocks in
// ends when the client goes; a read deadline in the past wakes it (see
// h1stream.Stream.Idle). A struct of one pointer, so making it a dozer
// allocates nothing.
type h1Dozer struct{ s *h1stream.Stream }

func (d h1Dozer) wait(context.Context) error { return d.s.Idle() }

func (d h1Dozer) wake() { d.s.StopWatching() }

func (d h1Dozer) rearm() { d.s.ResumeReading() }
