package bridge

import (
	"net/http"
	"net/http/pprof"
	"sync/atomic"
)

// readinessReporter is implemented by engines that can be unusable while the
// process runs (NATS down); the memory engine is always ready.
type readinessReporter interface {
	Ready() error
}

// healthzHandler answers /healthz: the process is alive and serving HTTP.
func healthzHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
}

// readyzHandler answers /readyz: 200 while the bridge takes traffic, 503 with
// the reason while it drains or its engine is unusable.
func readyzHandler(draining *atomic.Bool, engine Engine) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if draining.Load() {
			http.Error(w, "not ready: draining for shutdown", http.StatusServiceUnavailable)
			return
		}
		if r, ok := engine.(readinessReporter); ok {
			if err := r.Ready(); err != nil {
				http.Error(w, "not ready: engine: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ready\n"))
	})
}

// registerPprof serves Go's profiles under /debug/pprof/ on mux: only the
// admin listener's, never the public one (they cost CPU and reveal the
// program's insides).
func registerPprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
