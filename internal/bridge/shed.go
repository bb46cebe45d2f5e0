package bridge

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// Shed retry window: a connection refused for capacity or rate is told to
// come back after a random delay in this range, so that a crowd refused
// together does not return together.
const (
	shedRetryLow  = 5 * time.Second
	shedRetryHigh = 30 * time.Second
)

// jitter returns a random duration in [lo, hi]; lo when hi <= lo.
func jitter(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + rand.N(hi-lo+1) //nolint:gosec // spreading reconnects, not a secret
}

// retryField is an SSE retry field for d, in whole milliseconds.
func retryField(d time.Duration) string {
	return "retry: " + strconv.FormatInt(d.Milliseconds(), 10) + "\n"
}

// shed answers a subscribe request that a plain retry will fix (capacity,
// rate, draining, a key server out of reach) the only way EventSource keeps
// retrying: status 200, a retry field of retry, a comment naming reason, and
// the end of the stream. Any other status, even 503, would make the browser
// give up for good. Call it before anything else is written to w.
func shed(w http.ResponseWriter, retry time.Duration, reason string) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(retryField(retry) + ": " + reason + "\n\n"))
}
