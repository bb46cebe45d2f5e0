package bridge

import "time"

// The retry: field tells EventSource how long to wait before it reconnects
// (and keeps that delay until told another). The bridge sends one on every
// connect, and another before every close that is no fault of the client,
// each a random value in a window: clients dropped together (a restart, a
// proxy reload, a network blip) then come back spread out, not as one
// storm.

// Token expiry window: a stream closed because its token is about to expire
// reconnects this soon, carrying the refreshed token (its cookie). The
// closes themselves are already spread over the last fifth of the token's
// life (closeDelay).
const (
	tokenRetryFrom = 250 * time.Millisecond
	tokenRetryTo   = time.Second
)

// connectRetry is the retry: sent first on every accepted stream: a random
// value between retry and 2×retry. Zero when retry is zero.
func connectRetry(retry time.Duration) time.Duration {
	return jitter(retry, 2*retry)
}

// shutdownRetry is the window of the retry: a shutdown sends each of its n
// connections before closing it: from retry, wide enough that the n
// reconnects arrive at about half the node's connect rate (so one node
// coming back, or its peers behind the same load balancer, accept them
// without shedding), at least retry wide and at most 30 s. A node with no
// connect rate is assumed to take the default.
func shutdownRetry(retry time.Duration, n int, connectRate float64) (lo, hi time.Duration) {
	if retry <= 0 {
		return 0, 0
	}
	if connectRate <= 0 {
		connectRate = defaultConnectRate
	}
	width := time.Duration(float64(n) / (connectRate / 2) * float64(time.Second))
	return retry, retry + min(max(width, retry), shedRetryHigh)
}
