package bridge_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sse-bridge/bridge/internal/bridge"
)

// Keys shared by the auth tests: generating RSA keys is slow.
var (
	testRSAKey   = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	otherRSAKey  = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	testECKey    = sync.OnceValue(func() *ecdsa.PrivateKey { k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader); return k })
	testHMACKey  = []byte("0123456789abcdef0123456789abcdef-test-secret")
	otherHMACKey = []byte("another secret of at least thirty-two bytes!")
)

func mustRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

func publicPEM(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func writeKeyFile(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mint(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

// claimsFor returns valid claims for the given grants, expiring in an hour.
func claimsFor(subscribe ...string) jwt.MapClaims {
	return jwt.MapClaims{
		"sub":    "user-42",
		"iss":    "https://auth.example",
		"aud":    "bridge",
		"exp":    time.Now().Add(time.Hour).Unix(),
		"iat":    time.Now().Unix(),
		"bridge": map[string]any{"subscribe": subscribe},
	}
}

func with(c jwt.MapClaims, k string, v any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for kk, vv := range c {
		out[kk] = vv
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

// result is a response to GET /events, read whole unless it is a stream.
type result struct {
	status int
	header http.Header
	body   string
}

// get requests /events?query with headers h. A 200 stream is closed at once.
func get(t *testing.T, baseURL, query string, h http.Header) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	resp := getEvents(ctx, t, http.DefaultClient, baseURL, query, h)
	defer func() { _ = resp.Body.Close() }()
	r := result{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		r.body = string(b)
	}
	return r
}

// checkRefusal asserts a 401/403 says what to do, is not cached, and
// carries no frame and no token.
func checkRefusal(t *testing.T, r result, token string) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("refusal Content-Type = %q, want no event stream", ct)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("refusal Cache-Control = %q, want no-store", cc)
	}
	if len(strings.TrimSpace(r.body)) < 20 {
		t.Errorf("refusal body %q: want a message that says what to do", r.body)
	}
	if b := "\n" + r.body; strings.Contains(b, "\ndata:") || strings.Contains(b, "\nid:") {
		t.Errorf("refusal body %q carries a frame", r.body)
	}
	if len(token) > 8 && strings.Contains(r.body, token) {
		t.Errorf("refusal body echoes the token")
	}
}

func TestAuthTokenSourceByDefectMatrix(t *testing.T) {
	t.Parallel()
	rsaKey := testRSAKey()
	pubPEM := publicPEM(t, &rsaKey.PublicKey)
	withQuery := startBridge(t, bridge.Config{
		JWTKey: writeKeyFile(t, pubPEM), JWTIssuer: "https://auth.example", JWTAudience: "bridge", AuthQueryToken: true,
	})
	noQuery := startBridge(t, bridge.Config{
		JWTKey: writeKeyFile(t, pubPEM), JWTIssuer: "https://auth.example", JWTAudience: "bridge",
	})
	good := claimsFor("orders")
	hour := time.Hour
	defects := []struct {
		name   string
		token  string // "" means none
		status int
	}{
		{"valid", mint(t, jwt.SigningMethodRS256, rsaKey, good), 200},
		{"missing", "", 401},
		{"expired", mint(t, jwt.SigningMethodRS256, rsaKey, with(good, "exp", time.Now().Add(-hour).Unix())), 401},
		{"no exp", mint(t, jwt.SigningMethodRS256, rsaKey, with(good, "exp", nil)), 401},
		{"not yet valid", mint(t, jwt.SigningMethodRS256, rsaKey, with(good, "nbf", time.Now().Add(hour).Unix())), 401},
		{"alg none", mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good), 401},
		{"HS256 with the public key as secret", mint(t, jwt.SigningMethodHS256, pubPEM, good), 401},
		{"other algorithm RS512", mint(t, jwt.SigningMethodRS512, rsaKey, good), 401},
		{"other algorithm ES256", mint(t, jwt.SigningMethodES256, testECKey(), good), 401},
		{"wrong key", mint(t, jwt.SigningMethodRS256, otherRSAKey(), good), 401},
		{"wrong issuer", mint(t, jwt.SigningMethodRS256, rsaKey, with(good, "iss", "https://evil.example")), 401},
		{"no issuer", mint(t, jwt.SigningMethodRS256, rsaKey, with(good, "iss", nil)), 401},
		{"wrong audience", mint(t, jwt.SigningMethodRS256, rsaKey, with(good, "aud", "other")), 401},
		{"malformed", "not.a.jwt", 401},
		{"garbage", "%%%", 401},
		{"grant claim malformed", mint(t, jwt.SigningMethodRS256, rsaKey, with(good, "bridge", "orders")), 401},
		{"not granted", mint(t, jwt.SigningMethodRS256, rsaKey, claimsFor("other")), 403},
	}
	sources := []struct {
		name string
		b    *testBridge
		set  func(q *string, h http.Header, token string)
		// absent: the bridge does not look there, so every token is missing
		absent bool
	}{
		{"header", noQuery, func(_ *string, h http.Header, tok string) { h.Set("Authorization", "Bearer "+tok) }, false},
		{"query on", withQuery, func(q *string, _ http.Header, tok string) { *q += "&access_token=" + url.QueryEscape(tok) }, false},
		{"query off", noQuery, func(q *string, _ http.Header, tok string) { *q += "&access_token=" + url.QueryEscape(tok) }, true},
		{"cookie", noQuery, func(_ *string, h http.Header, tok string) {
			h.Add("Cookie", (&http.Cookie{Name: "__Secure-bridge_token", Value: tok}).String())
		}, false},
	}
	for _, src := range sources {
		for _, d := range defects {
			t.Run(src.name+"/"+d.name, func(t *testing.T) {
				t.Parallel()
				q, h := "stream=orders", http.Header{}
				if d.token != "" {
					src.set(&q, h, d.token)
				}
				want := d.status
				if src.absent {
					want = 401
				}
				r := get(t, src.b.baseURL, q, h)
				if r.status != want {
					t.Fatalf("GET with %s %s = %d (%s), want %d", src.name, d.name, r.status, r.body, want)
				}
				if want != 200 {
					checkRefusal(t, r, d.token)
				}
				if want == 401 && r.header.Get("WWW-Authenticate") == "" {
					t.Errorf("401 without WWW-Authenticate")
				}
			})
		}
	}
	t.Run("two Authorization headers", func(t *testing.T) {
		t.Parallel()
		tok := defects[0].token
		r := get(t, noQuery.baseURL, "stream=orders", http.Header{"Authorization": {"Bearer " + tok, "Bearer " + tok}})
		if r.status != 401 {
			t.Fatalf("two Authorization headers = %d (%s), want 401", r.status, r.body)
		}
		checkRefusal(t, r, tok)
	})
	t.Run("not a bearer", func(t *testing.T) {
		t.Parallel()
		r := get(t, noQuery.baseURL, "stream=orders", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}})
		if r.status != 401 {
			t.Fatalf("Basic credentials = %d (%s), want 401", r.status, r.body)
		}
	})
	t.Run("bad header does not fall back to a good cookie", func(t *testing.T) {
		t.Parallel()
		h := http.Header{"Authorization": {"Bearer not.a.jwt"}}
		h.Add("Cookie", (&http.Cookie{Name: "__Secure-bridge_token", Value: defects[0].token}).String())
		if r := get(t, noQuery.baseURL, "stream=orders", h); r.status != 401 {
			t.Fatalf("bad header, good cookie = %d (%s), want 401", r.status, r.body)
		}
	})
}

func TestAuthHMACKeyRefusesOtherAlgorithms(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{JWTKey: writeKeyFile(t, append(append([]byte{}, testHMACKey...), '\n'))})
	good := claimsFor("orders")
	for _, tc := range []struct {
		name   string
		token  string
		status int
	}{
		{"HS256", mint(t, jwt.SigningMethodHS256, testHMACKey, good), 200},
		{"HS512 with the same secret", mint(t, jwt.SigningMethodHS512, testHMACKey, good), 401},
		{"RS256", mint(t, jwt.SigningMethodRS256, testRSAKey(), good), 401},
		{"none", mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good), 401},
		{"wrong secret", mint(t, jwt.SigningMethodHS256, otherHMACKey, good), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := get(t, b.baseURL, "stream=orders", http.Header{"Authorization": {"Bearer " + tc.token}})
			if r.status != tc.status {
				t.Fatalf("GET with %s = %d (%s), want %d", tc.name, r.status, r.body, tc.status)
			}
		})
	}
}

func TestAuthGrants(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{JWTKey: writeKeyFile(t, testHMACKey), PublicStreams: []string{"public.>"}})
	tok := mint(t, jwt.SigningMethodHS256, testHMACKey, claimsFor("orders", "user.42.*", "news.>"))
	bearer := http.Header{"Authorization": {"Bearer " + tok}}
	b.publish(t, jsonReq(t, "secret", map[string]any{"n": 1.0}))
	for _, tc := range []struct {
		name, query string
		h           http.Header
		status      int
		names       []string // must appear in the 403 body
		notNames    []string // must not
	}{
		{name: "exact", query: "stream=orders", h: bearer, status: 200},
		{name: "star", query: "stream=user.42.cart", h: bearer, status: 200},
		{name: "star needs one token", query: "stream=user.42", h: bearer, status: 403, names: []string{"user.42"}},
		{name: "star is one token only", query: "stream=user.42.cart.items", h: bearer, status: 403},
		{name: "star is not another user", query: "stream=user.43.cart", h: bearer, status: 403},
		{name: "gt one token", query: "stream=news.eu", h: bearer, status: 200},
		{name: "gt several tokens", query: "stream=news.eu.fr", h: bearer, status: 200},
		{name: "gt needs a token", query: "stream=news", h: bearer, status: 403},
		{name: "not granted", query: "stream=secret", h: bearer, status: 403, names: []string{"secret"}},
		{name: "prefix is not a grant", query: "stream=orders.eu", h: bearer, status: 403},
		{name: "several, all granted", query: "stream=orders&stream=news.x&stream=public.y", h: bearer, status: 200},
		{name: "several, some refused", query: "stream=orders&stream=secret&stream=user.43.x", h: bearer, status: 403,
			names: []string{"secret", "user.43.x"}, notNames: []string{"orders"}},
		{name: "public without token", query: "stream=public.news", status: 200},
		{name: "public and private without token", query: "stream=public.news&stream=orders", status: 401},
		{name: "public with a bad token", query: "stream=public.news", h: http.Header{"Authorization": {"Bearer x.y.z"}}, status: 401},
		{name: "resume of ungranted stream", query: "stream=secret", h: http.Header{"Authorization": {"Bearer " + tok}, "Last-Event-Id": {"0"}}, status: 403},
		{name: "resume of ungranted stream by query", query: "stream=secret&lastEventId=0", h: bearer, status: 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := get(t, b.baseURL, tc.query, tc.h)
			if r.status != tc.status {
				t.Fatalf("GET /events?%s = %d (%s), want %d", tc.query, r.status, r.body, tc.status)
			}
			if tc.status != 200 {
				checkRefusal(t, r, tok)
			}
			for _, n := range tc.names {
				if !strings.Contains(r.body, n) {
					t.Errorf("403 body %q does not name %q", r.body, n)
				}
			}
			for _, n := range tc.notNames {
				if strings.Contains(r.body, n) {
					t.Errorf("403 body %q names the granted %q", r.body, n)
				}
			}
		})
	}
}

func TestAuthUngrantedEventsNeverArrive(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{JWTKey: writeKeyFile(t, testHMACKey)})
	tok := mint(t, jwt.SigningMethodHS256, testHMACKey, claimsFor("orders"))
	c := subscribeWith(t, b.baseURL, "stream=orders", http.Header{"Authorization": {"Bearer " + tok}})
	done := make(chan struct{})
	go func() { // publishes to the ungranted stream while orders flow; ends on its own
		defer close(done)
		for i := range 50 {
			_, _ = b.client.Publish(t.Context(), jsonReq(t, "secret", map[string]any{"stream": "secret", "n": float64(i)}))
		}
	}()
	for i := range 20 {
		b.publish(t, jsonReq(t, "orders", map[string]any{"stream": "orders", "n": float64(i)}))
	}
	<-done
	b.publish(t, jsonReq(t, "orders", map[string]any{"stream": "orders", "end": true}))
	for n := 0; ; n++ {
		f := toFrame(t, c.next(t))
		m, _ := f.Data.(map[string]any)
		if m["stream"] != "orders" {
			t.Fatalf("frame %d = %v: an ungranted stream's event reached the client", n, f)
		}
		if m["end"] == true {
			if n != 20 {
				t.Errorf("got %d orders frames before the end, want 20", n)
			}
			return
		}
	}
}

func TestAuthExpiryClosesLiveStream(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{JWTKey: writeKeyFile(t, testHMACKey), JWTLeeway: -1})
	before := scrape(t, b.baseURL)[`bridge_sse_evictions_total{reason="token_expiry"}`]
	claims := with(claimsFor("orders"), "exp", time.Now().Add(3*time.Second).Unix())
	tok := mint(t, jwt.SigningMethodHS256, testHMACKey, claims)
	c := subscribeWith(t, b.baseURL, "stream=orders", http.Header{"Authorization": {"Bearer " + tok}})
	b.publish(t, jsonReq(t, "orders", map[string]any{"n": 1.0}))
	if f := toFrame(t, c.next(t)); f.Type != "" {
		t.Fatalf("first frame = %v, want the published event", f)
	}
	limit := time.NewTimer(waitLimit)
	defer limit.Stop()
	for ended := false; !ended; {
		select {
		case _, ok := <-c.events:
			ended = !ok
		case <-limit.C:
			t.Fatalf("stream still open %v after its token expired", waitLimit)
		}
	}
	if after := scrape(t, b.baseURL)[`bridge_sse_evictions_total{reason="token_expiry"}`]; after != before+1 {
		t.Errorf("token_expiry evictions = %v, want %v", after, before+1)
	}
}

func TestAuthOriginAndCORS(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{JWTKey: writeKeyFile(t, testHMACKey), CORSOrigins: []string{"https://app.example"}})
	tok := mint(t, jwt.SigningMethodHS256, testHMACKey, claimsFor("orders"))
	self := "http://" + strings.TrimPrefix(b.baseURL, "http://")
	for _, tc := range []struct {
		name, origin, token string
		status              int
		header              map[string]string
	}{
		{name: "foreign origin", origin: "https://evil.example", token: tok, status: 403,
			header: map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Credentials": ""}},
		{name: "foreign origin before token work", origin: "https://evil.example", token: "", status: 403},
		{name: "null origin", origin: "null", token: tok, status: 403},
		{name: "allowed origin", origin: "https://app.example", token: tok, status: 200, header: map[string]string{
			"Access-Control-Allow-Origin": "https://app.example", "Access-Control-Allow-Credentials": "true", "Vary": "Origin",
		}},
		{name: "allowed origin without token", origin: "https://app.example", token: "", status: 401, header: map[string]string{
			"Access-Control-Allow-Origin": "https://app.example", "Access-Control-Allow-Credentials": "true",
		}},
		{name: "same origin", origin: self, token: tok, status: 200},
		{name: "no origin", token: tok, status: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tc.origin != "" {
				h.Set("Origin", tc.origin)
			}
			if tc.token != "" {
				h.Add("Cookie", (&http.Cookie{Name: "__Secure-bridge_token", Value: tc.token}).String())
			}
			r := get(t, b.baseURL, "stream=orders", h)
			if r.status != tc.status {
				t.Fatalf("GET from %q = %d (%s), want %d", tc.origin, r.status, r.body, tc.status)
			}
			for k, want := range tc.header {
				if got := r.header.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestAuthConfigValidate(t *testing.T) {
	t.Parallel()
	key := writeKeyFile(t, testHMACKey)
	for _, tc := range []struct {
		name string
		cfg  bridge.Config
		want string // in the error; "" means valid
	}{
		{"star origin with auth", bridge.Config{JWTKey: key, CORSOrigins: []string{"*"}}, `"*"`},
		{"star origin without auth", bridge.Config{CORSOrigins: []string{"*"}}, ""},
		{"alg none", bridge.Config{JWTKey: key, JWTAlg: "none"}, "none"},
		{"bad public pattern", bridge.Config{JWTKey: key, PublicStreams: []string{"a.>.b"}}, "a.>.b"},
		{"public streams without auth", bridge.Config{PublicStreams: []string{"a"}}, "--jwt-key"},
		{"bad cookie name", bridge.Config{JWTKey: key, AuthCookie: "a b"}, "cookie"},
		{"auth", bridge.Config{JWTKey: key, PublicStreams: []string{"public.>", "*.news"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate() = %v, want an error mentioning %s", err, tc.want)
			}
		})
	}
}

func TestAuthKeyFilesRefused(t *testing.T) {
	t.Parallel()
	privDER, err := x509.MarshalPKCS8PrivateKey(testECKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  []byte
		alg  string
	}{
		{"short secret", []byte("too short"), ""},
		{"private key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), ""},
		{"broken PEM", []byte("-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n" + strings.Repeat("x", 40)), ""},
		{"pinned alg of another family", publicPEM(t, &testECKey().PublicKey), "RS256"},
		{"pinned curve mismatch", publicPEM(t, &testECKey().PublicKey), "ES384"},
		{"pinned HS on a secret", testHMACKey, "RS256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := bridge.New(bridge.Config{JWTKey: writeKeyFile(t, tc.key), JWTAlg: tc.alg}); err == nil {
				t.Errorf("New with key %s = nil error, want a refusal", tc.name)
			}
		})
	}
}
