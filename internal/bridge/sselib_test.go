package bridge

// The tests in this file pin the behaviour of github.com/r3labs/sse/v2 that
// the bridge relies on or works around (docs/design.md, "The r3labs/sse
// library: what the bridge works around"). They test the
// library alone, not the bridge: a library upgrade that changes any of these
// behaviours must fail here first, with a message that says which part of the
// bridge to re-check.

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/r3labs/sse/v2"
	gosse "github.com/tmaxmax/go-sse"
	"go.uber.org/goleak"
)

// libWait bounds every wait in these tests. Passing tests finish in
// milliseconds; it only decides how long a broken library takes to fail.
const libWait = 5 * time.Second

// libSubscription is what the library hands to OnSubscribe.
type libSubscription struct {
	stream string
	sub    *sse.Subscriber
}

// libHarness is an r3labs server configured as hub.go configures it, served
// by a real HTTP server. Its handler gives the library a request context of
// its own, as sse.go does, so a test can cancel it the way hub.evict does.
type libHarness struct {
	lib *sse.Server
	ts  *httptest.Server

	// subscribed is unbuffered: OnSubscribe blocks until the test takes the
	// value, which only works because the library runs it on a goroutine of
	// its own (TestLibOnSubscribeFiresAfterRegistration).
	subscribed   chan libSubscription
	unsubscribed chan string             // stream id of each OnUnsubscribe
	cancels      chan context.CancelFunc // one per request, in arrival order
	returned     chan string             // stream param of each ServeHTTP that returned

	stop      chan struct{} // closed by close: frees an OnSubscribe nobody waits for
	closeOnce sync.Once
}

// newLibHarness starts a library server with the bridge's settings (see
// newHub), then applies configure, if any. Its cleanup closes the HTTP server,
// which waits for every handler, then the library.
//
// A test whose handlers end without their request context (an event without
// data or comment, see TestLibEventWithoutDataOrCommentEndsStream) must wait
// for OnUnsubscribe before it returns: closing the library before the
// subscriber deregistered leaks a goroutine (TestLibRemoveStreamWithLiveSubscriberLeaks).
func newLibHarness(t *testing.T, configure func(*sse.Server)) *libHarness {
	t.Helper()
	h := &libHarness{
		subscribed:   make(chan libSubscription),
		unsubscribed: make(chan string, 64),
		cancels:      make(chan context.CancelFunc, 64),
		returned:     make(chan string, 64),
		stop:         make(chan struct{}),
	}
	lib := sse.New()
	lib.AutoReplay = false
	lib.AutoStream = false
	lib.EncodeBase64 = false
	lib.EventTTL = 0
	lib.Headers = map[string]string{"X-Accel-Buffering": "no"}
	lib.OnSubscribe = func(id string, sub *sse.Subscriber) {
		select {
		case h.subscribed <- libSubscription{stream: id, sub: sub}:
		case <-h.stop:
		}
	}
	lib.OnUnsubscribe = func(id string, _ *sse.Subscriber) { h.unsubscribed <- id }
	if configure != nil {
		configure(lib)
	}
	h.lib = lib
	h.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		h.cancels <- cancel
		lib.ServeHTTP(w, r.WithContext(ctx))
		h.returned <- r.URL.Query().Get("stream")
	}))
	t.Cleanup(h.close)
	return h
}

// close stops the HTTP server, waiting for every handler, then the library.
// Clients must be gone by then; requests made with a context derived from
// t.Context() are, because it is cancelled before cleanups run.
func (h *libHarness) close() {
	h.closeOnce.Do(func() {
		close(h.stop)
		h.ts.Close()
		h.lib.Close()
	})
}

// libClient is one open SSE response.
type libClient struct {
	header http.Header
	body   io.ReadCloser   // closed at cleanup
	sub    *sse.Subscriber // as the library passed it to OnSubscribe
}

// subscribe opens a real SSE request for stream, bounded by ctx. It returns
// once the response headers arrived and OnSubscribe fired for stream.
func (h *libHarness) subscribe(ctx context.Context, t *testing.T, stream string) libClient {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.ts.URL+"/?stream="+url.QueryEscape(stream), nil)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	// The headers can only arrive while OnSubscribe is still blocked on the
	// unbuffered channel if the library calls it on a goroutine of its own.
	res, err := h.ts.Client().Do(req)
	if err != nil {
		t.Fatalf("GET ?stream=%s: %v (does OnSubscribe still run on its own goroutine?)", stream, err)
	}
	t.Cleanup(func() { _ = res.Body.Close() })
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET ?stream=%s: status %d, want 200", stream, res.StatusCode)
	}
	s := libRecv(ctx, t, h.subscribed, "OnSubscribe")
	if s.stream != stream {
		t.Fatalf("OnSubscribe(%q), want OnSubscribe(%q)", s.stream, stream)
	}
	return libClient{header: res.Header, body: res.Body, sub: s.sub}
}

// libRecv receives one value from ch, failing the test if ctx ends first.
func libRecv[T any](ctx context.Context, t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("waiting for %s: %v", what, ctx.Err())
		panic("unreachable")
	}
}

// libReadEvents parses the first n events of r with go-sse, which follows the
// WHATWG parsing rules a browser uses.
func libReadEvents(t *testing.T, r io.Reader, n int) []gosse.Event {
	t.Helper()
	var (
		got     []gosse.Event
		readErr error
	)
	for ev, err := range gosse.Read(r, nil) {
		if err != nil {
			readErr = err
			break
		}
		got = append(got, ev)
		if len(got) == n {
			return got
		}
	}
	t.Fatalf("read %d SSE events, want %d (error: %v); got %+v", len(got), n, readErr, got)
	return nil
}

// libReadRaw reads exactly n bytes of r, for tests that pin the bytes on the
// wire. A short stream fails when the request's context ends.
func libReadRaw(t *testing.T, r io.Reader, n int) string {
	t.Helper()
	buf := make([]byte, n)
	if k, err := io.ReadFull(r, buf); err != nil {
		t.Fatalf("read %d bytes, want %d: %v; got %q", k, n, err, buf[:k])
	}
	return string(buf)
}

// libContext bounds a test's waits.
func libContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), libWait)
	t.Cleanup(cancel)
	return ctx
}

// TestLibDefaults pins sse.New's defaults. newHub turns AutoReplay off because
// it is on by default (it keeps every event forever and rewrites ids), sizes
// each connection's queue with BufferSize, and relies on AutoStream,
// EncodeBase64 and EventTTL being off or zero unless set.
func TestLibDefaults(t *testing.T) {
	t.Parallel()
	lib := sse.New()
	t.Cleanup(lib.Close)

	type defaults struct {
		AutoReplay, AutoStream, EncodeBase64, SplitData bool
		BufferSize                                      int
		EventTTL                                        time.Duration
		Headers                                         map[string]string
	}
	got := defaults{
		AutoReplay:   lib.AutoReplay,
		AutoStream:   lib.AutoStream,
		EncodeBase64: lib.EncodeBase64,
		SplitData:    lib.SplitData,
		BufferSize:   lib.BufferSize,
		EventTTL:     lib.EventTTL,
		Headers:      lib.Headers,
	}
	want := defaults{AutoReplay: true, BufferSize: 1024, Headers: map[string]string{}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sse.New() defaults (-want +got):\n%s", diff)
	}
	if sse.DefaultBufferSize != 1024 {
		t.Errorf("sse.DefaultBufferSize = %d, want 1024", sse.DefaultBufferSize)
	}
}

// TestLibResponseHeaders pins the headers ServeHTTP sets: the event-stream
// content type and no-cache, plus every entry of Server.Headers, which is how
// newHub adds X-Accel-Buffering: no for proxies.
func TestLibResponseHeaders(t *testing.T) {
	t.Parallel()
	ctx := libContext(t)
	h := newLibHarness(t, nil)
	h.lib.CreateStream("s")

	c := h.subscribe(ctx, t, "s")
	for name, want := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
	} {
		if got := c.header.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	// A dozing stream sends these itself (doze.go): they must be exactly
	// the library's. Connection is hop-by-hop (the taken-over stream sets its
	// own); the others here come from net/http.
	own := libHeaders(h.lib)
	for name, values := range c.header {
		switch name {
		case "Connection", "Date", "Transfer-Encoding", "Content-Length":
			continue
		}
		if !slices.Equal(own[name], values) {
			t.Errorf("the library sends %s: %q, libHeaders has %q", name, values, own[name])
		}
	}
	for name := range own {
		if _, sent := c.header[name]; !sent && name != "Connection" {
			t.Errorf("libHeaders has %s, which the library does not send", name)
		}
	}
}

// TestLibNoReplayWithAutoReplayOff pins that, with AutoReplay off, a
// subscriber gets only what is published after it registered. The hub replays
// from the engine's bounded history itself (hub.replay); a library replay on
// top would send events twice.
func TestLibNoReplayWithAutoReplayOff(t *testing.T) {
	t.Parallel()
	ctx := libContext(t)
	h := newLibHarness(t, nil)
	h.lib.CreateStream("s")

	// The first subscriber reading "old" proves the stream's goroutine has
	// handled it before the second subscriber registers.
	first := h.subscribe(ctx, t, "s")
	h.lib.Publish("s", &sse.Event{ID: []byte("1"), Data: []byte("old")})
	if got := libReadEvents(t, first.body, 1)[0].Data; got != "old" {
		t.Fatalf("first subscriber got data %q, want %q", got, "old")
	}

	second := h.subscribe(ctx, t, "s")
	h.lib.Publish("s", &sse.Event{ID: []byte("2"), Data: []byte("new")})
	got := libReadEvents(t, second.body, 1)[0]
	want := gosse.Event{LastEventID: "2", Data: "new"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("late subscriber's first event (-want +got):\n%s", diff)
	}
}

// TestLibAutoReplayRewritesIDsAndReplays pins why newHub turns AutoReplay off:
// with it on, the library overwrites the caller's event id with its own
// counter (mutating the shared *sse.Event) and replays its whole log to every
// new subscriber.
func TestLibAutoReplayRewritesIDsAndReplays(t *testing.T) {
	t.Parallel()
	ctx := libContext(t)
	h := newLibHarness(t, func(lib *sse.Server) { lib.AutoReplay = true })
	h.lib.CreateStream("s")

	first := h.subscribe(ctx, t, "s")
	ev := &sse.Event{ID: []byte("41"), Data: []byte("hello")}
	h.lib.Publish("s", ev)
	want := gosse.Event{LastEventID: "0", Data: "hello"}
	if diff := cmp.Diff(want, libReadEvents(t, first.body, 1)[0]); diff != "" {
		t.Errorf("live event with AutoReplay on (-want +got):\n%s", diff)
	}
	// The write happened before the frame was sent; reading the frame orders
	// this read after it.
	if got := string(ev.ID); got != "0" {
		t.Errorf("caller's event ID after Publish = %q, want the library's %q", got, "0")
	}

	second := h.subscribe(ctx, t, "s")
	if diff := cmp.Diff(want, libReadEvents(t, second.body, 1)[0]); diff != "" {
		t.Errorf("replayed event for a late subscriber (-want +got):\n%s", diff)
	}
}

// TestLibEventTTLDropsEverythingWithoutAutoReplay pins why newHub leaves
// EventTTL at 0: the library stamps an event's time only when it logs it for
// AutoReplay, so with AutoReplay off every event looks infinitely old and a
// TTL drops them all, data and comments alike.
func TestLibEventTTLDropsEverythingWithoutAutoReplay(t *testing.T) {
	t.Parallel()
	ctx := libContext(t)
	h := newLibHarness(t, func(lib *sse.Server) { lib.EventTTL = time.Hour })
	h.lib.CreateStream("s")

	c := h.subscribe(ctx, t, "s")
	h.lib.Publish("s", &sse.Event{ID: []byte("1"), Data: []byte("fresh")})
	h.lib.Publish("s", &sse.Event{Comment: []byte("ping")})
	h.lib.Publish("s", &sse.Event{}) // ends the response, so the body can be read to its end
	body, err := io.ReadAll(c.body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if len(body) != 0 {
		t.Errorf("body with EventTTL = 1h = %q, want nothing: every event dropped", body)
	}
	libRecv(ctx, t, h.unsubscribed, "OnUnsubscribe") // see newLibHarness
}

// libNoFlushWriter hides the recorder's Flush.
type libNoFlushWriter struct{ http.ResponseWriter }

// TestLibServeHTTPErrorStatuses pins the statuses ServeHTTP answers before it
// streams. EventSource gives up for good on any non-200, so sse.go must never
// let these reach the library: it parses and strips Last-Event-ID (400 for a
// non-numeric one), sets ?stream= to a stream it created (500 for a missing or
// unknown one), and its deadlineWriter implements http.Flusher (500 without).
func TestLibServeHTTPErrorStatuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		query       string
		lastEventID string
		noFlush     bool
		want        int
	}{
		{name: "non-numeric Last-Event-ID", query: "?stream=s", lastEventID: "abc", want: http.StatusBadRequest},
		{name: "Last-Event-ID beyond int", query: "?stream=s", lastEventID: "99999999999999999999", want: http.StatusBadRequest},
		{name: "unknown stream", query: "?stream=other", want: http.StatusInternalServerError},
		{name: "missing stream param", query: "", want: http.StatusInternalServerError},
		{name: "empty stream param", query: "?stream=", want: http.StatusInternalServerError},
		{name: "writer without http.Flusher", query: "?stream=s", noFlush: true, want: http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lib := sse.New()
			lib.AutoReplay = false
			t.Cleanup(lib.Close)
			lib.CreateStream("s")

			req := httptest.NewRequestWithContext(libContext(t), http.MethodGet, "/events"+tt.query, nil)
			if tt.lastEventID != "" {
				req.Header.Set("Last-Event-ID", tt.lastEventID)
			}
			rec := httptest.NewRecorder()
			var w http.ResponseWriter = rec
			if tt.noFlush {
				w = libNoFlushWriter{rec}
			}
			// Every case answers before subscribing, so ServeHTTP returns.
			lib.ServeHTTP(w, req)
			if rec.Code != tt.want {
				t.Errorf("ServeHTTP(%s, Last-Event-ID %q) status = %d, want %d", tt.query, tt.lastEventID, rec.Code, tt.want)
			}
		})
	}
}

// TestLibEventWithoutDataOrCommentEndsStream pins that an event with neither
// Data nor Comment (an id or event name do not count) makes ServeHTTP return
// for every subscriber of the stream. That is why the hub never publishes an
// empty event and its heartbeat is a comment.
func TestLibEventWithoutDataOrCommentEndsStream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ev   *sse.Event
	}{
		{name: "zero event", ev: &sse.Event{}},
		{name: "id and event name only", ev: &sse.Event{ID: []byte("5"), Event: []byte("bridge.v1.Empty")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := libContext(t)
			h := newLibHarness(t, nil)
			h.lib.CreateStream("s")
			a := h.subscribe(ctx, t, "s")
			b := h.subscribe(ctx, t, "s")

			h.lib.Publish("s", tt.ev)
			for _, c := range []libClient{a, b} {
				body, err := io.ReadAll(c.body)
				if err != nil {
					t.Fatalf("read body: %v", err)
				}
				if len(body) != 0 {
					t.Errorf("body = %q, want nothing", body)
				}
			}
			for range 2 {
				libRecv(ctx, t, h.returned, "ServeHTTP to return")
			}
			// The handlers returned before their subscribers deregistered; see
			// newLibHarness.
			for range 2 {
				libRecv(ctx, t, h.unsubscribed, "OnUnsubscribe")
			}
		})
	}
}

// TestLibCommentEventIsKeepAlive pins the hub's heartbeat (pingFrame): an
// event with only Comment "ping" is written as ": ping\n\n", which parsers
// ignore, and the stream goes on.
func TestLibCommentEventIsKeepAlive(t *testing.T) {
	t.Parallel()
	ctx := libContext(t)
	h := newLibHarness(t, nil)
	h.lib.CreateStream("s")
	c := h.subscribe(ctx, t, "s")

	h.lib.Publish("s", pingFrame)
	h.lib.Publish("s", &sse.Event{ID: []byte("1"), Data: []byte("after")})
	const want = ": ping\n\nid: 1\ndata: after\n\n"
	raw := libReadRaw(t, c.body, len(want))
	if raw != want {
		t.Errorf("bytes on the wire = %q, want %q", raw, want)
	}
	// A dozing stream writes its heartbeat itself (doze.go), in the same
	// bytes.
	if !bytes.HasPrefix([]byte(raw), pingBytes) {
		t.Errorf("the library writes the heartbeat as %q, a dozing stream as %q", raw[:len(": ping\n\n")], pingBytes)
	}
	got := libReadEvents(t, bytes.NewReader([]byte(raw)), 1)
	if diff := cmp.Diff([]gosse.Event{{LastEventID: "1", Data: "after"}}, got); diff != "" {
		t.Errorf("parsed events (-want +got):\n%s", diff)
	}
}

// TestLibFrameLayoutIsRaw pins how ServeHTTP writes an event: "id:", "data:",
// then "event:" if set, each field written as given, with nothing escaped or
// split. internal/payload and hub.go depend on it: data must be one line of JSON (a
// line feed in it cuts the payload), every data frame carries an id (an empty
// one still writes "id: ", which resets the browser's Last-Event-ID), and ids
// and event names are validated (a CR or LF in them injects fields).
func TestLibFrameLayoutIsRaw(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		events []*sse.Event
		raw    string
		parsed []gosse.Event
	}{
		{
			name:   "id, data, event in that order",
			events: []*sse.Event{{ID: []byte("7"), Data: []byte(`{"n":"1"}`), Event: []byte("bridge.v1.OrderCreated")}},
			raw:    "id: 7\ndata: {\"n\":\"1\"}\nevent: bridge.v1.OrderCreated\n\n",
			parsed: []gosse.Event{{LastEventID: "7", Type: "bridge.v1.OrderCreated", Data: `{"n":"1"}`}},
		},
		{
			name:   "no event line without a name",
			events: []*sse.Event{{ID: []byte("8"), Data: []byte("x")}},
			raw:    "id: 8\ndata: x\n\n",
			parsed: []gosse.Event{{LastEventID: "8", Data: "x"}},
		},
		{
			name:   "empty id resets Last-Event-ID",
			events: []*sse.Event{{ID: []byte("9"), Data: []byte("a")}, {Data: []byte("b")}},
			raw:    "id: 9\ndata: a\n\nid: \ndata: b\n\n",
			parsed: []gosse.Event{{LastEventID: "9", Data: "a"}, {LastEventID: "", Data: "b"}},
		},
		{
			name:   "LF in id injects a data line",
			events: []*sse.Event{{ID: []byte("1\ndata: injected"), Data: []byte("x")}},
			raw:    "id: 1\ndata: injected\ndata: x\n\n",
			parsed: []gosse.Event{{LastEventID: "1", Data: "injected\nx"}},
		},
		{
			name:   "CR in event name injects an id",
			events: []*sse.Event{{ID: []byte("2"), Data: []byte("x"), Event: []byte("a\rid: 666")}},
			raw:    "id: 2\ndata: x\nevent: a\rid: 666\n\n",
			parsed: []gosse.Event{{LastEventID: "666", Type: "a", Data: "x"}},
		},
		{
			name:   "LF in data cuts the payload",
			events: []*sse.Event{{ID: []byte("3"), Data: []byte("{\n}")}},
			raw:    "id: 3\ndata: {\n}\n\n",
			parsed: []gosse.Event{{LastEventID: "3", Data: "{"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := libContext(t)
			h := newLibHarness(t, nil)
			h.lib.CreateStream("s")
			c := h.subscribe(ctx, t, "s")

			for _, ev := range tt.events {
				h.lib.Publish("s", ev)
			}
			raw := libReadRaw(t, c.body, len(tt.raw))
			if raw != tt.raw {
				t.Errorf("bytes on the wire = %q, want %q", raw, tt.raw)
			}
			got := libReadEvents(t, bytes.NewReader([]byte(raw)), len(tt.parsed))
			if diff := cmp.Diff(tt.parsed, got); diff != "" {
				t.Errorf("parsed as a browser would (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLibTryPublishNeverBlocks pins what hub.offer and hub.heartbeat rely on:
// TryPublish returns false, without blocking, once a stream's buffer is full,
// and false for an unknown stream. It also shows why every connection gets its
// own library stream: one subscriber that stops reading makes TryPublish fail
// for the whole stream, although the other subscriber keeps reading.
func TestLibTryPublishNeverBlocks(t *testing.T) {
	t.Parallel()
	ctx := libContext(t)
	h := newLibHarness(t, func(lib *sse.Server) { lib.BufferSize = 1 })
	h.lib.CreateStream("s")
	_ = h.subscribe(ctx, t, "s") // never read: a stalled browser
	readCtx, stopReading := context.WithCancel(ctx)
	healthy := h.subscribe(readCtx, t, "s")
	readDone := make(chan struct{})
	go func() { // owned by this test, which waits for it below
		defer close(readDone)
		// Read until stopReading cancels the request; the error is that end.
		_, _ = io.Copy(io.Discard, healthy.body)
	}()
	defer func() {
		stopReading()
		<-readDone
	}()

	// The stalled subscriber fills the kernel's socket buffers, then its
	// 64-event channel, then the stream's goroutine blocks sending to it and
	// the stream's one-slot buffer fills. With 64 KiB events that is a few
	// hundred events at most; maxTries leaves a wide margin.
	const maxTries = 1 << 14
	ev := &sse.Event{ID: []byte("1"), Data: bytes.Repeat([]byte("x"), 64<<10)}
	tries := make(chan int, 1)
	go func() { // exits after at most maxTries non-blocking calls
		for i := range maxTries {
			if !h.lib.TryPublish("s", ev) {
				tries <- i + 1
				return
			}
		}
		tries <- -1
	}()
	select {
	case n := <-tries:
		if n < 0 {
			t.Errorf("TryPublish returned true %d times with a stalled subscriber, want false once the buffer is full", maxTries)
		}
	case <-ctx.Done():
		t.Fatalf("TryPublish blocked on a full stream: %v", ctx.Err())
	}

	if h.lib.TryPublish("unknown", &sse.Event{ID: []byte("1"), Data: []byte("x")}) {
		t.Errorf("TryPublish(unknown stream) = true, want false")
	}
}

// TestLibEncodeBase64MutatesEvent pins why newHub leaves EncodeBase64 off: it
// encodes the caller's event in place, so the one *sse.Event the hub shares
// between every connection (Event.frame) would be encoded again for each.
func TestLibEncodeBase64MutatesEvent(t *testing.T) {
	t.Parallel()
	lib := sse.New()
	lib.AutoReplay = false
	lib.EncodeBase64 = true
	t.Cleanup(lib.Close)
	lib.CreateStream("a")
	lib.CreateStream("b")

	ev := &sse.Event{ID: []byte("1"), Data: []byte("hi")}
	once := base64.StdEncoding.EncodeToString([]byte("hi"))
	twice := base64.StdEncoding.EncodeToString([]byte(once))

	// With no subscribers and AutoReplay off, the streams' goroutines never
	// touch ev's fields, so reading them here does not race.
	if !lib.TryPublish("a", ev) {
		t.Fatal("TryPublish(a) = false, want true")
	}
	if got := string(ev.Data); got != once {
		t.Errorf("Data after one publish = %q, want %q", got, once)
	}
	if !lib.TryPublish("b", ev) {
		t.Fatal("TryPublish(b) = false, want true")
	}
	if got := string(ev.Data); got != twice {
		t.Errorf("Data after a second publish = %q, want %q", got, twice)
	}
}

// TestLibOnSubscribeFiresAfterRegistration pins OnSubscribe: it runs on a
// goroutine of its own (one per connect, which is why the hub does not set
// it), with the stream id, once the subscriber is registered, so a frame
// published with the blocking Publish as soon as it fired reaches that
// subscriber. The harness relies on it.
func TestLibOnSubscribeFiresAfterRegistration(t *testing.T) {
	t.Parallel()
	h := newLibHarness(t, nil)

	// The harness's OnSubscribe blocks until the test takes its value, and
	// subscribe takes it only after the response headers arrived: that works
	// only if the library does not wait for OnSubscribe.
	h.lib.CreateStream("first")
	_ = h.subscribe(libContext(t), t, "first")

	// Here the test publishes the moment OnSubscribe fires, as hub.replay
	// does, without waiting for the response. Repeated, because a callback
	// that fired before registration would lose the frame only sometimes.
	type response struct {
		res *http.Response
		err error
	}
	for i := range 20 {
		ctx, cancel := context.WithTimeout(t.Context(), libWait)
		id := fmt.Sprintf("c-%d", i)
		h.lib.CreateStream(id)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.ts.URL+"/?stream="+id, nil)
		if err != nil {
			t.Fatalf("NewRequest: %v", err)
		}
		responses := make(chan response, 1)
		go func() { // ends with the request, which ctx bounds
			res, err := h.ts.Client().Do(req) //nolint:bodyclose // the test closes it at cleanup, after reading
			responses <- response{res, err}
		}()

		s := libRecv(ctx, t, h.subscribed, "OnSubscribe")
		if s.stream != id || s.sub == nil || s.sub.URL.Query().Get("stream") != id {
			t.Errorf("OnSubscribe(%q, %+v), want stream %q and its subscriber", s.stream, s.sub, id)
		}
		h.lib.Publish(id, &sse.Event{ID: []byte("1"), Data: []byte(id)})

		r := libRecv(ctx, t, responses, "response headers")
		if r.err != nil {
			t.Fatalf("GET ?stream=%s: %v", id, r.err)
		}
		t.Cleanup(func() { _ = r.res.Body.Close() })
		if got := libReadEvents(t, r.res.Body, 1)[0].Data; got != id {
			t.Errorf("stream %s: first event data %q, want %q", id, got, id)
		}
		cancel() // the client goes; its handler returns before the server's Close
	}
}

// TestLibCancelledRequestEndsHandler pins how the hub evicts and unregisters
// a connection: cancelling the request context the library got makes
// ServeHTTP return, after its subscriber deregistered (OnUnsubscribe), and
// removing the stream after that leaks no goroutine (hub.unregister).
func TestLibCancelledRequestEndsHandler(t *testing.T) {
	// Not parallel: goleak looks at every goroutine of the process. Ignore
	// those of earlier tests' runs that are still winding down.
	ignore := goleak.IgnoreCurrent()
	ctx := libContext(t)
	h := newLibHarness(t, nil)
	h.lib.CreateStream("s")
	c := h.subscribe(ctx, t, "s")

	h.lib.Publish("s", &sse.Event{ID: []byte("1"), Data: []byte("x")})
	libReadEvents(t, c.body, 1)

	// What hub.evict does: cancel the context sse.go gave the library.
	libRecv(ctx, t, h.cancels, "the request's cancel func")()
	if got := libRecv(ctx, t, h.returned, "ServeHTTP to return"); got != "s" {
		t.Errorf("ServeHTTP returned for stream %q, want %q", got, "s")
	}
	if got := libRecv(ctx, t, h.unsubscribed, "OnUnsubscribe"); got != "s" {
		t.Errorf("OnUnsubscribe(%q), want %q", got, "s")
	}
	h.lib.RemoveStream("s")
	if h.lib.StreamExists("s") {
		t.Error("StreamExists after RemoveStream = true, want false")
	}

	// The handler returned, so the response ends normally.
	if rest, err := io.ReadAll(c.body); err != nil || len(rest) != 0 {
		t.Errorf("rest of body = %q, %v; want nothing, no error", rest, err)
	}
	_ = c.body.Close()
	h.close()
	goleak.VerifyNone(t, ignore)
}

// libDeregister returns the channel a subscriber sends itself on to
// deregister. It is unexported, so reflect and unsafe reach it; if the field
// is gone the library changed and TestLibRemoveStreamWithLiveSubscriberLeaks
// needs a new look.
func libDeregister(t *testing.T, sub *sse.Subscriber) chan *sse.Subscriber {
	t.Helper()
	f := reflect.ValueOf(sub).Elem().FieldByName("quit")
	if !f.IsValid() || f.Type() != reflect.TypeFor[chan *sse.Subscriber]() {
		t.Fatalf("sse.Subscriber has no field quit chan *sse.Subscriber: re-check how RemoveStream treats live subscribers")
	}
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface().(chan *sse.Subscriber)
}

// TestLibRemoveStreamWithLiveSubscriberLeaks pins why hub.unregister removes
// a connection's stream only after the library's handler returned (and why
// Server.Close comes last at shutdown): RemoveStream with a live subscriber
// ends its response, but the stream's goroutine is gone, so the subscriber's
// deregistration, sent when its request context ends, blocks forever. The
// test proves it by receiving that send itself, which also frees the
// goroutine so it does not leak into other tests.
func TestLibRemoveStreamWithLiveSubscriberLeaks(t *testing.T) {
	t.Parallel()
	ctx := libContext(t)
	h := newLibHarness(t, nil)
	h.lib.CreateStream("s")
	c := h.subscribe(ctx, t, "s")
	deregister := libDeregister(t, c.sub)

	h.lib.RemoveStream("s")
	if rest, err := io.ReadAll(c.body); err != nil || len(rest) != 0 {
		t.Errorf("body after RemoveStream = %q, %v; want nothing, no error", rest, err)
	}
	libRecv(ctx, t, h.returned, "ServeHTTP to return")
	// The harness cancelled the library's request context as its handler
	// returned; the stream's goroutine had already exited, so nobody else
	// receives this.
	select {
	case got := <-deregister:
		if got != c.sub {
			t.Errorf("deregistered subscriber %p, want %p", got, c.sub)
		}
	case <-ctx.Done():
		t.Fatalf("no goroutine is stuck deregistering after RemoveStream with a live subscriber: "+
			"the library changed, re-check hub.unregister and the shutdown order (%v)", ctx.Err())
	}
}

// flushHook is a ResponseWriter whose first Flush calls onFirst, as the
// bridge's deadlineWriter does.
type flushHook struct {
	http.ResponseWriter
	onFirst func()
	flushed bool
}

func (w *flushHook) Flush() {
	if !w.flushed {
		w.flushed = true
		w.onFirst()
	}
	w.ResponseWriter.(http.Flusher).Flush()
}

// TestLibFirstFlushComesAfterRegistration pins what hub.subscribed relies
// on: the library registers the subscriber before it writes and flushes the
// headers, so a frame queued with TryPublish from inside that first Flush, on
// the handler's own goroutine, reaches the client. Repeated, because a flush
// before registration would lose the frame only sometimes.
func TestLibFirstFlushComesAfterRegistration(t *testing.T) {
	t.Parallel()
	lib := newPlainLib()
	queued := make(chan bool, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("stream")
		hook := &flushHook{ResponseWriter: w, onFirst: func() {
			queued <- lib.TryPublish(id, &sse.Event{ID: []byte("1"), Data: []byte(id)})
		}}
		lib.ServeHTTP(hook, r)
	}))
	t.Cleanup(func() {
		ts.Close()
		lib.Close()
	})
	for i := range 20 {
		ctx, cancel := context.WithTimeout(t.Context(), libWait)
		id := fmt.Sprintf("c-%d", i)
		lib.CreateStream(id)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/?stream="+id, nil)
		if err != nil {
			t.Fatalf("NewRequest: %v", err)
		}
		res, err := ts.Client().Do(req)
		if err != nil {
			t.Fatalf("GET ?stream=%s: %v", id, err)
		}
		if !libRecv(ctx, t, queued, "the first Flush") {
			t.Fatalf("stream %s: TryPublish in the first Flush = false, want true", id)
		}
		if got := libReadEvents(t, res.Body, 1)[0].Data; got != id {
			t.Errorf("stream %s: first event data %q, want %q", id, got, id)
		}
		cancel()
		_ = res.Body.Close()
	}
}

// newPlainLib is a library server set up as hub.go sets it, without the
// harness (tests that serve it with a handler of their own).
func newPlainLib() *sse.Server {
	lib := sse.New()
	lib.AutoReplay = false
	lib.AutoStream = false
	lib.EventTTL = 0
	return lib
}

// doneHookCtx counts the Done calls on a request context, and blocks the
// first one until release is closed (h1stream.WatchContext blocks it in a read).
type doneHookCtx struct {
	context.Context
	calls   chan struct{} // one value per Done call
	release chan struct{}
	once    sync.Once
}

func (c *doneHookCtx) Done() <-chan struct{} {
	c.calls <- struct{}{}
	first := false
	c.once.Do(func() { first = true })
	if first {
		<-c.release
	}
	return c.Context.Done()
}

// h1stream.WatchContext (internal/h1stream) relies on this: the library calls Done on the
// request's context once per request, on a goroutine of its own (the
// handler goes on serving frames while that call blocks), and ends the
// handler once the channel that call returned is closed.
func TestLibWaitsForTheEndOnItsOwnGoroutine(t *testing.T) {
	t.Parallel()
	lib := newPlainLib()
	lib.CreateStream("w")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hook := &doneHookCtx{Context: ctx, calls: make(chan struct{}, 8), release: make(chan struct{})}
	returned := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lib.ServeHTTP(w, r.WithContext(hook)) //nolint:contextcheck // the test's own context, whose Done calls it counts
		close(returned)
	}))
	t.Cleanup(func() {
		ts.Close()
		lib.Close()
	})
	reqCtx, stop := context.WithTimeout(t.Context(), libWait)
	defer stop()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, ts.URL+"/?stream=w", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer func() { _ = res.Body.Close() }()
	libRecv(reqCtx, t, hook.calls, "the first Done call (without it, h1stream.WatchContext never watches the connection: re-check internal/h1stream)")
	// That call blocks, and frames still flow: it is not on the handler's
	// goroutine.
	if !lib.TryPublish("w", &sse.Event{ID: []byte("1"), Data: []byte("while Done blocks")}) {
		t.Fatal("TryPublish = false")
	}
	if got := libReadEvents(t, res.Body, 1)[0].Data; got != "while Done blocks" {
		t.Fatalf("data %q while the Done call blocks", got)
	}
	select {
	case <-hook.calls:
		t.Fatal("a second Done call: h1stream.WatchContext watches on the first only, and any other caller would block (re-check internal/h1stream)")
	default:
	}
	// Once the first call returns a closed channel, the handler ends.
	cancel()
	close(hook.release)
	select {
	case <-returned:
	case <-time.After(libWait):
		t.Fatal("the handler did not return after the context's Done channel closed")
	}
	select {
	case <-hook.calls:
		t.Fatal("Done called again before the handler returned (re-check internal/h1stream)")
	default:
	}
}

// drainWriter is a ResponseWriter whose first write of a frame's data
// blocks until release is closed, as a write to a peer that stopped reading
// does until its deadline; from then on every write fails, as on an evicted
// connection. It counts the data writes that follow, and whether any was
// the frame's own bytes rather than a copy.
type drainWriter struct {
	header     http.Header
	data       []byte // the frames' shared data
	release    chan struct{}
	blocked    chan struct{} // closed when the first data write blocks
	registered chan struct{} // closed by the first Flush (see TestLibFirstFlushComesAfterRegistration)
	flushed    sync.Once

	mu       sync.Mutex
	failed   int  // data writes after release
	borrowed bool // a data write passed data itself, not a copy
}

func (w *drainWriter) Header() http.Header { return w.header }
func (w *drainWriter) WriteHeader(int)     {}
func (w *drainWriter) Flush()              { w.flushed.Do(func() { close(w.registered) }) }

func (w *drainWriter) Write(p []byte) (int, error) {
	i := bytes.Index(p, w.data)
	if i < 0 {
		return len(p), nil // the id:, the blank line
	}
	w.mu.Lock()
	first := w.blocked != nil
	w.borrowed = w.borrowed || &p[i] == &w.data[0]
	if first {
		close(w.blocked)
		w.blocked = nil
	} else {
		w.failed++
	}
	w.mu.Unlock()
	if first {
		<-w.release
	}
	return 0, errEvicted
}

// TestLibWritesEveryQueuedFrameAfterTheEnd pins why the bridge lets dying
// connections finish a few at a time (deadlineWriter.die): once a
// subscriber's request ended, its handler still formats and writes every
// frame its queue holds (a copy of each: fmt's, never the frame's own
// bytes) before it returns, however every write fails; nothing the bridge
// can do stops it earlier, short of an empty event, which it cannot queue
// behind a full queue.
func TestLibWritesEveryQueuedFrameAfterTheEnd(t *testing.T) {
	t.Parallel()
	lib := newPlainLib()
	lib.BufferSize = 8
	lib.CreateStream("d")
	t.Cleanup(lib.Close) // after the handler returned: nothing leaks
	data := bytes.Repeat([]byte("y"), 1024)
	w := &drainWriter{header: http.Header{}, data: data, release: make(chan struct{}), blocked: make(chan struct{}), registered: make(chan struct{})}
	blocked := w.blocked
	ctx, cancel := context.WithCancel(libContext(t))
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/?stream=d", nil)
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		lib.ServeHTTP(w, req)
	}()
	ev := &sse.Event{ID: []byte("1"), Data: data}
	libRecv(ctx, t, w.registered, "the subscriber to be registered")
	if !lib.TryPublish("d", ev) {
		t.Fatal("TryPublish on an empty stream = false")
	}
	libRecv(ctx, t, blocked, "the first write to block")
	// Fill the subscriber's channel (64 frames) and the stream's buffer (8),
	// which the stream's goroutine empties into the channel as it goes.
	queued := 0
	for start := time.Now(); queued < 64+8 && time.Since(start) < libWait; {
		if lib.TryPublish("d", ev) {
			queued++
		} else {
			time.Sleep(time.Millisecond)
		}
	}
	cancel() // the end of the request: what hub.evict does
	close(w.release)
	libRecv(libContext(t), t, returned, "ServeHTTP to return")
	w.mu.Lock()
	defer w.mu.Unlock()
	// The subscriber's channel holds 64 frames, the stream's buffer 8 more.
	if queued < 64 || w.failed < 64 {
		t.Errorf("%d frames queued, %d written (and refused) after the request ended; want at least the subscriber's 64: "+
			"the library changed, re-check deadlineWriter.die", queued, w.failed)
	}
	if w.borrowed {
		t.Error("the library wrote a frame's own data, not a copy: re-check maxGroupBytes")
	}
}
