// Package publisher publishes events to a bridge in batches, the way a
// service that publishes often should: it gathers events into
// PublishBatch calls (by count, size and delay), gives every event an
// idempotency key, and retries what the bridge could not store, so that a
// retry never stores an event twice.
//
// A [Publisher] sits on a gRPC connection the caller dials (with its own
// credentials and TLS) and is shared by every goroutine of a service:
//
//	conn, err := grpc.NewClient("localhost:50051", grpc.WithTransportCredentials(insecure.NewCredentials()))
//	...
//	p, err := publisher.New(conn, publisher.Settings{})
//	...
//	res := p.Publish(ctx, &bridgev1.PublishRequest{Stream: "orders", Payload: ...})
//	id, duplicate, err := res.Get(ctx) // blocks until the bridge answered
//	...
//	err = p.Close(ctx) // sends what is buffered, then stops
//
// # Batching
//
// Publish adds the event to a buffer and returns at once; a batch is sent
// when it holds [Settings.MaxEvents] events or [Settings.MaxBytes] bytes,
// or when its oldest event has waited [Settings.MaxDelay], whichever comes
// first. A lane sends one batch at a time (the next one fills meanwhile), so
// under load batches grow by themselves; [Settings.Concurrency] lanes send
// at once, each stream always through the same one.
//
// # Order
//
// Events of one stream are stored in the order Publish was called for them
// (by one goroutine, or by several whose calls are ordered by other means):
// a lane sends a batch only once every event of the previous one has its
// result, retries included. A refused event does not hold back the ones
// after it: the bridge judges each event alone.
//
// # Retries and idempotency keys
//
// An event whose idempotency_key is empty gets a random one (26 characters
// of base32, 128 bits), so that a retry of an event the bridge stored but
// could not acknowledge (a lost reply, a bridge restart) is answered as a
// duplicate with the first event's id instead of being stored again, within
// the bridge's dedupe window (--dedupe-window, default 2 minutes). A key set
// by the caller is kept: a caller that retries on its own should reuse its
// key.
//
// UNAVAILABLE (the bridge is shutting down, its store is down, or the
// connection failed) and DEADLINE_EXCEEDED (an attempt took longer than
// [Settings.CallTimeout]) are retried, the whole call or the events whose
// results say so, after an exponential backoff with jitter (100 ms doubling
// to 5 s, each wait drawn between half and all of it). Retrying a timed-out
// attempt is safe only because of the keys: without them it could store an
// event twice. Every other code is the event's result at once:
// INVALID_ARGUMENT (fix the event), PERMISSION_DENIED and UNAUTHENTICATED
// (fix the credential), RESOURCE_EXHAUSTED (the publisher's rate limit at
// the bridge: publish less, or raise the limit), and so on. An event is
// retried until [Settings.RetryTimeout] after its Publish; then its result
// is the last error, wrapped.
//
// # Bounded buffering
//
// At most [Settings.MaxOutstandingEvents] events and
// [Settings.MaxOutstandingBytes] bytes are outstanding (published and
// without a result yet). Publish blocks while the buffer is full, until
// there is room or its context ends (then its Result holds the context's
// error, and the event was not sent): a bridge that is down slows
// publishers down instead of growing their memory. A caller that must not
// block passes a context that ends soon.
//
// # Concurrency and lifecycle
//
// A Publisher is safe for concurrent use by any number of goroutines.
// Publish, Flush and Close may be called concurrently; Publish after Close
// returns a Result with [ErrClosed]. The Publisher runs one goroutine per
// lane, started by [New] and ended by [Publisher.Close], which sends what
// is buffered first (bounded by its context) and returns once every one
// has exited. The caller closes the connection after Close.
//
// Errors in Results are gRPC status errors (use status.Code), possibly
// wrapped with what the Publisher did (the attempts it made), or
// [ErrClosed], or a context's error.
package publisher
