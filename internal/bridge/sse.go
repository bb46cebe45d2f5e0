package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// errEvicted is what a write to an evicted connection returns.
var errEvicted = errors.New("bridge: connection evicted")

// sseHandler serves GET /events. It does everything the r3labs handler must
// never be trusted with: method, stream names, CORS, Last-Event-ID (parsed,
// then stripped: the library answers a non-numeric one with 400), and the
// library stream id, which it sets to the connection's own. Then it hands the
// request to the library, with a ResponseWriter that puts a deadline on every
// write.
type sseHandler struct {
	hub          *hub
	cors         corsPolicy
	auth         *authenticator // nil: subscriber auth off
	maxStreams   int
	writeTimeout time.Duration
	metrics      *metrics // nil in tests that need none
	log          *slog.Logger
}

func (s *sseHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
		return
	default:
		w.Header().Set("Allow", "GET, OPTIONS")
		http.Error(w, "use GET to subscribe to /events", http.StatusMethodNotAllowed)
		return
	}

	// Status codes are decided here, before the stream starts: EventSource
	// gives up for good on any non-200, so 400 is only for a request that can
	// never succeed.
	if s.auth != nil && !s.cors.allowed(origin, r.Host) {
		http.Error(w, fmt.Sprintf("origin %q may not subscribe: add it to --cors-origins", origin), http.StatusForbidden)
		return
	}
	if queryErr != nil {
		http.Error(w, "malformed query string: "+queryErr.Error(), http.StatusBadRequest)
		return
	}
	streams, err := parseStreams(query["stream"], s.maxStreams)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	format, ok := parseFormat(query.Get("format"))
	if !ok {
		http.Error(w, fmt.Sprintf("format %q is unknown: use data (the default), envelope or cloudevents", query.Get("format")), http.StatusBadRequest)
		return
	}
	// A garbled Last-Event-ID is treated as absent, never as an error: the
	// browser would stop reconnecting.
	lastID := r.Header.Get("Last-Event-ID")
	if lastID == "" {
		lastID = query.Get("lastEventId")
	}
	after, resume := parseEventID(lastID)
	if lastID != "" && !resume {
		s.log.Debug("ignore garbled Last-Event-ID", "value", lastID)
	}
	// Auth comes last among the checks, after the cheap ones, and before
	// registration: a refused stream never gets a frame, replay included.
	var expires time.Time
	if s.auth != nil {
		var ok bool
		if expires, ok = s.authorize(w, r, query, streams); !ok {
			return
		}
	}

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	rc := http.NewResponseController(w)
	c, err := s.hub.register(streams, format, resume, after, rc, cancel)
	if err != nil {
		// Shutting down: a retry (to this node later, or another) will work,
		// so answer 200 and end the stream; the browser reconnects.
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		_, _ = fmt.Fprint(w, ": shutting down\n\n")
		return
	}

	if !expires.IsZero() {
		// Close before the token expires, so the browser reconnects with the
		// refreshed one (its cookie); evict, so the close is counted.
		t := time.AfterFunc(closeDelay(time.Now(), expires), func() { s.hub.evict(c, evictTokenExpiry) })
		defer t.Stop()
	}

	// The library's request: a shallow copy with the connection's own stream
	// (r.Clone would copy the headers, held for the connection's lifetime).
	// The header map is this handler's own to change.
	r.Header.Del("Last-Event-ID")
	lr := r.WithContext(ctx)
	u := *r.URL
	u.RawQuery = "stream=" + c.id
	lr.URL = &u
	dw := &deadlineWriter{ResponseWriter: w, hub: s.hub, c: c, ctx: ctx, timeout: s.writeTimeout}
	s.hub.lib.ServeHTTP(dw, lr)

	// The library returns only once ctx ended and its subscriber is gone.
	c.wmu.Lock()
	c.finished = true
	c.wmu.Unlock()
	cancel()
	if dw.replayDone != nil {
		<-dw.replayDone
	}
	s.hub.unregister(c)
}

// authorize checks the request's token and grants, and answers 401 or 403
// when they do not let it read every one of streams. It returns the token's
// expiry (zero without a token) and whether the request may go on.
func (s *sseHandler) authorize(w http.ResponseWriter, r *http.Request, query url.Values, streams []string) (expires time.Time, ok bool) {
	token, found, err := s.auth.extractToken(r, query)
	var p principal
	switch {
	case err != nil:
	case found:
		p, err = s.auth.verify(token)
	case len(s.auth.refused(streams, p)) > 0:
		err = errNoToken
	}
	if err != nil {
		s.log.Debug("subscriber refused: 401", "reason", err.Error(), "streams", streams)
		w.Header().Set("WWW-Authenticate", `Bearer realm="bridge"`)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return time.Time{}, false
	}
	if refused := s.auth.refused(streams, p); len(refused) > 0 {
		s.log.Debug("subscriber refused: 403", "refused", refused)
		http.Error(w, fmt.Sprintf("your token does not grant the streams %s: subscribe to granted streams only, or get a token that grants these", strings.Join(refused, ", ")), http.StatusForbidden)
		return time.Time{}, false
	}
	return p.expires, true
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
// their order.
func parseStreams(names []string, limit int) ([]string, error) {
	if len(names) == 0 {
		return nil, errors.New("no stream given: subscribe with /events?stream=NAME (repeat stream= for several)")
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		if !ValidStreamName(n) {
			return nil, streamNameError(n)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if len(out) > limit {
		return nil, fmt.Errorf("%d streams requested: one connection may subscribe to at most %d", len(out), limit)
	}
	return out, nil
}

// deadlineWriter gives every write to the browser a deadline, so a peer that
// stops reading costs one write timeout and is then dropped; the library
// ignores write errors, so a failed write also evicts the connection. The
// deadline is re-armed at most every eighth of the timeout, not before each
// of the library's several writes per frame: each write then has between 7/8
// of the timeout and all of it.
//
// The library calls Write and Flush from its handler goroutine only.
type deadlineWriter struct {
	http.ResponseWriter
	hub     *hub
	c       *conn
	ctx     context.Context // the connection's: replay ends with it
	timeout time.Duration
	armed   time.Time
	started bool // the library's first Flush, of the headers, happened
	// replayDone is closed when the connection's replay goroutine ended;
	// nil when the connection needed none.
	replayDone <-chan struct{}
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	if err := w.arm(); err != nil {
		return 0, err
	}
	n, err := w.ResponseWriter.Write(p)
	if err != nil {
		w.failed(err)
	}
	return n, err
}

// Flush implements [http.Flusher], which the library requires. The library
// flushes after every frame; this flushes for real only once no frame handed
// to the library waits behind this one (conn.queued), coalescing a burst
// into few writes. The bufio buffer under the ResponseWriter still spills
// to the socket when full, so nothing waits on a flush that never comes.
func (w *deadlineWriter) Flush() {
	if w.started && w.c.queued.Add(-1) > 0 {
		return
	}
	if !w.started {
		// The library flushes the headers once it registered the
		// subscriber: the connection can go live.
		w.started = true
		w.replayDone = w.hub.subscribed(w.ctx, w.c)
	}
	if w.arm() != nil {
		return
	}
	if err := w.c.rc.Flush(); err != nil {
		w.failed(err)
	}
}

// Unwrap lets [http.ResponseController] reach the server's writer.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *deadlineWriter) arm() error {
	if w.c.evicted.Load() {
		return errEvicted
	}
	now := time.Now()
	if now.Sub(w.armed) < w.timeout/8 {
		return nil
	}
	w.c.wmu.Lock()
	defer w.c.wmu.Unlock()
	// Checked again under wmu: an eviction sets the deadline to now under the
	// same lock, and must not be undone by a re-arm.
	if w.c.evicted.Load() {
		return errEvicted
	}
	if err := w.c.rc.SetWriteDeadline(now.Add(w.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("set write deadline: %w", err)
	}
	w.armed = now
	return nil
}

// failed handles a write error. A deadline means the peer stopped reading;
// anything else means it went away. Either way the connection is over.
func (w *deadlineWriter) failed(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		w.hub.evict(w.c, evictWriteDeadline)
		return
	}
	w.c.cancel()
}
