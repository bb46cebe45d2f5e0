package bridge_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/sse-bridge/bridge/internal/bridge"
)

// The JWKS tests serve key sets from a real HTTP(S) server on loopback and
// assert on statuses and counts only: fetches are counted by the server,
// never timed.

var rotatedRSAKey = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })

// jwk is a key of a served or written key set: the public half of key (or
// key itself when private is set, for the tests that must see it refused).
type jwk struct {
	key     any
	kid     string
	alg     string // "" declares none
	use     string // "" means "sig"
	private bool
}

func jwkSet(t *testing.T, keys ...jwk) []byte {
	t.Helper()
	var set jwkset.JWKSMarshal
	for _, k := range keys {
		key := k.key
		if p, ok := key.(crypto.Signer); ok && !k.private {
			key = p.Public()
		}
		use := jwkset.USE(k.use)
		if use == "" {
			use = jwkset.UseSig
		}
		j, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{
			Marshal:  jwkset.JWKMarshalOptions{Private: true},
			Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: jwkset.ALG(k.alg), USE: use},
		})
		if err != nil {
			t.Fatalf("JWK %s: %v", k.kid, err)
		}
		set.Keys = append(set.Keys, j.Marshal())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jwksServer serves a key set that the test can replace, counting fetches.
type jwksServer struct {
	ts      *httptest.Server
	mu      sync.Mutex
	set     []byte
	fetches atomic.Int64
}

// startJWKSServer serves set at /jwks.json on lis (a fresh loopback port
// when nil), over TLS when tls is set.
func startJWKSServer(t *testing.T, lis net.Listener, tls bool, set []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{set: set}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/jwks.json" {
			http.NotFound(w, r)
			return
		}
		s.fetches.Add(1)
		s.mu.Lock()
		b := s.set
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(b)
	}))
	if lis != nil {
		_ = ts.Listener.Close()
		ts.Listener = lis
	}
	if tls {
		ts.StartTLS()
	} else {
		ts.Start()
	}
	s.ts = ts
	t.Cleanup(ts.Close)
	return s
}

func (s *jwksServer) url() string { return s.ts.URL + "/jwks.json" }

func (s *jwksServer) serve(set []byte) {
	s.mu.Lock()
	s.set = set
	s.mu.Unlock()
}

// caFile writes the certificate of a TLS test server as a PEM file.
func caFile(t *testing.T, ts *httptest.Server) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// mintKID signs claims with key, naming kid in the header ("" for none).
func mintKID(t *testing.T, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

func bearerHeader(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// subscriberAuthFailures returns the subscriber auth failures counted for
// reason.
func subscriberAuthFailures(t *testing.T, baseURL, reason string) float64 {
	t.Helper()
	return scrape(t, baseURL)[`bridge_auth_failures_total{reason="`+reason+`",side="subscriber"}`]
}

// checkShed asserts a response is a shed: 200, an event stream that holds a
// retry field and no event.
func checkShed(t *testing.T, baseURL, query string, h http.Header) {
	t.Helper()
	got := readAll(t, baseURL, query, h)
	if got.status != http.StatusOK || !strings.HasPrefix(got.header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("GET /events?%s = %d %q (%s), want a 200 event stream", query, got.status, got.header.Get("Content-Type"), got.body)
	}
	if !strings.HasPrefix(got.body, "retry: ") || !strings.HasSuffix(got.body, "\n\n") {
		t.Errorf("shed body %q, want a retry field first and a complete frame", got.body)
	}
	if b := "\n" + got.body; strings.Contains(b, "\ndata:") || strings.Contains(b, "\nid:") {
		t.Errorf("shed body %q carries an event", got.body)
	}
}

// readAll requests /events and reads the whole response, which must end
// within waitLimit (a refusal, or a shed stream).
func readAll(t *testing.T, baseURL, query string, h http.Header) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	resp := getEvents(ctx, t, http.DefaultClient, baseURL, query, h)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET /events?%s: read: %v (a shed stream must end)", query, err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

func TestJWKSURLVerifiesTokensAndFollowsRotation(t *testing.T) {
	t.Parallel()
	rsaKey, ecKey, rotated := testRSAKey(), testECKey(), rotatedRSAKey()
	oct := []byte("a shared secret of at least thirty-two bytes")
	srv := startJWKSServer(t, nil, true, jwkSet(t,
		jwk{key: rsaKey, kid: "rsa-1", alg: "RS256"},
		jwk{key: ecKey, kid: "ec-1"}, // no alg: ES256 by its curve
		jwk{key: oct, kid: "hmac-1", alg: "HS256"},
	))
	b := startBridge(t, bridge.Config{JWKS: srv.url(), JWKSCA: caFile(t, srv.ts), JWTAudience: "bridge"})
	good := claimsFor("orders")
	pubPEM := publicPEM(t, &rsaKey.PublicKey)

	for _, tc := range []struct {
		name   string
		token  string
		status int
	}{
		{"RS256 with its kid", mintKID(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", good), 200},
		{"ES256 with its kid", mintKID(t, jwt.SigningMethodES256, ecKey, "ec-1", good), 200},
		{"RS256 without kid", mintKID(t, jwt.SigningMethodRS256, rsaKey, "", good), 200},
		{"wrong audience", mintKID(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", with(good, "aud", "other")), 401},
		{"no audience", mintKID(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", with(good, "aud", nil)), 401},
		{"expired", mintKID(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", with(good, "exp", time.Now().Add(-time.Hour).Unix())), 401},
		{"alg none", mintKID(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "rsa-1", good), 401},
		{"HS256 with the public key as secret", mintKID(t, jwt.SigningMethodHS256, pubPEM, "rsa-1", good), 401},
		{"HS256 with the set's oct key", mintKID(t, jwt.SigningMethodHS256, oct, "hmac-1", good), 401},
		{"HS256 with the oct key, no kid", mintKID(t, jwt.SigningMethodHS256, oct, "", good), 401},
		{"PS256 on a key that declares RS256", mintKID(t, jwt.SigningMethodPS256, rsaKey, "rsa-1", good), 401},
		{"RS256 naming the EC key", mintKID(t, jwt.SigningMethodRS256, rsaKey, "ec-1", good), 401},
		{"signed by another key", mintKID(t, jwt.SigningMethodRS256, otherRSAKey(), "rsa-1", good), 401},
		{"not granted", mintKID(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", claimsFor("other")), 403},
	} {
		// One after another, not in parallel subtests: the fetch count below
		// must see all of them.
		r := get(t, b.baseURL, "stream=orders", bearerHeader(tc.token))
		if r.status != tc.status {
			t.Errorf("GET with %s = %d (%s), want %d", tc.name, r.status, r.body, tc.status)
			continue
		}
		if tc.status != 200 {
			checkRefusal(t, r, tc.token)
		}
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times before any unknown kid, want once (at start)", n)
	}

	// Rotation: the provider publishes a new key and drops the old RSA one.
	// The first token naming the new kid makes the bridge fetch the set.
	srv.serve(jwkSet(t, jwk{key: rotated, kid: "rsa-2", alg: "RS256"}, jwk{key: ecKey, kid: "ec-1"}))
	if r := get(t, b.baseURL, "stream=orders", bearerHeader(mintKID(t, jwt.SigningMethodRS256, rotated, "rsa-2", good))); r.status != 200 {
		t.Fatalf("token of the rotated key = %d (%s), want 200", r.status, r.body)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times after an unknown kid, want 2", n)
	}
	// The old key is gone, and a kid that is in no set stays unknown; the
	// rate limit keeps both from fetching again.
	before := subscriberAuthFailures(t, b.baseURL, "unknown_key")
	for _, tok := range []string{
		mintKID(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", good),
		mintKID(t, jwt.SigningMethodRS256, rsaKey, "nobody", good),
	} {
		r := get(t, b.baseURL, "stream=orders", bearerHeader(tok))
		if r.status != 401 {
			t.Fatalf("token of a key no longer in the set = %d (%s), want 401", r.status, r.body)
		}
		checkRefusal(t, r, tok)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2: unknown kids within the rate limit must not fetch", n)
	}
	if got := subscriberAuthFailures(t, b.baseURL, "unknown_key"); got != before+2 {
		t.Errorf("unknown_key failures = %v, want %v", got, before+2)
	}
}

func TestJWKSUnreachableShedsUntilFetched(t *testing.T) {
	t.Parallel()
	// A loopback port where nothing listens yet: the first fetch, at start,
	// is refused.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	rsaKey := testRSAKey()
	good := claimsFor("orders")
	tok := mintKID(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", good)
	// Unknown kids may fetch as often as they come, so the test sees the
	// recovery on the next request instead of waiting out the rate limit.
	cfg := bridge.WithJWKSUnknownKIDEvery(bridge.Config{
		JWKS: "http://" + addr + "/jwks.json", JWTAudience: "bridge", PublicStreams: []string{"public"},
	}, time.Nanosecond)
	b := startBridge(t, cfg)

	// A token, with or without kid, is shed, not refused.
	checkShed(t, b.baseURL, "stream=orders", bearerHeader(tok))
	checkShed(t, b.baseURL, "stream=orders", bearerHeader(mintKID(t, jwt.SigningMethodRS256, rsaKey, "", good)))
	if got := scrape(t, b.baseURL)[`bridge_rejections_total{reason="jwks_unavailable"}`]; got != 2 {
		t.Errorf("jwks_unavailable rejections = %v, want 2", got)
	}
	// No token needs no keys; alg none is refused before any key lookup.
	if r := get(t, b.baseURL, "stream=orders", nil); r.status != 401 {
		t.Errorf("no token = %d (%s), want 401", r.status, r.body)
	}
	if r := get(t, b.baseURL, "stream=public", nil); r.status != 200 {
		t.Errorf("public stream without token = %d (%s), want 200", r.status, r.body)
	}
	if r := get(t, b.baseURL, "stream=orders", bearerHeader(mintKID(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "rsa-1", good))); r.status != 401 {
		t.Errorf("alg none = %d (%s), want 401", r.status, r.body)
	}

	// The provider comes up on that port: the next token fetches the set.
	lis, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	srv := startJWKSServer(t, lis, false, jwkSet(t, jwk{key: rsaKey, kid: "rsa-1", alg: "RS256"}))
	if r := get(t, b.baseURL, "stream=orders", bearerHeader(tok)); r.status != 200 {
		t.Fatalf("token once the provider is up = %d (%s), want 200", r.status, r.body)
	}
	unknown := mintKID(t, jwt.SigningMethodRS256, rsaKey, "nobody", good)
	if r := get(t, b.baseURL, "stream=orders", bearerHeader(unknown)); r.status != 401 {
		t.Fatalf("kid unknown after a fetch = %d (%s), want 401", r.status, r.body)
	}

	// The provider goes away again: known keys keep working, a kid that
	// needs a fetch is shed.
	fetched := srv.fetches.Load()
	srv.ts.Close()
	if r := get(t, b.baseURL, "stream=orders", bearerHeader(tok)); r.status != 200 {
		t.Errorf("known key with the provider down = %d (%s), want 200", r.status, r.body)
	}
	checkShed(t, b.baseURL, "stream=orders", bearerHeader(mintKID(t, jwt.SigningMethodRS256, rotatedRSAKey(), "rsa-2", good)))
	if n := srv.fetches.Load(); n != fetched {
		t.Errorf("JWKS fetched %d times after the provider closed, want %d", n, fetched)
	}
}

func TestJWKSFileAndReload(t *testing.T) {
	t.Parallel()
	rsaKey, rotated := testRSAKey(), rotatedRSAKey()
	path := writeKeyFile(t, jwkSet(t, jwk{key: rsaKey, kid: "f-1"}, jwk{key: testECKey(), kid: "f-ec", alg: "ES256"}))
	b := startBridge(t, bridge.Config{JWKS: path, JWTAudience: "bridge"})
	good := claimsFor("orders")
	oldTok := mintKID(t, jwt.SigningMethodRS256, rsaKey, "f-1", good)
	newTok := mintKID(t, jwt.SigningMethodRS256, rotated, "f-2", good)
	expect := func(t *testing.T, what, tok string, status int) {
		t.Helper()
		if r := get(t, b.baseURL, "stream=orders", bearerHeader(tok)); r.status != status {
			t.Errorf("%s = %d (%s), want %d", what, r.status, r.body, status)
		}
	}
	expect(t, "token of the file's RSA key", oldTok, 200)
	expect(t, "token of the file's EC key", mintKID(t, jwt.SigningMethodES256, testECKey(), "f-ec", good), 200)
	expect(t, "PS384 on an RSA key without alg", mintKID(t, jwt.SigningMethodPS384, rsaKey, "f-1", good), 200)
	expect(t, "token of a key not in the file", newTok, 401)

	if err := os.WriteFile(path, jwkSet(t, jwk{key: rotated, kid: "f-2", alg: "RS256"}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Reload(); err != nil { // what SIGHUP does
		t.Fatalf("Reload() = %v, want nil", err)
	}
	expect(t, "token of the new key after reload", newTok, 200)
	expect(t, "token of the removed key after reload", oldTok, 401)

	for name, content := range map[string][]byte{
		"not JSON":   []byte("{"),
		"an oct key": jwkSet(t, jwk{key: []byte("a shared secret of at least thirty-two bytes"), kid: "h"}),
	} {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := b.srv.ReloadJWKS(); err == nil {
			t.Errorf("ReloadJWKS() of %s = nil, want an error", name)
		}
		expect(t, "token of the kept key after a failed reload of "+name, newTok, 200)
	}
}

func TestJWKSFilesRefused(t *testing.T) {
	t.Parallel()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		file []byte
		want string // in the error
	}{
		{"not JSON", []byte("-----BEGIN PUBLIC KEY-----"), "JWK Set"},
		{"no keys", []byte(`{"keys":[]}`), "no keys"},
		{"oct key", jwkSet(t, jwk{key: []byte("a shared secret of at least thirty-two bytes"), kid: "h", alg: "HS256"}), `"oct"`},
		{"private RSA key", jwkSet(t, jwk{key: testRSAKey(), kid: "p", private: true}), "private"},
		{"private EC key", jwkSet(t, jwk{key: testECKey(), kid: "p", private: true}), "private"},
		{"short RSA key", jwkSet(t, jwk{key: small, kid: "s"}), "2048"},
		{"encryption key", jwkSet(t, jwk{key: testRSAKey(), kid: "e", use: "enc"}), `"enc"`},
		{"alg of another family", jwkSet(t, jwk{key: testECKey(), kid: "x", alg: "RS256"}), "does not fit"},
		{"HMAC alg on an RSA key", jwkSet(t, jwk{key: testRSAKey(), kid: "x", alg: "HS256"}), "does not fit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := bridge.New(bridge.Config{JWKS: writeKeyFile(t, tc.file), JWTAudience: "bridge"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New with a JWKS file of %s = %v, want an error mentioning %s", tc.name, err, tc.want)
			}
		})
	}
}

func TestJWKSConfigValidate(t *testing.T) {
	t.Parallel()
	key := writeKeyFile(t, testHMACKey)
	for _, tc := range []struct {
		name string
		cfg  bridge.Config
		want string // in the error; "" means valid
	}{
		{"file", bridge.Config{JWKS: "keys.json", JWTAudience: "bridge"}, ""},
		{"https URL", bridge.Config{JWKS: "https://idp.example/jwks.json", JWTAudience: "bridge", JWKSCA: "ca.pem"}, ""},
		{"loopback http URL", bridge.Config{JWKS: "http://127.0.0.1:9/jwks.json", JWTAudience: "bridge"}, ""},
		{"localhost http URL", bridge.Config{JWKS: "http://localhost:9/jwks.json", JWTAudience: "bridge"}, ""},
		{"pinned RS256", bridge.Config{JWKS: "keys.json", JWTAudience: "bridge", JWTAlg: "RS256"}, ""},
		{"remote http URL", bridge.Config{JWKS: "http://idp.example/jwks.json", JWTAudience: "bridge"}, "https"},
		{"no audience", bridge.Config{JWKS: "keys.json"}, "--jwt-audience"},
		{"with a JWT key", bridge.Config{JWKS: "keys.json", JWTKey: key, JWTAudience: "bridge"}, "not both"},
		{"HMAC algorithm", bridge.Config{JWKS: "keys.json", JWTAudience: "bridge", JWTAlg: "HS256"}, "HMAC"},
		{"alg none", bridge.Config{JWKS: "keys.json", JWTAudience: "bridge", JWTAlg: "none"}, "none"},
		{"CA for a file", bridge.Config{JWKS: "keys.json", JWTAudience: "bridge", JWKSCA: "ca.pem"}, "--jwks-ca"},
		{"CA without key set", bridge.Config{JWTKey: key, JWKSCA: "ca.pem"}, "--jwks-ca"},
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

// TestJWKSShutdownLeaksNothing: the key set's refresh goroutine and its
// connections end with Serve.
func TestJWKSShutdownLeaksNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	srv := startJWKSServer(t, nil, false, jwkSet(t, jwk{key: testRSAKey(), kid: "rsa-1", alg: "RS256"}))
	b := startBridge(t, bridge.Config{JWKS: srv.url(), JWTAudience: "bridge"})
	tok := mintKID(t, jwt.SigningMethodRS256, testRSAKey(), "rsa-1", claimsFor("orders"))
	if r := get(t, b.baseURL, "stream=orders", bearerHeader(tok)); r.status != 200 {
		t.Fatalf("GET = %d (%s), want 200", r.status, r.body)
	}
	// An unknown kid fetches again, on a connection of its own.
	if r := get(t, b.baseURL, "stream=orders", bearerHeader(mintKID(t, jwt.SigningMethodRS256, testRSAKey(), "nobody", claimsFor("orders")))); r.status != 401 {
		t.Fatalf("GET = %d (%s), want 401", r.status, r.body)
	}
	if err := b.stop(); err != nil {
		t.Fatalf("Serve() = %v, want nil", err)
	}
	srv.ts.Close()
	http.DefaultClient.CloseIdleConnections()
}
