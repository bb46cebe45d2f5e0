package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sse-bridge/bridge/internal/h1stream"
)

// errEvicted is what a write to an evicted connection returns.
var errEvicted = errors.New("bridge: connection evicted")

// sseHandler serves GET /events. It does everything the r3labs handler must
// never be trusted with: method, stream names, CORS, Last-Event-ID (parsed,
// then stripped: the library answers a non-numeric one with 400), and the
// library stream id, which it sets to the connection's own. Then it hands the
// request to the library, with a ResponseWriter that puts a deadline on every
// write.
//
// Checks run cheapest first, and each refusal is decided before anything is
// written: method, Origin, query and stream names (400 for a request that
// can never succeed), then the connect rates and connection counts (shed:
// 200, a jittered retry:, end of stream), then the token and its grants
// (401, 403), the per-subject count, then registration.
type sseHandler struct {
	hub           *hub
	cors          corsPolicy
	auth          *authenticator // nil: subscriber auth off
	maxStreams    int            // per connection; <= 0: no limit
	maxStreamName int            // bytes; zero means MaxStreamName
	limits        *admission     // nil: no connection limits
	proxies       proxyTrust     // whose X-Forwarded-For the limits believe
	retry         time.Duration  // the --retry setting; zero sends no retry:
	eager         bool           // Config.EagerStreams: no stream dozes
	writeTimeout  time.Duration
	metrics       *metrics // nil in tests that need none
	log           *slog.Logger

	// streams counts the streams running on connections taken over from
	// net/http, which http.Server.Shutdown no longer waits for.
	streams sync.WaitGroup
}

// newSSEHandler builds the handler of cfg (validated) for hub h; auth is
// nil when subscriber auth is off.
func newSSEHandler(cfg *Config, h *hub, auth *authenticator, m *metrics) *sseHandler {
	proxies, _ := parseTrustedProxies(cfg.TrustedProxies) // Validate checked them
	return &sseHandler{
		hub:           h,
		cors:          corsPolicy{origins: cfg.CORSOrigins, credentials: auth != nil},
		auth:          auth,
		maxStreams:    cfg.MaxStreamsPerConnection,
		maxStreamName: cfg.MaxStreamName,
		limits:        newAdmission(cfg),
		proxies:       proxies,
		retry:         cfg.Retry,
		eager:         cfg.EagerStreams,
		writeTimeout:  cfg.WriteTimeout,
		metrics:       m,
		log:           cfg.Logger,
	}
}

func (s *sseHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a, ok := s.admit(w, r)
	if !ok {
		return
	}
	// Counted before the connection leaves net/http: http.Server.Shutdown
	// waits for this handler until then, and wait for the stream after.
	s.streams.Add(1)
	if hs := h1stream.New(w, r); hs != nil {
		// The connection is the bridge's now (see internal/h1stream): the stream
		// goes on on a goroutine of its own, and this one returns, so
		// net/http lets go of its buffers. Its request context ends with
		// it; the stream's context keeps only its values.
		parent := context.WithoutCancel(r.Context())
		go func() {
			defer s.streams.Done()
			s.serve(parent, hs, hs, a)
		}()
		return
	}
	s.streams.Done()
	s.serve(r.Context(), w, nil, a) // a.r differs from r only in its URL
}

// wait returns once every stream that runs on a taken-over connection
// ended, or ctx ended first; then it cuts the writes of those still running
// (abort) and waits for them. Call it once the HTTP server shut down (so no
// stream starts any more) and the hub closed.
func (s *sseHandler) wait(ctx context.Context, abort func()) {
	done := make(chan struct{})
	go func() { // ends when the last stream does
		s.streams.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		abort()
		<-done
	}
}

// admitted is a request that passed every check, with what serve needs.
type admitted struct {
	r       *http.Request // the token parameter stripped
	streams []string
	format  Format
	resume  bool
	after   uint64
	expires time.Time // of the token; zero without one
	// release gives back the places the limits reserved; safe to call more
	// than once.
	release func()
}

// admit runs every check of a subscribe request, cheapest first, and answers
// the request itself when one fails (ok false). It runs on net/http's
// connection goroutine, and so do the stages it calls, each a function of
// its own, not inlined: their frames are gone from the stack once they
// return, and the goroutine's stack stays in the size that reading the
// request needed (growing it is a copy per connect; see BenchmarkConnect).
//
//go:noinline
func (s *sseHandler) admit(w http.ResponseWriter, r *http.Request) (_ admitted, ok bool) {
	req, ok := s.checkRequest(w, r)
	if !ok {
		return admitted{}, false
	}
	// Rate and capacity, before any token work: a flood costs no signature
	// checks. The place is held until the handler returns, whatever way:
	// here when a later check refuses, else by the caller (a.release).
	release, reason := s.limits.admit(addrKey(s.proxies.clientIP(req.r)))
	if reason != "" {
		s.shed(w, reason)
		return admitted{}, false
	}
	// Auth comes last among the checks, after the cheap ones, and before
	// registration: a refused stream never gets a frame, replay included.
	subject, expires, granted := s.checkToken(w, req)
	if !granted {
		release()
		return admitted{}, false
	}
	releaseSubject, reason := s.limits.admitSubject(subject)
	if reason != "" {
		release()
		s.shed(w, reason)
		return admitted{}, false
	}
	return admitted{
		r: req.r, streams: req.streams, format: req.format, resume: req.resume, after: req.after, expires: expires,
		// The places go back before the connection leaves the hub's
		// count, so whoever sees the count drop can connect again.
		release: func() { releaseSubject(); release() },
	}, true
}

// subscribeRequest is a subscribe request whose method, origin and query
// passed (checkRequest).
type subscribeRequest struct {
	r       *http.Request // the token parameter stripped
	query   url.Values
	streams []string
	format  Format
	resume  bool
	after   uint64
}

// checkRequest checks what the request itself says: method, Origin, query,
// stream names, format, Last-Event-ID; it answers the request when one
// fails (ok false).
//
//go:noinline
func (s *sseHandler) checkRequest(w http.ResponseWriter, r *http.Request) (_ *subscribeRequest, ok bool) {
	// The token parameter leaves the URL before anything else can see (or
	// log) it; the handler's own copy of the query keeps it.
	query, queryErr := url.ParseQuery(r.URL.RawQuery)
	if queryErr == nil && query.Has("access_token") {
		r = stripQueryToken(r, query)
	}
	if s.auth != nil {
		// Error answers are about this one request and this one token.
		w.Header().Set("Cache-Control", "no-store")
	}
	origin := r.Header.Get("Origin")
	s.cors.apply(w.Header(), origin)
	switch r.Method {
	case http.MethodGet:
	case http.MethodOptions:
		s.cors.preflight(w, r)
		return nil, false
	default:
		w.Header().Set("Allow", "GET, OPTIONS")
		s.refuse(w, rejectMethod, http.StatusMethodNotAllowed, "use GET to subscribe to /events")
		return nil, false
	}

	// Status codes are decided here, before the stream starts: EventSource
	// gives up for good on any non-200, so 400 is only for a request that can
	// never succeed.
	if s.auth != nil && !s.cors.allowed(origin, r.Host) {
		s.refuse(w, rejectOrigin, http.StatusForbidden, fmt.Sprintf("origin %q may not subscribe: add it to --cors-origins", origin))
		return nil, false
	}
	if queryErr != nil {
		s.refuse(w, rejectBadRequest, http.StatusBadRequest, "malformed query string: "+queryErr.Error())
		return nil, false
	}
	streams, reason, err := parseStreams(query["stream"], s.maxStreams, s.maxStreamName)
	if err != nil {
		s.refuse(w, reason, http.StatusBadRequest, err.Error())
		return nil, false
	}
	format, known := parseFormat(query.Get("format"))
	if !known {
		s.refuse(w, rejectBadRequest, http.StatusBadRequest, fmt.Sprintf("format %q is unknown: use data (the default), envelope or cloudevents", query.Get("format")))
		return nil, false
	}
	// A Last-Event-ID is never an error: the browser would stop
	// reconnecting. One that is not an id at all is treated as absent; an
	// all-digit one too large to be an id resumes, and gets a reset
	// (parseEventID).
	lastID := r.Header.Get("Last-Event-ID")
	if lastID == "" {
		lastID = query.Get("lastEventId")
	}
	after, resume := parseEventID(lastID)
	if lastID != "" && !resume {
		s.log.Debug("ignore garbled Last-Event-ID", "value", lastID)
	}
	return &subscribeRequest{r: r, query: query, streams: streams, format: format, resume: resume, after: after}, true
}

// checkToken checks the request's token and grants when subscriber auth is
// on (see authorize), and returns the token's subject and expiry (zero
// without a token, or without auth).
//
//go:noinline
func (s *sseHandler) checkToken(w http.ResponseWriter, req *subscribeRequest) (subject string, expires time.Time, ok bool) {
	if s.auth == nil {
		return "", time.Time{}, true
	}
	p, granted := s.authorize(w, req.r, req.query, req.streams)
	return p.subject, p.expires, granted
}

// serve registers an admitted request's connection and streams to it until
// the client goes (parent, the request's context, ends; or, on a taken-over
// connection, its read fails), the connection is evicted or the bridge shuts
// down.
//
// hs is the connection when the handler took it over (w is then hs too), nil
// when net/http writes the response: serve then ends the response by
// closing hs, once the client went or the stream ended, whichever first.
func (s *sseHandler) serve(parent context.Context, w http.ResponseWriter, hs *h1stream.Stream, a admitted) {
	defer a.release()
	ctx, cancelCtx := context.WithCancel(parent)
	defer cancelCtx()
	cancel := cancelCtx
	var out streamOutput = hs
	if hs == nil {
		out = http.NewResponseController(w)
	} else {
		// Whoever waits in the connection's Read (doze, or the library's
		// goroutine through h1stream.WatchContext) stops when the stream ends.
		cancel = func() {
			cancelCtx()
			hs.StopWatching()
		}
	}
	c, err := s.hub.register(a.streams, a.format, a.resume, a.after, out, cancel)
	if err != nil {
		// Shutting down: a retry (to this node later, or another) will work.
		s.shed(w, rejectDraining)
		if hs != nil {
			a.release() // before the close, as below
			hs.Close(true)
		}
		return
	}

	if !a.expires.IsZero() {
		// Close before the token expires, with a short retry:, so the
		// browser reconnects soon with the refreshed token (its cookie).
		t := time.AfterFunc(closeDelay(time.Now(), a.expires), func() {
			s.hub.closeWithRetry(c, evictTokenExpiry, jitter(tokenRetryFrom, tokenRetryTo))
		})
		defer t.Stop()
	}

	// The library's request holds only what the library reads: the
	// connection's own stream and the context. The client's request, with its
	// headers, is not kept for the connection's lifetime, and its
	// Last-Event-ID, parsed above, stays out (the library answers a
	// non-numeric one with 400).
	a.r = nil
	dw := &deadlineWriter{ResponseWriter: w, hub: s.hub, c: c, ctx: ctx, timeout: s.writeTimeout, retry: connectRetry(s.retry)}
	// A stream with nothing to replay (a resume once its history read found
	// nothing new) waits for its first event before the library sees it
	// (doze.go), unless streams are eager; any other goes to the library
	// now.
	if s.eager || (a.resume && !s.hub.checkResume(ctx, c)) || s.doze(ctx, dozerOf(hs), dw, c) {
		libCtx := context.Context(ctx) // ctx, or ctx wrapped by h1stream.WatchContext
		if hs != nil {
			// The library's own goroutine that waits for the client to go
			// watches the connection.
			libCtx = h1stream.WatchContext(ctx, hs, cancelCtx)
		}
		s.hub.openLibStream(c)
		s.hub.lib.ServeHTTP(dw, (&http.Request{Method: http.MethodGet, URL: &url.URL{RawQuery: "stream=" + c.id}}).WithContext(libCtx))
	}
	lastWords(dw, c)

	// The library returns only once ctx ended and its subscriber is gone;
	// doze, once it ended.
	c.wmu.Lock()
	c.finished = true
	c.wmu.Unlock()
	cancel()
	if dw.replayDone != nil {
		<-dw.replayDone
	}
	a.release()
	s.hub.unregister(c)
	if hs != nil {
		// Only now, so a client that sees its connection close finds its
		// places free when it comes back (net/http too closes only after
		// the handler returned). A clean end (the client went, a shutdown, a
		// token expiry) ends the body properly; after a failed write or an
		// eviction a frame may be cut short, and the connection just closes.
		hs.Close(!dw.broken && !c.evicted.Load())
	}
	if dw.dying {
		<-s.hub.dying // the next dying connection's turn (deadlineWriter.die)
		s.hub.finishedDying()
	}
}

// authorize checks the request's token and grants, and answers 401 or 403
// when they do not let it read every one of streams (each refusal counted
// by reason), or sheds the request when the key set cannot be fetched (a
// retry fixes that). It returns what the token says (the zero principal
// without a token) and whether the request may go on.
func (s *sseHandler) authorize(w http.ResponseWriter, r *http.Request, query url.Values, streams []string) (_ principal, ok bool) {
	token, found, err := s.auth.extractToken(r, query)
	var p principal
	switch {
	case err != nil:
	case found:
		p, err = s.auth.verify(r.Context(), token)
	case len(s.auth.refused(streams, p)) > 0 && query.Has("access_token"):
		err = errQueryTokenOff
	case len(s.auth.refused(streams, p)) > 0:
		err = errNoToken
	}
	if errors.Is(err, errJWKSUnavailable) {
		s.shed(w, rejectJWKSUnavailable)
		return principal{}, false
	}
	if err != nil {
		reason := authFailureReason(err)
		s.metrics.authFailed(sideSubscriber, reason)
		s.log.Info("subscriber refused: 401", "reason", reason, "streams", streams, "client", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", wwwAuthenticate(err))
		msg := err.Error()
		if errors.Is(err, errNoToken) {
			msg = noTokenMessage(s.auth.cookie)
		}
		http.Error(w, msg, http.StatusUnauthorized)
		return principal{}, false
	}
	if refused := s.auth.refused(streams, p); len(refused) > 0 {
		s.metrics.authFailed(sideSubscriber, authReasonNotGranted)
		s.log.Debug("subscriber refused: 403", "refused", refused)
		http.Error(w, fmt.Sprintf("your token does not grant the streams %s: subscribe to granted streams only, or get a token that grants these", strings.Join(refused, ", ")), http.StatusForbidden)
		return principal{}, false
	}
	return p, true
}

// noTokenMessage is the 401 body for a request without a token: it names
// the cookie the bridge reads.
func noTokenMessage(cookie string) string {
	return "no token: log in, then send it as the cookie " + cookie + ", or as Authorization: Bearer"
}

// wwwAuthenticate is the challenge of a 401 for err, as RFC 6750 (section 3)
// has it: the realm alone when the request carried no credential, else the
// error code and a short description from a fixed set (never anything from
// the token).
func wwwAuthenticate(err error) string {
	var te *tokenError
	if !errors.As(err, &te) || te.rfcCode == "" {
		return `Bearer realm="bridge"`
	}
	return fmt.Sprintf(`Bearer realm="bridge", error=%q, error_description=%q`, te.rfcCode, strings.ReplaceAll(te.reason, "_", " "))
}

// stripQueryToken returns r with access_token removed from its URL (and
// RequestURI), so no later reader of the request sees the token.
func stripQueryToken(r *http.Request, query url.Values) *http.Request {
	rest := make(url.Values, len(query))
	for k, v := range query {
		if k != "access_token" {
			rest[k] = v
		}
	}
	r2 := r.WithContext(r.Context())
	u := *r.URL
	u.RawQuery = rest.Encode()
	r2.URL = &u
	r2.RequestURI = u.RequestURI()
	return r2
}

// parseStreams validates and de-duplicates the stream parameters, keeping
// their order: at most limit distinct streams (no limit when limit <= 0),
// each a valid name of at most maxName bytes. On error, reason is the
// rejection reason to count.
func parseStreams(names []string, limit, maxName int) (_ []string, reason string, _ error) {
	if len(names) == 0 {
		return nil, rejectBadRequest, errors.New("no stream given: subscribe with /events?stream=NAME (repeat stream= for several)")
	}
	out := make([]string, 0, min(len(names), max(limit, 1)))
	for _, n := range names {
		if !validStreamName(n, maxName) {
			if validStreamSyntax(n) {
				reason = rejectStreamNameTooLong
			} else {
				reason = rejectBadRequest
			}
			return nil, reason, streamNameError(n, maxName)
		}
		if slices.Contains(out, n) {
			continue
		}
		// Refused as soon as it is over, so thousands of names in one query
		// cost no quadratic de-duplication.
		if limit > 0 && len(out) == limit {
			return nil, rejectTooManyStreams, fmt.Errorf("more than %d streams requested: one connection may subscribe to at most %d (--max-streams-per-connection)", limit, limit)
		}
		out = append(out, n)
	}
	return out, "", nil
}

// refuse answers a request that can never succeed with status and msg,
// counting it under reason. A function of its own, not inlined, so that
// admit's frame stays small (see ServeHTTP).
//
//go:noinline
func (s *sseHandler) refuse(w http.ResponseWriter, reason string, status int, msg string) {
	s.metrics.rejected(reason)
	http.Error(w, msg, status)
}

// shed refuses a connect that a retry later will serve (see shed), counting
// it under reason, which also names it in the stream's comment.
func (s *sseHandler) shed(w http.ResponseWriter, reason string) {
	s.metrics.rejected(reason)
	s.log.Debug("subscriber shed", "reason", reason)
	shed(w, jitter(shedRetryLow, shedRetryHigh), reason)
}
