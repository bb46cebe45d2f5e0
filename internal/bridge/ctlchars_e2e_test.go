package bridge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// The matrix row "CR, LF and NUL in every field a client controls": each
// field, with each character raw and (in the query) percent-encoded, gets
// its documented answer, and no frame ever carries a split line or a field
// the bridge did not write.

// controlChars are the characters that could split an SSE line or hide a
// field, with their percent-encoded forms.
var controlChars = []struct{ name, raw, escaped string }{
	{"CR", "\r", "%0D"},
	{"LF", "\n", "%0A"},
	{"NUL", "\x00", "%00"},
}

// rawGet sends a GET /events request written byte for byte (the Go client
// refuses control characters in headers, a hostile client does not) and
// returns the answer, reading the body of anything but a 200.
func rawGet(t *testing.T, baseURL, target string, headers []string) result {
	t.Helper()
	addr := strings.TrimPrefix(baseURL, "http://")
	d := net.Dialer{Timeout: waitLimit}
	c, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(waitLimit))
	req := "GET " + target + " HTTP/1.1\r\nHost: " + addr + "\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c, req+"Connection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil) //nolint:bodyclose // see below
	if err != nil {
		t.Fatalf("GET %q: %v", target, err)
	}
	// The body is read whole or dropped with the connection, never closed:
	// closing it would drain a stream until the deadline.
	r := result{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		r.body = string(b)
	}
	return r
}

func TestControlCharactersInSubscribeRequests(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{
		JWTKey: writeKeyFile(t, testHMACKey), AuthQueryToken: true, CORSOrigins: []string{"https://app.example"},
	})
	tok := mint(t, jwt.SigningMethodHS256, testHMACKey, claimsFor("orders", "a.>"))
	auth := "Authorization: Bearer " + tok
	type row struct {
		name, target string
		headers      []string
		status       int
	}
	// Control check: the request the rows below spoil is accepted.
	rows := []row{{"valid", "/events?stream=orders", []string{auth}, 200}}
	for _, c := range controlChars {
		rows = append(rows,
			// In the query (percent-encoded): the handler's own 400 for
			// names and format; a token with them is not a token (401).
			row{"stream " + c.name, "/events?stream=a" + c.escaped + "b", []string{auth}, 400},
			row{"stream " + c.name + " injecting a field", "/events?stream=orders&stream=a" + c.escaped + "id:%201", []string{auth}, 400},
			row{"format " + c.name, "/events?stream=orders&format=data" + c.escaped, []string{auth}, 400},
			row{"access_token " + c.name + " appended", "/events?stream=orders&access_token=" + tok + c.escaped, nil, 401},
			row{"access_token " + c.name + " inside", "/events?stream=orders&access_token=" + tok[:20] + c.escaped + tok[20:], nil, 401},
			// Cookies are not percent-decoded: the bytes are part of the
			// value, which is then no token.
			row{"cookie " + c.name + " percent-encoded", "/events?stream=orders", []string{"Cookie: __Secure-bridge_token=" + tok + c.escaped}, 401},
			row{"Authorization " + c.name + " percent-encoded", "/events?stream=orders", []string{auth + c.escaped}, 401},
			row{"Origin " + c.name + " percent-encoded", "/events?stream=orders", []string{auth, "Origin: https://app.example" + c.escaped}, 403},
			// Raw: net/http refuses the request line or header before the
			// handler runs (400); browsers never send these.
			row{"stream raw " + c.name, "/events?stream=a" + c.raw + "b", []string{auth}, 400},
			row{"Last-Event-ID raw " + c.name, "/events?stream=orders", []string{auth, "Last-Event-ID: 1" + c.raw + "2"}, 400},
			row{"Origin raw " + c.name, "/events?stream=orders", []string{auth, "Origin: https://app.example" + c.raw + "x"}, 400},
			row{"Authorization raw " + c.name, "/events?stream=orders", []string{auth + c.raw + "x"}, 400},
			row{"cookie raw " + c.name, "/events?stream=orders", []string{"Cookie: __Secure-bridge_token=" + tok + c.raw + "x"}, 400},
		)
	}
	// A folded header line (obsolete line folding) arrives joined by a
	// space: not a token.
	rows = append(rows, row{"Authorization folded", "/events?stream=orders", []string{auth, " x"}, 401})
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			got := rawGet(t, b.baseURL, r.target, r.headers)
			if got.status != r.status {
				t.Fatalf("GET %q with %q = %d (%s), want %d", r.target, r.headers, got.status, got.body, r.status)
			}
			if r.status == 200 {
				return
			}
			if ct := got.header.Get("Content-Type"); strings.HasPrefix(ct, "text/event-stream") {
				t.Errorf("refusal Content-Type = %q, want no event stream", ct)
			}
			if events := bridge.ParseSSE([]byte(got.body)); len(events) > 0 {
				t.Errorf("refusal body %q parses as events %+v", got.body, events)
			}
			if strings.Contains(got.body, tok[20:]) {
				t.Errorf("refusal body echoes the token")
			}
		})
	}
}

// byteStream is an open subscription read as raw bytes and parsed with the
// test's own event-stream parser.
type byteStream struct {
	chunks chan []byte
	buf    []byte
}

func openByteStream(t *testing.T, baseURL, query string, h http.Header) *byteStream {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/events?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /events?%s = %d (%s), want 200", query, resp.StatusCode, body)
	}
	s := &byteStream{chunks: make(chan []byte, 64)}
	go func() { // ends with the body, at cleanup
		defer close(s.chunks)
		for {
			b := make([]byte, 4096)
			n, err := resp.Body.Read(b)
			if n > 0 {
				s.chunks <- b[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	return s
}

// events reads until the stream holds n events and returns them, with the
// bytes they came in.
func (s *byteStream) events(t *testing.T, n int) ([]bridge.SSEEvent, string) {
	t.Helper()
	limit := time.NewTimer(waitLimit)
	defer limit.Stop()
	for {
		if evs := bridge.ParseSSE(s.buf); len(evs) >= n {
			return evs, string(s.buf)
		}
		select {
		case b, ok := <-s.chunks:
			if !ok {
				t.Fatalf("stream ended after %q, want %d events", s.buf, n)
			}
			s.buf = append(s.buf, b...)
		case <-limit.C:
			t.Fatalf("no %d events within %v; got %q", n, waitLimit, s.buf)
		}
	}
}

func TestControlCharactersInLastEventIDAreIgnored(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{JWTKey: writeKeyFile(t, testHMACKey)})
	h := bearerHeader(mint(t, jwt.SigningMethodHS256, testHMACKey, claimsFor("orders")))
	b.publish(t, jsonReq(t, "orders", "before")) // a resume would replay it
	for _, c := range controlChars {
		for _, v := range []string{"1" + c.escaped, c.escaped + "1", "1" + c.escaped + "2", c.escaped} {
			t.Run(c.name+" "+v, func(t *testing.T) {
				t.Parallel()
				s := openByteStream(t, b.baseURL, "stream=orders&lastEventId="+v, h)
				live := b.publish(t, jsonReq(t, "orders", "live "+v))
				// Other subtests publish too: read up to this one's event.
				for n := 1; ; n++ {
					evs, raw := s.events(t, n)
					ev := evs[n-1]
					if ev.Data == `"before"` || ev.Type == bridge.ResetEvent {
						t.Fatalf("lastEventId %q: got %+v, want no replay and no reset", v, ev)
					}
					if ev.ID == id(live) {
						if want := (bridge.SSEEvent{ID: id(live), Type: "message", Data: `"live ` + v + `"`}); ev != want {
							t.Errorf("event %+v, want %+v\nwire: %q", ev, want, raw)
						}
						return
					}
				}
			})
		}
	}
}

func TestControlCharactersInPublish(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{})
	s := openByteStream(t, b.baseURL, "stream=orders", http.Header{})
	hello := &bridgev1.PublishRequest_Json{Json: structpb.NewStringValue("hello")}
	for _, c := range controlChars {
		for _, tc := range []struct {
			name string
			req  *bridgev1.PublishRequest
		}{
			{"stream", &bridgev1.PublishRequest{Stream: "orders" + c.raw + "id: 1", Payload: hello}},
			{"stream alone", &bridgev1.PublishRequest{Stream: c.raw, Payload: hello}},
			{"type", &bridgev1.PublishRequest{Stream: "orders", Type: "note" + c.raw + "id: 666", Payload: hello}},
			{"type at the end", &bridgev1.PublishRequest{Stream: "orders", Type: "note" + c.raw, Payload: hello}},
			{"type URL", &bridgev1.PublishRequest{Stream: "orders", Payload: &bridgev1.PublishRequest_Event{Event: &anypb.Any{
				TypeUrl: "type.googleapis.com/shop.v1.Order" + c.raw + "Created",
			}}}},
		} {
			t.Run(tc.name+" "+c.name, func(t *testing.T) {
				t.Parallel()
				_, err := b.client.Publish(t.Context(), tc.req)
				if status.Code(err) != codes.InvalidArgument {
					t.Errorf("Publish(%q) = %v, want InvalidArgument", tc.req, err)
				}
			})
		}
	}
	// In JSON data the characters are escaped: each event is one frame,
	// one data line, and decodes to exactly what was published.
	var want []bridge.SSEEvent
	var values []any
	for _, c := range controlChars {
		for _, v := range []any{
			"a" + c.raw + "id: 666" + c.raw + c.raw + "data: x",
			map[string]any{"k" + c.raw + "event: x": c.raw, "n": 1.0},
			[]any{c.raw, "\r\n\x00"},
		} {
			n := b.publish(t, jsonReq(t, "orders", v))
			want = append(want, bridge.SSEEvent{ID: id(n), Type: "message"})
			values = append(values, v)
		}
	}
	got, raw := s.events(t, len(want))
	for i := range want {
		want[i].Data = got[i].Data // compared as JSON below
		var v any
		if err := json.Unmarshal([]byte(got[i].Data), &v); err != nil {
			t.Errorf("event %d data %q is not JSON: %v", i, got[i].Data, err)
			continue
		}
		if diff := cmp.Diff(values[i], v); diff != "" {
			t.Errorf("event %d data (-published +received):\n%s", i, diff)
		}
		if strings.ContainsAny(got[i].Data, "\r\n\x00") {
			t.Errorf("event %d data %q holds a raw control character", i, got[i].Data)
		}
	}
	if diff := cmp.Diff(want, got[:len(want)]); diff != "" {
		t.Errorf("events (-want +got):\n%s\nwire: %q", diff, raw)
	}
	if !strings.HasSuffix(raw, "\n\n") || strings.Count(raw, "\ndata: ") != len(want) || strings.Contains(raw, "\r") || strings.Contains(raw, "\x00") {
		t.Errorf("wire %q: want %d frames of one data line each, no CR, no NUL", raw, len(want))
	}
}
