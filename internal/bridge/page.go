package bridge

import (
	"embed"
	"net/http"
)

//go:embed page/index.html
var pageFS embed.FS

// pageHandler serves the demo page at /: an EventSource on /events that shows
// each event as it arrives. It is a file embedded in the binary: no build
// step, no CDN.
func pageHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "use GET", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		http.ServeFileFS(w, r, pageFS, "page/index.html")
	})
}
