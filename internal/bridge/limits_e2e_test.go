package bridge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// rawStream is a subscription read line by line, so the retry: fields that
// a spec parser hides can be checked.
type rawStream struct {
	resp  *http.Response
	lines chan string
}

// openRaw GETs /events?query with header h and reads its lines (without
// the LF) until the body ends, when lines is closed.
func openRaw(t *testing.T, baseURL, query string, h http.Header) *rawStream {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	resp := getEvents(ctx, t, http.DefaultClient, baseURL, query, h) //nolint:bodyclose // closed at cleanup
	s := &rawStream{resp: resp, lines: make(chan string, 1024)}
	go func() { // ends with the body
		defer close(s.lines)
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			s.lines <- strings.TrimSuffix(line, "\n")
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = resp.Body.Close()
	})
	return s
}

// next returns the next line; ok is false at the end of the stream.
func (s *rawStream) next(t *testing.T) (line string, ok bool) {
	t.Helper()
	select {
	case line, ok = <-s.lines:
		return line, ok
	case <-time.After(waitLimit):
		t.Fatalf("no line within %v", waitLimit)
	}
	return "", false
}

// rest returns the lines up to the end of the stream.
func (s *rawStream) rest(t *testing.T) []string {
	t.Helper()
	var out []string
	for {
		line, ok := s.next(t)
		if !ok {
			return out
		}
		out = append(out, line)
	}
}

// isRetry reports whether lines are exactly one retry: block with a value
// from lo to hi, and the value.
func isRetry(lines []string, lo, hi time.Duration) (ms int64, ok bool) {
	if len(lines) != 2 || lines[1] != "" {
		return 0, false
	}
	v, found := strings.CutPrefix(lines[0], "retry: ")
	n, err := strconv.ParseInt(v, 10, 64)
	return n, found && err == nil && n >= lo.Milliseconds() && n <= hi.Milliseconds()
}

// TestRetryFirstOnEveryConnect: every accepted stream starts with a retry:
// from 1 to 2 times --retry, before any frame, replays included.
func TestRetryFirstOnEveryConnect(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{Retry: 500 * time.Millisecond})
	first := b.publish(t, jsonReq(t, "orders", "before"))
	for i, tc := range []struct{ query, lastEventID string }{
		{query: "stream=orders"},
		{query: "stream=orders&stream=users"},
		{query: "stream=orders&format=envelope"},
		{query: "stream=orders", lastEventID: id(first - 1)}, // a replay follows
		{query: "stream=orders", lastEventID: "garbled"},
	} {
		h := http.Header{}
		if tc.lastEventID != "" {
			h.Set("Last-Event-ID", tc.lastEventID)
		}
		s := openRaw(t, b.baseURL, tc.query, h)
		if s.resp.StatusCode != http.StatusOK {
			t.Fatalf("connect %d: status %d, want 200", i, s.resp.StatusCode)
		}
		var head []string
		for range 2 {
			line, _ := s.next(t)
			head = append(head, line)
		}
		if _, ok := isRetry(head, 500*time.Millisecond, time.Second); !ok {
			t.Errorf("connect %d (?%s): first lines %q, want a retry: from 500 to 1000 and a blank line", i, tc.query, head)
		}
	}
}

// TestRetryBeforeShutdownEndsStreams: shutdown ends each stream with a
// retry: in the spread window, after the frames it was sent.
func TestRetryBeforeShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{Retry: time.Second})
	s := openRaw(t, b.baseURL, "stream=orders", nil)
	if _, ok := isRetry([]string{must(s.next(t)), must(s.next(t))}, time.Second, 2*time.Second); !ok {
		t.Fatal("no retry: first")
	}
	n := b.publish(t, jsonReq(t, "orders", "last"))
	if line, _ := s.next(t); line != "id: "+id(n) {
		t.Fatalf("line %q, want the frame of %d", line, n)
	}
	for line := "-"; line != ""; { // the rest of the frame
		line, _ = s.next(t)
	}
	if err := b.stop(); err != nil {
		t.Fatalf("Serve() = %v", err)
	}
	// One connection: the window is retry to 2×retry.
	if rest := s.rest(t); !okRetry(rest, time.Second, 2*time.Second) {
		t.Errorf("after shutdown: %q, want one retry: from 1000 to 2000 and the end", rest)
	}
}

func must(line string, _ bool) string { return line }

func okRetry(lines []string, lo, hi time.Duration) bool {
	_, ok := isRetry(lines, lo, hi)
	return ok
}

// TestRetryBeforeTokenExpiryClose: a stream closed because its token is
// about to expire ends with a short retry:, so the browser comes back soon
// with its refreshed cookie.
func TestRetryBeforeTokenExpiryCloseEndToEnd(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{JWTKey: writeKeyFile(t, testHMACKey), JWTLeeway: -1})
	tok := mint(t, jwt.SigningMethodHS256, testHMACKey, with(claimsFor("orders"), "exp", time.Now().Add(2*time.Second).Unix()))
	s := openRaw(t, b.baseURL, "stream=orders", http.Header{"Authorization": {"Bearer " + tok}})
	if s.resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", s.resp.StatusCode)
	}
	rest := s.rest(t)
	if len(rest) < 4 || !okRetry(rest[:2], 2*time.Second, 4*time.Second) || !okRetry(rest[len(rest)-2:], 250*time.Millisecond, time.Second) {
		t.Errorf("stream of an expiring token: %q, want the connect retry: first and a retry: from 250 to 1000 last", rest)
	}
}

// TestMaxConnectionsEndToEnd: over --max-connections a connect is shed, and
// counted by reason.
func TestMaxConnectionsEndToEnd(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{MaxConnections: 1})
	subscribe(t, b.baseURL, "stream=orders", "")
	s := openRaw(t, b.baseURL, "stream=orders", nil)
	rest := s.rest(t)
	if s.resp.StatusCode != http.StatusOK || len(rest) != 3 || rest[1] != ": max_connections" || !okRetry([]string{rest[0], rest[2]}, 5*time.Second, 30*time.Second) {
		t.Errorf("over the limit: %d %q, want 200, a retry: from 5 to 30 s, a comment, the end", s.resp.StatusCode, rest)
	}
	if got := scrape(t, b.baseURL)[`bridge_rejections_total{reason="max_connections"}`]; got != 1 {
		t.Errorf("rejections{max_connections} = %v, want 1", got)
	}
}

// TestMaxReplayResetsTooFarBehind: a resume that missed more than
// --max-replay events gets bridge.reset (too_far_behind) and no replay at
// all; one within it gets exactly what it missed.
func TestMaxReplayResetsTooFarBehind(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{MaxReplay: 3})
	var ids []uint64
	for i := range 5 {
		ids = append(ids, b.publish(t, jsonReq(t, "orders", float64(i))))
	}

	far := subscribe(t, b.baseURL, "stream=orders", id(ids[0])) // missed 4
	reset := far.next(t)
	var data struct{ Reason, LastEventID string }
	if err := json.Unmarshal([]byte(reset.Data), &data); err != nil || reset.Type != bridge.ResetEvent || data.Reason != bridge.ResetTooFarBehind {
		t.Fatalf("first frame %+v, want %s with reason %q", reset, bridge.ResetEvent, bridge.ResetTooFarBehind)
	}
	near := subscribe(t, b.baseURL, "stream=orders", id(ids[1])) // missed 3
	for _, want := range ids[2:] {
		if got := near.next(t); got.LastEventID != id(want) {
			t.Fatalf("replayed %+v, want %d", got, want)
		}
	}
	live := b.publish(t, jsonReq(t, "orders", "live"))
	for _, c := range []*sseClient{far, near} {
		if got := c.next(t); got.LastEventID != id(live) {
			t.Errorf("after the replay or reset: %+v, want the live event %d (no partial replay)", got, live)
		}
	}
	m := scrape(t, b.baseURL)
	if m["bridge_replays_capped_total"] != 1 || m["bridge_resets_total"] != 1 {
		t.Errorf("replays capped %v, resets %v; want 1 and 1", m["bridge_replays_capped_total"], m["bridge_resets_total"])
	}
}

// TestGRPCMessageLimit: an event a little over --max-payload gets Publish's
// InvalidArgument, which says what to do; a message over --max-payload plus
// 64 KiB is refused by the transport with ResourceExhausted. (The limit
// is --max-batch-bytes when that is more: here it is less.)
func TestGRPCMessageLimit(t *testing.T) {
	t.Parallel()
	const maxPayload = 1024
	b := startBridge(t, bridge.Config{MaxPayload: maxPayload, MaxBatchBytes: 1})
	data := func(n int) *bridgev1.PublishRequest {
		// A JSON string of n bytes: n-2 characters and the quotes.
		return &bridgev1.PublishRequest{Stream: "orders", Payload: &bridgev1.PublishRequest_Json{Json: structpb.NewStringValue(strings.Repeat("x", n-2))}}
	}
	for _, tc := range []struct {
		name string
		req  *bridgev1.PublishRequest
		code codes.Code
		want string
	}{
		{name: "at the limit", req: data(maxPayload), code: codes.OK},
		{name: "over the limit", req: data(maxPayload + 1), code: codes.InvalidArgument, want: "--max-payload"},
		{name: "over by almost 64 KiB", req: data(maxPayload + 60<<10), code: codes.InvalidArgument, want: "--max-payload"},
		{name: "over the message limit", req: data(maxPayload + 100<<10), code: codes.ResourceExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := b.client.Publish(t.Context(), tc.req)
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Errorf("Publish(%d bytes) = %v, want %v saying %q", len(tc.req.GetJson().GetStringValue())+2, err, tc.code, tc.want)
			}
		})
	}
}

// TestStreamNameLimit: --max-stream-name holds on both sides: 400 on
// /events, InvalidArgument on Publish; raised, longer names work end to end.
func TestStreamNameLimit(t *testing.T) {
	t.Parallel()
	t.Run("lowered", func(t *testing.T) {
		t.Parallel()
		b := startBridge(t, bridge.Config{MaxStreamName: 10})
		long := strings.Repeat("n", 11)
		_, err := b.client.Publish(t.Context(), jsonReq(t, long, "x"))
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "the limit is 10") {
			t.Errorf("Publish(11-byte stream) = %v, want InvalidArgument naming the limit", err)
		}
		b.publish(t, jsonReq(t, long[:10], "x"))
		if r := get(t, b.baseURL, "stream="+long, nil); r.status != http.StatusBadRequest || !strings.Contains(r.body, "the limit is 10") {
			t.Errorf("GET 11-byte stream = %d %q, want 400 naming the limit", r.status, r.body)
		}
	})
	t.Run("raised", func(t *testing.T) {
		t.Parallel()
		b := startBridge(t, bridge.Config{MaxStreamName: 200})
		long := strings.Repeat("n", 150)
		c := subscribe(t, b.baseURL, "stream="+long, "")
		n := b.publish(t, jsonReq(t, long, "x"))
		if got := c.next(t); got.LastEventID != id(n) {
			t.Errorf("frame %+v, want %d", got, n)
		}
	})
}

// TestHTTPHeaderLimits: a header over --max-header-bytes gets 431; one that
// does not arrive within --read-header-timeout gets the connection closed.
func TestHTTPHeaderLimits(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{ReadHeaderTimeout: 200 * time.Millisecond})
	for _, tc := range []struct {
		name   string
		size   int
		status int
	}{
		{name: "16 KiB", size: 16 << 10, status: http.StatusOK},
		{name: "64 KiB", size: 64 << 10, status: http.StatusRequestHeaderFieldsTooLarge},
	} {
		r := get(t, b.baseURL, "stream=orders", http.Header{"X-Padding": {strings.Repeat("p", tc.size)}})
		if r.status != tc.status {
			t.Errorf("%s header: status %d, want %d", tc.name, r.status, tc.status)
		}
	}

	var d net.Dialer
	conn, err := d.DialContext(t.Context(), "tcp", strings.TrimPrefix(b.baseURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := io.WriteString(conn, "GET /events?stream=orders HTTP/1.1\r\nHost: bridge\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(waitLimit)) // a bound, not the assertion
	got, err := io.ReadAll(conn)
	var ne net.Error
	if (err != nil && (!errors.As(err, &ne) || ne.Timeout())) || strings.Contains(string(got), "200 OK") {
		t.Errorf("a header never finished: read %q, %v; want the connection closed without a stream", got, err)
	}
}
