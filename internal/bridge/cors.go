package bridge

import (
	"net/http"
	"slices"
)

// corsPolicy answers cross-origin subscriptions from an allow-list of origins.
// EventSource sends no preflight for a plain GET, so the allow-list decides
// only whether a page on another origin may read the stream; a request from
// an origin not on the list is still served, without CORS headers, and the
// browser withholds the response from that page.
type corsPolicy struct {
	origins []string // exact origins; "*" allows any
}

func (p corsPolicy) any() bool { return slices.Contains(p.origins, "*") }

// apply sets the CORS response headers for a request from origin.
func (p corsPolicy) apply(h http.Header, origin string) {
	if len(p.origins) == 0 {
		return
	}
	if p.any() {
		h.Set("Access-Control-Allow-Origin", "*")
		return
	}
	h.Add("Vary", "Origin") // the answer depends on the origin: caches must not share it
	if origin != "" && slices.Contains(p.origins, origin) {
		h.Set("Access-Control-Allow-Origin", origin)
	}
}

// preflight answers an OPTIONS request: a page that sets headers of its own
// (a polyfill sending Last-Event-ID, say) asks first.
func (p corsPolicy) preflight(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, OPTIONS")
	if r.Header.Get("Access-Control-Request-Method") != "" && w.Header().Get("Access-Control-Allow-Origin") != "" {
		w.Header().Set("Access-Control-Allow-Methods", "GET")
		w.Header().Set("Access-Control-Allow-Headers", "Last-Event-ID, Cache-Control")
		w.Header().Set("Access-Control-Max-Age", "600")
	}
	w.WriteHeader(http.StatusNoContent)
}
