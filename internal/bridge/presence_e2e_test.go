package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// counts is one stream's answer of Presence: this node's and the cluster's.
type counts struct{ node, cluster uint32 }

// presence asks b for the counts of streams over gRPC.
func presence(t *testing.T, b *testBridge, streams ...string) map[string]counts {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	res, err := b.client.Presence(ctx, &bridgev1.PresenceRequest{Streams: streams})
	if err != nil {
		t.Fatalf("Presence(%v) = %v, want success", streams, err)
	}
	out := map[string]counts{}
	for _, s := range res.GetStreams() {
		out[s.GetStream()] = counts{s.GetNodeCount(), s.GetClusterCount()}
	}
	return out
}

// waitPresence asks b until stream's counts are want, and fails the test
// when they are not within waitLimit. Counts on other nodes arrive with
// their reports, and a client's going is seen once the server notices it:
// the test waits for the value, never for a time.
func waitPresence(t *testing.T, b *testBridge, stream string, want counts) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		got := presence(t, b, stream)[stream]
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Presence(%s) on %s = %+v, want %+v within %v", stream, b.baseURL, got, want, waitLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// subscribeN opens n connections to query on b.
func subscribeN(t *testing.T, b *testBridge, query string, n int) []*sseClient {
	t.Helper()
	cs := make([]*sseClient, n)
	for i := range cs {
		cs[i] = subscribe(t, b.baseURL, query, "")
	}
	return cs
}

func closeAll(cs []*sseClient) {
	for _, c := range cs {
		c.close()
	}
}

// TestPresenceOneNode: the counts follow connects and disconnects exactly,
// per stream, for connections to one stream and to several; a stream
// nobody watches any more keeps no entry.
func TestPresenceOneNode(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{})
	one := subscribeN(t, b, "stream=room.1", 5)
	both := subscribeN(t, b, "stream=room.1&stream=room.2", 3)
	// Registered once subscribe returned: the counts are exact at once.
	got := presence(t, b, "room.1", "room.2", "room.3", "room.1")
	want := map[string]counts{"room.1": {8, 8}, "room.2": {3, 3}, "room.3": {0, 0}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Presence = %v, want %v", got, want)
	}

	closeAll(one[:2])
	closeAll(both[:1])
	waitPresence(t, b, "room.1", counts{5, 5})
	waitPresence(t, b, "room.2", counts{2, 2})
	if m := scrape(t, b.baseURL); m["bridge_presence_streams"] != 2 {
		t.Errorf("bridge_presence_streams = %v, want 2", m["bridge_presence_streams"])
	}

	// A gRPC subscriber counts as a connection does.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	sub, err := b.client.Subscribe(ctx, &bridgev1.SubscribeRequest{Streams: []string{"room.1", "room.3"}})
	if err != nil {
		t.Fatalf("Subscribe = %v", err)
	}
	if _, err := sub.Header(); err != nil { // sent once the subscription is registered
		t.Fatalf("Subscribe: no headers: %v", err)
	}
	if got := presence(t, b, "room.1", "room.3"); got["room.1"] != (counts{6, 6}) || got["room.3"] != (counts{1, 1}) {
		t.Errorf("Presence with a gRPC subscriber = %v, want room.1 at 6 and room.3 at 1", got)
	}
	cancel()
	waitPresence(t, b, "room.3", counts{0, 0})

	closeAll(one[2:])
	closeAll(both[1:])
	waitPresence(t, b, "room.1", counts{0, 0})
	waitPresence(t, b, "room.2", counts{0, 0})
	if m := scrape(t, b.baseURL); m["bridge_presence_streams"] != 0 {
		t.Errorf("bridge_presence_streams = %v, want 0: a stream with no subscriber keeps an entry", m["bridge_presence_streams"])
	}
}

// getPresence sends GET base/presence?query with the Authorization header
// auth (none when empty) and returns the status and body.
func getPresence(t *testing.T, base, query, auth string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/presence?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /presence?%s: %v", query, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestPresenceAccess: counts are for publishers and operators, never open
// to a browser: over gRPC with publisher credentials whose grants cover the
// streams; over HTTP on the admin listener, or on the public one with a
// publisher's token; the public listener of a bridge without publisher
// auth does not serve them. Bad requests say what to fix.
func TestPresenceAccess(t *testing.T) {
	t.Parallel()
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	const auditToken = "audit-token-77c1d0" // publishes to audit, reads users
	srv, err := bridge.New(bridge.Config{Publishers: testPublishers(t,
		pubEntry{Name: "audit", TokenSHA256: hashToken(auditToken), Streams: []string{"audit"}, Read: []string{"users"}})})
	if err != nil {
		t.Fatal(err)
	}
	l := bridge.Listeners{GRPC: listen(), HTTP: listen(), Admin: listen()}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListeners(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeListeners = %v", err)
		}
	})
	public, admin := "http://"+l.HTTP.Addr().String(), "http://"+l.Admin.Addr().String()
	conn, err := grpc.NewClient(l.GRPC.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := bridgev1.NewBridgeServiceClient(conn)
	subscribeN(t, &testBridge{baseURL: public}, "stream=orders", 2)

	for _, tc := range []struct {
		name    string
		md      metadata.MD
		streams []string
		want    codes.Code
	}{
		{"granted", bearer(ordersToken), []string{"orders", "orders.eu"}, codes.OK},
		{"not granted", bearer(ordersToken), []string{"orders", "users"}, codes.PermissionDenied},
		{"read patterns", bearer(auditToken), []string{"users", "audit"}, codes.OK},
		{"no credential", nil, []string{"orders"}, codes.Unauthenticated},
		{"bad token", bearer("nope"), []string{"orders"}, codes.Unauthenticated},
		{"no stream", bearer(adminToken), nil, codes.InvalidArgument},
		{"invalid name", bearer(adminToken), []string{"bad..name"}, codes.InvalidArgument},
		{"too many", bearer(adminToken), strings.Split(strings.Repeat("s,", 1001)+"s", ","), codes.InvalidArgument},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
		if tc.md != nil {
			ctx = metadata.NewOutgoingContext(ctx, tc.md)
		}
		res, err := client.Presence(ctx, &bridgev1.PresenceRequest{Streams: tc.streams})
		cancel()
		if status.Code(err) != tc.want {
			t.Errorf("%s: Presence(%.40v) = %v, want %v", tc.name, tc.streams, err, tc.want)
			continue
		}
		if err != nil && (status.Convert(err).Message() == "" || status.Code(err) == codes.Internal) {
			t.Errorf("%s: Presence = %v, want a message that says what to fix", tc.name, err)
		}
		if tc.want == codes.OK && len(res.GetStreams()) != len(tc.streams) {
			t.Errorf("%s: Presence = %v, want %d streams", tc.name, res, len(tc.streams))
		}
		if tc.want == codes.OK && tc.streams[0] == "orders" && res.GetStreams()[0].GetNodeCount() != 2 {
			t.Errorf("%s: Presence = %v, want orders at 2", tc.name, res)
		}
	}

	without := startBridge(t, bridge.Config{})
	for _, tc := range []struct {
		name, base, query, auth string
		want                    int
	}{
		{"admin listener, no credential", admin, "stream=orders&stream=users", "", http.StatusOK},
		{"public, publisher token", public, "stream=orders", "Bearer " + ordersToken, http.StatusOK},
		{"public, no credential", public, "stream=orders", "", http.StatusUnauthorized},
		{"public, bad token", public, "stream=orders", "Bearer nope", http.StatusUnauthorized},
		{"public, not granted", public, "stream=users", "Bearer " + ordersToken, http.StatusForbidden},
		{"public, no publisher auth", without.baseURL, "stream=orders", "", http.StatusForbidden},
		{"public, no publisher auth, a token", without.baseURL, "stream=orders", "Bearer " + ordersToken, http.StatusForbidden},
		{"admin listener, no stream", admin, "", "", http.StatusBadRequest},
		{"admin listener, invalid name", admin, "stream=" + url.QueryEscape("a b"), "", http.StatusBadRequest},
	} {
		code, body := getPresence(t, tc.base, tc.query, tc.auth)
		if code != tc.want {
			t.Errorf("%s: GET /presence?%s = %d %q, want %d", tc.name, tc.query, code, body, tc.want)
			continue
		}
		if code != http.StatusOK {
			continue
		}
		var got struct {
			Streams []struct {
				Stream       string
				NodeCount    int
				ClusterCount int
			}
			Nodes int
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("%s: /presence body %q: %v", tc.name, body, err)
		}
		if got.Nodes != 1 || len(got.Streams) == 0 || got.Streams[0].Stream != "orders" || got.Streams[0].NodeCount != 2 || got.Streams[0].ClusterCount != 2 {
			t.Errorf("%s: /presence = %s, want orders at 2 on 1 node", tc.name, body)
		}
	}
}

// presenceNATSConfig is a node on the nats engine that reports its counts
// often, so the tests see them soon; timeout is --presence-timeout.
func presenceNATSConfig(url string, timeout time.Duration) bridge.Config {
	return bridge.Config{
		Engine:           bridge.EngineNATS,
		NATS:             bridge.NATSConfig{URLs: []string{url}},
		PresenceInterval: 50 * time.Millisecond,
		PresenceTimeout:  timeout,
	}
}

// TestPresenceNATSTwoNodes: each node counts its own connections, and
// both add up the other's as it reports them, through connects and
// disconnects on either; a node that stops says goodbye and drops out.
func TestPresenceNATSTwoNodes(t *testing.T) {
	t.Parallel()
	ns := bridge.StartNATS(t)
	a := startBridge(t, presenceNATSConfig(ns.URL, 5*time.Second))
	b := startBridge(t, presenceNATSConfig(ns.URL, 5*time.Second))

	onA := subscribeN(t, a, "stream=room.1", 3)
	onB := subscribeN(t, b, "stream=room.1&stream=room.2", 2)
	waitPresence(t, a, "room.1", counts{3, 5})
	waitPresence(t, b, "room.1", counts{2, 5})
	waitPresence(t, a, "room.2", counts{0, 2})

	closeAll(onB[:1])
	closeAll(onA[:2])
	waitPresence(t, a, "room.1", counts{1, 2})
	waitPresence(t, b, "room.1", counts{1, 2})
	waitPresence(t, a, "room.2", counts{0, 1})
	more := subscribeN(t, b, "stream=room.2", 4)
	waitPresence(t, a, "room.2", counts{0, 5})
	if m := scrape(t, a.baseURL); m["bridge_presence_nodes"] != 1 || m["bridge_presence_remote_entries"] != 2 {
		t.Errorf("on a: bridge_presence_nodes = %v, bridge_presence_remote_entries = %v, want 1 and 2 (room.1 and room.2 of b)",
			m["bridge_presence_nodes"], m["bridge_presence_remote_entries"])
	}

	closeAll(more)
	closeAll(onB[1:])
	if err := b.stop(); err != nil {
		t.Fatalf("stop b: %v", err)
	}
	waitPresence(t, a, "room.1", counts{1, 1})
	waitPresence(t, a, "room.2", counts{0, 0})
	if m := scrape(t, a.baseURL); m["bridge_presence_nodes"] != 0 || m["bridge_presence_remote_entries"] != 0 {
		t.Errorf("on a after b stopped: bridge_presence_nodes = %v, bridge_presence_remote_entries = %v, want 0 and 0",
			m["bridge_presence_nodes"], m["bridge_presence_remote_entries"])
	}
}

// TestPresenceNATSNodeKilled: a node cut off from NATS, which can say no
// goodbye, drops out of the other nodes' counts within the timeout, and
// counts again once it is back.
func TestPresenceNATSNodeKilled(t *testing.T) {
	t.Parallel()
	ns := bridge.StartNATS(t)
	proxy := startCutProxy(t, strings.TrimPrefix(ns.URL, "nats://"))
	a := startBridge(t, presenceNATSConfig(ns.URL, 2*time.Second))
	b := startBridge(t, presenceNATSConfig("nats://"+proxy.lis.Addr().String(), 2*time.Second))
	t.Cleanup(proxy.restore) // before b stops: its shutdown then needs no timeout

	subscribeN(t, a, "stream=room.1", 1)
	subscribeN(t, b, "stream=room.1", 2)
	waitPresence(t, a, "room.1", counts{1, 3})

	proxy.cut()
	waitPresence(t, a, "room.1", counts{1, 1})
	if m := scrape(t, a.baseURL); m["bridge_presence_nodes"] != 0 {
		t.Errorf("bridge_presence_nodes = %v after b went quiet, want 0", m["bridge_presence_nodes"])
	}
	// b kept its clients meanwhile: they count again when it is back.
	waitPresence(t, b, "room.1", counts{2, 2})
	proxy.restore()
	waitPresence(t, a, "room.1", counts{1, 3})
}

// TestPresenceNATSChunksAndBound: a node with more streams than one report
// message holds reports them in parts, which another node puts together;
// a node whose table is bounded keeps no more than the bound and counts
// what it left out.
func TestPresenceNATSChunksAndBound(t *testing.T) {
	t.Parallel()
	ns := bridge.StartNATS(t)
	const streams = 1200 // over two parts of 500
	big := presenceNATSConfig(ns.URL, 5*time.Second)
	big.MaxStreamsPerConnection = -1
	a := startBridge(t, big)
	full := startBridge(t, presenceNATSConfig(ns.URL, 5*time.Second))
	boundedCfg := presenceNATSConfig(ns.URL, 5*time.Second)
	boundedCfg.PresenceMaxEntries = 1000
	bounded := startBridge(t, boundedCfg)

	var q strings.Builder
	for i := range streams {
		fmt.Fprintf(&q, "&stream=s%d", i)
	}
	subscribe(t, a.baseURL, q.String()[1:], "")
	for _, s := range []string{"s0", "s499", "s500", "s1199"} {
		waitPresence(t, full, s, counts{0, 1})
	}
	deadline := time.Now().Add(waitLimit)
	for {
		m := scrape(t, bounded.baseURL)
		if m["bridge_presence_remote_entries"] == 1000 && m["bridge_presence_dropped_entries_total"] >= streams-1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bounded node: bridge_presence_remote_entries = %v, bridge_presence_dropped_entries_total = %v, want 1000 and at least %d",
				m["bridge_presence_remote_entries"], m["bridge_presence_dropped_entries_total"], streams-1000)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// presenceEvent is the data of a bridge.presence frame.
type presenceEvent struct {
	Stream string `json:"stream"`
	Count  int    `json:"count"`
}

// readPresence reads c's frames until a bridge.presence event with count
// want, and returns every presence event read (frames of other types fail
// the test).
func readPresence(t *testing.T, c *sseClient, stream string, want int) []presenceEvent {
	t.Helper()
	var got []presenceEvent
	for {
		ev := c.next(t)
		if ev.Type != bridge.PresenceEvent {
			t.Fatalf("got a %q frame (%s), want %s", ev.Type, ev.Data, bridge.PresenceEvent)
		}
		parseID(t, ev.LastEventID) // an event like any other: it has an id
		var p presenceEvent
		if err := json.Unmarshal([]byte(ev.Data), &p); err != nil || p.Stream != stream {
			t.Fatalf("presence data %q: %v, want {\"stream\":%q,\"count\":N}", ev.Data, err, stream)
		}
		got = append(got, p)
		if p.Count == want {
			return got
		}
	}
}

// TestPresenceEventsRateLimited: a burst of connects to a stream that has
// presence events gives far fewer events than connects, the last one with
// the final count; so does a burst of disconnects. A stream outside the
// patterns gets none.
func TestPresenceEventsRateLimited(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{PresenceEvents: []string{"room.*"}, PresenceEventInterval: 200 * time.Millisecond})
	watcher := subscribe(t, b.baseURL, "stream=room.1", "")
	other := subscribe(t, b.baseURL, "stream=lobby", "")
	readPresence(t, watcher, "room.1", 1)

	const burst = 60
	clients := make(chan []*sseClient, 4)
	for range 4 { // in parallel: the burst is short
		go func() { clients <- subscribeConcurrent(t, b.baseURL, "stream=room.1", burst/4) }()
	}
	var all []*sseClient
	for range 4 {
		all = append(all, <-clients...)
	}
	up := readPresence(t, watcher, "room.1", burst+1)
	if len(up) > burst/3 {
		t.Errorf("%d connects gave %d presence events %v, want far fewer", burst, len(up), up)
	}
	closeAll(all)
	down := readPresence(t, watcher, "room.1", 1)
	if len(down) > burst/3 {
		t.Errorf("%d disconnects gave %d presence events %v, want far fewer", burst, len(down), down)
	}
	t.Logf("presence events: %d for %d connects, %d for as many disconnects", len(up), burst, len(down))

	// lobby matches no pattern: its first frame is the event published now.
	id := b.publish(t, jsonReq(t, "lobby", map[string]any{"n": 1.0}))
	if ev := other.next(t); ev.LastEventID != fmt.Sprint(id) {
		t.Errorf("lobby's first frame = %q %s, want the event %d: a stream outside --presence-events got a presence event", ev.Type, ev.Data, id)
	}
}

// subscribeConcurrent opens n connections to query on base; it may run on a
// goroutine of its own, so it reports failures with Errorf. (Each
// response's headers are waited for waitLimit at most.)
func subscribeConcurrent(t *testing.T, base, query string, n int) []*sseClient {
	t.Helper()
	var cs []*sseClient
	for range n {
		ctx, cancel := context.WithCancel(t.Context())
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events?"+query, nil)
		if err != nil {
			cancel()
			t.Error(err)
			return cs
		}
		bound := time.AfterFunc(waitLimit, cancel) // the headers come within waitLimit
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Errorf("GET /events?%s: %v", query, err)
			return cs
		}
		if !bound.Stop() || resp.StatusCode != http.StatusOK {
			_ = resp.Body.Close()
			cancel()
			t.Errorf("GET /events?%s = %d, want 200 within %v", query, resp.StatusCode, waitLimit)
			return cs
		}
		cs = append(cs, readEvents(t, resp, cancel))
	}
	return cs
}

// TestPresenceEventsNATSOnePublisher: with two nodes, the cluster count
// changes on both, yet one node publishes each stream's presence events: a
// client sees every count once, never the same count twice in a row.
func TestPresenceEventsNATSOnePublisher(t *testing.T) {
	t.Parallel()
	ns := bridge.StartNATS(t)
	cfg := presenceNATSConfig(ns.URL, time.Second)
	cfg.PresenceEvents = []string{"room.>"}
	cfg.PresenceEventInterval = 100 * time.Millisecond
	a := startBridge(t, cfg)
	b := startBridge(t, cfg)
	watcher := subscribe(t, a.baseURL, "stream=room.1", "")
	readPresence(t, watcher, "room.1", 1)

	var onB []*sseClient
	var seen []presenceEvent
	for i := range 3 {
		onB = append(onB, subscribe(t, b.baseURL, "stream=room.1", ""))
		seen = append(seen, readPresence(t, watcher, "room.1", i+2)...)
	}
	closeAll(onB)
	seen = append(seen, readPresence(t, watcher, "room.1", 1)...)
	// One more frame: an event published now must come next, not a
	// duplicate presence event from the other node.
	id := a.publish(t, jsonReq(t, "room.1", map[string]any{"n": 1.0}))
	for {
		ev := watcher.next(t)
		if ev.LastEventID == fmt.Sprint(id) {
			break
		}
		var p presenceEvent
		_ = json.Unmarshal([]byte(ev.Data), &p)
		seen = append(seen, p)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i].Count == seen[i-1].Count {
			t.Fatalf("presence events %v: count %d twice in a row, want one publisher per stream", seen, seen[i].Count)
		}
	}
	t.Logf("presence events seen: %v", seen)
}

// TestPresenceShutdownLeaksNothing: presence's goroutines (reports, the
// other nodes' table, presence events) end with Serve, on the nats engine.
func TestPresenceShutdownLeaksNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	ns := bridge.StartNATS(t)
	cfg := presenceNATSConfig(ns.URL, time.Second)
	cfg.PresenceEvents = []string{"orders"}
	b := startBridge(t, cfg)
	other := startBridge(t, cfg)
	c := subscribe(t, b.baseURL, "stream=orders", "")
	readPresence(t, c, "orders", 1)
	waitPresence(t, other, "orders", counts{0, 1})
	for _, n := range []*testBridge{b, other} {
		if err := n.stop(); err != nil {
			t.Fatalf("Serve() = %v, want nil", err)
		}
	}
	for ev := range c.events {
		t.Errorf("got %+v after shutdown, want the stream to end", ev)
	}
	c.close()
	http.DefaultClient.CloseIdleConnections()
	ns.Stop()
}
