package bridge_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	gosse "github.com/tmaxmax/go-sse"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// BenchmarkNATSPublishToDelivery measures how long an event takes from a
// publish on one node to its delivery on another, through a NATS server with
// JetStream (file storage) in this process, on loopback:
//
//   - engine: NATSEngine.Publish on node A to node B's Run (JetStream alone);
//   - bridge: gRPC Publish on bridge A to an SSE frame read by a client of
//     bridge B (the whole path a browser sees).
//
// latency publishes one event at a time and waits for its delivery: ns/op is
// the mean, p50-µs and p99-µs the percentiles. throughput keeps 16
// publishers busy: events/s is what arrives.
//
//	go test -run '^$' -bench NATSPublishToDelivery -benchtime 3000x ./internal/bridge/
func BenchmarkNATSPublishToDelivery(b *testing.B) {
	b.Run("engine", func(b *testing.B) {
		b.Run("latency", func(b *testing.B) { benchLatency(b, newEnginePath(b)) })
		b.Run("throughput", func(b *testing.B) { benchThroughput(b, newEnginePath(b)) })
	})
	b.Run("bridge", func(b *testing.B) {
		b.Run("latency", func(b *testing.B) { benchLatency(b, newBridgePath(b)) })
		b.Run("throughput", func(b *testing.B) { benchThroughput(b, newBridgePath(b)) })
	})
}

// benchPath publishes on one node and delivers the ids on another.
type benchPath struct {
	publish   func(ctx context.Context, i int) (uint64, error)
	delivered <-chan uint64
}

func benchLatency(b *testing.B, p benchPath) {
	b.Helper()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		id, err := p.publish(b.Context(), i)
		if err != nil {
			b.Fatalf("publish: %v", err)
		}
		for got := range p.delivered {
			if got == id {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

func benchThroughput(b *testing.B, p benchPath) {
	b.Helper()
	const publishers = 16
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for g := range publishers {
		wg.Go(func() {
			for i := g; i < b.N; i += publishers {
				if _, err := p.publish(b.Context(), i); err != nil {
					b.Errorf("publish: %v", err)
					return
				}
			}
		})
	}
	for range b.N {
		<-p.delivered
	}
	elapsed := time.Since(start)
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}

// newEnginePath is two nats engines on one NATS server.
func newEnginePath(b *testing.B) benchPath {
	b.Helper()
	ns := bridge.StartNATS(b)
	cfg := bridge.NATSConfig{URLs: []string{ns.URL}}
	open := func() *bridge.NATSEngine {
		e, err := bridge.NewNATSEngine(b.Context(), cfg, 1000, time.Hour, 0, nil)
		if err != nil {
			b.Fatalf("NewNATSEngine: %v", err)
		}
		b.Cleanup(e.Close)
		return e
	}
	a, other := open(), open()
	delivered := make(chan uint64, 1<<16)
	ctx, cancel := context.WithCancel(context.WithoutCancel(b.Context()))
	done := make(chan struct{})
	go func() {
		_ = other.Run(ctx, func(batch []*bridge.Event) {
			for _, ev := range batch {
				delivered <- ev.ID
			}
		})
		close(done)
	}()
	b.Cleanup(func() { cancel(); <-done })
	data := []byte(`{"orderId":"o-1","amountMinor":"1250"}`)
	streams := []string{"orders", "users", "shop.eu", "shop.us"}
	return benchPath{
		publish: func(ctx context.Context, i int) (uint64, error) {
			return a.Publish(ctx, &bridge.Event{Stream: streams[i%len(streams)], Data: data})
		},
		delivered: delivered,
	}
}

// newBridgePath is two bridges on one NATS server; a client of bridge B
// subscribes to every stream the publisher uses.
func newBridgePath(b *testing.B) benchPath {
	b.Helper()
	ns := bridge.StartNATS(b)
	cfg := bridge.Config{Engine: bridge.EngineNATS, NATS: bridge.NATSConfig{URLs: []string{ns.URL}}, QueueSize: 1 << 16}
	serve := func() (grpcAddr, httpAddr string) {
		grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		httpLis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.WithoutCancel(b.Context()))
		done := make(chan error, 1)
		go func() { done <- bridge.Serve(ctx, cfg, grpcLis, httpLis) }()
		b.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				b.Errorf("Serve: %v", err)
			}
		})
		return grpcLis.Addr().String(), httpLis.Addr().String()
	}
	grpcA, _ := serve()
	_, httpB := serve()

	conn, err := grpc.NewClient(grpcA, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	client := bridgev1.NewBridgeServiceClient(conn)

	streams := []string{"orders", "users", "shop.eu", "shop.us"}
	query := ""
	for _, s := range streams {
		query += "&stream=" + s
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(b.Context()))
	b.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpB+"/events?"+query[1:], nil)
	if err != nil {
		b.Fatal(err)
	}
	// Once the response starts, bridge B has registered the connection.
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = resp.Body.Close() })
	delivered := make(chan uint64, 1<<16)
	go func() { // ends when the body ends (cleanup cancels the request)
		for ev, err := range gosse.Read(resp.Body, &gosse.ReadConfig{MaxEventSize: 1 << 20}) {
			if err != nil {
				return
			}
			if id, err := strconv.ParseUint(ev.LastEventID, 10, 64); err == nil {
				delivered <- id
			}
		}
	}()
	publish := func(ctx context.Context, i int) (uint64, error) {
		res, err := client.Publish(ctx, &bridgev1.PublishRequest{
			Stream: streams[i%len(streams)],
			Payload: &bridgev1.PublishRequest_Json{Json: mustValue(map[string]any{
				"orderId": "o-" + strconv.Itoa(i), "amountMinor": "1250",
			})},
		})
		return res.GetId(), err
	}
	return benchPath{publish: publish, delivered: delivered}
}

func mustValue(v any) *structpb.Value {
	val, err := structpb.NewValue(v)
	if err != nil {
		panic(fmt.Sprintf("structpb.NewValue(%v): %v", v, err))
	}
	return val
}

// BenchmarkNATSPublish measures ingest on the nats engine, one NATS server
// with JetStream (file storage) in this process: unary publishes one event
// at a time (each waits for its ack), batch publishes PublishBatch calls of
// 100 or 1000 events (pipelined: up to 256 acks awaited at once), keyed the
// same with an idempotency key on every event. ns/op is per event;
// events/s is what was stored. The engine reaches NATS on loopback, or
// through a link that holds every byte 0.25 ms each way without limiting
// throughput, as a network would; rtt-µs is the round trip measured through
// it (NATS PING/PONG, median of 20): on a loaded machine, timers make it
// longer than 0.5 ms.
//
//	go test -run '^$' -bench 'NATSPublish$' -benchtime 20000x ./internal/bridge/
func BenchmarkNATSPublish(b *testing.B) {
	for _, link := range []struct {
		name  string
		delay time.Duration
	}{{"loopback", 0}, {"link", 250 * time.Microsecond}} {
		for _, bc := range []struct {
			name  string
			batch int
			keyed bool
		}{
			{name: "unary", batch: 1},
			{name: "batch100", batch: 100},
			{name: "batch100-keyed", batch: 100, keyed: true},
			{name: "batch1000", batch: 1000},
		} {
			b.Run(link.name+"/"+bc.name, func(b *testing.B) {
				ns := bridge.StartNATS(b)
				url := ns.URL
				if link.delay > 0 {
					url = startDelayLink(b, strings.TrimPrefix(ns.URL, "nats://"), link.delay)
				}
				rtt := measureRTT(b, url)
				benchNATSPublish(b, url, bc.batch, bc.keyed)
				b.ReportMetric(float64(rtt.Microseconds()), "rtt-µs")
			})
		}
	}
}

func benchNATSPublish(b *testing.B, url string, batch int, keyed bool) {
	b.Helper()
	e, err := bridge.NewNATSEngine(b.Context(), bridge.NATSConfig{URLs: []string{url}}, 1000, time.Hour, 0, nil)
	if err != nil {
		b.Fatalf("NewNATSEngine: %v", err)
	}
	b.Cleanup(e.Close)
	data := []byte(`{"orderId":"o-1","amountMinor":"1250"}`)
	streams := []string{"orders", "users", "shop.eu", "shop.us"}
	evs := make([]*bridge.Event, batch)
	res := make([]bridge.Stored, batch)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i += batch {
		n := min(batch, b.N-i)
		for j := range n {
			evs[j] = &bridge.Event{Stream: streams[(i+j)%len(streams)], Data: data}
			if keyed {
				evs[j].Key = "k-" + strconv.Itoa(i+j)
			}
		}
		if batch == 1 {
			_, res[0].Err = e.Publish(b.Context(), evs[0])
		} else {
			e.PublishBatch(b.Context(), evs[:n], res[:n])
		}
		for _, r := range res[:n] {
			if r.Err != nil || r.Duplicate {
				b.Fatalf("publish: %+v", r)
			}
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// measureRTT returns the median of 20 NATS round trips to url.
func measureRTT(b *testing.B, url string) time.Duration {
	b.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	rtts := make([]time.Duration, 20)
	for i := range rtts {
		if rtts[i], err = nc.RTT(); err != nil {
			b.Fatalf("RTT: %v", err)
		}
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2]
}

// startDelayLink forwards TCP connections to target and holds every chunk
// of bytes for delay in each direction before passing it on, without
// limiting throughput; it returns its nats:// URL. Everything ends with the
// benchmark.
func startDelayLink(b *testing.B, target string, delay time.Duration) string {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	b.Cleanup(func() {
		_ = lis.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() { // ends when the listener closes
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			delayCopy(&wg, s, c, delay)
			delayCopy(&wg, c, s, delay)
		}
	})
	return "nats://" + lis.Addr().String()
}

// delayCopy copies src to dst on goroutines of wg, each chunk delay after
// it was read, until either fails; then it closes both.
func delayCopy(wg *sync.WaitGroup, dst, src net.Conn, delay time.Duration) {
	type chunk struct {
		at   time.Time
		data []byte
	}
	ch := make(chan chunk, 4096)
	wg.Go(func() {
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{time.Now().Add(delay), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	})
	wg.Go(func() {
		defer func() {
			_ = dst.Close()
			_ = src.Close()
			for range ch { // until the reader, failing now, is done
			}
		}()
		for c := range ch {
			time.Sleep(time.Until(c.at))
			if _, err := dst.Write(c.data); err != nil {
				return
			}
		}
	})
}
