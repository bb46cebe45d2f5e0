package bridge

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/sse-bridge/bridge/internal/schema"
)

// registerTypes mounts /types and /types/{name} on mux: the JSON Schema of
// every event type the bridge renders, in the mapping in force, computed
// again after each reload of the descriptor sets (internal/schema).
func (s *Server) registerTypes(mux *http.ServeMux, cfg *Config, m *metrics, pubs *grpcAuth) {
	h := s.typesHandler(cfg, m, pubs)
	mux.Handle("/types", h)
	mux.Handle("/types/{name}", h)
}

// typesHandler serves the schemas with the CORS policy of /events. With
// subscriber auth on, it asks for a valid subscriber token (any grants,
// sent as /events takes it): the types describe what the streams carry,
// and a deployment that keeps its streams to token holders keeps their
// shape to them too. A publisher's token (pubs, when publisher auth is on)
// also does, sent as "Authorization: Bearer TOKEN": a publisher granted a
// stream to publish to reads every type's definition through server
// reflection anyway, and one credential then serves `bridge types --url
// --format ts`, which reads both. With --public-streams, anyone may read
// some streams and needs their types, so the schemas are open.
func (s *Server) typesHandler(cfg *Config, m *metrics, pubs *grpcAuth) http.Handler {
	types := schema.NewHandler(s.types, schema.Options{ProtoNames: cfg.JSONProtoNames, EmitDefaults: cfg.JSONEmitDefaults})
	cors := corsPolicy{origins: cfg.CORSOrigins, credentials: s.auth != nil}
	needToken := s.auth != nil && len(cfg.PublicStreams) == 0
	if needToken {
		types.CacheControl = "private, no-cache" // an answer for a token holder
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query, queryErr := url.ParseQuery(r.URL.RawQuery)
		if queryErr == nil && query.Has("access_token") {
			r = stripQueryToken(r, query)
		}
		origin := r.Header.Get("Origin")
		cors.apply(w.Header(), origin)
		if r.Method == http.MethodOptions {
			cors.preflight(w, r)
			return
		}
		if s.auth != nil && !cors.allowed(origin, r.Host) {
			http.Error(w, fmt.Sprintf("origin %q may not read the types: add it to --cors-origins", origin), http.StatusForbidden)
			return
		}
		if needToken && !s.typesToken(w, r, query, m, pubs) {
			return
		}
		types.ServeHTTP(w, r)
	})
}

// typesToken checks the request's subscriber token, or else its publisher's
// token (pubs may be nil), and answers 401 (or 503 when the key set cannot
// be fetched) when there is no valid one; the failure counts as a
// subscriber's.
func (s *Server) typesToken(w http.ResponseWriter, r *http.Request, query url.Values, m *metrics, pubs *grpcAuth) bool {
	token, found, err := s.auth.extractToken(r, query)
	switch {
	case err != nil:
	case !found && query.Has("access_token"):
		err = errQueryTokenOff
	case !found:
		err = errNoToken
	default:
		_, err = s.auth.verify(r.Context(), token)
	}
	if err == nil || pubs.allowTypes(r) {
		return true
	}
	w.Header().Set("Cache-Control", "no-store")
	if errors.Is(err, errJWKSUnavailable) {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "the key set that verifies tokens cannot be fetched now: retry", http.StatusServiceUnavailable)
		return false
	}
	m.authFailed(sideSubscriber, authFailureReason(err))
	w.Header().Set("WWW-Authenticate", wwwAuthenticate(err))
	msg := err.Error()
	if errors.Is(err, errNoToken) {
		msg = noTokenMessage(s.auth.cookie)
	}
	http.Error(w, msg, http.StatusUnauthorized)
	return false
}
