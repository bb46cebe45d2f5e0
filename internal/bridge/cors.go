package bridge

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// corsPolicy answers cross-origin subscriptions from an allow-list of origins.
// EventSource sends no preflight for a plain GET, so the allow-list decides
// only whether a page on another origin may read the stream; a request from
// an origin not on the list is still served, without CORS headers, and the
// browser withholds the response from that page.
//
// With subscriber auth on (credentials), "*" is refused by Config.Validate,
// an allowed origin is echoed with Access-Control-Allow-Credentials, so a
// page may send its cookie (new EventSource(url, {withCredentials: true})),
// and a request from any other origin is refused with 403 before any token
// work (see allowed).
type corsPolicy struct {
	origins     []string // exact origins; "*" allows any
	credentials bool     // subscriber auth is on
}

// allowed reports whether a request from origin (the Origin header, empty
// when the browser sent none) to host may be served: no Origin, the
// bridge's own host, or an origin on the list.
func (p corsPolicy) allowed(origin, host string) bool {
	if origin == "" || p.any() || slices.Contains(p.origins, origin) {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, host) && (u.Scheme == "http" || u.Scheme == "https")
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
		if p.credentials {
			h.Set("Access-Control-Allow-Credentials", "true")
		}
	}
}

// preflight answers an OPTIONS request: a page that sets headers of its own
// (a polyfill sending Last-Event-ID, say) asks first.
func (p corsPolicy) preflight(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, OPTIONS")
	if r.Header.Get("Access-Control-Request-Method") != "" && w.Header().Get("Access-Control-Allow-Origin") != "" {
		w.Header().Set("Access-Control-Allow-Methods", "GET")
		allow := "Last-Event-ID, Cache-Control"
		if p.credentials {
			allow += ", Authorization"
		}
		w.Header().Set("Access-Control-Allow-Headers", allow)
		w.Header().Set("Access-Control-Max-Age", "600")
	}
	w.WriteHeader(http.StatusNoContent)
}
