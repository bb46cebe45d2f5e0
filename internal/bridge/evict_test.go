package bridge

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestGroupLen(t *testing.T) {
	t.Parallel()
	ev := func(stream string, size int) *Event {
		return &Event{Stream: stream, Data: []byte(strings.Repeat("x", size))}
	}
	many := func(n int, stream string, size int) []*Event {
		var b []*Event
		for range n {
			b = append(b, ev(stream, size))
		}
		return b
	}
	per4K := maxGroupBytes / groupFrameBytes(ev("s", 4096)) // 4 KiB events that fit a group
	tests := []struct {
		name  string
		batch []*Event
		want  int
	}{
		{"one", many(1, "s", 10), 1},
		{"small events, up to maxGroup", many(100, "s", 10), maxGroup},
		{"a group ends where the stream changes", append(many(3, "s", 10), many(3, "t", 10)...), 3},
		{"4 KiB events, up to maxGroupBytes", many(20, "s", 4096), per4K},
		{"an event larger than a group goes alone", append(many(1, "s", 100<<10), many(3, "s", 10)...), 1},
		{"and ends the group before it", append(many(2, "s", 10), many(1, "s", 100<<10)...), 2},
	}
	for _, tt := range tests {
		if got := groupLen(tt.batch); got != tt.want {
			t.Errorf("%s: groupLen = %d, want %d", tt.name, got, tt.want)
		}
	}
	if per4K < 2 || per4K*4096 > maxGroupBytes {
		t.Errorf("%d events of 4 KiB per group: want several, under %d bytes", per4K, maxGroupBytes)
	}
}

// TestLargeEventsGoInSeveralWrites: a burst of 4 KiB events reaches a live
// connection as several library events, none larger than maxGroupBytes
// (the library copies each into a buffer it reuses only up to 64 KiB).
func TestLargeEventsGoInSeveralWrites(t *testing.T) {
	t.Parallel()
	h := newHub(NewMemoryEngine(100, time.Hour), 64, 10, testLogger(t))
	t.Cleanup(h.lib.Close)
	c, err := h.register([]string{"s"}, FormatData, false, 0, noOutput{}, func() {})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	defer h.unregister(c)
	h.openLibStream(c)
	if done := h.subscribed(t.Context(), c); done != nil {
		t.Fatal("subscribed started a replay")
	}
	var batch []*Event
	for i := range 20 {
		batch = append(batch, &Event{ID: uint64(i + 1), Stream: "s", Data: []byte(strings.Repeat("x", 4096))})
	}
	h.deliver(batch)
	per := maxGroupBytes / groupFrameBytes(batch[0])
	if got, want := c.queued.Load(), int64((20+per-1)/per); got != want {
		t.Errorf("20 events of 4 KiB: %d library events queued, want %d (%d per group)", got, want, per)
	}
	if got := h.stats.delivered.Load(); got != 20 {
		t.Errorf("delivered %d frames, want 20", got)
	}
}

// TestStalledClientsAreEvictedTogether: many clients that never read are
// evicted at about the same moment; each is counted once, each connection
// ends and leaves the hub, the healthy reader of the same stream gets
// every event, and every dying connection gave its turn to finish back.
func TestStalledClientsAreEvictedTogether(t *testing.T) {
	t.Parallel()
	f := newHubFixture(t, 8, 10*time.Second, 0)
	const stalledN = 16
	var stalled []*bufio.Reader
	for range stalledN {
		c, err := dialSmallBuffer(t.Context(), f.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if _, err := fmt.Fprintf(c, "GET /events?stream=orders HTTP/1.1\r\nHost: bridge\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "200") {
			t.Fatalf("stalled client status line %q, %v", line, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(hubWaitLimit))
		stalled = append(stalled, br)
	}
	ids := make(chan string, 16)
	go readIDs(getEvents(t, f.srv.URL+"/events?stream=orders", nil), ids)

	payload := `"` + strings.Repeat("x", 32<<10) + `"`
	for range 300 {
		id := f.publish(t, "orders", payload)
		select {
		case got := <-ids:
			if got != strconv.FormatUint(id, 10) {
				t.Fatalf("healthy reader got frame %s, want %d", got, id)
			}
		case <-time.After(hubWaitLimit):
			t.Fatalf("healthy reader got no frame for event %d", id)
		}
	}
	for i, br := range stalled {
		if rest, err := io.ReadAll(br); err != nil {
			t.Fatalf("stalled client %d: %v after %d bytes, want EOF (evicted)", i, err, len(rest))
		}
	}
	evicted := f.hub.evictionCount(evictQueueFull) + f.hub.evictionCount(evictWriteDeadline)
	if evicted != stalledN {
		t.Errorf("evictions = %d, want %d (each stalled client once)", evicted, stalledN)
	}
	waitFor(t, "the evicted connections to leave the hub", func() bool { return f.hub.connCount() == 1 })
	if n := len(f.hub.dying); n != 0 {
		t.Errorf("%d dying tokens held once every dying connection ended, want 0", n)
	}
}

// TestDepartedClientIsNotEvicted: a client that goes away while a write to
// it is blocked fails that write, and the connection waits for its turn to
// finish (here while other dying connections hold every turn); whatever is
// published meanwhile, more than its queue holds, it is not evicted for it,
// and it ends once it gets its turn.
func TestDepartedClientIsNotEvicted(t *testing.T) {
	t.Parallel()
	f := newHubFixture(t, 8, 10*time.Second, 0)
	c, err := dialSmallBuffer(t.Context(), f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(c, "GET /events?stream=orders HTTP/1.1\r\nHost: bridge\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("status line %q, %v", line, err)
	}
	// Enough to block a write, not to fill the queue of 8 writes.
	payload := `"` + strings.Repeat("x", 256<<10) + `"`
	for range 4 {
		f.publish(t, "orders", payload)
	}
	var conn *conn
	waitFor(t, "the connection to be live", func() bool {
		f.hub.mu.RLock()
		defer f.hub.mu.RUnlock()
		for _, x := range f.hub.conns {
			conn = x
		}
		if conn == nil {
			return false
		}
		conn.mu.Lock()
		defer conn.mu.Unlock()
		return conn.live
	})
	for range cap(f.hub.dying) {
		f.hub.dying <- struct{}{} // other connections finishing
	}
	var released sync.Once
	release := func() {
		released.Do(func() {
			for range cap(f.hub.dying) {
				<-f.hub.dying
			}
		})
	}
	t.Cleanup(release) // before the fixture's, which waits for the connection
	// Gone, with data unread: the server's blocked write fails (reset).
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
	// The four events may all be in the kernel's buffers already, with no
	// write left to fail: one more makes a write that the reset fails. Or
	// the stream's reader sees the reset first and the connection ends
	// with no write failing: the client went either way.
	f.publish(t, "orders", `"after the client went"`)
	waitFor(t, "the write to fail or the connection to end", func() bool {
		return conn.evicted.Load() || f.hub.connCount() == 0
	})
	for range 200 {
		f.publish(t, "orders", `"more than the queue holds"`)
	}
	release()
	waitFor(t, "the connection to end", func() bool { return f.hub.connCount() == 0 })
	for _, reason := range evictReasons {
		if n := f.hub.evictionCount(reason); n != 0 {
			t.Errorf("evictions for %s = %d, want none: the client went", reason, n)
		}
	}
}

// waitFor polls cond until it holds, failing the test after hubWaitLimit.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hubWaitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", hubWaitLimit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWaveOfDyingConnectionsEndsInACollection: the last of a wave of at
// least collectAfter dying connections runs a garbage collection; a
// smaller wave ends without one. Not parallel: it reads the process's
// collection count.
func TestWaveOfDyingConnectionsEndsInACollection(t *testing.T) {
	h := newHub(NewMemoryEngine(10, time.Hour), 8, 10, testLogger(t))
	t.Cleanup(h.lib.Close)
	wave := func(n int) {
		h.dying <- struct{}{} // another dying connection still finishing
		for range n - 1 {
			h.finishedDying()
		}
		<-h.dying
		h.finishedDying() // the last
	}
	wave(10)
	if n := h.died.Load(); n != 0 {
		t.Errorf("after a wave of 10: %d counted, want 0 (the wave ended)", n)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	wave(collectAfter)
	runtime.ReadMemStats(&after)
	if after.NumGC == before.NumGC {
		t.Errorf("a wave of %d dying connections ended without a garbage collection", collectAfter)
	}
	if n := h.died.Load(); n != 0 {
		t.Errorf("after a wave of %d: %d counted, want 0", collectAfter, n)
	}
}
