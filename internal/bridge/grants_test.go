package bridge

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// refMatch is the obvious recursive reading of the NATS rules, to check
// matchPattern against.
func refMatch(p, s []string) bool {
	switch {
	case len(p) == 0:
		return len(s) == 0
	case p[0] == ">":
		return len(p) == 1 && len(s) >= 1
	case len(s) == 0:
		return false
	}
	return (p[0] == "*" || p[0] == s[0]) && refMatch(p[1:], s[1:])
}

func TestMatchPattern(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"orders", "orders", true},
		{"orders", "orders.eu", false},
		{"orders", "order", false},
		{"user.42.*", "user.42.cart", true},
		{"user.42.*", "user.42", false},
		{"user.42.*", "user.42.cart.items", false},
		{"*.news", "eu.news", true},
		{"*", "a", true},
		{"*", "a.b", false},
		{"public.>", "public.a", true},
		{"public.>", "public.a.b.c", true},
		{"public.>", "public", false},
		{">", "anything.at.all", true},
		{"a.>.b", "a.x.b", false},    // '>' only last
		{"a.*x", "a.*x", false},      // '*' only as a whole token
		{"a..b", "a..b", false},      // empty token
		{"orders", "orders*", false}, // invalid name
		{"", "", false},
	} {
		if got := matchPattern(tc.p, tc.s); got != tc.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", tc.p, tc.s, got, tc.want)
		}
	}
}

func FuzzMatchPattern(f *testing.F) {
	for _, s := range [][2]string{{"orders", "orders"}, {"user.*.cart", "user.42.cart"}, {"a.>", "a.b.c"}, {">", "x"}, {"*.*", "a.b"}, {"a.>.b", "a.b.b"}, {"", "."}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, p, s string) {
		got := matchPattern(p, s)
		if !validPattern(p) || !validStreamSyntax(s) {
			if got {
				t.Fatalf("matchPattern(%q, %q) = true for an invalid pattern or name", p, s)
			}
			return
		}
		if want := refMatch(strings.Split(p, "."), strings.Split(s, ".")); got != want {
			t.Fatalf("matchPattern(%q, %q) = %v, want %v", p, s, got, want)
		}
		if validStreamSyntax(p) && got != (p == s) {
			t.Fatalf("matchPattern(%q, %q) = %v: a literal pattern matches only itself", p, s, got)
		}
	})
}

func testAuthenticator(tb testing.TB) (*authenticator, []byte) {
	tb.Helper()
	secret := []byte("fuzz secret of at least thirty-two bytes")
	cfg := Config{JWTKey: "unused"}
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	return newAuthenticatorWithKey(secret, "HS256", &cfg), secret
}

func FuzzVerify(f *testing.F) {
	a, _ := testAuthenticator(f)
	claims := jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "bridge": map[string]any{"subscribe": []string{">"}}}
	other, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("another secret, also thirty-two bytes long"))
	if err != nil {
		f.Fatal(err)
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", ".", "..", "a.b.c", other, none, other[:len(other)-3], strings.ToUpper(other)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		if p, err := a.verify(t.Context(), token); err == nil {
			t.Fatalf("verify(%q) = %+v, want an error: an arbitrary string verified", token, p)
		}
	})
}

func TestVerifyReadsGrantsAndExpiry(t *testing.T) {
	t.Parallel()
	a, secret := testAuthenticator(t)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"exp": exp.Unix(), "bridge": map[string]any{"subscribe": []string{"a", "b.*"}, "publish": []string{"x"}},
	}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.verify(t.Context(), tok)
	if err != nil {
		t.Fatalf("verify = %v, want nil", err)
	}
	if !p.expires.Equal(exp) || len(p.subscribe) != 2 || !p.subscribe.allows("b.c") || p.subscribe.allows("x") {
		t.Errorf("verify = %+v, want grants [a b.*] expiring %v", p, exp)
	}
}

func TestParseVerifyKeyInfersAlgorithm(t *testing.T) {
	t.Parallel()
	pemOf := func(pub any) []byte {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec := func(c elliptic.Curve) []byte {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return pemOf(&k.PublicKey)
	}
	for _, tc := range []struct {
		name        string
		key         []byte
		pinned, alg string
	}{
		{"secret", []byte(strings.Repeat("s", 32) + "\n"), "", "HS256"},
		{"secret pinned HS512", []byte(strings.Repeat("s", 64)), "HS512", "HS512"},
		{"RSA", pemOf(&rk.PublicKey), "", "RS256"},
		{"RSA PKCS1", pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rk.PublicKey)}), "", "RS256"},
		{"RSA pinned PS256", pemOf(&rk.PublicKey), "PS256", "PS256"},
		{"P-256", ec(elliptic.P256()), "", "ES256"},
		{"P-384", ec(elliptic.P384()), "", "ES384"},
		{"P-521", ec(elliptic.P521()), "", "ES512"},
		{"Ed25519", pemOf(edPub), "", "EdDSA"},
	} {
		_, alg, err := parseVerifyKey(tc.key, tc.pinned)
		if err != nil || alg != tc.alg {
			t.Errorf("parseVerifyKey(%s, %q) = %q, %v; want %q", tc.name, tc.pinned, alg, err, tc.alg)
		}
	}
}

func TestCloseDelayIsBetween80And100Percent(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for range 1000 {
		d := closeDelay(now, now.Add(10*time.Second))
		if d < 8*time.Second || d > 10*time.Second {
			t.Fatalf("closeDelay(10s left) = %v, want 8s to 10s", d)
		}
	}
	if d := closeDelay(now, now.Add(-time.Second)); d != 0 {
		t.Errorf("closeDelay(expired) = %v, want 0", d)
	}
}
