package bridge_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	shopv1 "github.com/sse-bridge/bridge/gen/shop/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

func TestPublishReachesSubscribersAsFrames(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{})
	orders := subscribe(t, b.baseURL, "stream=orders", "")
	both := subscribe(t, b.baseURL, "stream=users&stream=orders", "")

	created := &shopv1.OrderCreated{
		OrderId:   "o-1",
		Customer:  &shopv1.Customer{Id: "c-7", Name: "Ada"},
		Items:     []*shopv1.LineItem{{Sku: "sku-1", Quantity: 2, UnitPrice: &shopv1.Money{Currency: "EUR", AmountMinor: 625}}},
		Total:     &shopv1.Money{Currency: "EUR", AmountMinor: 1250},
		Status:    shopv1.OrderStatus_ORDER_STATUS_PAID,
		CreatedAt: timestamppb.New(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)),
	}
	typed, err := anypb.New(created)
	if err != nil {
		t.Fatal(err)
	}
	jsonID := b.publish(t, jsonReq(t, "orders", map[string]any{"hello": "world"}))
	typedID := b.publish(t, &bridgev1.PublishRequest{Stream: "orders", Payload: &bridgev1.PublishRequest_Event{Event: typed}})
	namedID := b.publish(t, func() *bridgev1.PublishRequest {
		r := jsonReq(t, "orders", []any{1.5, "x", nil, true})
		r.Type = "order.note"
		return r
	}())
	userID := b.publish(t, jsonReq(t, "users", "u-1 signed in"))

	want := []frame{
		{ID: id(jsonID), Data: map[string]any{"hello": "world"}},
		{ID: id(typedID), Type: "shop.v1.OrderCreated", Data: map[string]any{
			"orderId":   "o-1",
			"customer":  map[string]any{"id": "c-7", "name": "Ada"},
			"items":     []any{map[string]any{"sku": "sku-1", "quantity": 2.0, "unitPrice": map[string]any{"currency": "EUR", "amountMinor": "625"}}},
			"total":     map[string]any{"currency": "EUR", "amountMinor": "1250"},
			"status":    "ORDER_STATUS_PAID",
			"createdAt": "2026-11-25T10:00:00Z",
		}},
		{ID: id(namedID), Type: "order.note", Data: []any{1.5, "x", nil, true}},
	}
	var got []frame
	for range want {
		got = append(got, toFrame(t, orders.next(t)))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("frames on orders (-want +got):\n%s", diff)
	}

	want = append(want, frame{ID: id(userID), Data: "u-1 signed in"})
	got = nil
	for range want {
		got = append(got, toFrame(t, both.next(t)))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("frames on users+orders (-want +got):\n%s", diff)
	}
}

// TestFramesArriveInIDOrderAcrossStreams publishes to several streams from
// concurrent publishers: a connection subscribed to all of them must see
// every event once, in id order, so one Last-Event-ID can resume it.
func TestFramesArriveInIDOrderAcrossStreams(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{})
	streams := []string{"a", "b", "c.d"}
	all := subscribe(t, b.baseURL, "stream=a&stream=b&stream=c.d", "")
	onlyB := subscribe(t, b.baseURL, "stream=b", "")

	const perStream = 50
	var mu sync.Mutex
	published := map[string][]uint64{}
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Go(func() {
			for i := range perStream {
				res, err := b.client.Publish(t.Context(), jsonReq(t, s, float64(i)))
				if err != nil {
					t.Errorf("Publish(%s, %d) = %v", s, i, err)
					return
				}
				mu.Lock()
				published[s] = append(published[s], res.GetId())
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	b.publish(t, jsonReq(t, "other", "not for them"))

	var last uint64
	seen := map[uint64]bool{}
	for range len(streams) * perStream {
		ev := all.next(t)
		n, err := strconv.ParseUint(ev.LastEventID, 10, 64)
		if err != nil || n <= last {
			t.Fatalf("frame id %q after %d: want increasing ids", ev.LastEventID, last)
		}
		last, seen[n] = n, true
	}
	for _, s := range streams {
		for _, n := range published[s] {
			if !seen[n] {
				t.Errorf("event %d of stream %s never arrived", n, s)
			}
		}
	}
	for _, n := range published["b"] {
		if got := onlyB.next(t).LastEventID; got != id(n) {
			t.Fatalf("stream b: frame id %s, want %d", got, n)
		}
	}
	// Nothing of "other" reached either connection: the next event on both is
	// one published now.
	final := b.publish(t, jsonReq(t, "b", "final"))
	if got := all.next(t).LastEventID; got != id(final) {
		t.Errorf("after all published events: frame id %s, want %d", got, final)
	}
	if got := onlyB.next(t).LastEventID; got != id(final) {
		t.Errorf("stream b after its events: frame id %s, want %d", got, final)
	}
}

func TestResumeWithLastEventID(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{})
	first := subscribe(t, b.baseURL, "stream=orders&stream=users", "")
	var ids []uint64
	for i := range 4 {
		s := "orders"
		if i%2 == 1 {
			s = "users"
		}
		ids = append(ids, b.publish(t, jsonReq(t, s, float64(i))))
	}
	seen := first.next(t).LastEventID // the browser saw one event, then lost the connection
	first.close()
	ids = append(ids, b.publish(t, jsonReq(t, "orders", "while away")))
	b.publish(t, jsonReq(t, "elsewhere", "not subscribed"))

	for _, tc := range []struct {
		name, query, header string
	}{
		{name: "header", query: "stream=orders&stream=users", header: seen},
		{name: "query parameter", query: "stream=orders&stream=users&lastEventId=" + seen},
		{name: "header wins over query", query: "stream=orders&stream=users&lastEventId=1", header: seen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := subscribe(t, b.baseURL, tc.query, tc.header)
			for _, want := range ids[1:] {
				if got := c.next(t); got.LastEventID != id(want) || got.Type != "" {
					t.Fatalf("replayed frame %q (event %q), want id %d", got.LastEventID, got.Type, want)
				}
			}
			c.close()
		})
	}

	// Then live events follow the replay, with no gap and no duplicate.
	c := subscribe(t, b.baseURL, "stream=orders&stream=users", seen)
	for _, want := range ids[1:] {
		if got := c.next(t).LastEventID; got != id(want) {
			t.Fatalf("replayed frame %s, want %d", got, want)
		}
	}
	live := b.publish(t, jsonReq(t, "users", "live"))
	if got := c.next(t).LastEventID; got != id(live) {
		t.Errorf("live frame after replay %s, want %d", got, live)
	}
}

func TestResumeBeyondHistoryGetsResetFirst(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{HistorySize: 3})
	first := b.publish(t, jsonReq(t, "orders", 0.0))
	var last uint64
	for i := 1; i < 10; i++ {
		last = b.publish(t, jsonReq(t, "orders", float64(i)))
	}

	for _, tc := range []struct{ name, lastEventID, reason string }{
		{name: "trimmed", lastEventID: id(first), reason: bridge.ResetTrimmed},
		{name: "from before a restart", lastEventID: "1", reason: bridge.ResetHistoryLost},
		{name: "from the future", lastEventID: id(last + 1e12), reason: bridge.ResetUnknownID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := subscribe(t, b.baseURL, "stream=orders", tc.lastEventID)
			reset := c.next(t)
			var data struct{ Reason, LastEventID string }
			if err := json.Unmarshal([]byte(reset.Data), &data); err != nil {
				t.Fatalf("reset data %q: %v", reset.Data, err)
			}
			// The reset's id is the newest id when history was read: at least
			// last (the live publish below may run first).
			resetID, err := strconv.ParseUint(reset.LastEventID, 10, 64)
			if reset.Type != bridge.ResetEvent || data.Reason != tc.reason || err != nil || resetID < last || data.LastEventID != reset.LastEventID {
				t.Fatalf("first frame = %+v, want %s with an id from %d and reason %q", reset, bridge.ResetEvent, last, tc.reason)
			}
			c.close()
		})
	}

	// After the reset, live events only: nothing of the partial history.
	c := subscribe(t, b.baseURL, "stream=orders", id(first))
	if got := c.next(t); got.Type != bridge.ResetEvent {
		t.Fatalf("first frame %+v, want %s", got, bridge.ResetEvent)
	}
	live := b.publish(t, jsonReq(t, "orders", "live"))
	if got := c.next(t).LastEventID; got != id(live) {
		t.Errorf("frame after reset %s, want the live event %d", got, live)
	}
}

func TestGarbledLastEventIDIsIgnored(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{})
	b.publish(t, jsonReq(t, "orders", "before"))
	// All-digit values too large for an id are not garbled: they get a
	// reset (TestOddLastEventIDs).
	for _, garbled := range []string{"abc", "-5", "1e3", "12abc"} {
		t.Run(garbled, func(t *testing.T) {
			t.Parallel()
			c := subscribe(t, b.baseURL, "stream=orders", garbled)
			live := b.publish(t, jsonReq(t, "orders", "live"))
			// Other subtests publish too; skip to this one's event. A replay
			// would have sent "before" first.
			for {
				ev := c.next(t)
				if ev.Data == `"before"` || ev.Type == bridge.ResetEvent {
					t.Fatalf("Last-Event-ID %q: got %+v, want no replay and no reset", garbled, ev)
				}
				if ev.LastEventID == id(live) {
					return
				}
			}
		})
	}
}

func TestPublishRejectsBadInput(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{MaxPayload: 100})
	watch := subscribe(t, b.baseURL, "stream=orders", "")

	unknown := &anypb.Any{TypeUrl: "type.googleapis.com/acme.v1.Unknown", Value: []byte{1, 2}}
	garbage := &anypb.Any{TypeUrl: "type.googleapis.com/shop.v1.OrderCreated", Value: []byte{0xff, 0xff, 0xff}}
	event := func(a *anypb.Any) *bridgev1.PublishRequest_Event { return &bridgev1.PublishRequest_Event{Event: a} }
	hello := func() *bridgev1.PublishRequest_Json {
		return &bridgev1.PublishRequest_Json{Json: structpb.NewStringValue("hello")}
	}
	for _, tc := range []struct {
		name string
		req  *bridgev1.PublishRequest
		want string // in the message
	}{
		{"no stream", &bridgev1.PublishRequest{Payload: hello()}, "stream name is empty"},
		{"space in stream", &bridgev1.PublishRequest{Stream: "or ders", Payload: hello()}, "invalid"},
		{"leading dot", &bridgev1.PublishRequest{Stream: ".orders", Payload: hello()}, "invalid"},
		{"double dot", &bridgev1.PublishRequest{Stream: "a..b", Payload: hello()}, "invalid"},
		{"wildcard", &bridgev1.PublishRequest{Stream: "orders.*", Payload: hello()}, "invalid"},
		{"stream too long", &bridgev1.PublishRequest{Stream: strings.Repeat("s", 129), Payload: hello()}, "the limit is 128"},
		{"no payload", &bridgev1.PublishRequest{Stream: "orders"}, "no payload"},
		{"empty json value", &bridgev1.PublishRequest{Stream: "orders", Payload: &bridgev1.PublishRequest_Json{Json: &structpb.Value{}}}, "json has no value"},
		{"NaN", &bridgev1.PublishRequest{Stream: "orders", Payload: &bridgev1.PublishRequest_Json{Json: structpb.NewNumberValue(nan())}}, "json cannot be rendered"},
		{"any without type", &bridgev1.PublishRequest{Stream: "orders", Payload: event(&anypb.Any{})}, "event has no type"},
		{"unknown type", &bridgev1.PublishRequest{Stream: "orders", Payload: event(unknown)}, `"acme.v1.Unknown" is unknown`},
		{"malformed any bytes", &bridgev1.PublishRequest{Stream: "orders", Payload: event(garbage)}, "not a valid shop.v1.OrderCreated"},
		{"LF in type", &bridgev1.PublishRequest{Stream: "orders", Type: "a\nid: 1", Payload: hello()}, "CR, LF or NUL"},
		{"CR in type", &bridgev1.PublishRequest{Stream: "orders", Type: "a\rb", Payload: hello()}, "CR, LF or NUL"},
		{"reserved type", &bridgev1.PublishRequest{Stream: "orders", Type: bridge.ResetEvent, Payload: hello()}, "reserved"},
		{"reserved presence type", &bridgev1.PublishRequest{Stream: "orders", Type: bridge.PresenceEvent, Payload: hello()}, "reserved"},
		{"payload too large", &bridgev1.PublishRequest{Stream: "orders", Payload: &bridgev1.PublishRequest_Json{Json: structpb.NewStringValue(strings.Repeat("x", 200))}}, "the limit is 100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := b.client.Publish(t.Context(), tc.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Errorf("Publish(%v) = %v, want InvalidArgument saying %q", tc.req, err, tc.want)
			}
		})
	}
	t.Run("nothing was published", func(t *testing.T) {
		// Runs after the parallel subtests above finished: the first frame
		// the watcher sees must be this one.
		ok := b.publish(t, jsonReq(t, "orders", "ok"))
		if got := watch.next(t); got.LastEventID != id(ok) {
			t.Errorf("first frame %+v, want the valid event %d", got, ok)
		}
	})
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

func TestSubscribeStatusCodesAndHeaders(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{CORSOrigins: []string{"https://app.example"}, MaxStreamsPerConnection: 2})
	for _, tc := range []struct {
		name, method, query, origin string
		status                      int
		header                      map[string]string
	}{
		{name: "no stream", method: "GET", query: "", status: 400},
		{name: "empty stream", method: "GET", query: "stream=", status: 400},
		{name: "invalid stream", method: "GET", query: "stream=a%20b", status: 400},
		{name: "CR in stream", method: "GET", query: "stream=a%0db", status: 400},
		{name: "too many streams", method: "GET", query: "stream=a&stream=b&stream=c", status: 400},
		{name: "bad query", method: "GET", query: "stream=%zz", status: 400},
		{name: "POST", method: "POST", query: "stream=a", status: 405, header: map[string]string{"Allow": "GET, OPTIONS"}},
		{name: "duplicates count once", method: "GET", query: "stream=a&stream=b&stream=a", status: 200},
		{name: "stream headers", method: "GET", query: "stream=a", status: 200, header: map[string]string{
			"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
		}},
		{name: "allowed origin", method: "GET", query: "stream=a", origin: "https://app.example", status: 200, header: map[string]string{
			"Access-Control-Allow-Origin": "https://app.example", "Vary": "Origin",
		}},
		{name: "other origin", method: "GET", query: "stream=a", origin: "https://evil.example", status: 200, header: map[string]string{
			"Access-Control-Allow-Origin": "",
		}},
		{name: "preflight", method: "OPTIONS", query: "stream=a", origin: "https://app.example", status: 204, header: map[string]string{
			"Access-Control-Allow-Origin": "https://app.example",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, tc.method, b.baseURL+"/events?"+tc.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
				req.Header.Set("Access-Control-Request-Method", "GET")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			if resp.StatusCode != tc.status {
				body, _ := io.ReadAll(resp.Body)
				t.Fatalf("%s /events?%s = %d (%s), want %d", tc.method, tc.query, resp.StatusCode, body, tc.status)
			}
			if tc.status == 400 {
				body, _ := io.ReadAll(resp.Body)
				if len(strings.TrimSpace(string(body))) < 10 {
					t.Errorf("400 body %q: want a message that says what to fix", body)
				}
			}
			for k, want := range tc.header {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestHealthAndReflectionAreRegistered(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{})
	res, err := b.health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "bridge.v1.BridgeService"})
	if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Check(bridge.v1.BridgeService) = %v, %v; want SERVING", res, err)
	}
}

// TestShutdownEndsStreamsAndLeaksNothing runs Serve to completion: every SSE
// stream ends, Serve returns nil, and no goroutine outlives it.
func TestShutdownEndsStreamsAndLeaksNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	b := startBridge(t, bridge.Config{})
	clients := []*sseClient{
		subscribe(t, b.baseURL, "stream=orders", ""),
		subscribe(t, b.baseURL, "stream=orders&stream=users", ""),
		subscribe(t, b.baseURL, "stream=idle", ""),
	}
	n := b.publish(t, jsonReq(t, "orders", "one"))
	for _, c := range clients[:2] {
		if got := c.next(t).LastEventID; got != id(n) {
			t.Fatalf("frame %s, want %d", got, n)
		}
	}
	if err := b.stop(); err != nil {
		t.Fatalf("Serve() = %v, want nil", err)
	}
	for i, c := range clients {
		select {
		case ev, ok := <-c.events:
			if ok {
				t.Errorf("client %d: got %+v after shutdown, want the stream to end", i, ev)
			}
		case <-time.After(waitLimit):
			t.Errorf("client %d: stream still open after shutdown", i)
		}
		c.close()
	}
	http.DefaultClient.CloseIdleConnections()
}

func idString(n uint64) string { return id(n) }

func strconvI(n int64) string { return strconv.FormatInt(n, 10) }

func parseID(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("id %q: %v", s, err)
	}
	return n
}

// TestCloudEventsSource: the cloudevents format carries the configured
// source (--cloudevents-source), "/sse-bridge" by default; a source that is
// no URI reference stops the start.
func TestCloudEventsSource(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ set, want string }{
		{"", "/sse-bridge"},
		{"https://acme.example/bridge", "https://acme.example/bridge"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			b := startBridge(t, bridge.Config{CloudEventsSource: tc.set})
			c := subscribe(t, b.baseURL, "stream=ce&format=cloudevents", "")
			b.publish(t, jsonReq(t, "ce", "x"))
			var ev struct {
				Source  string `json:"source"`
				Subject string `json:"subject"`
			}
			if err := json.Unmarshal([]byte(c.next(t).Data), &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Source != tc.want || ev.Subject != "ce" {
				t.Errorf("source %q, subject %q; want %q, %q", ev.Source, ev.Subject, tc.want, "ce")
			}
		})
	}
	if _, err := bridge.New(bridge.Config{CloudEventsSource: "my bridge"}); err == nil || !strings.Contains(err.Error(), "--cloudevents-source") {
		t.Errorf("New with the source %q = %v, want an error naming --cloudevents-source", "my bridge", err)
	}
}
