package bridge

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Subscriber auth: a JWT verifier with one accepted algorithm, where a token
// comes from, and what it grants. sse.go calls it after the cheap checks
// (method, Origin, stream names) and before the library sees the request.

// minHMACKey is the shortest HMAC secret accepted: RFC 7518 §3.2 asks for a
// key at least as long as the hash output (256 bits for HS256).
const minHMACKey = 32

// authenticator verifies subscriber tokens. Safe for concurrent use: every
// field is set once by newAuthenticator.
type authenticator struct {
	key        any       // []byte, *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	alg        string    // the one algorithm of key; with keys, the pinned one or empty
	keys       *jwksKeys // --jwks: the keys, instead of key
	parser     *jwt.Parser
	claim      string
	queryToken bool
	cookie     string
	public     grantSet
	leeway     time.Duration // the clock skew allowed on exp and nbf
}

// newAuthenticator reads the key file or key set of cfg (validated) and
// builds the verifier; nil, nil when no key is configured (auth off). A key
// set URL is fetched later, by jwksKeys.start.
func newAuthenticator(cfg *Config) (*authenticator, error) {
	if cfg.JWKS != "" {
		keys, err := newJWKSKeys(cfg.JWKS, cfg.JWKSCA, cfg.jwksUnknownKIDEvery, cfg.Logger)
		if err != nil {
			return nil, err
		}
		methods := jwksAlgs
		if cfg.JWTAlg != "" {
			methods = []string{cfg.JWTAlg} // Config.Validate checked it is one of jwksAlgs
		}
		a := newAuthenticatorWithMethods(nil, cfg.JWTAlg, methods, cfg)
		a.keys = keys
		return a, nil
	}
	if cfg.JWTKey == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(cfg.JWTKey)
	if err != nil {
		return nil, fmt.Errorf("read JWT key: %w", err)
	}
	key, alg, err := parseVerifyKey(raw, cfg.JWTAlg)
	if err != nil {
		return nil, fmt.Errorf("JWT key %s: %w", cfg.JWTKey, err)
	}
	return newAuthenticatorWithKey(key, alg, cfg), nil
}

func newAuthenticatorWithKey(key any, alg string, cfg *Config) *authenticator {
	// One algorithm, so "none" and HS/RS confusion (an HMAC token signed
	// with the public key as secret) are refused before any verification.
	return newAuthenticatorWithMethods(key, alg, []string{alg}, cfg)
}

func newAuthenticatorWithMethods(key any, alg string, methods []string, cfg *Config) *authenticator {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(max(cfg.JWTLeeway, 0)),
	}
	if cfg.JWTIssuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.JWTIssuer))
	}
	if cfg.JWTAudience != "" {
		opts = append(opts, jwt.WithAudience(cfg.JWTAudience))
	}
	return &authenticator{
		key:        key,
		alg:        alg,
		parser:     jwt.NewParser(opts...),
		claim:      cfg.JWTClaim,
		queryToken: cfg.AuthQueryToken,
		cookie:     cfg.AuthCookie,
		public:     grantSet(cfg.PublicStreams),
		leeway:     max(cfg.JWTLeeway, 0),
	}
}

// parseVerifyKey turns a key file into a verification key and its one
// algorithm: a PEM public key (RSA, ECDSA or Ed25519), else an HMAC secret
// (the file's bytes, without a trailing newline). pinned, when set, must fit
// the key.
func parseVerifyKey(raw []byte, pinned string) (key any, alg string, err error) {
	if block, _ := pem.Decode(raw); block != nil {
		return parsePEMKey(block, pinned)
	}
	if bytes.Contains(raw, []byte("-----BEGIN")) {
		// Never fall back to using a broken PEM file as an HMAC secret: that
		// is the HS/RS confusion, with the public key as the secret.
		return nil, "", errors.New("looks like PEM but does not parse")
	}
	secret := bytes.TrimRight(raw, "\r\n")
	if len(secret) < minHMACKey {
		return nil, "", fmt.Errorf("an HMAC secret must be at least %d bytes, got %d (openssl rand -hex 32 makes one)", minHMACKey, len(secret))
	}
	alg, err = pick(pinned, "HS256", "HS256", "HS384", "HS512")
	return secret, alg, err
}

func parsePEMKey(block *pem.Block, pinned string) (any, string, error) {
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		return nil, "", fmt.Errorf("PEM block %q is not a public key: give the public key (openssl pkey -pubout), never the private one", block.Type)
	}
	if err != nil {
		return nil, "", fmt.Errorf("parse public key: %w", err)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, "", fmt.Errorf("RSA key of %d bits: use at least 2048", k.N.BitLen())
		}
		alg, err := pick(pinned, "RS256", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
		return k, alg, err
	case *ecdsa.PublicKey:
		var alg string
		switch k.Curve {
		case elliptic.P256():
			alg = "ES256"
		case elliptic.P384():
			alg = "ES384"
		case elliptic.P521():
			alg = "ES512"
		default:
			return nil, "", errors.New("ECDSA key on an unsupported curve: use P-256, P-384 or P-521")
		}
		alg, err := pick(pinned, alg, alg)
		return k, alg, err
	case ed25519.PublicKey:
		alg, err := pick(pinned, "EdDSA", "EdDSA")
		return k, alg, err
	default:
		return nil, "", fmt.Errorf("public key of type %T is not supported: use RSA, ECDSA or Ed25519", pub)
	}
}

// pick returns pinned when it is one of allowed, def when pinned is empty.
func pick(pinned, def string, allowed ...string) (string, error) {
	if pinned == "" {
		return def, nil
	}
	if !slices.Contains(allowed, pinned) {
		return "", fmt.Errorf("--jwt-alg %s does not fit this key: use one of %s", pinned, strings.Join(allowed, ", "))
	}
	return pinned, nil
}

// tokenError is why a subscriber's credential was refused. Its text goes
// into the 401 body and says what to do, never what would help forge a
// token; reason is the metric label and the RFC 6750 error_description
// (a fixed set); rfcCode is the RFC 6750 error code, empty when the request
// carried no credential at all (then none is sent).
type tokenError struct {
	reason, rfcCode, msg string
}

func (e *tokenError) Error() string { return e.msg }

// RFC 6750 error codes.
const (
	rfcInvalidToken   = "invalid_token"
	rfcInvalidRequest = "invalid_request"
)

// Errors of token extraction and verification.
var (
	errNoToken    = &tokenError{authReasonNoToken, "", "no token: log in, then send it as the cookie, or as Authorization: Bearer"}
	errTwoTokens  = &tokenError{authReasonMalformed, rfcInvalidRequest, "more than one Authorization header: send one Authorization: Bearer header"}
	errNotBearer  = &tokenError{authReasonMalformed, rfcInvalidRequest, "the Authorization header is not \"Bearer TOKEN\""}
	errTokenQuery = &tokenError{authReasonMalformed, rfcInvalidRequest, "more than one access_token parameter: send one"}
	// errQueryTokenOff: no token but one in ?access_token=, which is not
	// looked at without --auth-query-token.
	errQueryTokenOff      = &tokenError{authReasonQueryTokenOff, rfcInvalidRequest, "a token in the access_token parameter is not accepted here: send it as Authorization: Bearer or as the cookie, or start the bridge with --auth-query-token"}
	errTokenMalformed     = &tokenError{authReasonMalformed, rfcInvalidToken, "token malformed: it is not a signed JWT (header.payload.signature); get a new token"}
	errTokenExpired       = &tokenError{authReasonExpired, rfcInvalidToken, "token expired: get a new token and reconnect"}
	errTokenNotYetValid   = &tokenError{authReasonNotYetValid, rfcInvalidToken, "token not valid yet (nbf): check the clocks, or get a new token"}
	errTokenNoExpiry      = &tokenError{authReasonNoExpiry, rfcInvalidToken, "token has no expiry (exp), which this bridge requires: get a new token"}
	errTokenBadSignature  = &tokenError{authReasonBadSignature, rfcInvalidToken, "token signature invalid, or signed with an algorithm this bridge does not accept: get a new token"}
	errTokenWrongAudience = &tokenError{authReasonWrongAudience, rfcInvalidToken, "token is for another audience (aud): get a token for this service"}
	errTokenWrongIssuer   = &tokenError{authReasonWrongIssuer, rfcInvalidToken, "token is from another issuer (iss): get a token from the right one"}
	errTokenInvalid       = &tokenError{authReasonBadToken, rfcInvalidToken, "token invalid: get a new token and reconnect"}
	errTokenNoGrants      = &tokenError{authReasonBadGrants, rfcInvalidToken, "token invalid: its grants claim is malformed; get a new token"}
	// errTokenUnknownKey: the token's key is not in the key set (--jwks),
	// even after fetching the set again.
	errTokenUnknownKey = &tokenError{authReasonUnknownKey, rfcInvalidToken, "token invalid: its signing key is unknown; get a new token and reconnect"}
)

// Reasons of bridge_auth_failures_total{side="subscriber"}: a fixed set,
// never derived from what the client sent.
const (
	authReasonNoToken       = "no_token"
	authReasonQueryTokenOff = "query_token_off"
	authReasonMalformed     = "malformed"
	authReasonBadToken      = "bad_token"
	authReasonExpired       = "expired"
	authReasonNotYetValid   = "not_yet_valid"
	authReasonNoExpiry      = "no_expiry"
	authReasonBadSignature  = "bad_signature"
	authReasonWrongAudience = "wrong_audience"
	authReasonWrongIssuer   = "wrong_issuer"
	authReasonUnknownKey    = "unknown_key"
	authReasonBadGrants     = "bad_grants"
	authReasonNotGranted    = "not_granted"
	// authReasonJWKSUnavailable: a publisher's token could not be checked
	// (a subscriber is shed instead, and counted in bridge_rejections_total).
	authReasonJWKSUnavailable = "jwks_unavailable"
)

// authFailureReason maps an error of extractToken or verify to its metric
// reason.
func authFailureReason(err error) string {
	var te *tokenError
	switch {
	case errors.As(err, &te):
		return te.reason
	case errors.Is(err, errJWKSUnavailable):
		return authReasonJWKSUnavailable
	default:
		return authReasonBadToken
	}
}

// jwtError maps what golang-jwt says of a token to the bridge's error.
func jwtError(err error) error {
	switch {
	case errors.Is(err, errJWKSUnavailable), errors.Is(err, errTokenUnknownKey):
		return err // from the key set's keyfunc, as they are
	case errors.Is(err, jwt.ErrTokenMalformed):
		return errTokenMalformed
	case errors.Is(err, jwt.ErrTokenExpired):
		return errTokenExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return errTokenNotYetValid
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return errTokenNoExpiry
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return errTokenWrongAudience
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return errTokenWrongIssuer
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return errTokenBadSignature
	}
	return errTokenInvalid
}

// extractToken finds the request's token: Authorization: Bearer first, then
// ?access_token= (only when allowed), then the cookie. The first present
// wins; found is false when there is none. query is the request's query as
// parsed before access_token was stripped from the URL.
func (a *authenticator) extractToken(r *http.Request, query url.Values) (token string, found bool, err error) {
	if hs := r.Header.Values("Authorization"); len(hs) > 0 {
		if len(hs) > 1 {
			return "", true, errTwoTokens
		}
		scheme, tok, ok := strings.Cut(strings.TrimSpace(hs[0]), " ")
		tok = strings.TrimSpace(tok)
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return "", true, errNotBearer
		}
		return tok, true, nil
	}
	if a.queryToken {
		if vs, ok := query["access_token"]; ok {
			if len(vs) > 1 {
				return "", true, errTokenQuery
			}
			return vs[0], true, nil
		}
	}
	if c, err := r.Cookie(a.cookie); err == nil {
		return c.Value, true, nil
	}
	return "", false, nil
}

// principal is what a verified token says.
type principal struct {
	subscribe grantSet
	publish   grantSet // used only with --publisher-jwt (grpc_auth.go)
	expires   time.Time
	subject   string // the token's sub; empty when it has none
}

// verify checks token (signature, algorithm, exp, nbf, iss, aud) and reads
// its grants. The error is one of the errToken* values, or
// errJWKSUnavailable when the key set could not be fetched (a retry may
// succeed). ctx bounds a key set fetch the token causes.
func (a *authenticator) verify(ctx context.Context, token string) (principal, error) {
	if !compactJWS(token) {
		return principal{}, errTokenMalformed
	}
	claims := jwt.MapClaims{}
	keyfunc := func(*jwt.Token) (any, error) { return a.key, nil }
	if a.keys != nil {
		keyfunc = a.keys.keyfunc(ctx)
	}
	if _, err := a.parser.ParseWithClaims(token, claims, keyfunc); err != nil {
		return principal{}, jwtError(err)
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return principal{}, errTokenNoExpiry
	}
	p := principal{expires: exp.Time}
	p.subject, _ = claims.GetSubject() // a sub that is not a string counts as none
	if raw, ok := claims[a.claim]; ok {
		b, err := json.Marshal(raw)
		if err != nil {
			return principal{}, errTokenNoGrants
		}
		var g struct {
			Subscribe []string `json:"subscribe"`
			Publish   []string `json:"publish"`
		}
		if err := json.Unmarshal(b, &g); err != nil {
			return principal{}, errTokenNoGrants
		}
		p.subscribe, p.publish = g.Subscribe, g.Publish
	}
	return p, nil
}

// compactJWS reports whether token uses only the characters of a JWS in
// compact serialization (RFC 7515 §7.1: base64url parts joined by dots).
// The base64 decoder skips CR and LF, so without this a signed token with
// line breaks added would still verify.
func compactJWS(token string) bool {
	for i := 0; i < len(token); i++ {
		switch c := token[i]; {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return token != ""
}

// refused returns the streams that neither the public patterns nor the
// token's grants cover, in request order.
func (a *authenticator) refused(streams []string, p principal) []string {
	var out []string
	for _, s := range streams {
		if !a.public.allows(s) && !p.subscribe.allows(s) {
			out = append(out, s)
		}
	}
	return out
}

// closeDelay is when a live stream of a token expiring at exp closes: at a
// random point between 80 % and 100 % of its remaining life, so a page's
// connections do not all reconnect at once, and each reconnect carries the
// refreshed token. Zero when the token is already past exp (within leeway).
func closeDelay(now, exp time.Time) time.Duration {
	left := exp.Sub(now)
	if left <= 0 {
		return 0
	}
	return left*4/5 + rand.N(left/5+1) //nolint:gosec // jitter, not a secret
}
