package bridge

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dozing returns the connections of h that doze, and whether any of them
// has a library stream (none should).
func dozing(h *hub) (n int, withLibStream bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, c := range h.conns {
		c.mu.Lock()
		if c.sleeper != nil {
			n++
			withLibStream = withLibStream || h.lib.StreamExists(c.id)
		}
		c.mu.Unlock()
	}
	return n, withLibStream
}

// waitDozing waits until want connections of h doze.
func waitDozing(t *testing.T, h *hub, want int) {
	t.Helper()
	deadline := time.Now().Add(hubWaitLimit)
	for {
		n, lib := dozing(h)
		if lib {
			t.Fatal("a dozing connection has a library stream")
		}
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections doze, want %d", n, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawSubscribe opens an HTTP/1.1 subscription over a plain TCP connection
// (no client goroutines) and returns its reader, past the headers.
func rawSubscribe(t *testing.T, addr, stream string) *bufio.Reader {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, hubWaitLimit)
	if err != nil {
		t.Fatal(err)
	}
	var resp *http.Response
	t.Cleanup(func() {
		// The connection first: closing an endless body reads it to its end.
		_ = nc.Close()
		if resp != nil {
			_ = resp.Body.Close()
		}
	})
	_ = nc.SetDeadline(time.Now().Add(hubWaitLimit))
	if _, err := fmt.Fprintf(nc, "GET /events?stream=%s HTTP/1.1\r\nHost: bridge\r\n\r\n", stream); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("subscribe: status %d", resp.StatusCode)
	}
	return bufio.NewReader(resp.Body)
}

// countStacks returns how many goroutines have a frame whose function name
// contains fn.
func countStacks(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			count++
		}
	}
	return count
}

// TestDozingConnectionCostsOneGoroutine: a connection that has had no event
// yet runs on one goroutine, with no library stream (so neither of the
// library's goroutines), and heartbeats reach it all the same. Not parallel:
// it counts the process's goroutines.
func TestDozingConnectionCostsOneGoroutine(t *testing.T) {
	const n = 20
	f := newHubFixture(t, 8, 10*time.Second, 0)
	// Counted before and after: goroutines of tests that ran before may still
	// be ending, so the counts may only fall meanwhile, never rise.
	libRuns, libHandlers, dozers := countStacks("sse/v2.(*Stream).run"), countStacks("sse/v2.(*Server).ServeHTTP"), countStacks("bridge.(*sseHandler).doze")
	for i := range n {
		rawSubscribe(t, f.srv.Listener.Addr().String(), "idle-"+strconv.Itoa(i%3))
	}
	waitDozing(t, f.hub, n)
	if got := f.hub.stats.dozing.Load(); got != n {
		t.Errorf("dozing gauge %d, want %d", got, n)
	}
	if got := countStacks("bridge.(*sseHandler).doze"); got < n || got > dozers+n {
		t.Errorf("%d goroutines doze (%d before), want %d more (one per connection)", got, dozers, n)
	}
	if got := countStacks("sse/v2.(*Stream).run"); got > libRuns {
		t.Errorf("library stream goroutines %d, want at most %d as before the connects", got, libRuns)
	}
	if got := countStacks("sse/v2.(*Server).ServeHTTP"); got > libHandlers {
		t.Errorf("%d goroutines in the library's handler, want at most %d as before the connects", got, libHandlers)
	}
}

// TestDozingConnectionGetsHeartbeatsThenEvents: heartbeats reach a dozing
// connection (and leave it dozing); its first event wakes it, and then it
// gets every event once, in order, live.
func TestDozingConnectionGetsHeartbeatsThenEvents(t *testing.T) {
	t.Parallel()
	f := newHubFixture(t, 8, 10*time.Second, 5*time.Millisecond)
	br := rawSubscribe(t, f.srv.Listener.Addr().String(), "quiet")
	for range 3 {
		frame := readRawFrame(t, br)
		if frame != string(pingBytes) {
			t.Fatalf("frame %q, want the heartbeat %q", frame, pingBytes)
		}
	}
	if n, lib := dozing(f.hub); n != 1 || lib {
		t.Fatalf("after heartbeats: %d dozing (library stream: %v), want 1 without", n, lib)
	}
	var want []string
	for i := range 5 {
		want = append(want, strconv.FormatUint(f.publish(t, "quiet", strconv.Itoa(i)), 10))
	}
	for i := 0; i < len(want); {
		frame := readRawFrame(t, br)
		if frame == string(pingBytes) {
			continue
		}
		if !strings.HasPrefix(frame, "id: "+want[i]+"\ndata: "+strconv.Itoa(i)+"\n") {
			t.Fatalf("frame %d: %q, want id %s", i, frame, want[i])
		}
		i++
	}
	if n, _ := dozing(f.hub); n != 0 {
		t.Errorf("%d connections doze after their events, want 0", n)
	}
	if got := f.hub.stats.dozing.Load(); got != 0 {
		t.Errorf("dozing gauge %d after the events, want 0", got)
	}
}

// readRawFrame reads one SSE frame, up to and including its blank line.
func readRawFrame(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read after %q: %v", b.String(), err)
		}
		b.WriteString(line)
		if line == "\n" {
			return b.String()
		}
	}
}

// TestDozingConnectionWokenByABurst: events that reach a dozing connection
// before the library has it are held, and sent first once it has; more of
// them than its queue holds are read back from history instead. Either way
// the client gets each event once, in order, and is not evicted. The
// events are published before the dispatcher runs, so they reach the
// connection as one batch, all before it wakes.
func TestDozingConnectionWokenByABurst(t *testing.T) {
	t.Parallel()
	const queue = 8
	for _, burst := range []int{queue / 2, 3 * queue} {
		t.Run(strconv.Itoa(burst), func(t *testing.T) {
			t.Parallel()
			engine := NewMemoryEngine(1000, time.Hour)
			h := newHub(engine, queue, 10_000, testLogger(t))
			hs := serveHub(t, h, &sseHandler{hub: h, maxStreams: 8, writeTimeout: 10 * time.Second, log: h.log})

			br := rawSubscribe(t, hs.srv.Listener.Addr().String(), "burst")
			waitDozing(t, h, 1)
			var want []string
			publish := func(i int) {
				id, err := engine.Publish(t.Context(), &Event{Stream: "burst", Data: []byte(strconv.Itoa(i))})
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, strconv.FormatUint(id, 10))
			}
			for i := range burst {
				publish(i)
			}
			hs.goRun(func(ctx context.Context) { _ = engine.Run(ctx, h.deliver) })
			for i := range want {
				frame := readRawFrame(t, br)
				if !strings.HasPrefix(frame, "id: "+want[i]+"\ndata: "+strconv.Itoa(i)+"\n") {
					t.Fatalf("frame %d: %q, want id %s", i, frame, want[i])
				}
			}
			publish(burst) // and live after that
			if frame := readRawFrame(t, br); !strings.HasPrefix(frame, "id: "+want[burst]+"\n") {
				t.Fatalf("live frame %q, want id %s", frame, want[burst])
			}
			for _, reason := range evictReasons {
				if n := h.evictionCount(reason); n != 0 {
					t.Errorf("%d evictions for %s, want none", n, reason)
				}
			}
		})
	}
}

// TestEagerStreamsDoNotDoze: with Config.EagerStreams, a new connection
// gets its library stream at connect, and its first event is live.
func TestEagerStreamsDoNotDoze(t *testing.T) {
	t.Parallel()
	engine := NewMemoryEngine(1000, time.Hour)
	h := newHub(engine, 8, 10_000, testLogger(t))
	cfg := Config{EagerStreams: true, MaxConnections: -1, ConnectRate: -1, Logger: h.log}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	hs := serveHub(t, h, newSSEHandler(&cfg, h, nil, nil))
	hs.goRun(func(ctx context.Context) { _ = engine.Run(ctx, h.deliver) })

	br := rawSubscribe(t, hs.srv.Listener.Addr().String(), "eager")
	// The headers come with the library's first flush, once the connection
	// is registered with the library: no waiting needed.
	h.mu.RLock()
	var live bool
	for _, c := range h.conns {
		c.mu.Lock()
		live = c.live && c.sleeper == nil && h.lib.StreamExists(c.id)
		c.mu.Unlock()
	}
	h.mu.RUnlock()
	if !live {
		t.Fatal("an eager connection is not live with a library stream once its headers arrived")
	}
	id, err := engine.Publish(t.Context(), &Event{Stream: "eager", Data: []byte(`"now"`)})
	if err != nil {
		t.Fatal(err)
	}
	frame := readRawFrame(t, br)
	if strings.HasPrefix(frame, "retry: ") { // the connection's first line
		frame = readRawFrame(t, br)
	}
	if !strings.HasPrefix(frame, "id: "+strconv.FormatUint(id, 10)+"\n") {
		t.Fatalf("frame %q, want id %d", frame, id)
	}
}

// TestResumeThatIsCaughtUpDozes: a resume whose history read finds nothing
// after its Last-Event-ID dozes like a new connection; one that missed
// events gets them replayed at once. Either way, events up to the
// Last-Event-ID that the dispatcher delivers late (here: all of them, as
// it starts only after the connects) are not sent again, and later ones
// are sent once.
func TestResumeThatIsCaughtUpDozes(t *testing.T) {
	t.Parallel()
	engine := NewMemoryEngine(1000, time.Hour)
	h := newHub(engine, 8, 10_000, testLogger(t))
	hs := serveHub(t, h, &sseHandler{hub: h, maxStreams: 8, writeTimeout: 10 * time.Second, log: h.log})
	var ids []string
	for i := range 3 {
		id, err := engine.Publish(t.Context(), &Event{Stream: "resume", Data: []byte(strconv.Itoa(i))})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, strconv.FormatUint(id, 10))
	}

	caughtUp := rawSubscribe(t, hs.srv.Listener.Addr().String(), "resume&lastEventId="+ids[2])
	waitDozing(t, h, 1)
	behind := rawSubscribe(t, hs.srv.Listener.Addr().String(), "resume&lastEventId="+ids[0])
	for _, want := range ids[1:] { // replayed before the dispatcher even ran
		if frame := readRawFrame(t, behind); !strings.HasPrefix(frame, "id: "+want+"\n") {
			t.Fatalf("replayed frame %q, want id %s", frame, want)
		}
	}
	if n, _ := dozing(h); n != 1 {
		t.Errorf("%d connections doze, want 1 (the caught-up one)", n)
	}

	hs.goRun(func(ctx context.Context) { _ = engine.Run(ctx, h.deliver) })
	id, err := engine.Publish(t.Context(), &Event{Stream: "resume", Data: []byte("3")})
	if err != nil {
		t.Fatal(err)
	}
	for name, br := range map[string]*bufio.Reader{"caught up": caughtUp, "behind": behind} {
		if frame := readRawFrame(t, br); !strings.HasPrefix(frame, "id: "+strconv.FormatUint(id, 10)+"\n") {
			t.Errorf("%s: frame %q, want only the new event %d", name, frame, id)
		}
	}
	if got := h.stats.replays.Load(); got != 1 {
		t.Errorf("replays = %d, want 1 (the connection that was behind)", got)
	}
}

// TestHTTP2StreamDozes: a stream that net/http keeps (here HTTP/2) dozes
// too, waiting on its context and a channel instead of a Read: heartbeats
// reach it, its first event wakes it, and it ends when the client goes.
func TestHTTP2StreamDozes(t *testing.T) {
	t.Parallel()
	engine := NewMemoryEngine(1000, time.Hour)
	h := newHub(engine, 8, 10_000, testLogger(t))
	hs := serveHubWith(t, h, &sseHandler{hub: h, maxStreams: 8, writeTimeout: 10 * time.Second, log: h.log}, func(s *httptest.Server) {
		s.EnableHTTP2 = true
		s.StartTLS()
	})
	hs.goRun(func(ctx context.Context) { _ = engine.Run(ctx, h.deliver) })
	hs.goRun(func(ctx context.Context) { h.heartbeat(ctx, 5*time.Millisecond) })

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, hs.srv.URL+"/events?stream=h2", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hs.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%s %d %q, want HTTP/2 200 text/event-stream", resp.Proto, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	for range 2 {
		if frame := readRawFrame(t, br); frame != string(pingBytes) {
			t.Fatalf("frame %q, want the heartbeat", frame)
		}
	}
	waitDozing(t, h, 1)
	id, err := engine.Publish(t.Context(), &Event{Stream: "h2", Data: []byte(`"awake"`)})
	if err != nil {
		t.Fatal(err)
	}
	for {
		frame := readRawFrame(t, br)
		if frame == string(pingBytes) {
			continue
		}
		if !strings.HasPrefix(frame, "id: "+strconv.FormatUint(id, 10)+"\n") {
			t.Fatalf("frame %q, want id %d", frame, id)
		}
		break
	}
	if n, _ := dozing(h); n != 0 {
		t.Errorf("%d streams doze after their first event, want 0", n)
	}

	// A dozing stream ends when its client goes, too.
	resp2, err := hs.srv.Client().Do(req.Clone(ctx))
	if err != nil {
		t.Fatal(err)
	}
	waitDozing(t, h, 1)
	_ = resp2.Body.Close()
	deadline := time.Now().Add(hubWaitLimit)
	for h.connCount() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections once the dozing client went, want 1", h.connCount())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
