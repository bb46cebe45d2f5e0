package publisher_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	gosse "github.com/tmaxmax/go-sse"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// Fixtures of the publisher's tests: a real bridge on loopback listeners
// (in memory or on a real NATS server in the test process), a gRPC
// connection that counts its calls, a proxy that loses replies, and an SSE
// reader that is not the bridge's own library.

// waitLimit bounds every wait so that a bug fails a test instead of hanging
// it; no assertion depends on how fast anything is.
const waitLimit = 30 * time.Second

// testBridge is a bridge serving on loopback.
type testBridge struct {
	grpcAddr, baseURL string
	stop              func() // stops it and waits until Serve returned
}

// startBridge serves a bridge with cfg on grpcAddr ("127.0.0.1:0" for any
// port: restarting on a stopped bridge's address is a restart) until the
// test ends or stop.
func startBridge(t *testing.T, cfg bridge.Config, grpcAddr string) *testBridge {
	t.Helper()
	gl, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		t.Fatalf("listen %s: %v", grpcAddr, err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- bridge.Serve(ctx, cfg, gl, hl) }() // ends with ctx
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve = %v, want nil", err)
			}
		})
	}
	t.Cleanup(stop)
	return &testBridge{grpcAddr: gl.Addr().String(), baseURL: "http://" + hl.Addr().String(), stop: stop}
}

// calls counts the unary calls of a connection, by method.
type calls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *calls) count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[method]
}

func (c *calls) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	c.mu.Lock()
	c.n[method]++
	c.mu.Unlock()
	return invoker(ctx, method, req, reply, cc, opts...)
}

const publishBatch = "/bridge.v1.BridgeService/PublishBatch"

// dial connects to addr, closing the connection when the test ends, and
// counts its calls.
func dial(t *testing.T, addr string) (*grpc.ClientConn, *calls) {
	t.Helper()
	c := &calls{n: map[string]int{}}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(c.intercept))
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, c
}

// jsonEvent is an event for stream whose payload is the JSON value v.
func jsonEvent(t *testing.T, stream string, v any) *bridgev1.PublishRequest {
	t.Helper()
	val, err := structpb.NewValue(v)
	if err != nil {
		t.Fatalf("structpb.NewValue(%v): %v", v, err)
	}
	return &bridgev1.PublishRequest{Stream: stream, Payload: &bridgev1.PublishRequest_Json{Json: val}}
}

// frame is one SSE event as a browser sees it.
type frame struct {
	id   uint64
	data string
}

// readFrames subscribes to stream on the bridge at baseURL, resuming after
// the id after, and returns the first n frames.
func readFrames(t *testing.T, baseURL, stream string, after uint64, n int) []frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/events?stream="+stream, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Last-Event-ID", strconv.FormatUint(after, 10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /events?stream=%s: %v", stream, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events?stream=%s = %d, want 200", stream, resp.StatusCode)
	}
	var got []frame
	for ev, err := range gosse.Read(resp.Body, &gosse.ReadConfig{MaxEventSize: 1 << 20}) {
		if err != nil {
			t.Fatalf("reading /events?stream=%s after %d frames %v: %v", stream, len(got), got, err)
		}
		if ev.Type == bridge.ResetEvent {
			t.Fatalf("got %s (%s) after %d frames, want events", ev.Type, ev.Data, len(got))
		}
		id, err := strconv.ParseUint(ev.LastEventID, 10, 64)
		if err != nil {
			t.Fatalf("frame id %q: %v", ev.LastEventID, err)
		}
		if got = append(got, frame{id, string(ev.Data)}); len(got) == n {
			break
		}
	}
	if len(got) < n {
		t.Fatalf("/events?stream=%s ended after %d frames %v, want %d", stream, len(got), got, n)
	}
	http.DefaultClient.CloseIdleConnections()
	return got
}

// startNATS starts a NATS server with JetStream in the test process, on
// loopback, shut down when the test ends.
func startNATS(t *testing.T) string {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		t.Fatalf("nats server.NewServer: %v", err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(waitLimit) {
		t.Fatalf("NATS server not ready for connections within %v", waitLimit)
	}
	return srv.ClientURL()
}

// lossyProxy forwards TCP connections to a target, and on demand loses
// what the target sends back while still delivering what the client sends:
// a reply lost on the way, as after a network failure, with the request
// carried out.
type lossyProxy struct {
	lis    net.Listener
	target string
	lose   atomic.Bool
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// A reply is lost when lose is set as the forwarder reads it; restore
// closes the connections before clearing lose, so a reply read before
// then is either dropped or fails to be written.

// startLossyProxy listens on loopback and forwards to target until the
// test ends.
func startLossyProxy(t *testing.T, target string) *lossyProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p := &lossyProxy{lis: lis, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept) // ends when the listener closes
	t.Cleanup(p.close)
	return p
}

func (p *lossyProxy) addr() string { return p.lis.Addr().String() }

// cut closes every connection in flight; new ones go through.
func (p *lossyProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

// restore closes every connection in flight, then stops losing replies:
// no reply sent before it reaches a client, whatever the timing.
func (p *lossyProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.lose.Store(false)
}

func (p *lossyProxy) close() {
	_ = p.lis.Close()
	p.cut()
	p.wg.Wait()
}

func (p *lossyProxy) accept() {
	for {
		down, err := p.lis.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", p.target, waitLimit)
		if err != nil {
			_ = down.Close()
			continue
		}
		p.mu.Lock()
		p.conns[down], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		// Each direction ends when either end closes; the pair is then
		// closed, so the other direction ends too.
		end := func() {
			_ = down.Close()
			_ = up.Close()
			p.mu.Lock()
			delete(p.conns, down)
			delete(p.conns, up)
			p.mu.Unlock()
		}
		p.wg.Go(func() {
			defer end()
			_, _ = io.Copy(up, down)
		})
		p.wg.Go(func() {
			defer end()
			buf := make([]byte, 32<<10)
			for {
				n, err := up.Read(buf)
				if n > 0 && !p.lose.Load() {
					if _, werr := down.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		})
	}
}
