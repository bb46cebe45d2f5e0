package bridge

import (
	"embed"
	"net/http"
)

// The page is three static files embedded in the binary: no build step, no
// CDN, and no inline script or style, so its Content-Security-Policy can
// allow scripts and styles from this origin only.
//
//go:embed page/index.html page/app.js page/style.css
var pageFS embed.FS

// pageCSP lets the page load its own files and talk to its own origin (the
// EventSource on /events), and nothing else.
const pageCSP = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// registerPage mounts the page on mux: / and the files it loads. Other
// methods than GET and HEAD get 405 from the mux.
func registerPage(mux *http.ServeMux) {
	mux.Handle("GET /{$}", pageFile("page/index.html"))
	mux.Handle("GET /app.js", pageFile("page/app.js"))
	mux.Handle("GET /style.css", pageFile("page/style.css"))
}

// nosniff sets X-Content-Type-Options on every HTTP response: the browser
// keeps to the declared Content-Type (text/plain errors, JSON metrics, the
// event stream) and never runs a response as script or style it guessed.
func nosniff(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

// pageFile serves one embedded file. The Content-Type comes from the file's
// extension; nosniff (set for every response) makes the browser keep to it.
func pageFile(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", pageCSP)
		// Embedded files have no modification time to validate a cached
		// copy with, and a new binary may change them: the browser fetches
		// them each time (they are small).
		h.Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, pageFS, name)
	})
}
