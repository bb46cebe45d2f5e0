package bridge

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsFollowRetry is the pause before Run creates its consumer again after
// it failed (the ordered consumer retries by itself on top of this).
const natsFollowRetry = time.Second

// Run implements [Engine]: it delivers every message of the JetStream
// stream from the sequence that was last when the engine started, in
// sequence order, from this goroutine. It follows the stream with an
// ordered consumer, which nats.go re-creates after a reconnect, a missed
// heartbeat or a sequence mismatch, starting after the last delivered
// sequence: a NATS outage loses nothing and repeats nothing. Run also keeps
// the stream existing (see recreateIfMissing). It returns nil when ctx ends.
//
// JetStream applies its limits when it stores a message, not when every node
// has delivered it: a burst of more than --history-size events on one stream,
// or a node that was cut off from NATS longer than --history-age, can find
// messages removed before it delivered them. Run sees that as a jump in the
// stream sequence (sequences have no holes otherwise) and, before delivering
// anything after the jump, calls the gap handler, which closes every SSE
// connection of this node: the browsers reconnect with their Last-Event-ID,
// and Replay gives them the events or bridge.reset. Never a silent gap.
func (e *NATSEngine) Run(ctx context.Context, deliver func([]*Event)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	mctx, stop := context.WithCancel(ctx)
	defer stop() // before wg.Wait: deferred calls run last-in first-out
	wg.Go(func() { e.maintain(mctx) })
	wg.Go(func() { e.watch(mctx) })

	next := e.start
	for {
		// wg also owns what each follow leaves ending in the background:
		// the deletion of its consumer. The next consumer does not wait
		// for it.
		err := e.follow(ctx, &next, deliver, &wg)
		if ctx.Err() != nil {
			return nil
		}
		e.consumerRestarts.Add(1)
		e.log.Warn("following the JetStream stream failed: starting again", "next_seq", next, "err", err)
		if errors.Is(err, errStalled) {
			continue // the watch asked for a new consumer: at once
		}
		t := time.NewTimer(natsFollowRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// follow delivers the stream's messages from *next on until ctx ends, the
// consumer fails or the watch asks for a new one; *next is always the
// sequence after the last one delivered. What is left to end when it
// returns (the consumer's deletion) ends on a goroutine of bg.
func (e *NATSEngine) follow(ctx context.Context, next *uint64, deliver func([]*Event), bg *sync.WaitGroup) error {
	if err := e.waitReady(ctx); err != nil {
		return err
	}
	if fence := e.fence.Load(); fence > *next {
		// The stream lost its history and was fenced: what this node
		// delivered is gone, and ids continue at the fence. Its clients
		// resume, and get bridge.reset history_lost.
		e.log.Warn("following the JetStream stream from its fence: closing this node's SSE connections so they resume", "fence", fence)
		if e.onGap != nil {
			e.onGap()
		}
		*next = fence
		e.delivered.Store(fence - 1)
	}
	select {
	case <-e.restart: // asked for before this consumer: it is one already
	default:
	}
	// Bounded like any JetStream request: during an election a creation
	// may hang, and one that started just before the cluster recovered
	// must not hold delivery back for long after it.
	cctx, cancel := context.WithTimeout(ctx, natsRequestTimeout)
	cons, err := e.stream.OrderedConsumer(cctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       *next,
		InactiveThreshold: time.Minute, // the server drops it a minute after this node is gone
	})
	cancel()
	if err != nil {
		return err
	}
	// nats.go calls inbox.put with each message, on the subscription's
	// goroutine; this loop takes what is there when it wakes, up to
	// natsBatch, as one batch. A burst (a catch-up after a NATS outage, a
	// flat-out publisher) reaches each connection in few writes instead of
	// one per event, so a healthy browser is not evicted for a queue filled
	// one event at a time.
	inbox := newNATSInbox()
	failed := make(chan error, 1)
	cc, err := cons.Consume(inbox.put,
		jetstream.PullMaxBytes(natsPullMaxBytes),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			// The ordered consumer starts over by itself after a missed
			// heartbeat or a reconnect (and the watch finds one that
			// does not); a closed connection is the end.
			if errors.Is(err, jetstream.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionClosed) {
				select {
				case failed <- err:
				default:
				}
			}
		}))
	if err != nil {
		return err
	}
	defer func() {
		inbox.close() // before Stop: a callback waiting for room gives up
		cc.Stop()
		if info := cons.CachedInfo(); info != nil && e.connected() == nil {
			bg.Go(func() { e.deleteConsumer(ctx, info.Name) })
		}
	}()
	// Messages taken from the inbox but not delivered when follow returns
	// are not lost: *next is the sequence after the last one delivered, and
	// the next consumer starts there.
	batch := make([]*Event, 0, natsBatch)
	var msgs []jetstream.Msg
	for {
		select {
		case <-inbox.ready:
		case <-e.restart:
			return errStalled
		case <-ctx.Done():
			return nil
		case err := <-failed:
			return err
		}
		msgs = inbox.take(msgs)
		for _, msg := range msgs {
			batch = e.take(msg, next, batch, deliver)
			if len(batch) == natsBatch {
				deliver(batch)
				clear(batch)
				batch = batch[:0]
			}
		}
		clear(msgs)
		if len(batch) > 0 {
			deliver(batch) // deliver keeps no slice: batch is reused
			clear(batch)
			batch = batch[:0]
		}
		e.delivered.Store(*next - 1)
	}
}

// natsInbox hands a consumer's messages from nats.go's callback to follow:
// the callback appends, and wakes follow when the inbox was empty; follow
// takes everything at once. A full inbox (natsBatch messages) holds the
// callback back until follow takes them, so memory stays bounded, and
// nats.go's pull requests (by bytes, natsPullMaxBytes) hold the server
// back.
type natsInbox struct {
	mu     sync.Mutex
	room   sync.Cond // the callback waits for room here
	msgs   []jetstream.Msg
	closed bool
	ready  chan struct{} // capacity 1: messages are waiting
}

func newNATSInbox() *natsInbox {
	q := &natsInbox{ready: make(chan struct{}, 1)}
	q.room.L = &q.mu
	return q
}

// put adds msg (nats.go's callback); it drops it once the inbox is closed.
func (q *natsInbox) put(msg jetstream.Msg) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.msgs) >= natsBatch && !q.closed {
		q.room.Wait()
	}
	if q.closed {
		return
	}
	q.msgs = append(q.msgs, msg)
	if len(q.msgs) == 1 {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
}

// take returns the waiting messages and keeps spare, emptied, for the next
// ones.
func (q *natsInbox) take(spare []jetstream.Msg) []jetstream.Msg {
	q.mu.Lock()
	defer q.mu.Unlock()
	msgs := q.msgs
	q.msgs = spare[:0]
	q.room.Broadcast()
	return msgs
}

// close drops what waits and what comes, and frees a waiting callback.
func (q *natsInbox) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.msgs = nil
	q.room.Broadcast()
}

// natsBatch is the most events one delivery from JetStream carries. The
// hub splits a batch into frame groups of one stream each, so with events
// spread over many streams (a hundred publishers' streams, interleaved) a
// batch of a few groups' size would give each connection one event, one
// wake-up of its writer and one write per event; a batch of a thousand
// gives it several, written at once, when that many are waiting. Nothing
// waits for a batch to fill: it is what arrived while the last one was
// being delivered.
const natsBatch = 1024

// take adds msg's event to batch, in sequence order from *next, and returns
// the batch. A jump in the sequence means JetStream removed messages this
// node had not delivered: what batch holds is delivered first, then the gap
// handler runs (see Run), then msg's event starts a new batch.
func (e *NATSEngine) take(msg jetstream.Msg, next *uint64, batch []*Event, deliver func([]*Event)) []*Event {
	seq, stored, ok := ackMetadata(msg.Reply())
	if !ok {
		e.log.Warn("skip a JetStream message without metadata", "subject", msg.Subject(), "reply", msg.Reply())
		return batch
	}
	if seq < *next {
		return batch // delivered before a reset of the consumer
	}
	if seq > *next {
		if len(batch) > 0 {
			deliver(batch)
			clear(batch)
			batch = batch[:0]
		}
		e.gaps.Add(1)
		// A node that cannot keep up finds a gap at every few events: one
		// line per gapLogEvery, with how many more came, says it as well.
		if now := time.Now(); now.Sub(e.gapLogged) >= gapLogEvery {
			e.log.Warn("events were removed from JetStream before this node delivered them: closing its SSE connections so they resume from history",
				"missing_from", *next, "missing_to", seq-1, "gaps_since_last_log", e.gapsUnlogged)
			e.gapLogged, e.gapsUnlogged = now, 0
		} else {
			e.gapsUnlogged++
		}
		if e.onGap != nil {
			e.onGap()
		}
	}
	*next = seq + 1
	if ev, ok := e.decode(msg.Subject(), seq, msg.Headers(), msg.Data(), stored); ok {
		batch = append(batch, ev)
	}
	return batch
}

// ackMetadata reads the stream sequence and the time JetStream stored the
// message from the reply subject of a message a consumer delivered, as
// nats.go's Metadata does, without its allocations:
// $JS.ACK.STREAM.CONSUMER.DELIVERED.SSEQ.CSEQ.TIME.PENDING, or, from newer
// servers, $JS.ACK.DOMAIN.ACCOUNT.STREAM.CONSUMER.DELIVERED.SSEQ.CSEQ.TIME.PENDING
// and maybe more tokens.
func ackMetadata(reply string) (seq uint64, stored time.Time, ok bool) {
	rest, found := strings.CutPrefix(reply, "$JS.ACK.")
	if !found {
		return 0, time.Time{}, false
	}
	skip := 3 // to SSEQ, of 7 tokens left
	switch n := strings.Count(rest, ".") + 1; {
	case n == 7:
	case n >= 9:
		skip = 5
	default:
		return 0, time.Time{}, false
	}
	for range skip {
		_, rest, _ = strings.Cut(rest, ".")
	}
	sseq, rest, _ := strings.Cut(rest, ".")
	_, rest, _ = strings.Cut(rest, ".") // CSEQ
	ts, _, _ := strings.Cut(rest, ".")
	seq, ok1 := parseDecimal(sseq)
	nanos, ok2 := parseDecimal(ts)
	if !ok1 || !ok2 || seq == 0 || nanos > math.MaxInt64 {
		return 0, time.Time{}, false
	}
	return seq, time.Unix(0, int64(nanos)), true
}

// maintain re-creates the stream when it went missing, whenever a reconnect
// or a publish asks (checkStream), until ctx ends.
func (e *NATSEngine) maintain(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.ensure:
			if e.Ready() == nil {
				e.recreateIfMissing(ctx)
			}
		}
	}
}

// gapLogEvery is the least time between two logs of events removed from
// JetStream before this node delivered them (bridge_nats_delivery_gaps_total
// counts every one).
const gapLogEvery = 10 * time.Second

// natsPullMaxBytes bounds what a node's consumer asks JetStream for ahead
// of what it delivered, in bytes (the client buffers it): 8 MiB is some
// 16,000 events of 500 bytes, or 128 of the largest. The library's
// default, 500 messages, capped a node's delivery at about half of what
// a publisher of batches stores on two cores (W6-nats-batch: 24,500 of
// 52,700 events/s delivered, the rest lost to history); pulling by bytes
// keeps up with it and bounds memory by size, not count.
const natsPullMaxBytes = 8 << 20
