package bridge

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A node must never go silent while it says it is ready. Run follows the
// JetStream stream with an ordered consumer, which nats.go re-creates after
// a missed heartbeat; but a consumer whose server died can leave nats.go
// re-creating it under the same name for as long as the cluster keeps that
// name assigned to the dead server, and the node then delivers nothing while
// publishes go on through the other servers. And a stream that lost its
// history (memory storage, a server's store wiped) comes back at the first
// sequence it was created with: new events would get the ids of old ones,
// which live subscribers skip and resuming ones mistake for what they
// missed. So Run's watch compares, every natsWatchInterval, the stream's
// last sequence with the last one this node delivered:
//
//   - Behind, with no progress for natsStallAfter: delivery is stalled.
//     Ready reports it (so /readyz and gRPC health say not ready, and a load
//     balancer moves browsers to a node that delivers), and Run starts a new
//     consumer, with a new name, after the last delivered sequence: nothing
//     is skipped or delivered twice. The watch asks again every
//     natsStallAfter while it lasts.
//   - No answer from the stream for natsStallAfter (an election, no
//     quorum): not ready either, but no new consumer, which could not be
//     created now; at the first answer, a node that is behind and has made
//     no progress since starts one at once, without waiting natsStallAfter
//     again.
//   - The stream's last sequence below what this node delivered: the stream
//     lost its history. The watch fences it (fenceLostHistory): every
//     sequence below a new first one, above every id issued before, is
//     purged, so ids keep increasing and never repeat, and the fence is
//     recorded in the stream's metadata, so a resume from an older id gets
//     bridge.reset history_lost on every node. Run then closes this node's
//     SSE connections (they resume and get that reset) and follows the
//     stream from the fence.
const (
	// natsWatchInterval is how often Run's watch asks the stream for its
	// state: one small JetStream request a second per node.
	natsWatchInterval = time.Second
	// natsStallAfter is how long delivery may make no progress while the
	// stream holds events this node has not delivered before the node
	// calls itself stalled. Longer than a catch-up's pause between two
	// pulls, shorter than a JetStream election (a few seconds).
	natsStallAfter = 3 * time.Second
	// natsFenceGrid: a fence is the first multiple of this above the last
	// id a node delivered. Every node of a cluster delivered nearly the same
	// ids before the loss, so they compute the same fence and a second
	// node's purge removes nothing the first one's let through.
	natsFenceGrid = 1 << 24
)

// metaLostBefore is stream metadata: the fence of the last history loss;
// ids below it belong to a history that is gone (bridge.reset history_lost).
const metaLostBefore = "sse-bridge.history-lost-before"

// errStalled ends a follow whose consumer delivered nothing for too long.
var errStalled = errors.New("delivery stalled: starting a new consumer")

// watchState is what one watch carries from one check to the next.
type watchState struct {
	delivered  uint64    // e.delivered at the last look that read the stream
	stuckSince time.Time // when delivery last made progress while behind; zero while not behind
	failSince  time.Time // since when the stream's state could not be read; zero while it can
	failedLong bool      // the stream did not answer for natsStallAfter, until the next answer
	restarted  time.Time // when the watch last asked for a new consumer
}

// watch checks delivery every natsWatchInterval until ctx ends (see above).
func (e *NATSEngine) watch(ctx context.Context) {
	t := time.NewTicker(natsWatchInterval)
	defer t.Stop()
	var st watchState
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.lossHint:
		}
		e.check(ctx, &st, time.Now())
	}
}

// check is one look of the watch at the stream.
func (e *NATSEngine) check(ctx context.Context, st *watchState, now time.Time) {
	if e.connected() != nil {
		// Ready says so already, and the consumer comes back with the
		// connection; a stall counts from then.
		*st = watchState{delivered: e.delivered.Load()}
		e.setStalled(nil)
		return
	}
	// What this node delivered, and the highest id it knows of (issued to
	// its publishes too), read before the stream's state: events
	// delivered or acknowledged while the request is out would otherwise
	// read as a last sequence below them, a history loss that is not one
	// (under a steady publish load it was, every few seconds).
	delivered := e.delivered.Load()
	known := max(delivered, e.issued.Load())
	rctx, cancel := context.WithTimeout(ctx, natsRequestTimeout)
	info, err := e.stream.Info(rctx)
	cancel()
	if err != nil {
		if st.failSince.IsZero() {
			st.failSince = now
		}
		if now.Sub(st.failSince) >= natsStallAfter {
			st.failedLong = true
			if e.setStalled(fmt.Errorf("%w: the JetStream stream does not answer: %w", ErrUnavailable, err)) {
				e.log.Warn("NATS delivery stalled: the JetStream stream does not answer; not ready until it does", "err", err)
			}
		}
		return
	}
	st.failSince = time.Time{}
	if st.failedLong {
		// The stream answers again after an outage: a node still behind
		// with no progress since the last answer needs a new consumer now.
		st.failedLong = false
		if info.State.LastSeq > delivered && delivered == st.delivered {
			st.stuckSince = now.Add(-natsStallAfter)
		}
	}
	if fence := e.fence.Load(); fence > 0 {
		e.recordFence(ctx, info.Config, fence)
	}
	last := info.State.LastSeq
	if known > 0 && last < known {
		e.fenceLostHistory(ctx, info, known)
		*st = watchState{}
		return
	}
	e.lag.Store(last - min(last, delivered))
	switch {
	case last <= delivered || delivered != st.delivered:
		// Caught up, or progressing.
		st.delivered, st.stuckSince = delivered, time.Time{}
		e.setStalled(nil)
	case st.stuckSince.IsZero():
		st.stuckSince = now
	case now.Sub(st.stuckSince) >= natsStallAfter:
		e.stall(st, now, fmt.Errorf("%w: no event delivered for %v while the JetStream stream holds %d more", ErrUnavailable, now.Sub(st.stuckSince).Round(time.Second), last-delivered))
	}
}

// stall reports delivery stalled for why and, at most every
// natsStallAfter, asks Run for a new consumer.
func (e *NATSEngine) stall(st *watchState, now time.Time, why error) {
	if e.setStalled(why) {
		e.log.Warn("NATS delivery stalled: not ready until it recovers; starting a new consumer", "err", why, "last_delivered", e.delivered.Load())
	}
	if now.Sub(st.restarted) < natsStallAfter {
		return
	}
	st.restarted = now
	select {
	case e.restart <- struct{}{}:
	default: // a restart is pending already
	}
}

// setStalled records why delivery is stalled (nil: it is not) and wakes
// readiness watchers when that changes; it reports whether delivery just
// became stalled.
func (e *NATSEngine) setStalled(why error) (began bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	was := e.stalled != nil
	e.stalled = why
	if was == (why != nil) {
		return false
	}
	if !was {
		e.stalls.Add(1)
	} else {
		e.log.Info("NATS delivery recovered: ready", "last_delivered", e.delivered.Load())
	}
	close(e.changed)
	e.changed = make(chan struct{})
	return !was
}

// fenceLostHistory handles a stream that lost its history: its last
// sequence is below known, the highest id this node delivered or a publish
// through it got. It purges the stream up to the fence (see natsFenceGrid),
// unless another node did so first, records the fence in the stream's
// metadata and asks Run to start again from it.
func (e *NATSEngine) fenceLostHistory(ctx context.Context, info *jetstream.StreamInfo, known uint64) {
	fence := (known/natsFenceGrid + 1) * natsFenceGrid
	e.log.Error("the JetStream stream lost its history (its last sequence is below an id this node delivered or a publish got): fencing it so that ids never repeat; clients resuming from older ids get bridge.reset history_lost",
		"stream", e.want.Name, "last_seq", info.State.LastSeq, "known", known, "delivered", e.delivered.Load(), "fence", fence)
	ctx, cancel := context.WithTimeout(ctx, natsRequestTimeout)
	defer cancel()
	// Another node may have fenced since info was read: purging again
	// would remove what was published after its fence.
	fresh, err := e.stream.Info(ctx)
	if err != nil {
		e.log.Error("fence the JetStream stream: read its state", "err", err)
		return
	}
	if fresh.State.LastSeq >= known {
		fence = max(fresh.State.FirstSeq, lostBefore(fresh.Config.Metadata))
	} else if err := e.stream.Purge(ctx, jetstream.WithPurgeSequence(fence)); err != nil {
		e.log.Error("fence the JetStream stream: purge", "fence", fence, "err", err)
		return
	}
	e.recordFence(ctx, fresh.Config, fence)
	e.historyLosses.Add(1)
	e.fence.Store(max(e.fence.Load(), fence))
	select {
	case e.restart <- struct{}{}:
	default:
	}
}

// recordFence records fence in the stream's metadata, so that resumes from
// older ids get bridge.reset history_lost on every node. When that fails,
// they get history_trimmed (the purge moved the first sequence), and the
// watch tries again at its next look.
func (e *NATSEngine) recordFence(ctx context.Context, cfg jetstream.StreamConfig, fence uint64) {
	if lostBefore(cfg.Metadata) >= fence {
		return
	}
	cfg.Metadata = maps.Clone(cfg.Metadata)
	if cfg.Metadata == nil {
		cfg.Metadata = map[string]string{}
	}
	cfg.Metadata[metaLostBefore] = strconv.FormatUint(fence, 10)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), natsRequestTimeout)
	defer cancel()
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		e.log.Error("fence the JetStream stream: record the fence in its metadata (trying again)", "fence", fence, "err", err)
	}
}

// lostBefore reads the fence of the last history loss from stream
// metadata; 0 when there was none.
func lostBefore(meta map[string]string) uint64 {
	n, err := strconv.ParseUint(meta[metaLostBefore], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// NATSStats are the nats engine's delivery figures, for metrics.
type NATSStats struct {
	// Lag is the stream's last sequence minus the last one this node
	// delivered, at the watch's last look.
	Lag uint64
	// Stalled reports whether delivery is stalled now.
	Stalled bool
	// Stalls counts the times delivery stalled; ConsumerRestarts the
	// consumers started again after a stall or an error; HistoryLosses the
	// lost histories this node fenced or followed.
	Stalls, ConsumerRestarts, HistoryLosses int64
	// Gaps counts the runs of events removed from JetStream before this
	// node delivered them (each ended its SSE connections, which resumed
	// and got bridge.reset).
	Gaps int64
	// PublishPending is how many events this node published and awaits
	// JetStream's acks for; PublishPendingLimit the most it may
	// (NATSConfig.MaxPending). PublishWaited counts the events whose
	// publish waited for room under that limit, PublishRefused those that
	// waited in vain and failed with UNAVAILABLE.
	PublishPending, PublishPendingLimit int
	PublishWaited, PublishRefused       int64
}

// Stats returns the engine's delivery figures. Safe for concurrent use.
func (e *NATSEngine) Stats() NATSStats {
	e.mu.Lock()
	stalled := e.stalled != nil
	e.mu.Unlock()
	s := NATSStats{
		Lag:              e.lag.Load(),
		Stalled:          stalled,
		Stalls:           e.stalls.Load(),
		ConsumerRestarts: e.consumerRestarts.Load(),
		HistoryLosses:    e.historyLosses.Load(),
		Gaps:             e.gaps.Load(),
	}
	if e.acks != nil { // nil until the start connected
		s.PublishPending, s.PublishPendingLimit = e.acks.pending()
		s.PublishWaited, s.PublishRefused = e.acks.waited.Load(), e.acks.refused.Load()
	}
	return s
}
