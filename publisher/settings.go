package publisher

import (
	"errors"
	"fmt"
	"time"
)

// Defaults of [Settings], used for its zero fields.
const (
	// DefaultMaxEvents keeps a batch well under the bridge's --max-batch
	// (default 1000) and its events' results quick to come.
	DefaultMaxEvents = 100
	// DefaultMaxDelay is what an event waits, at most, for others to share
	// its call: short next to a browser's notice, long enough to gather a
	// burst.
	DefaultMaxDelay = 10 * time.Millisecond
	// DefaultMaxBytes keeps a call at a quarter of the largest request a
	// bridge reads by default (--max-batch-bytes, 4 MiB); a call the bridge
	// still finds too large is split.
	DefaultMaxBytes = 1 << 20
	// DefaultMaxOutstandingEvents and DefaultMaxOutstandingBytes bound what
	// waits for a bridge that does not answer.
	DefaultMaxOutstandingEvents = 10_000
	DefaultMaxOutstandingBytes  = 64 << 20
	// DefaultConcurrency: one call at a time keeps batches fullest and every
	// event in Publish order, across streams too.
	DefaultConcurrency = 1
	// DefaultCallTimeout bounds one attempt of one call.
	DefaultCallTimeout = 10 * time.Second
	// DefaultRetryTimeout is how long an event is retried: enough for a
	// bridge to restart, and well within the bridge's default dedupe
	// window (2 minutes), beyond which a retry could store it again.
	DefaultRetryTimeout = time.Minute
)

// The backoff between attempts: from retryFirst, doubling up to retryLongest,
// each wait drawn between half and all of it, so that publishers that
// failed together do not come back together.
const (
	retryFirst   = 100 * time.Millisecond
	retryLongest = 5 * time.Second
)

// Settings tune a [Publisher]. The zero value is the defaults.
type Settings struct {
	// MaxEvents is the most events one PublishBatch call carries. Zero means
	// DefaultMaxEvents (100). It must not exceed the bridge's --max-batch
	// (default 1000), which refuses the whole call.
	MaxEvents int
	// MaxDelay is how long the first event of a batch waits for more before
	// the batch is sent. Zero means DefaultMaxDelay (10 ms); negative means
	// no wait (a batch is whatever gathered while the previous call was in
	// flight).
	MaxDelay time.Duration
	// MaxBytes bounds the encoded size of a call's events. Zero means
	// DefaultMaxBytes (1 MiB). A larger event is sent in a call of its
	// own. A call the bridge refuses as too large (RESOURCE_EXHAUSTED for
	// the whole call) is split in two, and so on down to single events.
	MaxBytes int
	// MaxOutstandingEvents bounds the events published and without a result
	// yet; Publish blocks beyond it. Zero means DefaultMaxOutstandingEvents
	// (10,000).
	MaxOutstandingEvents int
	// MaxOutstandingBytes bounds their encoded size in bytes; Publish
	// blocks beyond it. Zero means DefaultMaxOutstandingBytes (64 MiB). An
	// event larger than the bound is let through when nothing else is
	// outstanding.
	MaxOutstandingBytes int
	// Concurrency is the number of lanes, each sending one call at a time;
	// a stream's events always use the same lane, so they stay in order.
	// Zero means DefaultConcurrency (1).
	Concurrency int
	// CallTimeout bounds one attempt of a call; an attempt that times out
	// is retried (the idempotency keys make that safe). Zero means
	// DefaultCallTimeout (10 s).
	CallTimeout time.Duration
	// RetryTimeout is how long after its Publish an event may be retried;
	// then its Result has the last error. Keep it under the bridge's
	// --dedupe-window (default 2 minutes). Zero means DefaultRetryTimeout
	// (1 minute).
	RetryTimeout time.Duration
}

// withDefaults returns s with its zero fields set to the defaults, or an
// error naming the field that is negative.
func (s Settings) withDefaults() (Settings, error) {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxEvents", int64(s.MaxEvents)},
		{"MaxBytes", int64(s.MaxBytes)},
		{"MaxOutstandingEvents", int64(s.MaxOutstandingEvents)},
		{"MaxOutstandingBytes", int64(s.MaxOutstandingBytes)},
		{"Concurrency", int64(s.Concurrency)},
		{"CallTimeout", int64(s.CallTimeout)},
		{"RetryTimeout", int64(s.RetryTimeout)},
	} {
		if f.v < 0 {
			return s, fmt.Errorf("publisher: Settings.%s is negative (%d): use zero for the default", f.name, f.v)
		}
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&s.MaxEvents, DefaultMaxEvents)
	def(&s.MaxBytes, DefaultMaxBytes)
	def(&s.MaxOutstandingEvents, DefaultMaxOutstandingEvents)
	def(&s.MaxOutstandingBytes, DefaultMaxOutstandingBytes)
	def(&s.Concurrency, DefaultConcurrency)
	defDur(&s.MaxDelay, DefaultMaxDelay)
	defDur(&s.CallTimeout, DefaultCallTimeout)
	defDur(&s.RetryTimeout, DefaultRetryTimeout)
	if s.MaxOutstandingEvents < s.MaxEvents {
		return s, errors.New("publisher: Settings.MaxOutstandingEvents is below MaxEvents: no batch could fill")
	}
	return s, nil
}
