// Package load drives an SSE server with subscribers and publishers over
// loopback and measures what users choose a push server on: events fanned
// out per second, end-to-end latency, loss, and the server's CPU per
// delivered event and memory per connection (read from /proc). It is the
// logic of cmd/bridge-load.
//
// A run ([Run]) connects every subscriber (spread over several 127.0.0.x
// source addresses past a few thousand), publishes events that carry their
// publish time and a per-stream sequence number, then publishes a fence per
// stream and waits until every subscriber has its fence: servers deliver a
// connection's events in order, so whatever a subscriber lacks then is
// lost. A subscriber whose stream the server ends reconnects with its
// Last-Event-ID, as a browser does, and what it still lacks counts as lost.
//
// The bridge's publishers call Publish, PublishBatch or PublishStream
// (Config.Mode); with Config.CheckIDs each reader's ids are checked against
// the ids the publish calls returned.
//
// Targets: the bridge (publish over gRPC) and the deliberately naive r3labs
// server of cmd/baseline (publish with POST /publish), driven alike so every
// figure compares side by side.
package load
