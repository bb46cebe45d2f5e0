package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// grpcSub is one Subscribe call, read on a goroutine of its own.
type grpcSub struct {
	msgs chan *bridgev1.SubscribeResponse
	err  chan error // the status the stream ended with (io.EOF: none)
}

// subscribeGRPC calls Subscribe on c with req and the metadata md (none when
// nil) and returns once the bridge registered the subscription (its
// response headers came), or fails the test with the call's status.
func subscribeGRPC(t *testing.T, c bridgev1.BridgeServiceClient, req *bridgev1.SubscribeRequest, md metadata.MD) *grpcSub {
	t.Helper()
	s, err := tryGRPCSub(t, c, req, md, 1024)
	if err != nil {
		t.Fatalf("Subscribe(%v) = %v, want a stream", req, err)
	}
	return s
}

// tryGRPCSub is subscribeGRPC returning the call's error; buffer is how
// many messages the reader goroutine holds before it stops reading (and
// so stops draining gRPC's flow control window).
func tryGRPCSub(t *testing.T, c bridgev1.BridgeServiceClient, req *bridgev1.SubscribeRequest, md metadata.MD, buffer int) (*grpcSub, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	if md != nil {
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	stream, err := c.Subscribe(ctx, req)
	if err != nil {
		return nil, err
	}
	// The bridge sends the headers once the subscription is registered; a
	// refused call has none, and Recv says why.
	if hdr, err := stream.Header(); err != nil || len(hdr) == 0 {
		if _, err := stream.Recv(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("a message before the headers")
	}
	s := &grpcSub{msgs: make(chan *bridgev1.SubscribeResponse, buffer), err: make(chan error, 1)}
	go func() { // ends with the stream: the server ended it, or cancel
		for {
			m, err := stream.Recv()
			if err != nil {
				s.err <- err
				close(s.msgs)
				return
			}
			s.msgs <- m
		}
	}()
	return s, nil
}

// next returns the next message, failing the test if the stream ends first.
func (s *grpcSub) next(t *testing.T) *bridgev1.SubscribeResponse {
	t.Helper()
	select {
	case m, ok := <-s.msgs:
		if !ok {
			t.Fatalf("Subscribe ended with %v, want another message", <-s.err)
		}
		return m
	case <-time.After(waitLimit):
		t.Fatalf("no message within %v", waitLimit)
	}
	return nil
}

// end returns the status the stream ended with, draining what is left.
func (s *grpcSub) end(t *testing.T) error {
	t.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case _, ok := <-s.msgs:
			if !ok {
				return <-s.err
			}
		case <-timeout:
			t.Fatalf("Subscribe did not end within %v", waitLimit)
			return nil
		}
	}
}

// engines runs f on a bridge of each engine, built from cfg.
func engines(t *testing.T, cfg bridge.Config, f func(t *testing.T, b *testBridge)) {
	t.Helper()
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		f(t, startBridge(t, cfg))
	})
	t.Run("nats", func(t *testing.T) {
		t.Parallel()
		ns := bridge.StartNATS(t)
		c := cfg
		c.Engine, c.NATS = bridge.EngineNATS, natsConfig(ns).NATS
		f(t, startBridge(t, c))
	})
}

// sameFrame fails the test unless the gRPC message m is the SSE frame ev:
// the same id, type and data bytes. (In the envelope formats the SSE frame
// has no event: line, and the message still has the event's type.)
func sameFrame(t *testing.T, ev frameOf, m *bridgev1.SubscribeResponse) {
	t.Helper()
	got := frameOf{id(m.GetId()), m.GetType(), m.GetData()}
	var envelope struct{ Type string }
	if ev.Type == "" && json.Unmarshal([]byte(ev.Data), &envelope) == nil && envelope.Type == got.Type {
		got.Type = "" // an envelope format: its type is in the data
	}
	if got != ev {
		t.Errorf("Subscribe message = %+v, want the SSE frame %+v", got, ev)
	}
}

// frameOf is an SSE frame as a string triple.
type frameOf struct{ ID, Type, Data string }

func (c *sseClient) nextFrame(t *testing.T) frameOf {
	t.Helper()
	ev := c.next(t)
	return frameOf{ev.LastEventID, ev.Type, ev.Data}
}

// TestSubscribeMatchesSSE: a Subscribe call and an SSE connection of the same
// streams get the same frames (ids, types, data bytes, in every format), the
// same replay on a resume and the same reset, on both engines.
func TestSubscribeMatchesSSE(t *testing.T) {
	t.Parallel()
	engines(t, bridge.Config{HistorySize: 3}, func(t *testing.T, b *testBridge) {
		t.Helper()
		for _, format := range []string{"data", "envelope", "cloudevents"} {
			sse := subscribe(t, b.baseURL, "stream=a&stream=b&format="+format, "")
			g := subscribeGRPC(t, b.client, &bridgev1.SubscribeRequest{Streams: []string{"a", "b"}, Format: format}, nil)
			// Each event is read before the next is published: with a
			// history of 3, a node's consumer behind by 3 events of a
			// stream would find them trimmed (a gap, which ends both).
			for i := range 8 {
				req := jsonReq(t, []string{"a", "b"}[i%2], map[string]any{"n": i, "format": format})
				if i%3 == 0 {
					req.Type = "shop.Typed"
				}
				b.publish(t, req)
				m := g.next(t)
				sameFrame(t, sse.nextFrame(t), m)
				if m.GetStream() != "a" && m.GetStream() != "b" || m.GetTime() == nil {
					t.Errorf("message %v: want its stream and time", m)
				}
			}
		}
		// Both resume after the same id: the same replay.
		// Each read by a watcher before the next is published, so that the
		// node delivered it before history trims it (no gap).
		watch := subscribe(t, b.baseURL, "stream=c", "")
		ids := make([]uint64, 4)
		for i := range ids {
			ids[i] = b.publish(t, jsonReq(t, "c", i))
			watch.next(t)
		}
		sse := subscribe(t, b.baseURL, "stream=c", id(ids[1]))
		g := subscribeGRPC(t, b.client, &bridgev1.SubscribeRequest{Streams: []string{"c"}, AfterId: proto.Uint64(ids[1])}, nil)
		for _, want := range ids[2:] {
			m := g.next(t)
			sameFrame(t, sse.nextFrame(t), m)
			if m.GetId() != want {
				t.Errorf("resumed after %d: got id %d, want %d", ids[1], m.GetId(), want)
			}
		}
		// ids[0] left history (3 per stream): a resume before it gets the
		// same reset over both.
		sse = subscribe(t, b.baseURL, "stream=c", id(ids[0]-1))
		g = subscribeGRPC(t, b.client, &bridgev1.SubscribeRequest{Streams: []string{"c"}, AfterId: proto.Uint64(ids[0] - 1)}, nil)
		want := sse.nextFrame(t)
		m := g.next(t)
		sameFrame(t, want, m)
		if want.Type != bridge.ResetEvent || m.GetBridgeReset().GetReason() != bridge.ResetTrimmed || m.GetBridgeReset().GetLastEventId() != m.GetId() {
			t.Errorf("resume after a trimmed id: SSE %+v, gRPC %v; want the same %s %s", want, m, bridge.ResetEvent, bridge.ResetTrimmed)
		}
		// Then live events, the same again.
		b.publish(t, jsonReq(t, "c", "after reset"))
		sameFrame(t, sse.nextFrame(t), g.next(t))
	})
}

// TestSubscribeSlowReaderEvicted: a Subscribe caller that stops reading is
// ended with RESOURCE_EXHAUSTED once its queue fills, while SSE readers of
// the same stream get every event.
func TestSubscribeSlowReaderEvicted(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{QueueSize: 8})
	// The reader goroutine holds 1 message and then stops reading: gRPC's
	// flow control windows fill, then the bridge's queue.
	slow, err := tryGRPCSub(t, b.client, &bridgev1.SubscribeRequest{Streams: []string{"big"}}, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	readers := []*sseClient{subscribe(t, b.baseURL, "stream=big", ""), subscribe(t, b.baseURL, "stream=big", "")}
	const n = 400
	blob := strings.Repeat("x", 16<<10)
	// The SSE readers read each event before the next is published: they
	// keep up however slowly this machine runs them (a queue of 8 frame
	// groups of at most 32 KiB holds 16 of these events), while the slow
	// caller's queue fills.
	for i := range n {
		want := id(b.publish(t, jsonReq(t, "big", map[string]any{"i": i, "blob": blob})))
		for j, r := range readers {
			if got := r.nextFrame(t).ID; got != want {
				t.Fatalf("SSE reader %d: event %d has id %s, want %s", j, i, got, want)
			}
		}
	}
	if err := slow.end(t); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--queue-size") {
		t.Errorf("slow Subscribe ended with %v, want ResourceExhausted naming --queue-size", err)
	}
}

// TestSubscribeStuckReaderGivesBackItsPlace: a Subscribe caller that stops
// reading for good is ended, whether its queue fills or a message waits
// --write-timeout for it, and its place under --max-connections-per-ip is
// free again at once: a new subscriber from the same address gets events
// while the stuck one still reads nothing. When the stuck one reads again
// it gets what was sent, then the status that says why it was ended. No
// goroutine is left behind.
func TestSubscribeStuckReaderGivesBackItsPlace(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, tc := range []struct {
		name  string
		cfg   bridge.Config
		size  int    // of each event's blob
		n     int    // events published while it reads nothing
		cause string // what the status names
	}{
		// Big enough to fill gRPC's windows (64 KiB each, fixed below),
		// then the sink of 8.
		{"queue full", bridge.Config{QueueSize: 8}, 16 << 10, 64, "--queue-size"},
		// The sink never fills; a Send waits for flow control instead.
		{"send stalled", bridge.Config{QueueSize: 1000, WriteTimeout: 200 * time.Millisecond}, 32 << 10, 16, "--write-timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.MaxConnectionsPerIP = 1
			b := startBridge(t, cfg)
			// The stuck reader has a connection of its own with fixed
			// windows (no BDP estimation to grow them).
			conn, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
			defer cancel()
			stuck, err := bridgev1.NewBridgeServiceClient(conn).Subscribe(ctx, &bridgev1.SubscribeRequest{Streams: []string{"big"}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := stuck.Header(); err != nil {
				t.Fatalf("stuck Subscribe: %v", err)
			}
			// It holds the address's one place.
			req := &bridgev1.SubscribeRequest{Streams: []string{"big"}}
			if _, err := tryGRPCSub(t, b.client, req, nil, 1024); status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("second Subscribe from the address = %v, want ResourceExhausted (the limit of 1)", err)
			}

			blob := strings.Repeat("x", tc.size)
			for i := range tc.n {
				b.publish(t, jsonReq(t, "big", map[string]any{"i": i, "blob": blob}))
			}
			// Its place is free once it is ended, while it still reads
			// nothing.
			var next *grpcSub
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for next == nil {
				next, err = tryGRPCSub(t, b.client, req, nil, 1024)
				if err != nil && status.Code(err) != codes.ResourceExhausted {
					t.Fatalf("Subscribe after the stuck one was ended = %v", err)
				}
				select {
				case <-tick.C:
				case <-ctx.Done():
					t.Fatalf("the stuck reader's place was not given back within %v", waitLimit)
				}
			}
			live := b.publish(t, jsonReq(t, "big", "live"))
			if got := next.next(t).GetId(); got != live {
				t.Errorf("new subscriber got id %d, want the live event %d", got, live)
			}

			// Reading again, it gets what was sent, in order, then why it
			// was ended.
			var ids []uint64
			for {
				m, err := stuck.Recv()
				if err != nil {
					if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), tc.cause) {
						t.Errorf("stuck Subscribe ended with %v, want ResourceExhausted naming %s", err, tc.cause)
					}
					break
				}
				ids = append(ids, m.GetId())
			}
			if len(ids) == 0 || len(ids) >= tc.n || !slices.IsSorted(ids) {
				t.Errorf("stuck reader got ids %v, want some but not all of the %d events, in order", ids, tc.n)
			}
			cancel()
			_ = conn.Close()
			if err := b.stop(); err != nil {
				t.Errorf("Serve = %v, want nil", err)
			}
		})
	}
}

// TestSubscribeGrants: Subscribe takes /events' subscriber tokens from the
// authorization metadata; a publisher's token reads only what its "read"
// patterns cover.
func TestSubscribeGrants(t *testing.T) {
	t.Parallel()
	pubs := writePublishers(t,
		pubEntry{Name: "writer", TokenSHA256: hashToken("writer-token"), Streams: []string{"orders"}},
		pubEntry{Name: "auditor", TokenSHA256: hashToken("auditor-token"), Streams: []string{"audit"}, Read: []string{"orders.>"}},
	)
	b := startBridge(t, bridge.Config{JWTKey: writeKeyFile(t, testHMACKey), Publishers: pubs, PublicStreams: []string{"news"}})
	orders := mint(t, jwt.SigningMethodHS256, testHMACKey, claimsFor("orders.*"))
	for _, tc := range []struct {
		name    string
		md      metadata.MD
		streams []string
		want    codes.Code
	}{
		{"public without token", nil, []string{"news"}, codes.OK},
		{"private without token", nil, []string{"orders.1"}, codes.Unauthenticated},
		{"granted token", bearer(orders), []string{"orders.1", "news"}, codes.OK},
		{"token not granting", bearer(orders), []string{"orders.1", "users.1"}, codes.PermissionDenied},
		{"bad token", bearer("nope"), []string{"news"}, codes.Unauthenticated},
		{"publisher without read", bearer("writer-token"), []string{"orders"}, codes.PermissionDenied},
		{"publisher with read", bearer("auditor-token"), []string{"orders.eu"}, codes.OK},
		{"publisher outside read", bearer("auditor-token"), []string{"orders"}, codes.PermissionDenied},
	} {
		_, err := tryGRPCSub(t, b.client, &bridgev1.SubscribeRequest{Streams: tc.streams}, tc.md, 16)
		if status.Code(err) != tc.want {
			t.Errorf("%s: Subscribe(%v) = %v, want %v", tc.name, tc.streams, err, tc.want)
		}
		ctx := t.Context()
		if tc.md != nil {
			ctx = metadata.NewOutgoingContext(ctx, tc.md)
		}
		_, err = b.client.History(ctx, &bridgev1.HistoryRequest{Stream: tc.streams[0]})
		if len(tc.streams) == 1 && status.Code(err) != tc.want {
			t.Errorf("%s: History(%v) = %v, want %v", tc.name, tc.streams[0], err, tc.want)
		}
	}
}

// TestSubscribeBadRequests: what can never succeed is INVALID_ARGUMENT,
// saying what to fix.
func TestSubscribeBadRequests(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{MaxStreamsPerConnection: 2, MaxReplay: 50})
	for _, req := range []*bridgev1.SubscribeRequest{
		{},
		{Streams: []string{"bad name"}},
		{Streams: []string{"a", "b", "c"}},
		{Streams: []string{"a"}, Format: "xml"},
	} {
		if _, err := tryGRPCSub(t, b.client, req, nil, 1); status.Code(err) != codes.InvalidArgument {
			t.Errorf("Subscribe(%v) = %v, want InvalidArgument", req, err)
		}
	}
	_, err := b.client.History(t.Context(), &bridgev1.HistoryRequest{Stream: "a", Limit: 51})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "--max-replay") {
		t.Errorf("History(limit 51) = %v, want InvalidArgument naming --max-replay", err)
	}
	resp, err := http.Get(b.baseURL + "/history?stream=a&limit=51")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "--max-replay") {
		t.Errorf("GET /history?limit=51 = %d %q, want 400 naming --max-replay", resp.StatusCode, body)
	}
}

// TestSubscribeShutdown: a shutdown ends every Subscribe with UNAVAILABLE
// and leaves no goroutine behind.
func TestSubscribeShutdown(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	b := startBridge(t, bridge.Config{})
	// A connection of their own: stop closes b.client's first.
	conn, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := bridgev1.NewBridgeServiceClient(conn)
	subs := []*grpcSub{
		subscribeGRPC(t, client, &bridgev1.SubscribeRequest{Streams: []string{"a"}}, nil),
		subscribeGRPC(t, client, &bridgev1.SubscribeRequest{Streams: []string{"a"}, AfterId: proto.Uint64(0)}, nil),
	}
	b.publish(t, jsonReq(t, "a", 1))
	for _, s := range subs {
		s.next(t)
	}
	done := make(chan error, 1)
	go func() { done <- b.stop() }()
	for _, s := range subs {
		if err := s.end(t); status.Code(err) != codes.Unavailable {
			t.Errorf("Subscribe at shutdown ended with %v, want Unavailable", err)
		}
	}
	if err := <-done; err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
}

// historyPage is GET /history's body.
type historyPage struct {
	Events []struct {
		ID     string          `json:"id"`
		Stream string          `json:"stream"`
		Data   json.RawMessage `json:"data"`
	} `json:"events"`
	LastEventID string `json:"lastEventId"`
}

func getHistory(t *testing.T, baseURL, query string) historyPage {
	t.Helper()
	resp, err := http.Get(baseURL + "/history?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p historyPage
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /history?%s = %d %s, want 200", query, resp.StatusCode, body)
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHistoryThenLive: under a publish loop, a client that reads history
// and then subscribes from the id it returned (SSE with lastEventId, gRPC
// with after_id) sees every event exactly once; repeated, on both engines
// and across two NATS nodes (history and subscription on one, publishes on
// the other).
func TestHistoryThenLive(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, pub, read *testBridge) {
		t.Helper()
		var mu sync.Mutex
		recorded := sync.NewCond(&mu)
		var published []uint64
		var stopped atomic.Bool
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 0; !stopped.Load(); i++ {
				ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
				res, err := pub.client.Publish(ctx, jsonReq(t, "live", i))
				cancel()
				if err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
				mu.Lock()
				published = append(published, res.GetId())
				recorded.Broadcast()
				mu.Unlock()
			}
		})
		defer func() {
			stopped.Store(true)
			wg.Wait()
		}()
		lastPublished := func() uint64 {
			mu.Lock()
			defer mu.Unlock()
			if len(published) == 0 {
				return 0
			}
			return published[len(published)-1]
		}
		for round := range 25 {
			p := getHistory(t, read.baseURL, "stream=live&limit=5")
			var seen []uint64
			for _, ev := range p.Events {
				seen = append(seen, parseID(t, ev.ID))
			}
			useGRPC := round%2 == 1
			var sse *sseClient
			var g *grpcSub
			if useGRPC {
				g = subscribeGRPC(t, read.client, &bridgev1.SubscribeRequest{Streams: []string{"live"}, AfterId: proto.Uint64(parseID(t, p.LastEventID))}, nil)
			} else {
				sse = subscribe(t, read.baseURL, "stream=live&lastEventId="+p.LastEventID, "")
			}
			// Read until an event published after the subscription came.
			target := lastPublished()
			for len(seen) == 0 || seen[len(seen)-1] < target || target == 0 {
				if target == 0 {
					target = lastPublished()
				}
				var n uint64
				if useGRPC {
					m := g.next(t)
					if m.GetBridgeReset() != nil {
						t.Fatalf("round %d: reset %v, want events", round, m)
					}
					n = m.GetId()
				} else {
					ev := sse.next(t)
					if ev.Type == bridge.ResetEvent {
						t.Fatalf("round %d: reset %s, want events", round, ev.Data)
					}
					n = parseID(t, ev.LastEventID)
				}
				seen = append(seen, n)
			}
			mu.Lock()
			// The publisher records an id once Publish returned: wait for the
			// last one seen.
			for published[len(published)-1] < seen[len(seen)-1] {
				recorded.Wait()
			}
			var want []uint64
			for _, n := range published {
				if len(seen) > 0 && n >= seen[0] && n <= seen[len(seen)-1] {
					want = append(want, n)
				}
			}
			mu.Unlock()
			if fmt.Sprint(seen) != fmt.Sprint(want) {
				t.Fatalf("round %d (grpc %v): history then live = %v, want each published event once: %v", round, useGRPC, seen, want)
			}
			if sse != nil {
				sse.close()
			}
		}
	}
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		b := startBridge(t, bridge.Config{})
		run(t, b, b)
	})
	t.Run("nats", func(t *testing.T) {
		t.Parallel()
		b := startBridge(t, natsConfig(bridge.StartNATS(t)))
		run(t, b, b)
	})
	t.Run("nats two nodes", func(t *testing.T) {
		t.Parallel()
		ns := bridge.StartNATS(t)
		run(t, startBridge(t, natsConfig(ns)), startBridge(t, natsConfig(ns)))
	})
}

// TestSubscribeFollowsReloads: a Subscribe authorized by a publisher's read
// grant goes on through a reload that keeps the grant, and ends, with the
// reload's verdict, at one that drops it.
func TestSubscribeFollowsReloads(t *testing.T) {
	t.Parallel()
	writer := `{"name": "writer", "token_sha256": "` + hashToken("writer-token") + `", "streams": ["orders.>"]}`
	auditor := func(read ...string) string {
		return `{"name": "auditor", "token_sha256": "` + hashToken("auditor-token") + `", "streams": ["audit"], "read": ` + mustJSON(t, read) + `}`
	}
	file := writeFile(t, "publishers.json", `{"publishers": [`+writer+`, `+auditor("orders.>")+`]}`)
	// Subscriber auth on (a key): without it every stream is readable.
	b := startBridge(t, bridge.Config{JWTKey: writeKeyFile(t, testHMACKey), Publishers: file})
	reload := func(entries ...string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(`{"publishers": [`+strings.Join(entries, ", ")+`]}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := b.srv.ReloadPublishers(); err != nil {
			t.Fatalf("ReloadPublishers() = %v", err)
		}
	}
	publish := func() uint64 {
		t.Helper()
		id, err := b.publishAs(t, bearer("writer-token"), "orders.eu")
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		return id
	}
	sub := subscribeGRPC(t, b.client, &bridgev1.SubscribeRequest{Streams: []string{"orders.eu"}}, bearer("auditor-token"))
	if id, m := publish(), sub.next(t); m.GetId() != id {
		t.Fatalf("before any reload: event %d, want %d", m.GetId(), id)
	}
	reload(writer, auditor("orders.eu", "billing"))
	if id, m := publish(), sub.next(t); m.GetId() != id {
		t.Fatalf("after a reload that keeps the grant: event %d, want %d", m.GetId(), id)
	}
	reload(writer, auditor("billing"))
	checkCall(t, "the stream once a reload dropped its grant", sub.end(t), codes.PermissionDenied, "reloaded", "after_id")
}
