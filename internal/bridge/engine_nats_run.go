package bridge

import (
	"context"
	"errors"
	"sync"
	"time"

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
		// its reader, which a consumer stuck in a reset may hold for
		// seconds, and the deletion of its consumer. The next consumer does
		// not wait for them.
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
// returns (the reader, the consumer's deletion) ends on goroutines of bg.
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
	it, err := cons.Messages(jetstream.PullMaxBytes(natsPullMaxBytes))
	if err != nil {
		return err
	}
	// The iterator's Next blocks and cannot say whether more messages are
	// waiting, so a reader goroutine hands them over a channel: this loop
	// then takes what is already there, up to natsBatch, as one batch. A
	// burst (a catch-up after a NATS outage, a flat-out publisher) reaches
	// each connection in few writes instead of one per event, so a healthy
	// browser is not evicted for a queue filled one event at a time.
	msgs := make(chan jetstream.Msg, natsBatch)
	readErr := make(chan error, 1)
	readCtx, stopReading := context.WithCancel(ctx)
	bg.Go(func() { // ends when follow returns (stopReading) or the iterator fails
		// The reader stops the iterator itself, once Next returned: when
		// nats.go's ordered consumer resets, Next replaces its pull
		// subscription, and a Stop from another goroutine in the middle
		// of that leaves the new one running for good (two goroutines).
		// Next ends at once when readCtx does, without a reset.
		defer it.Stop()
		for {
			msg, err := it.Next(jetstream.NextContext(readCtx))
			if err != nil {
				if readCtx.Err() == nil {
					readErr <- err
				}
				return
			}
			select {
			case msgs <- msg:
			case <-readCtx.Done():
				return
			}
		}
	})
	defer func() {
		stopReading() // the reader sends nothing more, and stops the iterator
		if info := cons.CachedInfo(); info != nil && e.connected() == nil {
			bg.Go(func() { e.deleteConsumer(ctx, info.Name) })
		}
	}()
	// Messages taken from msgs but not delivered when follow returns are
	// not lost: *next is the sequence after the last one delivered, and the
	// next consumer starts there.
	batch := make([]*Event, 0, natsBatch)
	for {
		var msg jetstream.Msg
		select {
		case msg = <-msgs:
		case <-e.restart:
			return errStalled
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			return err
		}
		for {
			batch = e.take(msg, next, batch, deliver)
			if len(batch) == natsBatch {
				break
			}
			select {
			case msg = <-msgs:
				continue
			default:
			}
			break
		}
		if len(batch) > 0 {
			deliver(batch) // deliver keeps no slice: batch is reused
			clear(batch)
			batch = batch[:0]
		}
		e.delivered.Store(*next - 1)
	}
}

// natsBatch is the most events one delivery from JetStream carries: as the
// hub's frame groups (maxGroup), so one batch of a stream is one write.
const natsBatch = maxGroup

// take adds msg's event to batch, in sequence order from *next, and returns
// the batch. A jump in the sequence means JetStream removed messages this
// node had not delivered: what batch holds is delivered first, then the gap
// handler runs (see Run), then msg's event starts a new batch.
func (e *NATSEngine) take(msg jetstream.Msg, next *uint64, batch []*Event, deliver func([]*Event)) []*Event {
	meta, err := msg.Metadata()
	if err != nil {
		e.log.Warn("skip a JetStream message without metadata", "subject", msg.Subject(), "err", err)
		return batch
	}
	seq := meta.Sequence.Stream
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
	if ev, ok := e.decode(msg.Subject(), seq, msg.Headers(), msg.Data(), meta.Timestamp); ok {
		batch = append(batch, ev)
	}
	return batch
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
