package bridge

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	shopv1 "github.com/sse-bridge/bridge/gen/shop/v1"
	"github.com/sse-bridge/bridge/internal/payload/payloadtest"
)

// BenchmarkEncode measures rendering one publish to frame data, the work done
// once per event.
func BenchmarkEncode(b *testing.B) {
	enc := compiledInEncoder(b)
	typed := payloadtest.PublishAny(b, &shopv1.OrderCreated{
		OrderId:   "o-1",
		Customer:  &shopv1.Customer{Id: "c-7", Name: "Ada"},
		Items:     []*shopv1.LineItem{{Sku: "sku-1", Quantity: 2, UnitPrice: &shopv1.Money{Currency: "EUR", AmountMinor: 625}}},
		Total:     &shopv1.Money{Currency: "EUR", AmountMinor: 1250},
		Status:    shopv1.OrderStatus_ORDER_STATUS_PAID,
		CreatedAt: timestamppb.Now(),
	})
	val, err := structpb.NewValue(map[string]any{"hello": "world", "n": 42.0, "tags": []any{"a", "b"}})
	if err != nil {
		b.Fatal(err)
	}
	untyped := &bridgev1.PublishRequest{Stream: "s", Payload: &bridgev1.PublishRequest_Json{Json: val}}
	for _, bc := range []struct {
		name string
		req  *bridgev1.PublishRequest
	}{{"typed", typed}, {"json", untyped}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := enc.Payload(bc.req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("envelope", func(b *testing.B) {
		b.ReportAllocs()
		data := []byte(`{"orderId":"o-1","total":{"currency":"EUR","amountMinor":"1250"}}`)
		for b.Loop() {
			ev := &Event{ID: 1795633221073629, Stream: "orders", Type: "shop.v1.OrderCreated", Data: data, Time: time.Now()}
			_ = ev.frame(FormatEnvelope, defaultCloudEvents)
		}
	})
}

// BenchmarkReplay measures the history read of a resume: 3 of 10 streams,
// 1,000 events each, resuming halfway.
func BenchmarkReplay(b *testing.B) {
	e := NewMemoryEngine(1000, time.Hour)
	var mid uint64
	for i := range 10_000 {
		id, err := e.Publish(b.Context(), &Event{Stream: fmt.Sprintf("s%d", i%10), Data: []byte(`{}`)})
		if err != nil {
			b.Fatal(err)
		}
		if i == 5_000 {
			mid = id
		}
	}
	streams := []string{"s1", "s4", "s7"}
	b.ReportAllocs()
	for b.Loop() {
		r, err := e.Replay(b.Context(), streams, mid, 10_000)
		if err != nil || r.Reset != "" || len(r.Events) != 1500 {
			b.Fatalf("Replay = %d events, %q, %v", len(r.Events), r.Reset, err)
		}
	}
}

// BenchmarkFanOut measures one event reaching 1,000 SSE connections over
// loopback HTTP: publish, dispatch, TryPublish per connection, the library's
// writes and flushes, the kernel, and a minimal reader per connection. One
// op is one event delivered to all 1,000; ns/op divided by 1,000 is the cost
// per delivered frame (client reading included: both share the machine).
// inflight=1 publishes the next event once the previous one reached every
// connection; inflight=32 keeps up to 32 events in flight, as a busy stream
// does.
func BenchmarkFanOut(b *testing.B) {
	for _, bc := range []struct{ conns, window int }{{1000, 1}, {1000, 32}} {
		b.Run(fmt.Sprintf("conns=%d/inflight=%d", bc.conns, bc.window), func(b *testing.B) {
			benchFanOut(b, newBenchFixture(b, 1024), bc.conns, bc.window, nil)
		})
	}
}

// benchFanOut is one BenchmarkFanOut on f: conns connections, window
// events in flight, each event carrying trace (nil: none).
func benchFanOut(b *testing.B, f *benchFixture, conns, window int, trace *EventTrace) {
	b.Helper()
	var delivered atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(b.Context())
	defer func() { cancel(); wg.Wait() }()
	for range conns {
		c := dialEvents(ctx, b, f.srv, "bench")
		wg.Go(func() { countFrames(c, &delivered) })
	}
	data := []byte(`{"orderId":"o-1","total":{"currency":"EUR","amountMinor":"1250"}}`)
	b.ReportAllocs()
	b.ResetTimer()
	sent := int64(0)
	for b.Loop() {
		if _, err := f.engine.Publish(ctx, &Event{Stream: "bench", Data: data, Trace: trace}); err != nil {
			b.Fatal(err)
		}
		sent++
		// Keep at most window events in flight: 1 measures one event at a
		// time, 32 a steady stream.
		for delivered.Load() < (sent-int64(window))*int64(conns) {
			time.Sleep(10 * time.Microsecond)
		}
	}
	for delivered.Load() < sent*int64(conns) {
		time.Sleep(10 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(sent*int64(conns)), "ns/frame")
	if n := f.hub.evictionCount(evictQueueFull) + f.hub.evictionCount(evictWriteDeadline); n > 0 {
		b.Fatalf("%d connections evicted", n)
	}
}

type benchFixture struct {
	engine *MemoryEngine
	hub    *hub
	srv    *httptest.Server
}

func newBenchFixture(b *testing.B, queueSize int, opts ...func(*hub)) *benchFixture {
	b.Helper()
	engine := NewMemoryEngine(1000, time.Hour)
	h := newHub(engine, queueSize, 10_000, slog.New(slog.DiscardHandler))
	for _, o := range opts {
		o(h)
	}
	sh := &sseHandler{hub: h, maxStreams: 8, writeTimeout: 10 * time.Second, log: h.log}
	srv := httptest.NewServer(sh)
	ctx, cancel := context.WithCancel(context.WithoutCancel(b.Context()))
	var wg sync.WaitGroup
	wg.Go(func() { _ = engine.Run(ctx, h.deliver) })
	b.Cleanup(func() {
		h.close()
		srv.Close()
		sh.wait(context.Background(), h.cutWrites) // the streams on taken-over connections
		cancel()
		wg.Wait()
		h.lib.Close()
	})
	return &benchFixture{engine: engine, hub: h, srv: srv}
}

// dialEvents opens a raw SSE connection and returns it once the response
// headers arrived (the connection is registered by then).
func dialEvents(ctx context.Context, b *testing.B, srv *httptest.Server, stream string) *bufio.Reader {
	b.Helper()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", srv.Listener.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	context.AfterFunc(ctx, func() { _ = c.Close() })
	if _, err := fmt.Fprintf(c, "GET /events?stream=%s HTTP/1.1\r\nHost: bench\r\n\r\n", stream); err != nil {
		b.Fatal(err)
	}
	br := bufio.NewReaderSize(c, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			b.Fatalf("read headers: %v", err)
		}
		if line == "\r\n" {
			return br
		}
		if strings.HasPrefix(line, "HTTP/1.1 ") && !strings.HasPrefix(line, "HTTP/1.1 200") {
			b.Fatalf("status %q", line)
		}
	}
}

// countFrames counts "id: " lines until the connection ends.
func countFrames(br *bufio.Reader, n *atomic.Int64) {
	prefix := []byte("id: ")
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		if bytes.HasPrefix(line, prefix) {
			n.Add(1)
		}
	}
}
