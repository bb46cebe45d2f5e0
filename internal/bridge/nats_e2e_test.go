package bridge_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosse "github.com/tmaxmax/go-sse"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// natsConfig is a bridge on the nats engine, its JetStream stream on ns.
func natsConfig(ns *bridge.NATSServer) bridge.Config {
	return bridge.Config{Engine: bridge.EngineNATS, NATS: bridge.NATSConfig{URLs: []string{ns.URL}}}
}

// readIDs reads n frames from c and returns their ids.
func readIDs(t *testing.T, c *sseClient, n int) []uint64 {
	t.Helper()
	ids := make([]uint64, 0, n)
	for range n {
		ev := c.next(t)
		if ev.Type == bridge.ResetEvent {
			t.Fatalf("got %s (%s) after %d frames, want events", ev.Type, ev.Data, len(ids))
		}
		ids = append(ids, parseID(t, ev.LastEventID))
	}
	return ids
}

// TestNATSTwoNodesShareEvents publishes on both nodes, to several streams at
// once: every connection on either node gets every event of its streams
// once, in id order.
func TestNATSTwoNodesShareEvents(t *testing.T) {
	t.Parallel()
	ns := bridge.StartNATS(t)
	a := startBridge(t, natsConfig(ns))
	b := startBridge(t, natsConfig(ns))
	streams := []string{"orders", "users", "shop.eu"}
	allOnB := subscribe(t, b.baseURL, "stream=orders&stream=users&stream=shop.eu", "")
	allOnA := subscribe(t, a.baseURL, "stream=orders&stream=users&stream=shop.eu", "")
	usersOnA := subscribe(t, a.baseURL, "stream=users", "")

	const perPublisher = 30
	var mu sync.Mutex
	byStream := map[string][]uint64{}
	var wg sync.WaitGroup
	for _, node := range []*testBridge{a, b} {
		for p := range 2 {
			wg.Go(func() {
				for i := range perPublisher {
					s := streams[(p+i)%len(streams)]
					res, err := node.client.Publish(t.Context(), jsonReq(t, s, map[string]any{"p": float64(p), "i": float64(i)}))
					if err != nil {
						t.Errorf("Publish(%s) = %v", s, err)
						return
					}
					mu.Lock()
					byStream[s] = append(byStream[s], res.GetId())
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	var all []uint64
	for _, ids := range byStream {
		all = append(all, ids...)
	}
	slices.Sort(all)
	for name, c := range map[string]*sseClient{"all streams on B": allOnB, "all streams on A": allOnA} {
		if got := readIDs(t, c, len(all)); !slices.Equal(got, all) {
			t.Errorf("%s: frame ids %v, want every published id once, in order: %v", name, got, all)
		}
	}
	users := slices.Sorted(slices.Values(byStream["users"]))
	if got := readIDs(t, usersOnA, len(users)); !slices.Equal(got, users) {
		t.Errorf("users on A: frame ids %v, want %v", got, users)
	}

	// The frames carry the event as published, whichever node it came from.
	id := b.publish(t, jsonReq(t, "users", map[string]any{"hello": "from B"}))
	want := frame{ID: idString(id), Data: map[string]any{"hello": "from B"}}
	if got := toFrame(t, usersOnA.next(t)); got.ID != want.ID || fmt.Sprint(got.Data) != fmt.Sprint(want.Data) || got.Type != "" {
		t.Errorf("frame on A of an event published on B = %+v, want %+v", got, want)
	}
}

// TestNATSResumeOnOtherNode: a browser that got ids from node A reconnects to
// node B and gets exactly what it missed, then live events.
func TestNATSResumeOnOtherNode(t *testing.T) {
	t.Parallel()
	ns := bridge.StartNATS(t)
	a := startBridge(t, natsConfig(ns))
	b := startBridge(t, natsConfig(ns))
	first := subscribe(t, a.baseURL, "stream=orders&stream=users", "")
	var ids []uint64
	for i := range 4 {
		ids = append(ids, a.publish(t, jsonReq(t, []string{"orders", "users"}[i%2], float64(i))))
	}
	seen := readIDs(t, first, 2)
	first.close()
	for i := range 3 {
		ids = append(ids, b.publish(t, jsonReq(t, []string{"users", "orders"}[i%2], "while away")))
		a.publish(t, jsonReq(t, "elsewhere", "not subscribed"))
	}

	c := subscribe(t, b.baseURL, "stream=orders&stream=users", idString(seen[1]))
	if got := readIDs(t, c, len(ids)-2); !slices.Equal(got, ids[2:]) {
		t.Errorf("resume on B after %d: frame ids %v, want %v", seen[1], got, ids[2:])
	}
	live := a.publish(t, jsonReq(t, "orders", "live"))
	if got := readIDs(t, c, 1); got[0] != live {
		t.Errorf("live frame after the resume: %d, want %d", got[0], live)
	}
}

// TestNATSResumeWhileNATSIsDown: a client resuming while NATS is
// unreachable gets its response at once, not when NATS is back (the bridge
// gives up checking history for it after a short while, and replays once
// NATS returns), and then its events as usual: the ones it missed, then
// live ones.
func TestNATSResumeWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	ns := bridge.StartNATS(t)
	a := startBridge(t, natsConfig(ns))
	seen := a.publish(t, jsonReq(t, "orders", "seen"))
	missed := a.publish(t, jsonReq(t, "orders", "missed"))
	ns.Stop()
	c := subscribe(t, a.baseURL, "stream=orders", idString(seen)) // 200, with NATS down
	ns.Start(t)
	if got := readIDs(t, c, 1); got[0] != missed {
		t.Fatalf("first frame %d, want the missed event %d", got[0], missed)
	}
	var live uint64
	deadline := time.Now().Add(waitLimit)
	for live == 0 { // the bridge's NATS client reconnects on its own time
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		res, err := a.client.Publish(ctx, jsonReq(t, "orders", "live"))
		cancel()
		switch {
		case err == nil:
			live = res.GetId()
		case time.Now().After(deadline):
			t.Fatalf("Publish after NATS came back: %v", err)
		default:
			time.Sleep(50 * time.Millisecond)
		}
	}
	if got := readIDs(t, c, 1); got[0] != live {
		t.Errorf("live frame %d, want %d", got[0], live)
	}
}

// TestNATSNodeRestart stops a node and starts a new one on the same
// JetStream: its clients reconnect with their Last-Event-ID and lose
// nothing, repeat nothing.
func TestNATSNodeRestart(t *testing.T) {
	t.Parallel()
	ns := bridge.StartNATS(t)
	a := startBridge(t, natsConfig(ns))
	b := startBridge(t, natsConfig(ns))
	queries := []string{"stream=orders", "stream=orders&stream=users"}
	clients := []*sseClient{subscribe(t, a.baseURL, queries[0], ""), subscribe(t, a.baseURL, queries[1], "")}
	var orders, both []uint64
	publish := func(stream string) {
		id := b.publish(t, jsonReq(t, stream, stream))
		both = append(both, id)
		if stream == "orders" {
			orders = append(orders, id)
		}
	}
	for _, s := range []string{"orders", "users", "orders"} {
		publish(s)
	}
	last := []uint64{readIDs(t, clients[0], len(orders))[len(orders)-1], readIDs(t, clients[1], len(both))[len(both)-1]}

	if err := a.stop(); err != nil {
		t.Fatalf("stop node A: %v", err)
	}
	for i, c := range clients {
		for ev := range c.events {
			t.Errorf("client %d got %+v after its node stopped, want its stream to end", i, ev)
		}
	}
	sentBefore := [2]int{len(orders), len(both)}
	for _, s := range []string{"users", "orders", "orders", "users"} {
		publish(s)
	}

	a2 := startBridge(t, natsConfig(ns))
	for i, c := range []*sseClient{subscribe(t, a2.baseURL, queries[0], idString(last[0])), subscribe(t, a2.baseURL, queries[1], idString(last[1]))} {
		want := [][]uint64{orders, both}[i][sentBefore[i]:]
		if got := readIDs(t, c, len(want)); !slices.Equal(got, want) {
			t.Errorf("client %d after the restart: frame ids %v, want %v", i, got, want)
		}
		clients[i] = c
	}
	publish("orders")
	for i, c := range clients {
		if got := readIDs(t, c, 1); got[0] != orders[len(orders)-1] {
			t.Errorf("client %d: live frame %d, want %d", i, got[0], orders[len(orders)-1])
		}
	}
}

// TestNATSServerRestartDuringPublishing stops the NATS server while two
// nodes publish in a loop: publishers get Unavailable within their deadline,
// health reports NOT_SERVING, SSE connections stay open, and once NATS is
// back every subscriber has every acknowledged event exactly once, in order.
func TestNATSServerRestartDuringPublishing(t *testing.T) {
	t.Parallel()
	ns := bridge.StartNATS(t)
	// The publishers run flat out on two streams in turn (so every event is
	// a write of its own), and on a starved machine (-cpu 1, -race) the
	// writers can fall more than the default queue behind the catch-up after
	// the outage: the bridge would then rightly evict a subscriber, which is
	// not what this test is about. A queue that absorbs the whole run keeps
	// it to NATS outage semantics.
	cfg := natsConfig(ns)
	cfg.QueueSize = 4096
	a := startBridge(t, cfg)
	b := startBridge(t, cfg)
	subs := []*sseClient{
		subscribe(t, a.baseURL, "stream=orders&stream=users&stream=marker", ""),
		subscribe(t, b.baseURL, "stream=orders&stream=users&stream=marker", ""),
	}
	// Each subscriber is read all along, as a browser reads: the publishers
	// run flat out, and frames left unread would fill the client's buffers,
	// then the connection's queue, and the bridge would rightly evict it.
	type collected struct {
		events []gosse.Event
		ended  bool // the stream ended before the marker frame
	}
	cols := make([]chan collected, len(subs))
	for i, c := range subs {
		cols[i] = make(chan collected, 1)
		go func() { // ends when the marker frame arrived or the stream ended
			var col collected
			for ev := range c.events {
				col.events = append(col.events, ev)
				if string(ev.Data) == `"end"` {
					cols[i] <- col
					return
				}
			}
			col.ended = true
			cols[i] <- col
		}()
	}
	health := watchHealth(t, b)
	if s := recvStatus(t, health); s != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health at start = %v, want SERVING", s)
	}

	const deadline = 5 * time.Second
	var (
		mu          sync.Mutex
		acked       []uint64
		unavailable int
		tick        = make(chan struct{}, 1) // an ack happened
		down        atomic.Bool              // set while NATS is stopped
		sawDown     = make(chan struct{})
		sawBack     = []chan struct{}{make(chan struct{}), make(chan struct{})} // per node
		downOnce    sync.Once
		backOnce    [2]sync.Once
		stop        = make(chan struct{})
		wg          sync.WaitGroup
	)
	// awaitAcks waits until n events were acknowledged in all.
	awaitAcks := func(n int) {
		t.Helper()
		for {
			mu.Lock()
			have := len(acked)
			mu.Unlock()
			if have >= n {
				return
			}
			waitClosed(t, tick, fmt.Sprintf("%d acknowledged events (have %d)", n, have))
		}
	}
	for p, node := range []*testBridge{a, b} {
		wg.Go(func() {
			sawUnavailable := false
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(t.Context(), deadline)
				start := time.Now()
				res, err := node.client.Publish(ctx, jsonReq(t, []string{"orders", "users"}[i%2], float64(p*1e6+i)))
				took := time.Since(start)
				cancel()
				mu.Lock()
				switch {
				case err == nil:
					acked = append(acked, res.GetId())
					if !down.Load() && sawUnavailable {
						backOnce[p].Do(func() { close(sawBack[p]) })
					}
					select {
					case tick <- struct{}{}:
					default:
					}
				case status.Code(err) == codes.Unavailable && took < deadline:
					unavailable++
					sawUnavailable = true
					downOnce.Do(func() { close(sawDown) })
				default:
					t.Errorf("Publish during the outage = %v after %v, want success or Unavailable within %v", err, took, deadline)
				}
				mu.Unlock()
				if err != nil {
					// Pacing, not synchronisation: publishes fail fast
					// while NATS is down, and nothing waits for this.
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}

	awaitAcks(20)
	down.Store(true)
	ns.Stop()
	waitClosed(t, sawDown, "a publish answered Unavailable")
	if s := recvStatus(t, health); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health while NATS is down = %v, want NOT_SERVING", s)
	}
	ns.Start(t)
	down.Store(false)
	if s := recvStatus(t, health); s != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health once NATS is back = %v, want SERVING", s)
	}
	for p, back := range sawBack {
		waitClosed(t, back, fmt.Sprintf("a publish on node %d succeeded after the outage", p))
	}
	mu.Lock()
	after := len(acked)
	mu.Unlock()
	awaitAcks(after + 20)
	close(stop)
	wg.Wait()

	marker := a.publish(t, jsonReq(t, "marker", "end"))
	mu.Lock()
	want := slices.Sorted(slices.Values(acked))
	t.Logf("%d events acknowledged, %d publishes answered Unavailable", len(acked), unavailable)
	mu.Unlock()
	for i := range subs {
		var col collected
		select {
		case col = <-cols[i]:
		case <-time.After(waitLimit):
			t.Fatalf("subscriber %d: no marker frame within %v", i, waitLimit)
		}
		if col.ended {
			var evictions []string
			for name, v := range scrape(t, []*testBridge{a, b}[i].baseURL) {
				if strings.HasPrefix(name, "bridge_sse_evictions_total") && v > 0 {
					evictions = append(evictions, fmt.Sprintf("%s %v", name, v))
				}
			}
			t.Fatalf("subscriber %d: stream ended after %d frames, want the same connection throughout (node's evictions: %v)", i, len(col.events), evictions)
		}
		var got []uint64
		for _, ev := range col.events {
			if ev.Type == bridge.ResetEvent {
				t.Fatalf("subscriber %d got %s: %s", i, ev.Type, ev.Data)
			}
			n := parseID(t, ev.LastEventID)
			if len(got) > 0 && n <= got[len(got)-1] {
				t.Fatalf("subscriber %d: frame id %d after %d, want increasing ids (no duplicates)", i, n, got[len(got)-1])
			}
			if n == marker {
				break
			}
			got = append(got, n)
		}
		// got may hold events whose ack was lost in the outage; it must hold
		// every acknowledged one.
		for _, id := range want {
			if _, found := slices.BinarySearch(got, id); !found {
				t.Errorf("subscriber %d never got acknowledged event %d", i, id)
			}
		}
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("waited %v for: %s", waitLimit, what)
	}
}

// watchHealth streams the health status of bridge.v1.BridgeService on b.
func watchHealth(t *testing.T, b *testBridge) <-chan healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	w, err := b.health.Watch(ctx, &healthpb.HealthCheckRequest{Service: bridgev1.BridgeService_ServiceDesc.ServiceName})
	if err != nil {
		t.Fatalf("health Watch: %v", err)
	}
	ch := make(chan healthpb.HealthCheckResponse_ServingStatus, 16)
	go func() { // ends with the watch: the test's end or the server's
		defer close(ch)
		for {
			res, err := w.Recv()
			if err != nil {
				return
			}
			ch <- res.GetStatus()
		}
	}()
	return ch
}

func recvStatus(t *testing.T, ch <-chan healthpb.HealthCheckResponse_ServingStatus) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	select {
	case s, ok := <-ch:
		if !ok {
			t.Fatalf("health watch ended")
		}
		return s
	case <-time.After(waitLimit):
		t.Fatalf("no health status within %v", waitLimit)
	}
	return 0
}

func TestNATSServeFailsWithoutNATS(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + l.Addr().String()
	_ = l.Close()
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := bridge.Config{Engine: bridge.EngineNATS, NATS: bridge.NATSConfig{URLs: []string{url}, ConnectTimeout: time.Second}}
	err = bridge.Serve(t.Context(), cfg, grpcLis, httpLis)
	if err == nil || !strings.Contains(err.Error(), "connect to NATS at "+url) {
		t.Fatalf("Serve with NATS unreachable = %v, want an error naming %s", err, url)
	}
	// The listeners are closed: nothing is left serving.
	if _, err := net.DialTimeout("tcp", httpLis.Addr().String(), time.Second); err == nil {
		t.Errorf("HTTP listener still accepts after Serve failed")
	}
}

// TestNATSShutdownLeaksNothing runs a nats bridge to completion: streams end,
// Serve returns nil, the engine's connection is closed, and no goroutine is
// left. Not parallel: goleak sees every goroutine of the test binary.
func TestNATSShutdownLeaksNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	ns := bridge.StartNATS(t)
	b := startBridge(t, natsConfig(ns))
	clients := []*sseClient{
		subscribe(t, b.baseURL, "stream=orders", ""),
		subscribe(t, b.baseURL, "stream=orders&stream=users", ""),
	}
	n := b.publish(t, jsonReq(t, "orders", "one"))
	for _, c := range clients {
		if got := readIDs(t, c, 1); got[0] != n {
			t.Fatalf("frame %d, want %d", got[0], n)
		}
	}
	resumed := subscribe(t, b.baseURL, "stream=orders", idString(n-1)) // a replay from JetStream
	if got := readIDs(t, resumed, 1); got[0] != n {
		t.Fatalf("replayed frame %d, want %d", got[0], n)
	}
	if err := b.stop(); err != nil {
		t.Fatalf("Serve() = %v, want nil", err)
	}
	for i, c := range append(clients, resumed) {
		for ev := range c.events {
			t.Errorf("client %d: got %+v after shutdown, want the stream to end", i, ev)
		}
		c.close()
	}
	http.DefaultClient.CloseIdleConnections()
	ns.Stop()
}
