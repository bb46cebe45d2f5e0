package bridge_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// openStreamAs opens a PublishStream with the metadata md, and returns a
// function that sends one event to stream and waits for its result.
func openStreamAs(t *testing.T, b *testBridge, md metadata.MD) func(stream string) (*bridgev1.PublishResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(t.Context(), md), waitLimit)
	t.Cleanup(cancel)
	st, err := b.client.PublishStream(ctx)
	if err != nil {
		t.Fatalf("PublishStream: %v", err)
	}
	return func(stream string) (*bridgev1.PublishResult, error) {
		t.Helper()
		if err := st.Send(jsonReq(t, stream, map[string]any{"to": stream})); err != nil {
			t.Fatalf("send: %v", err) // the answer, an error included, comes from Recv
		}
		return st.Recv()
	}
}

// TestPublishStreamFollowsReloads: an open PublishStream publishes with its
// credential as the publishers file says now, not as it said when the
// stream opened. Changed grants apply to its next event; a dropped entry
// ends the stream, Unauthenticated, and the event sent after the reload is
// not stored.
func TestPublishStreamFollowsReloads(t *testing.T) {
	t.Parallel()
	file := testPublishers(t)
	b, _ := startBridgeFrom(t, bridge.Config{Publishers: file}, nil)
	publish := openStreamAs(t, b, bearer(ordersToken))
	reload := func(content string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := b.srv.ReloadPublishers(); err != nil {
			t.Fatalf("ReloadPublishers() = %v", err)
		}
	}
	if r, err := publish("orders"); err != nil || r.GetStatus() != nil || r.GetId() == 0 {
		t.Fatalf("before any reload: result %v, %v; want an id", r, err)
	}

	reload(`{"publishers": [{"name": "orders-svc", "token_sha256": "` + hashToken(ordersToken) + `", "streams": ["billing"]}]}`)
	r, err := publish("orders")
	if err != nil || codes.Code(r.GetStatus().GetCode()) != codes.PermissionDenied {
		t.Fatalf("to orders once the reload granted billing only: result %v, %v; want PERMISSION_DENIED", r, err)
	}
	if r, err := publish("billing"); err != nil || r.GetStatus() != nil || r.GetId() == 0 {
		t.Fatalf("to billing, granted by the reload: result %v, %v; want an id", r, err)
	}

	reload(`{"publishers": [{"name": "other", "token_sha256": "` + hashToken("other-token") + `", "streams": [">"]}]}`)
	_, err = publish("billing")
	checkCall(t, "the stream once a reload dropped its publisher", err, codes.Unauthenticated, "reloaded", "without a result was not stored")
	if n := historyEvents(t, b.baseURL); n != 2 {
		t.Errorf("history holds %v events, want the 2 the stream got ids for", n)
	}
}

// TestPublishStreamEndsWithItsToken: a PublishStream opened with a JWT ends,
// Unauthenticated, with the first event taken after the token expired;
// that event is not stored.
func TestPublishStreamEndsWithItsToken(t *testing.T) {
	t.Parallel()
	key := writeFile(t, "key", string(testHMACKey))
	// No leeway: the stream ends once exp has passed.
	b, _ := startBridgeFrom(t, bridge.Config{JWTKey: key, PublisherJWT: true, JWTLeeway: -1}, nil)
	// exp is in whole seconds: at least one second from now.
	exp := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second)
	token := mint(t, jwt.SigningMethodHS256, testHMACKey,
		with(with(claimsFor(), "bridge", map[string]any{"publish": []string{">"}}), "exp", exp.Unix()))
	publish := openStreamAs(t, b, bearer(token))
	if r, err := publish("jwt.a"); err != nil || r.GetStatus() != nil || r.GetId() == 0 {
		t.Fatalf("before the token expired: result %v, %v; want an id", r, err)
	}
	// Not a timing assertion: the test waits for the expiry, then checks
	// what the stream does after it, whenever that is.
	time.Sleep(time.Until(exp) + 50*time.Millisecond)
	_, err := publish("jwt.a")
	checkCall(t, "the stream after its token expired", err, codes.Unauthenticated, "expired")
	if n := historyEvents(t, b.baseURL); n != 1 {
		t.Errorf("history holds %v events, want the 1 published before the expiry", n)
	}
}
