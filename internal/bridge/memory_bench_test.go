package bridge

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sse-bridge/bridge/internal/baseline"
)

// BenchmarkStreamMemory opens b.N idle SSE streams (over 100 stream names)
// to the bridge, dozing and eager, to the baseline r3labs server and to a
// handler that only sends its headers and waits (floor: what the client and
// Go's HTTP server hold by themselves, to subtract), over
// HTTP/2 (TLS, streams multiplexed on a few connections: what a browser
// uses against a bridge serving TLS itself) and over HTTP/1.1, and reports
// what they hold once open: Go heap and goroutine stacks per stream
// (heap+stack-B/stream) and goroutines per stream. W3 (bench/run.sh)
// measures the process's RSS, over HTTP/1.1 only; this is the HTTP/2
// figure. Client and server share the process: the client's part, the same
// for every server, is in the figures too. Run it with a fixed count:
//
//	go test -run '^$' -bench StreamMemory -benchtime 2000x ./internal/bridge/
func BenchmarkStreamMemory(b *testing.B) {
	for _, proto := range []string{"h2", "h1"} {
		for _, target := range []string{"bridge", "bridge-eager", "baseline", "floor"} {
			b.Run(proto+"/"+target, func(b *testing.B) {
				handler, closeAll := memoryBenchTarget(b, target)
				srv := httptest.NewUnstartedServer(handler)
				if proto == "h2" {
					srv.EnableHTTP2 = true
					srv.StartTLS()
				} else {
					srv.Start()
				}
				measureStreams(b, srv, proto)
				srv.CloseClientConnections()
				srv.Close()
				closeAll()
			})
		}
	}
}

// memoryBenchTarget returns the handler of target and what stops it.
func memoryBenchTarget(b *testing.B, target string) (http.Handler, func()) {
	b.Helper()
	switch target {
	case "floor":
		// What the client and Go's HTTP server cost by themselves: a
		// handler that sends its headers and waits.
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}), func() {}
	case "baseline":
		base := baseline.New()
		return base, base.Close
	}
	cfg := Config{MaxConnections: -1, ConnectRate: -1, EagerStreams: target == "bridge-eager", Logger: slog.New(slog.DiscardHandler)}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	h := newHub(NewMemoryEngine(cfg.HistorySize, cfg.HistoryAge), cfg.QueueSize, cfg.MaxReplay, cfg.Logger)
	events := newSSEHandler(&cfg, h, nil, nil)
	return events, func() {
		h.close()
		events.wait(context.Background(), h.cutWrites)
		h.lib.Close()
	}
}

// measureStreams opens b.N streams to srv and reports what they hold.
func measureStreams(b *testing.B, srv *httptest.Server, proto string) {
	b.Helper()
	client := srv.Client()
	if proto == "h1" {
		client = &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: -1, DisableKeepAlives: true}}
	} else {
		tr := client.Transport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, MinVersion: tls.VersionTLS12}
		tr.ForceAttemptHTTP2 = true
		client = &http.Client{Transport: tr}
	}
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	before, stacksBefore, goroutines := settledMemory()
	bodies := make([]io.ReadCloser, b.N)
	var wg sync.WaitGroup
	var failed sync.Once
	b.ResetTimer()
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < b.N; i += 32 {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/events?stream=load-%d", srv.URL, i%100), nil)
				resp, err := client.Do(req)
				if err != nil || resp.StatusCode != http.StatusOK || resp.ProtoMajor != map[string]int{"h1": 1, "h2": 2}[proto] {
					failed.Do(func() { b.Errorf("stream %d: %v %v", i, resp, err) })
					if err == nil {
						_ = resp.Body.Close()
					}
					return
				}
				bodies[i] = resp.Body
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if b.Failed() {
		return
	}
	// The bridge's streams register on goroutines of their own: wait until
	// the count settles.
	time.Sleep(200 * time.Millisecond)
	after, stacksAfter, goroutinesAfter := settledMemory()
	b.ReportMetric(float64(after-before)/float64(b.N), "heap+stack-B/stream")
	b.ReportMetric(float64(stacksAfter-stacksBefore)/float64(b.N), "stack-B/stream")
	b.ReportMetric(float64(goroutinesAfter-goroutines)/float64(b.N), "goroutines/stream")
	cancel()
	for _, body := range bodies {
		_ = body.Close()
	}
}

// settledMemory returns the Go heap and stacks in use after two collections,
// the stacks alone, and the number of goroutines.
func settledMemory() (inUse, stacks int64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse + ms.StackInuse), int64(ms.StackInuse), runtime.NumGoroutine()
}
