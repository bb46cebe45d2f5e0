package bridge

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// Publisher auth: who may call the gRPC side. One function, authorize,
// decides for every RPC, installed both as the unary and as the stream
// interceptor, so no method (reflection is a streaming RPC) escapes it.

// Reasons of bridge_auth_failures_total{side="publisher"}.
const (
	reasonNoCredential  = "no_credential" //nolint:gosec // a metric label, not a credential
	reasonMalformed     = "malformed"
	reasonBadToken      = "bad_token"
	reasonUnknownCert   = "unknown_cert"
	reasonNotGranted    = "not_granted"
	reasonRateLimited   = "rate_limited"
	reasonProtectedMode = "protected_mode"
)

// healthPrefix is the gRPC health service, open to anyone: load balancers
// and orchestrators probe it without credentials.
const healthPrefix = "/grpc.health.v1.Health/"

// grpcAuth is the gRPC side's gatekeeper. Safe for concurrent use: its
// fields are set once, and the publishers file swaps its version atomically.
type grpcAuth struct {
	pubs     *publishers    // nil: no publishers file
	jwt      *authenticator // nil: JWTs are not publisher credentials
	insecure bool           // protected mode waived (--grpc-insecure)
	metrics  *metrics
	log      *slog.Logger
}

// configured reports whether publisher auth is on; off, protected mode
// decides instead.
func (a *grpcAuth) configured() bool { return a.pubs != nil || a.jwt != nil }

func (a *grpcAuth) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := a.authorize(ctx, info.FullMethod, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (a *grpcAuth) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := a.authorize(ss.Context(), info.FullMethod, nil); err != nil {
		return err
	}
	return handler(srv, ss)
}

// authorize decides whether the call of method may go on; req is the
// request of a unary call, nil for a stream. The error is a gRPC status:
// PermissionDenied in protected mode, Unauthenticated for a missing or bad
// credential, PermissionDenied for a stream not granted, ResourceExhausted
// over the publisher's rate.
//
// The stream grant of Publish is checked here, from the request, rather than
// in the handler: every refusal is then decided in one place, cheapest first
// (identity, grant, rate), the rate bucket is spent only by calls that passed
// the grant, and the handler never runs for a caller who may not publish
// there. The price is that this function knows Publish's request type; a
// future RPC naming a stream must be added to the switch below.
// PublishBatch and PublishStream name a stream per event: they pass here
// as any call of a publisher granted some stream does, and check each
// event with allowEvent.
func (a *grpcAuth) authorize(ctx context.Context, method string, req any) error {
	if strings.HasPrefix(method, healthPrefix) {
		return nil
	}
	if method == bridgev1.BridgeService_Subscribe_FullMethodName || method == bridgev1.BridgeService_History_FullMethodName {
		// Reads follow /events' rules, not the publishers': the handler
		// checks the subscriber token or the publisher's read grants
		// (readAuth, subscribe.go).
		return nil
	}
	if !a.configured() {
		if a.insecure {
			return nil
		}
		addr := peerAddr(ctx)
		if isLocal(addr) {
			return nil
		}
		return a.refuse(ctx, method, reasonProtectedMode, status.Errorf(codes.PermissionDenied,
			"the bridge is in protected mode: with no publisher auth configured it serves only loopback callers, and this call came from %s; "+
				"give publishers credentials with --publishers FILE (or --publisher-jwt), or, on a trusted network only, turn protected mode off with --grpc-insecure",
			addrString(addr)))
	}
	p, reason, err := a.identify(ctx)
	if err != nil {
		return a.refuse(ctx, method, reason, err)
	}
	var stream string
	switch r := req.(type) {
	case *bridgev1.PresenceRequest:
		// Counts are read, not published: no rate is spent. A name that is
		// invalid gets Presence's InvalidArgument.
		for _, s := range r.GetStreams() {
			if ValidStreamName(s) && !p.mayCount(s) {
				return a.refuse(ctx, method, reasonNotGranted, status.Errorf(codes.PermissionDenied,
					"%s may not read the presence of stream %q: ask about streams its grants cover, or add a pattern covering %q to its streams or read patterns",
					p.describe(), s, s))
			}
		}
		return nil
	case *bridgev1.PublishRequest:
		stream = r.GetStream()
		if !ValidStreamName(stream) {
			return nil // never publishable: Publish answers InvalidArgument, saying what to fix
		}
	default:
		// Reflection and any other call: a caller who may publish somewhere
		// may look at the service; one who may publish nowhere may not.
		if len(p.streams) == 0 {
			return a.refuse(ctx, method, reasonNotGranted, status.Errorf(codes.PermissionDenied,
				"%s is granted no stream to publish to: get a credential with publish grants", p.describe()))
		}
		return nil
	}
	return a.allowEvent(ctx, method, p, stream)
}

// allowEvent decides whether publisher p may publish one event to stream,
// a valid stream name: its grants, then its rate (spending one token). The
// error is PermissionDenied or ResourceExhausted, as for authorize. A
// PublishBatch or PublishStream, which authorize lets through for a
// publisher granted any stream, calls it for each event.
func (a *grpcAuth) allowEvent(ctx context.Context, method string, p *publisher, stream string) error {
	if !p.streams.allows(stream) {
		return a.refuse(ctx, method, reasonNotGranted, status.Errorf(codes.PermissionDenied,
			"%s may not publish to stream %q: publish to a stream its grants cover, or add a pattern covering %q to its streams",
			p.describe(), stream, stream))
	}
	if p.limiter != nil && !p.limiter.Allow() {
		return a.refuse(ctx, method, reasonRateLimited, status.Errorf(codes.ResourceExhausted,
			"%s is over its rate of %g events/s (burst %d): slow down, and retry this event later", p.describe(), float64(p.rate), p.burst))
	}
	return nil
}

// allowPresence decides whether an HTTP request on the public listener may
// read the presence of streams: it must carry a publisher's token
// ("Authorization: Bearer TOKEN", as for Publish) whose grants cover every
// stream. It returns 0 when it may, else the HTTP status and a message
// saying what to do. Protected mode does not open it: the public listener
// serves browsers, and counts are not theirs to read.
func (a *grpcAuth) allowPresence(r *http.Request, streams []string) (code int, msg string) {
	if !a.configured() {
		return http.StatusForbidden, "presence is not served on this listener without publisher auth: read it on the admin listener (--admin-addr), or configure publishers (--publishers or --publisher-jwt) and send a publisher's token"
	}
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		a.metrics.authFailed(sidePublisher, reasonNoCredential)
		return http.StatusUnauthorized, "no credential: send a publisher's token as \"Authorization: Bearer TOKEN\""
	}
	p, reason, err := a.identifyHTTP(r, vals)
	if err != nil {
		a.metrics.authFailed(sidePublisher, reason)
		if status.Code(err) == codes.Unavailable {
			return http.StatusServiceUnavailable, status.Convert(err).Message()
		}
		return http.StatusUnauthorized, status.Convert(err).Message()
	}
	for _, s := range streams {
		if !p.mayCount(s) {
			a.metrics.authFailed(sidePublisher, reasonNotGranted)
			return http.StatusForbidden, fmt.Sprintf("%s may not read the presence of stream %q: ask about streams its grants cover", p.describe(), s)
		}
	}
	return 0, ""
}

// allowTypes reports whether an HTTP request carries, as "Authorization:
// Bearer TOKEN", the token of a publisher granted a stream to publish to:
// one who may read the types through server reflection (authorize) may
// read them at /types too. a may be nil (no publisher auth: false).
// Refusals are not counted here: /types counts its own, as a subscriber's.
func (a *grpcAuth) allowTypes(r *http.Request) bool {
	if a == nil || !a.configured() {
		return false
	}
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return false
	}
	p, _, err := a.identifyHTTP(r, vals)
	return err == nil && len(p.streams) > 0
}

// identifyHTTP is identify for an HTTP request whose Authorization header
// values are vals: the publisher they name, as a gRPC call's metadata would.
func (a *grpcAuth) identifyHTTP(r *http.Request, vals []string) (p *publisher, reason string, err error) {
	return a.identify(metadata.NewIncomingContext(r.Context(), metadata.MD{"authorization": vals}))
}

// mayCount reports whether p may read the subscriber count of stream: a
// stream it may publish to or read.
func (p *publisher) mayCount(stream string) bool {
	return p.streams.allows(stream) || p.read.allows(stream)
}

// caller returns the publisher of a call authorize let through, for the
// checks of each of its events (allowEvent); nil when publisher auth is
// off (protected mode decided for the whole call). The error is
// identify's, should the publishers file have changed since.
func (a *grpcAuth) caller(ctx context.Context, method string) (*publisher, error) {
	if a == nil || !a.configured() {
		return nil, nil
	}
	p, reason, err := a.identify(ctx)
	if err != nil {
		return nil, a.refuse(ctx, method, reason, err)
	}
	return p, nil
}

// streamCaller is the caller of a long-lived stream (PublishStream), kept
// current: the credential it opened the stream with may lapse while it
// is open. A JWT expires; a reload of the publishers file drops the entry,
// or changes its grants or rate. Used by the stream's handler only.
type streamCaller struct {
	a      *grpcAuth
	ctx    context.Context
	method string
	p      *publisher    // nil: publisher auth is off
	set    *publisherSet // the file's version p is of, or older
}

// streamCaller identifies the caller of a stream as caller does.
func (a *grpcAuth) streamCaller(ctx context.Context, method string) (*streamCaller, error) {
	var set *publisherSet
	if a != nil && a.pubs != nil {
		// Read before identifying: a reload in between makes the first
		// check identify again, which costs nothing but that.
		set = a.pubs.current()
	}
	p, err := a.caller(ctx, method)
	if err != nil {
		return nil, err
	}
	return &streamCaller{a: a, ctx: ctx, method: method, p: p, set: set}, nil
}

// current returns the caller as of now: the one identified before while its
// token has not expired and the publishers file is the version it came from,
// else identified again against the file in force. An error (Unauthenticated:
// the token expired, or the entry is gone) ends the stream; new grants and
// rates apply from the next event. A JWT caller is not identified again on a
// reload: the file does not decide its grants, its token does.
func (c *streamCaller) current(now time.Time) (*publisher, error) {
	if c.p == nil {
		return nil, nil
	}
	if !c.p.expires.IsZero() {
		if !now.Before(c.p.expires) {
			return nil, c.a.refuse(c.ctx, c.method, authFailureReason(errTokenExpired),
				status.Error(codes.Unauthenticated, "the token expired while the stream was open: open a new stream with a fresh token; an event without a result was not stored"))
		}
		return c.p, nil
	}
	if set := c.a.pubs.current(); set != c.set {
		p, reason, err := c.a.identify(c.ctx)
		if err != nil {
			return nil, c.a.refuse(c.ctx, c.method, reason,
				status.Error(status.Code(err), "the publishers file was reloaded and no longer lets this credential publish ("+status.Convert(err).Message()+"); an event without a result was not stored"))
		}
		c.p, c.set = p, set
	}
	return c.p, nil
}

// refuse counts and logs a refusal (never a credential) and returns err.
func (a *grpcAuth) refuse(ctx context.Context, method, reason string, err error) error {
	a.metrics.authFailed(sidePublisher, reason)
	a.log.Debug("publisher refused", "method", method, "reason", reason, "peer", addrString(peerAddr(ctx)), "code", status.Code(err))
	return err
}

// describe names the publisher in messages.
func (p *publisher) describe() string {
	if p.name == "" {
		return "this token"
	}
	return fmt.Sprintf("publisher %q", p.name)
}

// identify finds the caller's publisher entry. The first credential present
// decides, with no fallback (as for subscribers): the authorization
// metadata, then the verified client certificate. A token is looked up
// among the publishers' token hashes, then, with --publisher-jwt, verified
// as a JWT whose grants claim carries "publish" patterns. On failure reason
// is a fixed label and err an Unauthenticated status saying what to do.
func (a *grpcAuth) identify(ctx context.Context) (p *publisher, reason string, err error) {
	var set *publisherSet
	if a.pubs != nil {
		set = a.pubs.current()
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if vals := md.Get("authorization"); len(vals) > 0 {
		if len(vals) > 1 {
			return nil, reasonMalformed, status.Error(codes.Unauthenticated, "more than one authorization metadata entry: send one, \"authorization: Bearer TOKEN\"")
		}
		token, ok := bearerToken(vals[0])
		if !ok {
			return nil, reasonMalformed, status.Error(codes.Unauthenticated, "the authorization metadata is not \"Bearer TOKEN\": send the publisher's token as \"authorization: Bearer TOKEN\"")
		}
		if set != nil {
			if p := set.byToken(token); p != nil {
				return p, "", nil
			}
		}
		if a.jwt != nil {
			claims, err := a.jwt.verify(ctx, token)
			switch {
			case err == nil:
				// Refused from exp plus the leeway on, as verify would.
				return &publisher{streams: claims.publish, expires: claims.expires.Add(a.jwt.leeway)}, "", nil
			case errors.Is(err, errJWKSUnavailable):
				return nil, authReasonJWKSUnavailable, status.Error(codes.Unavailable, "the token signing keys (--jwks) cannot be fetched right now: retry later")
			case errors.Is(err, errTokenExpired), errors.Is(err, errTokenNotYetValid):
				return nil, reasonBadToken, status.Error(codes.Unauthenticated, "the "+err.Error())
			}
		}
		return nil, reasonBadToken, status.Error(codes.Unauthenticated, "the token is not a publisher's token: check it, or have it added to the publishers file (its SHA-256 as token_sha256)")
	}
	if principal, ok := certPrincipal(ctx); ok {
		if set != nil {
			if p := set.byCert(principal); p != nil {
				return p, "", nil
			}
		}
		return nil, reasonUnknownCert, status.Errorf(codes.Unauthenticated,
			"the client certificate %q is not a publisher: add an entry with \"cert\": %q to the publishers file, or connect with a publisher's certificate or token", principal, principal)
	}
	return nil, reasonNoCredential, status.Error(codes.Unauthenticated,
		"no credential: send the publisher's token as \"authorization: Bearer TOKEN\" metadata (bridge publish --token), or connect with a publisher's client certificate")
}

// bearerToken parses "Bearer TOKEN" (the scheme in any case).
func bearerToken(v string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return tok, true
}

// certPrincipal returns the principal of the caller's client certificate,
// when the TLS handshake verified it against the client CAs: an unverified
// certificate names nobody. See principalOf.
func certPrincipal(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", false
	}
	name := principalOf(info.State.VerifiedChains[0][0])
	return name, name != ""
}

// principalOf names a certificate: its first URI SAN (a SPIFFE id, say),
// else its first DNS SAN, else its subject's common name.
func principalOf(c *x509.Certificate) string {
	switch {
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	default:
		return c.Subject.CommonName
	}
}
