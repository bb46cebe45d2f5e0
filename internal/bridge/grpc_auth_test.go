package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// Tokens of the publishers the tests configure; the file holds their hashes.
const (
	ordersToken = "orders-token-5f1c2a"
	adminToken  = "admin-token-93be07"
)

// testPublishers: orders-svc may publish to orders and below it; admin
// (whose publishes are the tests' sentinels) anywhere.
func testPublishers(t *testing.T, more ...pubEntry) string {
	t.Helper()
	return writePublishers(t, append([]pubEntry{
		{Name: "orders-svc", TokenSHA256: hashToken(ordersToken), Streams: []string{"orders", "orders.>"}},
		{Name: "admin", TokenSHA256: hashToken(adminToken), Streams: []string{">"}},
	}, more...)...)
}

// remoteListener makes every connection it accepts report remote as its
// peer's address. grpc-go takes a call's peer address from the connection's
// RemoteAddr, so a test on loopback can stand for a caller from elsewhere.
type remoteListener struct {
	net.Listener
	remote net.Addr
}

func (l remoteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteConn{Conn: c, remote: l.remote}, nil
}

type remoteConn struct {
	net.Conn
	remote net.Addr
}

func (c remoteConn) RemoteAddr() net.Addr { return c.remote }

// startBridgeFrom is startBridge with the bridge's logs (debug and up)
// collected, and, when remote is not nil, every gRPC caller seen as coming
// from remote.
func startBridgeFrom(t *testing.T, cfg bridge.Config, remote net.Addr) (*testBridge, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := bridge.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	var grpcLis net.Listener
	grpcLis, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := grpcLis.Addr().String()
	if remote != nil {
		grpcLis = remoteListener{Listener: grpcLis, remote: remote}
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return serveTest(t, srv, grpcLis, httpLis, addr), logs
}

// serveTest serves srv on the listeners until the test ends (or stop), with
// a plaintext client connection to target.
func serveTest(tb testing.TB, srv *bridge.Server, grpcLis, httpLis net.Listener, target string) *testBridge {
	tb.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("grpc.NewClient: %v", err)
	}
	stopServe := serveUntilCleanup(tb, srv, grpcLis, httpLis)
	tb.Cleanup(func() { _ = conn.Close() }) // runs first: the client goes before the server
	stop := func() error {
		_ = conn.Close()
		return stopServe()
	}
	return &testBridge{
		srv:      srv,
		client:   bridgev1.NewBridgeServiceClient(conn),
		health:   healthpb.NewHealthClient(conn),
		conn:     conn,
		grpcAddr: target,
		baseURL:  "http://" + httpLis.Addr().String(),
		stop:     stop,
	}
}

// bearer is the metadata of a call carrying token.
func bearer(token string) metadata.MD { return metadata.Pairs("authorization", "Bearer "+token) }

// publishAs publishes a json event to stream with the metadata md (none when
// nil) and returns the id and the error.
func (b *testBridge) publishAs(t *testing.T, md metadata.MD, stream string) (uint64, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	if md != nil {
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	res, err := b.client.Publish(ctx, jsonReq(t, stream, map[string]any{"to": stream}))
	return res.GetId(), err
}

// reflect lists the bridge's services through server reflection with the
// metadata md (none when nil).
func (b *testBridge) reflect(t *testing.T, md metadata.MD) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	if md != nil {
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	stream, err := reflectionv1.NewServerReflectionClient(b.conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	// Send says io.EOF when the server already ended the stream (a refusal
	// can beat the request); the status is then Recv's to tell.
	if err := stream.Send(&reflectionv1.ServerReflectionRequest{
		MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{ListServices: "*"},
	}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	res, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	_ = stream.CloseSend()
	var names []string
	for _, s := range res.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names, nil
}

// checkHealth asserts the health service answers SERVING, with no
// credential.
func (b *testBridge) checkHealth(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	res, err := b.health.Check(ctx, &healthpb.HealthCheckRequest{Service: "bridge.v1.BridgeService"})
	if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health Check without credentials = %v, %v; want SERVING", res, err)
	}
}

// authFailures reads bridge_auth_failures_total for the publisher side.
func authFailures(t *testing.T, baseURL, reason string) float64 {
	t.Helper()
	return scrape(t, baseURL)[`bridge_auth_failures_total{reason="`+reason+`",side="publisher"}`]
}

// historyEvents is how many events the bridge's history holds.
func historyEvents(t *testing.T, baseURL string) float64 {
	t.Helper()
	return scrape(t, baseURL)["bridge_history_events"]
}

// checkCall asserts err has code want and a message containing each of msgs.
func checkCall(t *testing.T, what string, err error, want codes.Code, msgs ...string) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("%s = %v, want code %v", what, err, want)
	}
	for _, m := range msgs {
		if !strings.Contains(status.Convert(err).Message(), m) {
			t.Errorf("%s message %q, want it to contain %q", what, status.Convert(err).Message(), m)
		}
	}
}

// TestPublisherTokens: each row publishes once with some authorization
// metadata and asserts the exact code, the message, the failure counted by
// reason, and, when refused, that nothing was stored or reached a
// subscriber (the subscriber's first event is a later sentinel).
func TestPublisherTokens(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		md     metadata.MD
		stream string
		code   codes.Code
		msg    []string
		reason string // counted failure; none when empty
	}{
		{name: "missing token", stream: "orders", code: codes.Unauthenticated, msg: []string{"no credential", "authorization: Bearer TOKEN"}, reason: "no_credential"},
		{name: "wrong token", md: bearer("not-a-publisher"), stream: "orders", code: codes.Unauthenticated, msg: []string{"not a publisher's token"}, reason: "bad_token"},
		{name: "the stored hash as token", md: bearer(hashToken(ordersToken)), stream: "orders", code: codes.Unauthenticated, reason: "bad_token"},
		{name: "token for another stream", md: bearer(ordersToken), stream: "billing", code: codes.PermissionDenied,
			msg: []string{`publisher "orders-svc" may not publish to stream "billing"`}, reason: "not_granted"},
		{name: "token for a stream above its grant", md: bearer(ordersToken), stream: "orders-archive", code: codes.PermissionDenied,
			msg: []string{`"orders-archive"`}, reason: "not_granted"},
		{name: "right token", md: bearer(ordersToken), stream: "orders", code: codes.OK},
		{name: "right token, granted by >", md: bearer(ordersToken), stream: "orders.eu.de", code: codes.OK},
		{name: "scheme in lower case", md: metadata.Pairs("authorization", "bearer "+ordersToken), stream: "orders", code: codes.OK},
		{name: "two authorization headers", md: metadata.Pairs("authorization", "Bearer "+ordersToken, "authorization", "Bearer "+ordersToken),
			stream: "orders", code: codes.Unauthenticated, msg: []string{"more than one authorization"}, reason: "malformed"},
		{name: "no scheme", md: metadata.Pairs("authorization", ordersToken), stream: "orders", code: codes.Unauthenticated,
			msg: []string{`not "Bearer TOKEN"`}, reason: "malformed"},
		{name: "basic scheme", md: metadata.Pairs("authorization", "Basic b3JkZXJzOnB3"), stream: "orders", code: codes.Unauthenticated, reason: "malformed"},
		{name: "empty bearer", md: metadata.Pairs("authorization", "Bearer "), stream: "orders", code: codes.Unauthenticated, reason: "malformed"},
		{name: "invalid stream, no token", stream: "bad name", code: codes.Unauthenticated, reason: "no_credential"},
		{name: "invalid stream, right token", md: bearer(ordersToken), stream: "bad name", code: codes.InvalidArgument, msg: []string{"bad name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, logs := startBridgeFrom(t, bridge.Config{Publishers: testPublishers(t)}, nil)
			watched := tc.stream
			if !bridge.ValidStreamName(watched) {
				watched = "orders"
			}
			sub := subscribe(t, b.baseURL, "stream="+watched, "")

			got, err := b.publishAs(t, tc.md, tc.stream)
			checkCall(t, "Publish", err, tc.code, tc.msg...)
			if tc.reason != "" {
				if n := authFailures(t, b.baseURL, tc.reason); n != 1 {
					t.Errorf("auth failures %q = %v, want 1", tc.reason, n)
				}
			}
			stored := 0.0
			if tc.code == codes.OK {
				stored = 1
			}
			if n := historyEvents(t, b.baseURL); n != stored {
				t.Errorf("history holds %v events, want %v", n, stored)
			}
			want := got
			if tc.code != codes.OK {
				if want, err = b.publishAs(t, bearer(adminToken), watched); err != nil {
					t.Fatalf("sentinel publish = %v", err)
				}
			}
			if ev := sub.next(t); ev.LastEventID != id(want) {
				t.Errorf("subscriber's first event is %s, want %d: a refused publish reached it", ev.LastEventID, want)
			}
			if err := b.stop(); err != nil {
				t.Fatal(err)
			}
			if l := logs.String(); strings.Contains(l, ordersToken) || strings.Contains(l, adminToken) {
				t.Errorf("a token appears in the logs:\n%s", l)
			}
		})
	}
}

// TestPublisherRate: a publisher over its rate gets ResourceExhausted and
// stores nothing; the rate is its own, not shared. Rates of one event per
// thousand seconds make the counts independent of timing.
func TestPublisherRate(t *testing.T) {
	t.Parallel()
	b, _ := startBridgeFrom(t, bridge.Config{Publishers: testPublishers(t,
		pubEntry{Name: "slow", TokenSHA256: hashToken("slow-token"), Streams: []string{"slow"}, Rate: 0.001},
		pubEntry{Name: "bursty", TokenSHA256: hashToken("bursty-token"), Streams: []string{"bursty"}, Rate: 0.001, Burst: 3},
	)}, nil)
	if _, err := b.publishAs(t, bearer("slow-token"), "slow"); err != nil {
		t.Fatalf("first publish = %v, want success", err)
	}
	_, err := b.publishAs(t, bearer("slow-token"), "slow")
	checkCall(t, "second publish", err, codes.ResourceExhausted, `publisher "slow" is over its rate`, "burst 1")
	for i := range 3 {
		if _, err := b.publishAs(t, bearer("bursty-token"), "bursty"); err != nil {
			t.Fatalf("bursty publish %d = %v, want success within its burst of 3", i+1, err)
		}
	}
	_, err = b.publishAs(t, bearer("bursty-token"), "bursty")
	checkCall(t, "bursty publish 4", err, codes.ResourceExhausted, "burst 3")
	// Another publisher is not limited by them.
	if _, err := b.publishAs(t, bearer(ordersToken), "orders"); err != nil {
		t.Errorf("publish of another publisher = %v, want success", err)
	}
	if n := authFailures(t, b.baseURL, "rate_limited"); n != 2 {
		t.Errorf("rate_limited failures = %v, want 2", n)
	}
	if n := historyEvents(t, b.baseURL); n != 5 {
		t.Errorf("history holds %v events, want 5 (1 slow, 3 bursty, 1 orders)", n)
	}
}

// TestReflectionAndHealthFollowPublisherAuth: reflection needs a publisher's
// credential, as Publish does; health needs none.
func TestReflectionAndHealthFollowPublisherAuth(t *testing.T) {
	t.Parallel()
	b, _ := startBridgeFrom(t, bridge.Config{Publishers: testPublishers(t)}, nil)
	b.checkHealth(t)
	_, err := b.reflect(t, nil)
	checkCall(t, "reflection without credentials", err, codes.Unauthenticated, "no credential")
	_, err = b.reflect(t, bearer("not-a-publisher"))
	checkCall(t, "reflection with a wrong token", err, codes.Unauthenticated)
	names, err := b.reflect(t, bearer(ordersToken))
	if err != nil || !strings.Contains(strings.Join(names, " "), "bridge.v1.BridgeService") {
		t.Errorf("reflection with a publisher's token = %v, %v; want the services listed", names, err)
	}
	if n := authFailures(t, b.baseURL, "no_credential"); n != 1 {
		t.Errorf("no_credential failures = %v, want 1 (health is not counted)", n)
	}
}

// TestReloadPublishers: a reload puts a new file in force; a bad file is
// refused and the list before stays.
func TestReloadPublishers(t *testing.T) {
	t.Parallel()
	file := testPublishers(t)
	b, logs := startBridgeFrom(t, bridge.Config{Publishers: file}, nil)
	if _, err := b.publishAs(t, bearer(ordersToken), "orders"); err != nil {
		t.Fatalf("publish before reload = %v", err)
	}
	rewrite := func(content string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rewrite(`{"publishers": [{"name": "new-svc", "token_sha256": "` + hashToken("new-token") + `", "streams": ["orders"]}]}`)
	if err := b.srv.ReloadPublishers(); err != nil {
		t.Fatalf("ReloadPublishers() = %v", err)
	}
	_, err := b.publishAs(t, bearer(ordersToken), "orders")
	checkCall(t, "publish with a token removed by the reload", err, codes.Unauthenticated)
	if _, err := b.publishAs(t, bearer("new-token"), "orders"); err != nil {
		t.Fatalf("publish with the new token = %v", err)
	}

	rewrite(`{"publishers": [{"name": "broken", "token_sha256": "abc", "streams": ["orders"]}]}`)
	err = b.srv.ReloadPublishers()
	if err == nil || !strings.Contains(err.Error(), `entry 1 ("broken")`) {
		t.Fatalf("ReloadPublishers() of a bad file = %v, want an error naming the entry", err)
	}
	if _, err := b.publishAs(t, bearer("new-token"), "orders"); err != nil {
		t.Errorf("publish after a failed reload = %v, want the list before still in force", err)
	}
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	if l := logs.String(); !strings.Contains(l, "keeping the list loaded before") {
		t.Errorf("a failed reload is not logged:\n%s", l)
	}
}

// TestReloadKeepsRateBuckets: a reload that leaves a publisher's rate alone
// does not refill its bucket.
func TestReloadKeepsRateBuckets(t *testing.T) {
	t.Parallel()
	slow := pubEntry{Name: "slow", TokenSHA256: hashToken("slow-token"), Streams: []string{"slow"}, Rate: 0.001}
	file := testPublishers(t, slow)
	b, _ := startBridgeFrom(t, bridge.Config{Publishers: file}, nil)
	if _, err := b.publishAs(t, bearer("slow-token"), "slow"); err != nil {
		t.Fatalf("first publish = %v", err)
	}
	if err := b.srv.ReloadPublishers(); err != nil {
		t.Fatalf("ReloadPublishers() = %v", err)
	}
	_, err := b.publishAs(t, bearer("slow-token"), "slow")
	checkCall(t, "publish after reload", err, codes.ResourceExhausted)
}

// TestPublisherJWTs: with --publisher-jwt, a JWT verified with the
// subscriber key whose grants claim has "publish" patterns is a publisher
// credential, next to the publishers file.
func TestPublisherJWTs(t *testing.T) {
	t.Parallel()
	key := writeFile(t, "key", string(testHMACKey))
	b, _ := startBridgeFrom(t, bridge.Config{JWTKey: key, PublisherJWT: true, Publishers: testPublishers(t)}, nil)
	publisher := mint(t, jwt.SigningMethodHS256, testHMACKey, with(claimsFor(), "bridge", map[string]any{"publish": []string{"jwt.>"}}))
	subscriber := mint(t, jwt.SigningMethodHS256, testHMACKey, claimsFor("orders"))
	expired := mint(t, jwt.SigningMethodHS256, testHMACKey, with(with(claimsFor(), "bridge", map[string]any{"publish": []string{">"}}), "exp", time.Now().Add(-time.Hour).Unix()))
	otherKey := mint(t, jwt.SigningMethodHS256, otherHMACKey, with(claimsFor(), "bridge", map[string]any{"publish": []string{">"}}))

	if _, err := b.publishAs(t, bearer(publisher), "jwt.a"); err != nil {
		t.Errorf("publish with a publish grant = %v, want success", err)
	}
	if _, err := b.publishAs(t, bearer(ordersToken), "orders"); err != nil {
		t.Errorf("publish with a publishers-file token = %v, want success", err)
	}
	_, err := b.publishAs(t, bearer(publisher), "orders")
	checkCall(t, "publish outside the grant", err, codes.PermissionDenied, `this token may not publish to stream "orders"`)
	_, err = b.publishAs(t, bearer(subscriber), "orders")
	checkCall(t, "publish with a subscribe-only token", err, codes.PermissionDenied)
	_, err = b.reflect(t, bearer(subscriber))
	checkCall(t, "reflection with a subscribe-only token", err, codes.PermissionDenied, "granted no stream")
	if _, err := b.reflect(t, bearer(publisher)); err != nil {
		t.Errorf("reflection with a publish grant = %v, want success", err)
	}
	_, err = b.publishAs(t, bearer(expired), "jwt.a")
	checkCall(t, "publish with an expired token", err, codes.Unauthenticated, "expired")
	_, err = b.publishAs(t, bearer(otherKey), "jwt.a")
	checkCall(t, "publish with a token of another key", err, codes.Unauthenticated)
	if n := historyEvents(t, b.baseURL); n != 2 {
		t.Errorf("history holds %v events, want 2", n)
	}
}

// TestPublisherAuthLeaksNothing: refused unary and streaming calls leave no
// goroutine behind once the bridge has stopped. Not parallel: goleak sees
// every goroutine of the test binary.
func TestPublisherAuthLeaksNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	b, _ := startBridgeFrom(t, bridge.Config{Publishers: testPublishers(t)}, elsewhere)
	if _, err := b.publishAs(t, nil, "orders"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Publish without a token = %v, want Unauthenticated", err)
	}
	if _, err := b.reflect(t, nil); status.Code(err) != codes.Unauthenticated {
		t.Errorf("reflection without a token = %v, want Unauthenticated", err)
	}
	if _, err := b.publishAs(t, bearer(ordersToken), "orders"); err != nil {
		t.Errorf("Publish with a token = %v", err)
	}
	if err := b.stop(); err != nil {
		t.Fatalf("Serve() = %v, want nil", err)
	}
}

// serveUntilCleanup runs srv.Serve on the listeners until stop is called or
// the test ends, and checks it returned nil. stop cancels Serve and returns
// its error; it may be called more than once.
func serveUntilCleanup(tb testing.TB, srv *bridge.Server, grpcLis, httpLis net.Listener) (stop func() error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(tb.Context()))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, grpcLis, httpLis) }()
	var once sync.Once
	var serveErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case serveErr = <-done:
			case <-time.After(waitLimit):
				serveErr = fmt.Errorf("Serve did not return within %v of cancel", waitLimit)
			}
		})
		return serveErr
	}
	tb.Cleanup(func() {
		if err := stop(); err != nil {
			tb.Errorf("Serve() = %v, want nil", err)
		}
	})
	return stop
}
