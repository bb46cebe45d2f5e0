package bridge

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// Subscriber tokens verified with a JSON Web Key Set (--jwks): a file, read
// at start and on Server.ReloadJWKS (SIGHUP), or an identity provider's URL,
// fetched at start, again in the background, and when a token names a key id
// the set does not hold (a key rotation), at a bounded rate.
//
// Only asymmetric keys count. An HMAC key (kty "oct") in a key set is
// refused: a key set is published, so whoever can read it could sign
// tokens; an HMAC secret belongs in --jwt-key. A token's algorithm must be
// the one its key declares (alg), or, for a key that declares none, one of
// its family (RS*/PS* for RSA, the curve's ES* for ECDSA, EdDSA for
// Ed25519); "none" and HS* never get to the key lookup.

// JWKS timing. A failed fetch never blocks a subscriber for long: the
// request is shed with a retry instead.
const (
	// jwksRefreshInterval is how often a URL's key set is fetched again in
	// the background: keys that were removed stop working within it.
	jwksRefreshInterval = 15 * time.Minute
	// jwksUnknownKIDEvery is the least time between two fetches caused by
	// tokens with an unknown key id, so that made-up ids cannot turn the
	// bridge into a load generator against the identity provider.
	jwksUnknownKIDEvery = 30 * time.Second
	// jwksFetchTimeout bounds one fetch, and how long a subscriber request
	// may wait for the rate limit and the fetch its unknown key id causes.
	jwksFetchTimeout = 5 * time.Second
	// jwksMaxBody is the largest key set read from a URL.
	jwksMaxBody = 1 << 20
)

// jwksAlgs are the algorithms a key set can verify: asymmetric only.
var jwksAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// rejectJWKSUnavailable is the bridge_rejections_total reason of a
// subscriber shed because the key set could not be fetched.
const rejectJWKSUnavailable = "jwks_unavailable"

// errJWKSUnavailable: the key set could not be fetched (not yet, or not
// when a token's unknown key id asked for it). A plain retry fixes it, so
// the subscriber is shed, not refused.
var errJWKSUnavailable = errors.New("the token signing keys are unavailable")

// jwksKeys holds the usable keys of a key set and finds the one that
// verifies a token. Safe for concurrent use. For a URL, start must be
// called before the first lookup; until then, and while the key set has
// never been fetched, lookups fail with errJWKSUnavailable.
type jwksKeys struct {
	source string // the file or URL, for logs and errors
	remote bool
	log    *slog.Logger

	// keys holds the usable keys: replaced whole by a reload (a new
	// storage) or a fetch (the same storage's KeyReplaceAll), so a key
	// removed from the set stops working.
	keys atomic.Pointer[jwkset.MemoryJWKSet]
	n    atomic.Int64 // how many keys, for logs
	// kf finds a token's key by kid in lookupKeys and checks the token's
	// alg against the key's.
	kf keyfunc.Keyfunc

	// URL only.
	unknownKIDEvery time.Duration
	transport       *http.Transport
	client          jwkset.Storage // fetches the set, rate-limited, for an unknown kid; set by start
	refreshMu       sync.Mutex     // one unknown-kid fetch at a time
	loaded          atomic.Bool    // a fetch succeeded
	failing         atomic.Bool    // the last fetch failed
}

// newJWKSKeys reads a key set file, or prepares a URL's fetches (start
// fetches). caFile, when set, holds the PEM CAs that sign the URL's
// certificate; unknownKIDEvery is the least time between two fetches
// caused by unknown key ids.
func newJWKSKeys(source, caFile string, unknownKIDEvery time.Duration, log *slog.Logger) (*jwksKeys, error) {
	k := &jwksKeys{source: source, remote: isJWKSURL(source), log: log, unknownKIDEvery: unknownKIDEvery}
	var err error
	if k.kf, err = keyfunc.New(keyfunc.Options{Storage: lookupKeys{k}}); err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", source, err)
	}
	if !k.remote {
		if err := k.reload(); err != nil {
			return nil, err
		}
		return k, nil
	}
	k.keys.Store(jwkset.NewMemoryStorage())
	tr := http.DefaultTransport.(*http.Transport).Clone() //nolint:forcetypeassert // documented to be an *http.Transport
	if caFile != "" {
		pem, err := os.ReadFile(caFile) //nolint:gosec // G304: the operator names the file
		if err != nil {
			return nil, fmt.Errorf("read JWKS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("JWKS CA file %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	k.transport = tr
	return k, nil
}

// isJWKSURL reports whether --jwks names a URL rather than a file.
func isJWKSURL(s string) bool {
	return strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://")
}

// checkJWKSURL refuses a URL the keys could be swapped on the way from:
// plain http is for loopback only (a local test identity provider).
func checkJWKSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("JWKS URL %q is not a URL", s)
	}
	if u.Scheme == "https" {
		return nil
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("JWKS URL %q: use https; anyone on the path of a plain http fetch could replace the keys (http is accepted for loopback only)", s)
}

// start fetches a URL's key set (bounded by jwksFetchTimeout; on failure the
// bridge starts anyway and sheds subscribers until a fetch succeeds) and
// starts the library's background refresh, which ends when ctx does. No-op
// for a file.
func (k *jwksKeys) start(ctx context.Context) error {
	if !k.remote {
		return nil
	}
	hc := &http.Client{Transport: limitBody{k.transport, jwksMaxBody}, Timeout: jwksFetchTimeout}
	store, err := jwkset.NewStorageFromHTTP(k.source, jwkset.HTTPClientStorageOptions{
		Client:                    hc,
		Ctx:                       ctx, // ends the refresh goroutine
		HTTPTimeout:               jwksFetchTimeout,
		NoErrorReturnFirstHTTPReq: true,
		RefreshErrorHandler:       k.fetchFailed,
		RefreshInterval:           jwksRefreshInterval,
		Storage:                   filteredKeys{k.keys.Load(), k},
	})
	if err != nil {
		return fmt.Errorf("JWKS %s: %w", k.source, err)
	}
	k.client, err = jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{k.source: store},
		RateLimitWaitMax:  jwksFetchTimeout,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(k.unknownKIDEvery), 1),
	})
	if err != nil {
		return fmt.Errorf("JWKS %s: %w", k.source, err)
	}
	if k.loaded.Load() {
		k.log.Info("fetched JWKS", "url", k.source, "keys", k.count())
	} else {
		k.log.Warn("JWKS unreachable: subscribers with tokens are asked to retry until a fetch succeeds", "url", k.source)
	}
	return nil
}

// stop closes the idle connections of a URL's fetches. Call it once ctx
// of start ended.
func (k *jwksKeys) stop() {
	if k.transport != nil {
		k.transport.CloseIdleConnections()
	}
}

// reload reads a key set file again, into a new storage that replaces the
// one in force; on error the keys in force stay. A URL is fetched in the
// background instead: nothing to do.
func (k *jwksKeys) reload() error {
	if k.remote {
		return nil
	}
	set, err := readJWKSFile(k.source)
	if err != nil {
		return err
	}
	store, err := set.ToStorage()
	if err != nil {
		return fmt.Errorf("JWKS file %s: %w", k.source, err)
	}
	k.keys.Store(store.(*jwkset.MemoryJWKSet)) //nolint:forcetypeassert // ToStorage makes a memory storage
	k.n.Store(int64(len(set.Keys)))
	return nil
}

// readJWKSFile reads and checks a key set file.
func readJWKSFile(path string) (jwkset.JWKSMarshal, error) {
	raw, err := os.ReadFile(path) //nolint:gosec // G304: the operator names the file
	if err != nil {
		return jwkset.JWKSMarshal{}, fmt.Errorf("read JWKS file: %w", err)
	}
	set, err := parseJWKSFile(raw)
	if err != nil {
		return jwkset.JWKSMarshal{}, fmt.Errorf("JWKS file %s: %w", path, err)
	}
	return set, nil
}

// parseJWKSFile parses a key set and refuses it whole when any key is not
// usable: a file is under the operator's control, so a key that would be
// silently ignored is a mistake to report.
func parseJWKSFile(raw []byte) (jwkset.JWKSMarshal, error) {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(raw, &set); err != nil {
		return set, fmt.Errorf("not a JWK Set (RFC 7517 §5, {\"keys\": [...]}): %w", err)
	}
	if len(set.Keys) == 0 {
		return set, errors.New(`no keys: a JWK Set has {"keys": [...]}`)
	}
	for i, m := range set.Keys {
		j, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{Private: true}, jwkset.JWKValidateOptions{})
		if err == nil {
			err = checkJWK(j)
		}
		if err != nil {
			return set, fmt.Errorf("key %d (kid %q): %w", i, m.KID, err)
		}
	}
	return set, nil
}

// checkJWK says why a key cannot verify subscriber tokens, if it cannot.
func checkJWK(j jwkset.JWK) error {
	m := j.Marshal()
	var algs []string
	switch key := j.Key().(type) {
	case []byte:
		return errors.New(`is a symmetric key (kty "oct"): a key set is published, so anyone who can read it could sign tokens; give an HMAC secret with --jwt-key instead`)
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return errors.New("holds private key material: publish the public keys only")
	default:
		algs = keyAlgs(key)
		if k, ok := key.(*rsa.PublicKey); ok && k.N.BitLen() < 2048 {
			return fmt.Errorf("is an RSA key of %d bits: use at least 2048", k.N.BitLen())
		}
		if algs == nil {
			return fmt.Errorf("is of type %T (kty %q), which cannot verify tokens: use RSA, ECDSA (P-256, P-384, P-521) or Ed25519", key, m.KTY)
		}
	}
	if m.USE != "" && m.USE != jwkset.UseSig {
		return fmt.Errorf("is for use %q, not for signatures (\"sig\")", m.USE)
	}
	if m.ALG != "" && !slices.Contains(algs, string(m.ALG)) {
		return fmt.Errorf("declares alg %q, which does not fit its key (%s)", m.ALG, strings.Join(algs, ", "))
	}
	return nil
}

// keyAlgs lists the algorithms a public key can verify; nil for any other
// key.
func keyAlgs(key any) []string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{"ES256"}
		case elliptic.P384():
			return []string{"ES384"}
		case elliptic.P521():
			return []string{"ES512"}
		}
	case ed25519.PublicKey:
		return []string{"EdDSA"}
	}
	return nil
}

// keyFits reports whether a token of algorithm alg may be verified with j:
// the key's declared alg, or, when it declares none, one of its family.
func keyFits(j jwkset.JWK, alg string) bool {
	if a := j.Marshal().ALG; a != "" {
		return string(a) == alg
	}
	return slices.Contains(keyAlgs(j.Key()), alg)
}

// keyfunc returns the jwt.Keyfunc that finds the key of a token: by its
// kid, fetching the set again (rate-limited) when the kid is unknown; a
// token without kid is tried against every key that fits its algorithm.
// Errors: errJWKSUnavailable, errTokenUnknownKey, errTokenInvalid.
func (k *jwksKeys) keyfunc(ctx context.Context) jwt.Keyfunc {
	byKID := k.kf.KeyfuncCtx(ctx)
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		if _, ok := t.Header["kid"]; !ok {
			return k.keySet(ctx, alg)
		}
		// keyfunc refuses a token whose alg differs from its key's declared
		// one; a key that declares none fits its family only.
		key, err := byKID(t)
		switch {
		case errors.Is(err, errJWKSUnavailable), errors.Is(err, errTokenUnknownKey):
			return nil, err
		case err != nil, !slices.Contains(keyAlgs(key), alg):
			return nil, errTokenInvalid
		}
		return key, nil
	}
}

// lookup finds the key kid, fetching the set again when it is unknown.
func (k *jwksKeys) lookup(ctx context.Context, kid string) (jwkset.JWK, error) {
	if j, err := k.keys.Load().KeyRead(ctx, kid); err == nil {
		return j, nil
	}
	if !k.remote {
		return jwkset.JWK{}, errTokenUnknownKey
	}
	if k.client == nil {
		return jwkset.JWK{}, errJWKSUnavailable
	}
	// One fetch at a time: the tokens of a rotation arrive together, and
	// those waiting here find the key the first one fetched instead of
	// being refused by the rate limit.
	k.refreshMu.Lock()
	defer k.refreshMu.Unlock()
	if j, err := k.keys.Load().KeyRead(ctx, kid); err == nil {
		return j, nil
	}
	if j, err := k.client.KeyRead(ctx, kid); err == nil {
		return j, nil
	}
	if k.unavailable() {
		return jwkset.JWK{}, errJWKSUnavailable
	}
	return jwkset.JWK{}, errTokenUnknownKey
}

// keySet returns the keys that fit alg, for a token without kid.
func (k *jwksKeys) keySet(ctx context.Context, alg string) (any, error) {
	fitting := func() []jwt.VerificationKey {
		all, _ := k.keys.Load().KeyReadAll(ctx) // a memory storage never fails
		var out []jwt.VerificationKey
		for _, j := range all {
			if keyFits(j, alg) {
				out = append(out, j.Key())
			}
		}
		return out
	}
	keys := fitting()
	if len(keys) == 0 && k.remote && k.client != nil && k.unavailable() {
		// Never fetched, or the last fetch failed: fetch now (rate-limited,
		// as for an unknown kid) rather than wait for the next background
		// refresh. The id is one no key has: it only triggers the fetch.
		k.refreshMu.Lock()
		if keys = fitting(); len(keys) == 0 {
			_, _ = k.client.KeyRead(ctx, "")
			keys = fitting()
		}
		k.refreshMu.Unlock()
	}
	switch {
	case len(keys) > 0:
		return jwt.VerificationKeySet{Keys: keys}, nil
	case k.unavailable():
		return nil, errJWKSUnavailable
	default:
		return nil, errTokenUnknownKey
	}
}

// unavailable reports whether a URL's key set was never fetched or its last
// fetch failed.
func (k *jwksKeys) unavailable() bool {
	return k.remote && (!k.loaded.Load() || k.failing.Load())
}

// count returns how many usable keys are loaded.
func (k *jwksKeys) count() int { return int(k.n.Load()) }

// fetchFailed is the library's refresh error handler.
func (k *jwksKeys) fetchFailed(_ context.Context, err error) {
	k.failing.Store(true)
	k.log.Warn("fetch JWKS: keeping the keys fetched before", "url", k.source, "err", err)
}

// lookupKeys is the storage keyfunc reads: the usable keys in force, where
// an unknown kid makes a URL's set be fetched again (see lookup).
type lookupKeys struct{ k *jwksKeys }

var _ jwkset.Storage = lookupKeys{}

func (l lookupKeys) KeyRead(ctx context.Context, kid string) (jwkset.JWK, error) {
	return l.k.lookup(ctx, kid)
}

// The rest of jwkset.Storage is that of the storage in force.
func (l lookupKeys) KeyDelete(ctx context.Context, kid string) (bool, error) {
	return l.k.keys.Load().KeyDelete(ctx, kid)
}

func (l lookupKeys) KeyReadAll(ctx context.Context) ([]jwkset.JWK, error) {
	return l.k.keys.Load().KeyReadAll(ctx)
}

func (l lookupKeys) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	return l.k.keys.Load().KeyReplaceAll(ctx, given)
}

func (l lookupKeys) KeyWrite(ctx context.Context, j jwkset.JWK) error {
	return l.k.keys.Load().KeyWrite(ctx, j)
}

func (l lookupKeys) JSON(ctx context.Context) (json.RawMessage, error) {
	return l.k.keys.Load().JSON(ctx)
}

func (l lookupKeys) JSONPublic(ctx context.Context) (json.RawMessage, error) {
	return l.k.keys.Load().JSONPublic(ctx)
}

func (l lookupKeys) JSONPrivate(ctx context.Context) (json.RawMessage, error) {
	return l.k.keys.Load().JSONPrivate(ctx)
}

func (l lookupKeys) JSONWithOptions(ctx context.Context, m jwkset.JWKMarshalOptions, v jwkset.JWKValidateOptions) (json.RawMessage, error) {
	return l.k.keys.Load().JSONWithOptions(ctx, m, v)
}

func (l lookupKeys) Marshal(ctx context.Context) (jwkset.JWKSMarshal, error) {
	return l.k.keys.Load().Marshal(ctx)
}

func (l lookupKeys) MarshalWithOptions(ctx context.Context, m jwkset.JWKMarshalOptions, v jwkset.JWKValidateOptions) (jwkset.JWKSMarshal, error) {
	return l.k.keys.Load().MarshalWithOptions(ctx, m, v)
}

// filteredKeys is the storage a URL's fetches write to: each successful
// fetch replaces the keys with the usable ones of the set, and drops the
// others with a warning (a published set is not the operator's to fix).
type filteredKeys struct {
	*jwkset.MemoryJWKSet
	k *jwksKeys
}

func (f filteredKeys) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	kept := make([]jwkset.JWK, 0, len(given))
	for _, j := range given {
		if err := checkJWK(j); err != nil {
			f.k.log.Warn("JWKS key ignored", "url", f.k.source, "kid", j.Marshal().KID, "reason", err.Error())
			continue
		}
		kept = append(kept, j)
	}
	if err := f.MemoryJWKSet.KeyReplaceAll(ctx, kept); err != nil {
		return err
	}
	f.k.n.Store(int64(len(kept)))
	if len(kept) == 0 {
		f.k.log.Warn("JWKS holds no usable key: every token is refused", "url", f.k.source)
	}
	f.k.loaded.Store(true)
	f.k.failing.Store(false)
	return nil
}

func (f filteredKeys) KeyWrite(ctx context.Context, j jwkset.JWK) error {
	if err := checkJWK(j); err != nil {
		return err
	}
	return f.MemoryJWKSet.KeyWrite(ctx, j)
}

// limitBody caps the size of a fetched key set: the decoder reads the body
// whole.
type limitBody struct {
	rt    http.RoundTripper
	limit int64
}

func (l limitBody) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, l.limit), resp.Body}
	return resp, nil
}
