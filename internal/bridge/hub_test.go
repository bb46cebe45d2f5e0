package bridge

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gosse "github.com/tmaxmax/go-sse"
)

const hubWaitLimit = 30 * time.Second

// hubFixture is an engine, a hub and the SSE handler on a loopback server,
// without gRPC: events are published straight into the engine.
type hubFixture struct {
	engine *MemoryEngine
	hub    *hub
	srv    *httptest.Server
}

func newHubFixture(t *testing.T, queueSize int, writeTimeout, heartbeat time.Duration) *hubFixture {
	t.Helper()
	engine := NewMemoryEngine(1000, time.Hour)
	h := newHub(engine, queueSize, 10_000, testLogger(t))
	hs := serveHub(t, h, &sseHandler{hub: h, maxStreams: 8, writeTimeout: writeTimeout, log: h.log})
	hs.goRun(func(ctx context.Context) { _ = engine.Run(ctx, h.deliver) })
	if heartbeat > 0 {
		hs.goRun(func(ctx context.Context) { h.heartbeat(ctx, heartbeat) })
	}
	return &hubFixture{engine: engine, hub: h, srv: hs.srv}
}

// hubServer is sh, the SSE handler of hub h, on a loopback server, and the
// goroutines a test runs for it (goRun), all stopped when the test ends in
// Serve's order: the hub closes, the server and the streams end, then the
// goroutines, then the library.
type hubServer struct {
	srv *httptest.Server
	ctx context.Context // ends when the test does, before wg is waited for
	wg  *sync.WaitGroup
}

func serveHub(t *testing.T, h *hub, sh *sseHandler) *hubServer {
	t.Helper()
	return serveHubWith(t, h, sh, (*httptest.Server).Start)
}

// serveHubWith is serveHub with the server started by start (StartTLS,
// say).
func serveHubWith(t *testing.T, h *hub, sh *sseHandler, start func(*httptest.Server)) *hubServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	hs := &hubServer{srv: httptest.NewUnstartedServer(sh), ctx: ctx, wg: &sync.WaitGroup{}}
	start(hs.srv)
	t.Cleanup(func() {
		h.close()
		hs.srv.Close()
		sh.wait(context.Background(), h.cutWrites) // the streams on taken-over connections
		cancel()
		hs.wg.Wait()
		h.lib.Close()
	})
	return hs
}

// goRun runs f on a goroutine until the test ends (f must return once its
// context does).
func (hs *hubServer) goRun(f func(ctx context.Context)) {
	hs.wg.Go(func() { f(hs.ctx) })
}

func (f *hubFixture) publish(t *testing.T, stream string, data string) uint64 {
	t.Helper()
	id, err := f.engine.Publish(t.Context(), &Event{Stream: stream, Data: []byte(data)})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return id
}

// testLogger logs through t, so failures show what the hub did.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// readIDs reads frames from body and sends each frame's id, until the body ends.
func readIDs(body io.Reader, ids chan<- string) {
	defer close(ids)
	for ev, err := range gosse.Read(body, &gosse.ReadConfig{MaxEventSize: 1 << 20}) {
		if err != nil {
			return
		}
		ids <- ev.LastEventID
	}
}

// getEvents subscribes and returns the event stream's body, closed at cleanup.
func getEvents(t *testing.T, url string, header http.Header) io.Reader {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d, want 200", url, resp.StatusCode)
	}
	return resp.Body
}

// TestStalledClientIsEvictedAlone: a client that connects and never reads
// fills its own queue and is evicted, while another subscriber of the same
// stream receives every event and every publish succeeds.
func TestStalledClientIsEvictedAlone(t *testing.T) {
	t.Parallel()
	f := newHubFixture(t, 8, 2*time.Second, 0)

	// The stalled client: a raw TCP connection with a small receive buffer
	// that sends its request and then reads nothing.
	stalled, err := dialSmallBuffer(t.Context(), f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stalled.Close() }()
	if _, err := fmt.Fprintf(stalled, "GET /events?stream=orders HTTP/1.1\r\nHost: bridge\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Once its response headers arrived, the connection is registered.
	br := bufio.NewReader(stalled)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("stalled client status line %q, %v", line, err)
	}

	reader := getEvents(t, f.srv.URL+"/events?stream=orders", nil)
	ids := make(chan string, 16)
	go readIDs(reader, ids)

	// Big events, many more bytes than the socket buffers hold.
	const n = 300
	payload := `"` + strings.Repeat("x", 32<<10) + `"`
	var published []uint64
	for range n {
		published = append(published, f.publish(t, "orders", payload))
		// Read as we go: the healthy reader keeps up.
		select {
		case got := <-ids:
			if got != strconv.FormatUint(published[len(published)-1], 10) {
				t.Fatalf("healthy reader got frame %s, want %d", got, published[len(published)-1])
			}
		case <-time.After(hubWaitLimit):
			t.Fatalf("healthy reader got no frame for event %d", len(published))
		}
	}

	// The stalled connection was closed by the bridge: draining it ends in
	// EOF, with fewer frames than were published.
	_ = stalled.SetReadDeadline(time.Now().Add(hubWaitLimit))
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("stalled connection: %v after %d bytes, want EOF (evicted)", err, len(rest))
	}
	if frames := strings.Count(string(rest), "\nid: "); frames >= n {
		t.Errorf("stalled client received %d frames, want fewer than %d (evicted)", frames, n)
	}
	evicted := f.hub.evictionCount(evictQueueFull) + f.hub.evictionCount(evictWriteDeadline)
	if evicted != 1 {
		t.Errorf("evictions = %d, want 1 (only the stalled client)", evicted)
	}
	// The same count is what /metrics exports.
	families, err := newMetrics(f.hub, f.engine).reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var exported float64
	for _, mf := range families {
		if mf.GetName() == "bridge_sse_evictions_total" {
			for _, m := range mf.GetMetric() {
				exported += m.GetCounter().GetValue()
			}
		}
	}
	if exported != float64(evicted) {
		t.Errorf("bridge_sse_evictions_total = %v, want %d", exported, evicted)
	}
}

// TestLongReplayDoesNotEvict: a resume that replays far more events than the
// connection's queue holds is paced, not evicted, and ends in live events.
func TestLongReplayDoesNotEvict(t *testing.T) {
	t.Parallel()
	f := newHubFixture(t, 4, 10*time.Second, 0)
	first := f.publish(t, "orders", `"first"`)
	var want []uint64
	for i := range 200 {
		want = append(want, f.publish(t, "orders", strconv.Itoa(i)))
	}
	body := getEvents(t, f.srv.URL+"/events?stream=orders", http.Header{"Last-Event-Id": {strconv.FormatUint(first, 10)}})
	ids := make(chan string, 1)
	go readIDs(body, ids)
	want = append(want, f.publish(t, "orders", `"live"`)) // may land in replay or in pending
	for _, w := range want {
		select {
		case got := <-ids:
			if got != strconv.FormatUint(w, 10) {
				t.Fatalf("frame %s, want %d", got, w)
			}
		case <-time.After(hubWaitLimit):
			t.Fatalf("no frame for event %d", w)
		}
	}
	if n := f.hub.evictionCount(evictQueueFull); n != 0 {
		t.Errorf("evictions = %d, want 0", n)
	}
}

// TestHeartbeatIsAComment: connections get ": ping" comments, which
// EventSource ignores, and stay open.
func TestHeartbeatIsAComment(t *testing.T) {
	t.Parallel()
	f := newHubFixture(t, 8, 10*time.Second, 10*time.Millisecond)
	br := bufio.NewReader(getEvents(t, f.srv.URL+"/events?stream=quiet", nil))
	for range 3 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if line != ": ping\n" {
			t.Fatalf("line %q, want a heartbeat comment", line)
		}
		if blank, _ := br.ReadString('\n'); blank != "\n" {
			t.Fatalf("after the comment %q, want a blank line", blank)
		}
	}
	id := f.publish(t, "quiet", `"still open"`)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if line == "id: "+strconv.FormatUint(id, 10)+"\n" {
			return
		}
	}
}

// TestClosedHubAnswers200AndEnds: while shutting down, a subscribe gets 200
// and an immediately ended stream (the browser retries), never an error
// status, which would stop EventSource for good.
func TestClosedHubAnswers200AndEnds(t *testing.T) {
	t.Parallel()
	f := newHubFixture(t, 8, 10*time.Second, 0)
	f.hub.close()
	body, err := io.ReadAll(getEvents(t, f.srv.URL+"/events?stream=orders", nil))
	if err != nil || !regexp.MustCompile(`^retry: \d+\n: draining\n\n$`).Match(body) {
		t.Errorf("body %q, %v: want a retry:, a comment and the end of the stream", body, err)
	}
	if n := f.hub.connCount(); n != 0 {
		t.Errorf("connections = %d, want 0", n)
	}
}

// TestGroupArrivesAsSeparateFrames: a group of events handed to a connection
// as one library event reaches the browser as exactly the separate frames,
// in every format.
func TestGroupArrivesAsSeparateFrames(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	batch := []*Event{
		{ID: 1<<62 + 1, Stream: "g", Type: "shop.v1.OrderCreated", Data: []byte(`{"n":1}`), Time: at},
		{ID: 1<<62 + 2, Stream: "g", Data: []byte(`"untyped"`), Time: at},
		{ID: 1<<62 + 3, Stream: "other", Data: []byte(`"not subscribed"`), Time: at},
		{ID: 1<<62 + 4, Stream: "g", Type: "note", Data: []byte(`[1,2]`), Time: at},
		{ID: 1<<62 + 5, Stream: "g", Type: "note", Data: []byte(`{"last":true}`), Time: at},
	}
	for _, format := range []string{"data", "envelope", "cloudevents"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			f := newHubFixture(t, 8, 10*time.Second, 0)
			body := getEvents(t, f.srv.URL+"/events?stream=g&format="+format, nil)
			events := make(chan gosse.Event, len(batch))
			go func() {
				for ev, err := range gosse.Read(body, nil) {
					if err != nil {
						return
					}
					events <- ev
				}
			}()
			// Wait until the connection is live: a heartbeat-free probe
			// event published through the engine arrives first.
			probe := f.publish(t, "g", `"probe"`)
			if got := <-events; got.LastEventID != strconv.FormatUint(probe, 10) {
				t.Fatalf("probe frame %+v", got)
			}
			f.hub.deliver(batch)
			fm, _ := parseFormat(format)
			for _, want := range []*Event{batch[0], batch[1], batch[3], batch[4]} {
				fr := want.frame(fm, defaultCloudEvents)
				select {
				case got := <-events:
					if got.LastEventID != string(fr.ID) || got.Type != string(fr.Event) || got.Data != string(fr.Data) {
						t.Errorf("frame %+v, want id %s event %q data %s", got, fr.ID, fr.Event, fr.Data)
					}
				case <-time.After(hubWaitLimit):
					t.Fatalf("no frame for event %d", want.ID)
				}
			}
		})
	}
}

// TestFreshConnectionGetsEveryEvent: a connection that is not a resume gets
// every event delivered to it, whatever id it was registered with: only a
// resume skips the events up to its Last-Event-ID. (An all-digit
// Last-Event-ID above the uint64 range once reached the hub as MaxUint64
// without resume, and the connection skipped every event, for good.)
func TestFreshConnectionGetsEveryEvent(t *testing.T) {
	t.Parallel()
	h := newHub(NewMemoryEngine(10, time.Hour), 8, 10, testLogger(t))
	t.Cleanup(h.lib.Close)
	c, err := h.register([]string{"s"}, FormatData, false, math.MaxUint64, noOutput{}, func() {})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	defer h.unregister(c)
	h.openLibStream(c)
	h.deliver([]*Event{{ID: 5, Stream: "s", Data: []byte("1")}}) // held: not live yet
	if done := h.subscribed(t.Context(), c); done != nil {
		t.Fatal("subscribed started a replay for a connection that is not a resume")
	}
	h.deliver([]*Event{{ID: 6, Stream: "s", Data: []byte("2")}}) // live
	c.mu.Lock()
	live, last := c.live, c.lastID
	c.mu.Unlock()
	if queued := c.queued.Load(); !live || last != 6 || queued != 2 {
		t.Fatalf("after events 5 and 6: live %v, lastID %d, frames queued %d; want live, 6, 2", live, last, queued)
	}
}

// noOutput is a connection's writer that nothing is written to.
type noOutput struct{}

func (noOutput) Flush() error                     { return nil }
func (noOutput) SetWriteDeadline(time.Time) error { return nil }

// TestSpreadBatchIsGroupedPerStream: a batch that interleaves streams
// reaches a connection of one stream as one group of all its events (up to
// maxGroup), in id order, and a connection of several streams as runs of
// consecutive events, every frame in id order; as does a batch whose
// streams each come in one run.
func TestSpreadBatchIsGroupedPerStream(t *testing.T) {
	t.Parallel()
	h := newHub(NewMemoryEngine(10, time.Hour), 256, 10, testLogger(t))
	sinkConn := func(streams ...string) *conn {
		c := newConn(streams, FormatData, false, 0, sinkOutput{}, func() {})
		c.sink = &sink{ch: make(chan sinkItem, 256)}
		c.live = true
		if err := h.add(c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, ab, c := sinkConn("a"), sinkConn("a", "b"), sinkConn("c")
	// a, b, c, a, b, c, ...: 3 × 70 events, a's and c's more than a group.
	var batch []*Event
	for i := range 210 {
		batch = append(batch, &Event{ID: uint64(i + 1), Stream: string(rune('a' + i%3)), Data: []byte(`1`)})
	}
	h.deliver(batch)
	h.deliver([]*Event{{ID: 211, Stream: "a", Data: []byte(`1`)}, {ID: 212, Stream: "a", Data: []byte(`1`)}, {ID: 213, Stream: "b", Data: []byte(`1`)}})

	// received returns the ids c got, and the size of each item.
	received := func(c *conn) (ids []uint64, sizes []int) {
		for {
			select {
			case it := <-c.sink.ch:
				evs := it.group
				if it.event != nil {
					evs = []*Event{it.event}
				}
				for _, ev := range evs {
					ids = append(ids, ev.ID)
				}
				sizes = append(sizes, len(evs))
			default:
				return ids, sizes
			}
		}
	}
	want := func(streams string) []uint64 {
		var ids []uint64
		for i := range 213 {
			s := string(rune('a' + i%3))
			if i >= 210 {
				s = []string{"a", "a", "b"}[i-210]
			}
			if strings.Contains(streams, s) {
				ids = append(ids, uint64(i+1))
			}
		}
		return ids
	}
	for _, tc := range []struct {
		c         *conn
		streams   string
		wantSizes []int
	}{
		{a, "a", []int{maxGroup, 70 - maxGroup, 2}},
		{c, "c", []int{maxGroup, 70 - maxGroup}},
		{ab, "ab", nil}, // runs: one event each but the last batch's a, a
	} {
		ids, sizes := received(tc.c)
		if fmt.Sprint(ids) != fmt.Sprint(want(tc.streams)) {
			t.Errorf("connection of %s got ids %v, want %v", tc.streams, ids, want(tc.streams))
		}
		if tc.wantSizes != nil && fmt.Sprint(sizes) != fmt.Sprint(tc.wantSizes) {
			t.Errorf("connection of %s got groups of %v events, want %v", tc.streams, sizes, tc.wantSizes)
		}
		if tc.wantSizes == nil && len(sizes) != 140+2 {
			t.Errorf("connection of %s got %d groups, want one per run: 142", tc.streams, len(sizes))
		}
	}
}

// TestUnregisterKeepsSubscriberLists: connections leaving in any order, some
// of several streams and one of a stream twice, leave each stream's list of
// subscribers holding exactly those still there, each knowing its place.
func TestUnregisterKeepsSubscriberLists(t *testing.T) {
	t.Parallel()
	h := newHub(NewMemoryEngine(10, time.Hour), 8, 10, testLogger(t))
	t.Cleanup(h.lib.Close)
	subs := [][]string{{"a"}, {"a", "b"}, {"b"}, {"a", "a"}, {"c", "a", "b"}, {"a"}, {"b", "c"}, {"a"}}
	var conns []*conn
	for _, streams := range subs {
		c, err := h.register(streams, FormatData, false, 0, noOutput{}, func() {})
		if err != nil {
			t.Fatalf("register %v: %v", streams, err)
		}
		h.openLibStream(c)
		conns = append(conns, c)
	}
	check := func(left []*conn) {
		t.Helper()
		want := map[string]int{}
		for _, c := range left {
			for _, s := range c.streams {
				want[s]++
			}
		}
		h.mu.RLock()
		defer h.mu.RUnlock()
		if len(h.subs) != len(want) {
			t.Fatalf("lists of %d streams, want %d", len(h.subs), len(want))
		}
		for s, n := range want {
			if len(h.subs[s]) != n {
				t.Fatalf("stream %s lists %d subscribers, want %d", s, len(h.subs[s]), n)
			}
		}
		for _, c := range left {
			for j, s := range c.streams {
				if i := c.subAt[j]; i >= len(h.subs[s]) || h.subs[s][i] != c {
					t.Fatalf("connection of %v: its place %d in %s's list does not hold it", c.streams, i, s)
				}
			}
		}
	}
	check(conns)
	for _, i := range []int{3, 0, 7, 4, 1, 6, 2, 5} {
		h.unregister(conns[i])
		h.unregister(conns[i]) // a second time changes nothing
		conns[i] = nil
		check(slices.DeleteFunc(slices.Clone(conns), func(c *conn) bool { return c == nil }))
	}
}
