package bridge_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/sse-bridge/bridge/internal/bridge"
)

// TestAuthFailuresCountedByReason: every subscriber refused for its token
// or grants shows on /metrics once, under a reason from a fixed set,
// whatever it sent. (A refused Origin is not a credential: it counts in
// bridge_rejections_total.)
func TestAuthFailuresCountedByReason(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{JWTKey: writeKeyFile(t, testHMACKey), CORSOrigins: []string{"https://app.example"}})
	good := claimsFor("orders")
	tok := mint(t, jwt.SigningMethodHS256, testHMACKey, good)
	requests := []struct {
		reason string
		status int
		h      http.Header
	}{
		{"no_token", 401, nil},
		{"bad_token", 401, bearerHeader("not.a.jwt")},
		{"bad_token", 401, bearerHeader(mint(t, jwt.SigningMethodHS256, otherHMACKey, good))},
		{"bad_token", 401, bearerHeader(mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good))},
		{"expired", 401, bearerHeader(mint(t, jwt.SigningMethodHS256, testHMACKey, with(good, "exp", time.Now().Add(-time.Hour).Unix())))},
		{"expired", 401, bearerHeader(mint(t, jwt.SigningMethodHS256, testHMACKey, with(good, "nbf", time.Now().Add(time.Hour).Unix())))},
		{"bad_grants", 401, bearerHeader(mint(t, jwt.SigningMethodHS256, testHMACKey, with(good, "bridge", "orders")))},
		{"malformed", 401, http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}},
		{"malformed", 401, http.Header{"Authorization": {"Bearer " + tok, "Bearer " + tok}}},
		{"not_granted", 403, bearerHeader(mint(t, jwt.SigningMethodHS256, testHMACKey, claimsFor("other")))},
		// A label value made of what the client sent would be unbounded.
		{"bad_token", 401, bearerHeader(`reason="x"},side{` + strings.Repeat("z", 50))},
	}
	want := map[string]float64{}
	for _, r := range requests {
		got := get(t, b.baseURL, "stream=orders", r.h)
		if got.status != r.status {
			t.Errorf("request for %s = %d (%s), want %d", r.reason, got.status, got.body, r.status)
		}
		want[`bridge_auth_failures_total{reason="`+r.reason+`",side="subscriber"}`]++
	}
	if got := get(t, b.baseURL, "stream=orders", bearerHeader(tok)); got.status != 200 {
		t.Errorf("valid token = %d (%s), want 200", got.status, got.body)
	}
	got := map[string]float64{}
	for k, v := range scrape(t, b.baseURL) {
		if strings.HasPrefix(k, "bridge_auth_failures_total{") {
			got[k] = v
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("bridge_auth_failures_total (-want +got):\n%s", diff)
	}
}
