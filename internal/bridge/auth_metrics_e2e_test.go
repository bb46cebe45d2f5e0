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
	b := startBridge(t, bridge.Config{JWTKey: writeKeyFile(t, testHMACKey), CORSOrigins: []string{"https://app.example"},
		JWTIssuer: "https://id.example", JWTAudience: "bridge"})
	good := with(with(claimsFor("orders"), "iss", "https://id.example"), "aud", "bridge")
	tok := mint(t, jwt.SigningMethodHS256, testHMACKey, good)
	noExp := with(good, "exp", nil) // with deletes a claim set to nil
	requests := []struct {
		reason string
		status int
		h      http.Header
		query  string
		// body and challenge: what the client is told (RFC 6750 for the
		// challenge); empty: not checked.
		body, challenge string
	}{
		{reason: "no_token", status: 401, body: "as the cookie __Secure-bridge_token", challenge: `Bearer realm="bridge"`},
		{reason: "query_token_off", status: 401, query: "&access_token=" + tok, body: "--auth-query-token", challenge: `error="invalid_request"`},
		{reason: "malformed", status: 401, h: bearerHeader("not.a.jwt"), challenge: `error="invalid_token", error_description="malformed"`},
		{reason: "bad_signature", status: 401, h: bearerHeader(mint(t, jwt.SigningMethodHS256, otherHMACKey, good)), challenge: `error_description="bad signature"`},
		{reason: "bad_signature", status: 401, h: bearerHeader(mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good))},
		{reason: "expired", status: 401, h: bearerHeader(mint(t, jwt.SigningMethodHS256, testHMACKey, with(good, "exp", time.Now().Add(-time.Hour).Unix()))), body: "token expired", challenge: `error_description="expired"`},
		{reason: "not_yet_valid", status: 401, h: bearerHeader(mint(t, jwt.SigningMethodHS256, testHMACKey, with(good, "nbf", time.Now().Add(time.Hour).Unix()))), body: "not valid yet"},
		{reason: "no_expiry", status: 401, h: bearerHeader(mint(t, jwt.SigningMethodHS256, testHMACKey, noExp)), body: "no expiry"},
		{reason: "wrong_audience", status: 401, h: bearerHeader(mint(t, jwt.SigningMethodHS256, testHMACKey, with(good, "aud", "other"))), body: "audience"},
		{reason: "wrong_issuer", status: 401, h: bearerHeader(mint(t, jwt.SigningMethodHS256, testHMACKey, with(good, "iss", "https://evil.example"))), body: "issuer"},
		{reason: "bad_grants", status: 401, h: bearerHeader(mint(t, jwt.SigningMethodHS256, testHMACKey, with(good, "bridge", "orders")))},
		{reason: "malformed", status: 401, h: http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, challenge: `error="invalid_request"`},
		{reason: "malformed", status: 401, h: http.Header{"Authorization": {"Bearer " + tok, "Bearer " + tok}}},
		{reason: "not_granted", status: 403, h: bearerHeader(mint(t, jwt.SigningMethodHS256, testHMACKey, with(with(claimsFor("other"), "iss", "https://id.example"), "aud", "bridge")))},
		// A label value made of what the client sent would be unbounded.
		{reason: "malformed", status: 401, h: bearerHeader(`reason="x"},side{` + strings.Repeat("z", 50))},
	}
	want := map[string]float64{}
	for _, r := range requests {
		got := get(t, b.baseURL, "stream=orders"+r.query, r.h)
		if got.status != r.status {
			t.Errorf("request for %s = %d (%s), want %d", r.reason, got.status, got.body, r.status)
		}
		if !strings.Contains(got.body, r.body) {
			t.Errorf("request for %s: body %q, want it to say %q", r.reason, got.body, r.body)
		}
		if c := got.header.Get("WWW-Authenticate"); !strings.Contains(c, r.challenge) {
			t.Errorf("request for %s: WWW-Authenticate %q, want it to hold %q", r.reason, c, r.challenge)
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
