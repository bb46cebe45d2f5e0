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
