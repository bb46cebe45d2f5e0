package bridge

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sse-bridge/bridge/internal/baseline"
)

// BenchmarkConnect opens b.N SSE connections (over 100 streams, 64 at a
// time) to the bridge's /events, set up as Serve sets it up, and to the
// baseline r3labs server, in one process, and keeps them open until the
// end, as W3 does. Client and server share the process, so the figure is
// their sum; the client's part is the same for both. Run it with a fixed
// count (the open-file limit holds two descriptors per connection):
//
//	go test -run '^$' -bench Connect -benchtime 4000x -count 5 ./internal/bridge/
func BenchmarkConnect(b *testing.B) {
	benchConnected(b, func(b *testing.B, addr string, _ func(string)) {
		b.Helper()
		b.ReportAllocs()
		b.ResetTimer()
		connectAll(b, addr, b.N)
		b.StopTimer()
	})
}

// BenchmarkFirstEvent connects b.N connections as BenchmarkConnect does,
// then times what W3 does next: one event to each of the 100 streams, until
// every connection read its frame. On the bridge that is the first event of
// every connection, which wakes it (doze.go).
//
//	go test -run '^$' -bench FirstEvent -benchtime 4000x -count 5 ./internal/bridge/
func BenchmarkFirstEvent(b *testing.B) {
	benchConnected(b, func(b *testing.B, addr string, publish func(string)) {
		b.Helper()
		readers := connectAll(b, addr, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range 100 {
			publish("load-" + strconv.Itoa(i))
		}
		for i, r := range readers {
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					b.Fatalf("connection %d: %v", i, err)
				}
				if strings.HasPrefix(line, "data: ") {
					break
				}
			}
		}
		b.StopTimer()
	})
}

// benchConnected runs bench against the bridge and against the baseline,
// each serving on a loopback address; publish sends one event to a stream.
func benchConnected(b *testing.B, bench func(b *testing.B, addr string, publish func(stream string))) {
	b.Helper()
	b.Run("bridge", func(b *testing.B) {
		cfg := Config{MaxConnections: -1, ConnectRate: -1, Logger: slog.New(slog.DiscardHandler)}
		if err := cfg.Validate(); err != nil {
			b.Fatal(err)
		}
		engine := NewMemoryEngine(cfg.HistorySize, cfg.HistoryAge)
		h := newHub(engine, cfg.QueueSize, cfg.MaxReplay, cfg.Logger)
		events := newSSEHandler(&cfg, h, nil, nil)
		mux := http.NewServeMux()
		mux.Handle("/events", events)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { _ = engine.Run(ctx, h.deliver) })
		addr, stop := serveBench(b, &http.Server{Handler: nosniff(mux), ReadHeaderTimeout: cfg.ReadHeaderTimeout, MaxHeaderBytes: cfg.MaxHeaderBytes})
		bench(b, addr, func(stream string) {
			if _, err := engine.Publish(ctx, &Event{Stream: stream, Data: []byte(`"x"`)}); err != nil {
				b.Fatal(err)
			}
		})
		stop()
		h.close()
		events.wait(context.Background(), h.cutWrites)
		cancel()
		wg.Wait()
		h.lib.Close()
	})
	b.Run("baseline", func(b *testing.B) {
		base := baseline.New()
		addr, stop := serveBench(b, &http.Server{Handler: base})
		bench(b, addr, func(stream string) {
			rec := httptest.NewRecorder()
			base.ServeHTTP(rec, httptest.NewRequestWithContext(b.Context(), http.MethodPost, "/publish?stream="+stream, strings.NewReader(`"x"`)))
			if rec.Code != http.StatusOK {
				b.Fatalf("publish: %d %s", rec.Code, rec.Body)
			}
		})
		stop()
		base.Close()
	})
}

// serveBench serves srv on a loopback address until stop.
func serveBench(b *testing.B, srv *http.Server) (addr string, stop func()) {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }() // ends with stop
	return lis.Addr().String(), func() { _ = srv.Close() }
}

// connectAll opens n SSE connections to addr, 64 at a time, over 100
// streams, and returns a reader of each past its response headers. The
// connections close when the benchmark ends.
func connectAll(b *testing.B, addr string, n int) []*bufio.Reader {
	b.Helper()
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	b.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	})
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					b.Error(err)
					return
				}
				conns[i] = c
				fmt.Fprintf(c, "GET /events?stream=load-%d HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n", i%100)
				br := bufio.NewReaderSize(c, 512)
				resp, err := http.ReadResponse(br, nil) //nolint:bodyclose // the stream stays open; its connection is closed at the end
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Errorf("connect %d: %v %v", i, err, resp)
					return
				}
				readers[i] = bufio.NewReaderSize(resp.Body, 512)
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return readers
}
