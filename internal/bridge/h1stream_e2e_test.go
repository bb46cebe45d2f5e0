package bridge_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sse-bridge/bridge/internal/bridge"
)

// dialGet sends a GET for path over a fresh TCP connection with the given
// protocol version, and returns the connection and the response. Both are
// closed when the test ends.
func dialGet(t *testing.T, baseURL, path, proto string) (net.Conn, *http.Response) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(baseURL, "http://"), waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(waitLimit))
	if _, err := io.WriteString(conn, "GET "+path+" "+proto+"\r\nHost: bridge.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read the response to GET %s %s: %v", path, proto, err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return conn, resp
}

// readFrames reads SSE frames from body until n with data arrived, and
// returns their data lines.
func readFrames(t *testing.T, body *bufio.Reader, n int) []string {
	t.Helper()
	var data []string
	for len(data) < n {
		line, err := body.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d frames: %v", len(data), err)
		}
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			data = append(data, strings.TrimSuffix(d, "\n"))
		}
	}
	return data
}

// An HTTP/1.1 stream is written by the bridge itself once it took the
// connection over: a well-formed chunked response with every header the
// handler and the library set, frames of any size intact, and a proper end
// (the last chunk) when the bridge shuts down.
func TestTakenOverStreamIsWellFormedHTTP(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{MaxPayload: 256 << 10})
	_, resp := dialGet(t, b.baseURL, "/events?stream=h1", "HTTP/1.1") //nolint:bodyclose // closed by dialGet
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	for k, want := range map[string]string{
		"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if _, err := http.ParseTime(resp.Header.Get("Date")); err != nil {
		t.Errorf("Date %q: %v", resp.Header.Get("Date"), err)
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" || !resp.Close {
		t.Errorf("framing: Transfer-Encoding %v, Connection close %v; want chunked, close", resp.TransferEncoding, resp.Close)
	}
	body := bufio.NewReader(resp.Body)

	// Larger than what the writer buffers between flushes: several chunks.
	big := strings.Repeat("x", 100<<10)
	b.publish(t, jsonReq(t, "h1", "small"))
	b.publish(t, jsonReq(t, "h1", big))
	b.publish(t, jsonReq(t, "h1", "after"))
	got := readFrames(t, body, 3)
	if got[0] != `"small"` || got[1] != `"`+big+`"` || got[2] != `"after"` {
		t.Fatalf("frames %.40q..., want small, the 100 KiB one, after", got)
	}

	if err := b.stop(); err != nil {
		t.Fatalf("Serve() = %v", err)
	}
	// The shutdown's retry: and then the end of the body: io.EOF from the
	// chunked reader means the last chunk came, not a cut connection.
	rest, err := io.ReadAll(body)
	if err != nil {
		t.Fatalf("body after shutdown: %v (read %q), want a clean end", err, rest)
	}
	if !strings.Contains(string(rest), "retry: ") {
		t.Errorf("last words %q, want a retry:", rest)
	}
}

// The bridge sees a client of a taken-over stream leave without writing to
// it (net/http's background read did that before the takeover), and one that
// sends more than a subscriber ever needs to is cut off.
func TestTakenOverStreamNoticesTheClient(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{Heartbeat: time.Hour})
	connections := func() float64 { return scrape(t, b.baseURL)["bridge_sse_connections"] }
	waitConnections := func(want float64) {
		t.Helper()
		deadline := time.Now().Add(waitLimit)
		for connections() != want {
			if time.Now().After(deadline) {
				t.Fatalf("bridge_sse_connections = %v, want %v", connections(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	leaving, _ := dialGet(t, b.baseURL, "/events?stream=watch", "HTTP/1.1") //nolint:bodyclose // closed by dialGet
	waitConnections(1)
	_ = leaving.Close()
	waitConnections(0)

	chatty, resp := dialGet(t, b.baseURL, "/events?stream=watch", "HTTP/1.1") //nolint:bodyclose // closed by dialGet
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	waitConnections(1)
	if _, err := chatty.Write([]byte(strings.Repeat("z", 8<<10))); err != nil {
		t.Fatal(err)
	}
	waitConnections(0)
	if _, err := io.ReadAll(resp.Body); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read after the cut: %v", err)
	}
}

// HTTP/1.0 has no chunked encoding: such a client is served by net/http as
// before, its stream ending with the connection.
func TestHTTP10StreamStillServed(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{})
	_, resp := dialGet(t, b.baseURL, "/events?stream=old", "HTTP/1.0") //nolint:bodyclose // closed by dialGet
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d %q, want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if len(resp.TransferEncoding) != 0 {
		t.Errorf("Transfer-Encoding %v on HTTP/1.0", resp.TransferEncoding)
	}
	b.publish(t, jsonReq(t, "old", "one"))
	if got := readFrames(t, bufio.NewReader(resp.Body), 1); got[0] != `"one"` {
		t.Fatalf("frame %q, want \"one\"", got[0])
	}
}
