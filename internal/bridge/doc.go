// Package bridge turns events published over gRPC into JSON Server-Sent Events
// frames for browsers.
//
// Data flow:
//
//	service --Publish--> validate --> encode once --> Engine (id, bounded history) --> hub --> one r3labs stream per HTTP connection --> browser
//
// A publish is validated and encoded to its JSON frame data exactly once
// (package internal/payload: the type registry and the protojson encoder; the
// other formats are built at most once per event, in event.go);
// the [Engine] assigns the event an id that increases across all streams and
// stores it in the stream's bounded history; the engine's single dispatcher
// hands events, in id order and in batches, to the hub. The hub groups
// consecutive events of one stream and offers each group to every connection
// subscribed to that stream as one write, without ever blocking: a connection
// whose queue is full is evicted (closed), and its browser reconnects with
// Last-Event-ID and catches up from history; connections evicted together
// finish a few at a time, so a crowd of dead browsers never crowds out
// publishers. A connection's writer flushes only when nothing more is
// queued for it, so a burst costs few system calls.
//
// Publishing at scale (publish_batch.go, publish_stream.go, publish_key.go):
// PublishBatch and PublishStream check each event as Publish checks one
// alone (grants and rate per event, then validation and encoding), and
// store the accepted ones of a batch, or what a stream received together,
// with one [Engine.PublishBatch] call. A publish stream has a reader
// goroutine (bounded by its in-flight slots) and a writer goroutine, both
// ended by the handler or by the stream's end. Idempotency keys are kept
// by the engine (engine_memory_dedupe.go), checked under the same lock as
// the store, so of concurrent publishes with one key exactly one stores.
//
// Admission (limits.go, clientip.go): GET /events checks the request itself,
// then the connect rates and connection counts, then the token; a connect a
// retry later would serve is shed with status 200, a jittered retry: and the
// end of the stream, because EventSource gives up for good on any other
// status. Every accepted stream starts with a jittered retry: (retry.go).
//
// Connections (conn.go, with its states and the lock order: hub, then
// connection, then write lock): an HTTP/1.1 stream that passed admission is
// taken over from net/http (Hijack) and written by the bridge as a chunked
// response (package internal/h1stream), so an idle stream holds no HTTP
// buffers. Until its first event it dozes (doze.go): one goroutine reading
// the socket to see the client go, no library stream. From its first event
// on it has three goroutines: the stream's writer (the library's handler),
// the library stream's own, and the library's wait for the end of the
// request, which then reads the socket (h1stream.WatchContext). HTTP/2 and
// HTTP/1.0 streams stay with net/http, which watches for the client going;
// they doze too, on net/http's goroutine. Everything above the writer is the
// same for all.
//
// Lifecycle (server.go): [Server.Serve] owns every goroutine it starts and returns only
// after all of them ended. Shutdown order, when the context is cancelled: the
// bridge reports not ready (/readyz and gRPC health NOT_SERVING) and keeps
// serving for the drain delay; Publish answers Unavailable, and each
// publish stream answers what it stored and ends; gRPC GracefulStop
// (forced after a timeout), then the publish streams' readers are joined;
// every SSE connection is sent a retry: spread to match the connect rate, then
// cancelled; [net/http.Server.Shutdown], then the taken-over streams end; the
// engine's dispatcher and the heartbeat ticker stop; the r3labs server is closed; the
// engine's own connection (NATS) is closed last.
//
// Configuration (config.go): [Config], every default as a named value,
// [DefaultConfig] and every check of [Config.Validate].
//
// TLS (package internal/tlsreload): each listener's certificate, and the
// gRPC client CA pool, sit behind an atomic pointer that handshakes read; a
// reload ([Server.ReloadTLS], or the poll Serve runs) swaps it, so open
// connections are untouched and a file that fails to load changes nothing.
//
// Publisher auth (grpc_auth.go, publishers.go, protected.go): one function
// decides every gRPC call but health, installed as both the unary and the
// stream interceptor: protected mode (loopback callers only) while no
// publisher auth is configured, else a publisher's bearer token (looked up
// by its SHA-256) or verified client certificate, its stream grants and its
// rate. The publishers file sits behind an atomic pointer, swapped by
// [Server.ReloadPublishers].
//
// Subscriber auth (auth.go, grants.go, jwks.go): a JWT from the
// Authorization header, the access_token parameter or a cookie, verified with
// one key (--jwt-key) or a JSON Web Key Set (--jwks). A key set URL is
// fetched at the start of Serve, refreshed by the library's goroutine (which
// ends with Serve) and fetched again, one request at a time and at a bounded
// rate, for an unknown kid; while it cannot be fetched, subscribers with a
// token are shed. A key set file sits behind an atomic pointer, swapped by
// [Server.ReloadJWKS].
//
// The r3labs/sse/v2 library is used only through hub.go (the library server,
// its streams and TryPublish), event.go (its Event, one per event and
// format, shared by every connection), sse.go (its handler, behind the bridge's own
// checks), doze.go (its headers and ping bytes, for streams that write
// before the library sees them) and internal/h1stream (the context its
// handler waits on). docs/design.md lists the library behaviours the bridge
// works around, and sselib_test.go pins each of them.
package bridge
