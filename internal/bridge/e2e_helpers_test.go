package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	gosse "github.com/tmaxmax/go-sse"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// Shared fixtures of the end-to-end tests (package bridge_test): a bridge
// served on loopback listeners, a gRPC client, SSE subscribers.

// waitLimit bounds every wait in these tests so a bug fails the test instead
// of hanging it; no assertion depends on how fast anything is.
const waitLimit = 20 * time.Second

// testBridge is a bridge served on loopback, gRPC and HTTP both.
type testBridge struct {
	srv      *bridge.Server
	client   bridgev1.BridgeServiceClient
	health   healthpb.HealthClient
	conn     *grpc.ClientConn
	grpcAddr string
	baseURL  string
	stop     func() error // cancels Serve and returns its error
}

func startBridge(tb testing.TB, cfg bridge.Config) *testBridge {
	tb.Helper()
	srv, err := bridge.New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	return serveTest(tb, srv, grpcLis, httpLis, grpcLis.Addr().String())
}

func (b *testBridge) publish(t *testing.T, req *bridgev1.PublishRequest) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	res, err := b.client.Publish(ctx, req)
	if err != nil {
		t.Fatalf("Publish(%v) = %v, want success", req, err)
	}
	return res.GetId()
}

func jsonReq(t *testing.T, stream string, v any) *bridgev1.PublishRequest {
	t.Helper()
	val, err := structpb.NewValue(v)
	if err != nil {
		t.Fatalf("structpb.NewValue(%v): %v", v, err)
	}
	return &bridgev1.PublishRequest{Stream: stream, Payload: &bridgev1.PublishRequest_Json{Json: val}}
}

// sseClient is one subscription, read with go-sse's spec-following parser.
type sseClient struct {
	resp   *http.Response
	events chan gosse.Event
	cancel context.CancelFunc
	done   chan struct{} // closed by close: the reader stops even with events unread
	once   sync.Once
}

// getEvents sends GET baseURL/events?query with the headers h through
// client, bounded by ctx, and fails the test when no response comes. The
// caller closes the body.
func getEvents(ctx context.Context, t *testing.T, client *http.Client, baseURL, query string, h http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/events?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /events?%s: %v", query, err)
	}
	return resp
}

// subscribe opens /events with query and the given Last-Event-ID (none when
// empty) and checks the response is a 200 event stream. Once it returns, the
// bridge has registered the connection: later publishes reach it.
func subscribe(t *testing.T, baseURL, query, lastEventID string) *sseClient {
	t.Helper()
	h := http.Header{}
	if lastEventID != "" {
		h.Set("Last-Event-ID", lastEventID)
	}
	return subscribeWith(t, baseURL, query, h)
}

// subscribeWith is subscribe with the request headers h (a token, a cookie,
// an Origin).
func subscribeWith(t *testing.T, baseURL, query string, h http.Header) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	// The response (its headers) comes within waitLimit, or the request is
	// cancelled and getEvents fails the test.
	bound := time.AfterFunc(waitLimit, cancel)
	resp := getEvents(ctx, t, http.DefaultClient, baseURL, query, h)
	if !bound.Stop() {
		t.Fatalf("GET /events?%s: no response within %v", query, waitLimit)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		cancel()
		t.Fatalf("GET /events?%s = %d %q (%s), want 200 text/event-stream", query, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	return readEvents(t, resp, cancel)
}

// readEvents reads resp's event stream with go-sse's parser until the body
// ends (the server closed it, or cancel); the client closes at cleanup.
func readEvents(t *testing.T, resp *http.Response, cancel context.CancelFunc) *sseClient {
	t.Helper()
	c := &sseClient{resp: resp, events: make(chan gosse.Event, 1024), cancel: cancel, done: make(chan struct{})}
	go func() { // ends when the body ends (the server closed it, or cancel) or at close
		defer close(c.events)
		for ev, err := range gosse.Read(resp.Body, &gosse.ReadConfig{MaxEventSize: 1 << 20}) {
			if err != nil {
				return
			}
			select {
			case c.events <- ev:
			case <-c.done: // a test that left more than the buffer unread
				return
			}
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *sseClient) close() {
	c.once.Do(func() { close(c.done) })
	c.cancel()
	_ = c.resp.Body.Close()
}

// next returns the next event, failing the test if the stream ends first.
func (c *sseClient) next(t *testing.T) gosse.Event {
	t.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			t.Fatalf("stream ended, want another event")
		}
		return ev
	case <-time.After(waitLimit):
		t.Fatalf("no event within %v", waitLimit)
	}
	return gosse.Event{}
}

// frame is what a test compares: the fields a browser sees.
type frame struct {
	ID, Type string
	Data     any // decoded JSON, so that protojson's whitespace does not matter
}

func toFrame(t *testing.T, ev gosse.Event) frame {
	t.Helper()
	var data any
	if err := json.Unmarshal([]byte(ev.Data), &data); err != nil {
		t.Fatalf("frame data %q is not JSON: %v", ev.Data, err)
	}
	return frame{ID: ev.LastEventID, Type: ev.Type, Data: data}
}

func id(n uint64) string { return strconv.FormatUint(n, 10) }

// syncBuffer collects a bridge's logs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// take returns what was logged since the last take, and forgets it.
func (b *syncBuffer) take() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.buf.String()
	b.buf.Reset()
	return out
}
