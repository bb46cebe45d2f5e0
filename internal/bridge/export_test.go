package bridge

import "time"

// WithJWKSUnknownKIDEvery returns cfg with the least time between two key
// set fetches caused by unknown key ids set to d.
func WithJWKSUnknownKIDEvery(cfg Config, d time.Duration) Config {
	cfg.jwksUnknownKIDEvery = d
	return cfg
}

// SSEEvent is an event as the test event-stream parser (sseparse_helpers_test.go)
// dispatches it.
type SSEEvent = sseEvent

// ParseSSE parses a response body as a browser does and returns its events.
func ParseSSE(b []byte) []SSEEvent { return parseSSE(b).Events }

// WithDedupeClock returns cfg with the memory engine's dedupe table reading
// the time from now, so a test can move past the dedupe window at once.
func WithDedupeClock(cfg Config, now func() time.Time) Config {
	cfg.dedupeClock = now
	return cfg
}
