// Package baseline is the reference the load tool measures the bridge
// against: a plain r3labs/sse/v2 server written the way the library's README
// and the blog posts about it do. One shared library stream per topic, made
// on demand; GET /events?stream=X served by the library's own ServeHTTP;
// POST /publish?stream=X with the data as body, which calls the library's
// blocking Publish.
//
// It is deliberately naive, because that is what users would otherwise run:
// one client that stops reading fills its 64-event channel, then blocks the
// stream's goroutine, which stops every subscriber of the stream and then
// every publisher. There is no history (AutoReplay is off, as a server that
// must not keep every event forever sets it), so a client that reconnects
// with Last-Event-ID gets nothing it missed. Stream names are not checked.
// Do not use it for anything but comparison.
package baseline

import (
	"io"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/r3labs/sse/v2"
)

// maxBody bounds a published event's data.
const maxBody = 1 << 20

// Server is the baseline's HTTP handler. It is safe for concurrent use.
type Server struct {
	lib    *sse.Server
	lastID atomic.Uint64
	mux    *http.ServeMux
}

// New returns a server with the library's defaults but AutoReplay, which is
// turned off, and AutoStream, which is turned on.
func New() *Server {
	lib := sse.New()
	lib.AutoReplay = false // else every event is kept forever and replayed to each new client
	lib.AutoStream = true  // a subscriber's stream is created on demand
	s := &Server{lib: lib, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /events", lib.ServeHTTP)
	s.mux.HandleFunc("POST /publish", s.publish)
	return s
}

// ServeHTTP serves GET /events and POST /publish.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close closes every library stream. Call it once the HTTP server stopped:
// with subscribers still connected, each leaks a goroutine.
func (s *Server) Close() { s.lib.Close() }

// publish sends the request body as one event to the stream's subscribers
// and answers with the id it assigned. Ids come from one counter, taken
// before Publish: concurrent publishes to one stream may reach subscribers
// out of id order, as in any server that assigns ids like this.
func (s *Server) publish(w http.ResponseWriter, r *http.Request) {
	stream := r.URL.Query().Get("stream")
	if stream == "" {
		http.Error(w, "stream query parameter required", http.StatusBadRequest)
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(data) == 0 {
		// The library ends every subscriber's connection on an event with
		// no data; even a naive server should not let a client do that.
		http.Error(w, "empty event", http.StatusBadRequest)
		return
	}
	if !s.lib.StreamExists(stream) {
		s.lib.CreateStream(stream)
	}
	id := s.lastID.Add(1)
	s.lib.Publish(stream, &sse.Event{
		ID:    []byte(strconv.FormatUint(id, 10)),
		Event: []byte(r.URL.Query().Get("event")),
		Data:  data,
	})
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(strconv.AppendUint(nil, id, 10))
}
