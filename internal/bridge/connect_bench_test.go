package bridge

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
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
		srv := &http.Server{Handler: nosniff(mux), ReadHeaderTimeout: cfg.ReadHeaderTimeout, MaxHeaderBytes: cfg.MaxHeaderBytes}
		benchConnect(b, srv, func() {
			h.close()
			events.wait(context.Background(), h.cutWrites)
			h.lib.Close()
		})
	})
	b.Run("baseline", func(b *testing.B) {
		base := baseline.New()
		benchConnect(b, &http.Server{Handler: base}, base.Close)
	})
}

func benchConnect(b *testing.B, srv *http.Server, closeAll func()) {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }() // ends with srv.Close below
	addr := lis.Addr().String()
	conns := make([]net.Conn, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					b.Error(err)
					return
				}
				conns[i] = c
				fmt.Fprintf(c, "GET /events?stream=load-%d HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n", i%100)
				resp, err := http.ReadResponse(bufio.NewReaderSize(c, 512), nil) //nolint:bodyclose // the stream stays open; its connection is closed at the end
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Errorf("connect %d: %v %v", i, err, resp)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
	_ = srv.Close()
	closeAll()
}
