package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publishing to JetStream. A batch is pipelined: its events are published
// one after the other, each with a reply subject where JetStream sends its
// ack (engine_nats_acks.go), at most natsBatchWindow awaiting theirs, and
// each result is what JetStream acknowledged. Order holds because
// everything travels on one connection: the server reads a connection's
// messages in order and hands them, in that order, to the stream (to its
// leader in a cluster, over one route per account), which stores them one
// after the other. Nothing resends a publish on its own (they are plain
// NATS publishes, and nats.go keeps no reconnect buffer: see options), or a
// later event could overtake it.
const (
	// natsBatchWindow is the most publishes of one batch awaiting their
	// acks: enough to keep the connection busy (an ack takes a round trip
	// and a store), few enough that one batch leaves slots of
	// NATSConfig.MaxPending (all batches together; a batch that finds
	// every slot taken waits for one, at most until its deadline) to
	// others.
	natsBatchWindow = 256
	// natsMaxMsgID is the longest Nats-Msg-Id sent as is; a longer one is
	// replaced by a hash. JetStream keeps the id of every keyed event of
	// the duplicate window in memory.
	natsMaxMsgID = 256
	// natsConflictWait is the pause before an event whose key another
	// publish is storing right now is published again (a cluster answers
	// "duplicate message id is in process" until that publish committed).
	natsConflictWait = 20 * time.Millisecond
)

// jsErrCodeDuplicateInProcess is JetStream's error code for an event whose
// Nats-Msg-Id another publish is storing right now, in a cluster (the
// server's JSStreamDuplicateMessageConflict).
const jsErrCodeDuplicateInProcess jetstream.ErrorCode = 10158

// errNotSent is (wrapped) the result of the events of a batch after one
// that failed in a way that stops the batch: they were not sent, so they
// are certainly not stored.
var errNotSent = errors.New("not sent, so not stored")

// natsMsgID is the Nats-Msg-Id of an event of stream with idempotency key
// key. JetStream dedupes across the whole JetStream stream, every bridge
// stream included, so the id holds the stream name: STREAM:KEY, the key
// query-escaped (a stream name has no ':', an escaped key no space or
// control character). An id longer than natsMaxMsgID is '#' and the
// base64url SHA-256 of stream and key ('#' appears in neither form). Every
// node computes the same id for the same stream and key.
func natsMsgID(stream, key string) string {
	id := stream + ":" + url.QueryEscape(key)
	if len(id) <= natsMaxMsgID {
		return id
	}
	sum := sha256.Sum256([]byte(stream + "\x00" + key))
	return "#" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// publishMsg publishes ev as a JetStream message (see natsHeaderType) with
// reply subject reply, where JetStream sends its ack. An event with no
// type, key, trace context or time of its own goes without headers: nats.go
// then neither builds nor encodes any, the server has none to scan and
// store, and the nodes none to decode.
func (e *NATSEngine) publishMsg(ev *Event, reply string) error {
	if ev.Time.IsZero() && ev.Type == "" && ev.Key == "" && ev.Trace == nil {
		return e.nc.PublishRequest(e.prefix+ev.Stream, reply, ev.Data)
	}
	m := e.message(ev)
	m.Reply = reply
	return e.nc.PublishMsg(m)
}

// message is ev as a JetStream message (see natsHeaderType).
func (e *NATSEngine) message(ev *Event) *nats.Msg {
	msg := nats.NewMsg(e.prefix + ev.Stream)
	msg.Data = ev.Data
	if !ev.Time.IsZero() {
		msg.Header.Set(natsHeaderTime, ev.Time.UTC().Format(time.RFC3339Nano))
	}
	if ev.Type != "" {
		msg.Header.Set(natsHeaderType, ev.Type)
	}
	if ev.Key != "" {
		msg.Header.Set(jetstream.MsgIDHeader, natsMsgID(ev.Stream, ev.Key))
	}
	natsSetTrace(msg.Header, ev)
	return msg
}

// Publish implements [Engine]: a [NATSEngine.PublishBatch] of one event.
// It returns once JetStream stored the event and acknowledged it; ev.ID is
// then its stream sequence. An event whose Key names one stored on its
// stream within the duplicate window (NATSConfig.DedupeWindow) is not
// stored, and Publish returns that event's id. While NATS is unreachable it
// fails at once with an error wrapping [ErrUnavailable]; a publish whose
// connection drops before the ack also fails with it (the event may or may
// not be stored then: publish it again with the same Key to find out). It
// honours ctx's deadline; without one, natsRequestTimeout (5s) bounds it.
func (e *NATSEngine) Publish(ctx context.Context, ev *Event) (uint64, error) {
	var res [1]Stored
	e.PublishBatch(ctx, []*Event{ev}, res[:])
	return res[0].ID, res[0].Err
}

// PublishBatch implements [Engine]. It publishes the events in order
// without waiting for each ack, at most natsBatchWindow awaiting theirs,
// and returns when every event has its result:
//
//   - ID: JetStream acknowledged the event (ev.ID is set), or, with
//     Duplicate, acknowledged it as a duplicate of the event stored first
//     with its Key within the window, whose id it is.
//   - An error wrapping [ErrUnavailable], or the context's error, that says
//     the event may or may not be stored: it was sent, and the connection
//     dropped, the deadline passed or JetStream did not answer before its
//     ack came. Publishing it again with the same Key stores it at most
//     once and tells which.
//   - An error wrapping errNotSent: an earlier event failed so (the
//     connection is down, the stream does not answer, ctx ended), and this
//     one was not sent: it is not stored.
//   - Another error (JetStream refused this event): not stored; the batch
//     goes on.
//
// What is stored is stored in request order (see the top of this file):
// after a failure in the middle, events sent before it may still be
// acknowledged, and none is sent after it. Safe for concurrent use; batches
// published at the same time interleave.
func (e *NATSEngine) PublishBatch(ctx context.Context, evs []*Event, res []Stored) {
	if len(evs) == 0 {
		return
	}
	// Register first, then check the connection: nats.go sets the status
	// before it runs the disconnect handler, so either the check sees the
	// connection down or the handler cancels this batch.
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	b := e.acks.register(len(evs), cancel)
	defer e.acks.finish(b)
	if err := e.connected(); err != nil {
		for i := range res {
			res[i] = Stored{Err: fmt.Errorf("%w: %w", errNotSent, err)}
		}
		return
	}
	p := batchPublish{
		e:    e,
		b:    b,
		ctx:  ctx,
		pctx: pctx,
		evs:  evs,
		res:  res,
		// Every sequence JetStream assigns from now on is above what Run
		// has delivered and what publishes got before; one that is not
		// means the stream lost its history.
		known: e.known(),
	}
	for i := range evs {
		if p.stop == nil && p.b.awaiting() >= natsBatchWindow {
			p.await(natsBatchWindow - 1)
		}
		if p.stop != nil {
			p.res[i] = Stored{Err: fmt.Errorf("%w: an earlier event of the batch failed: %w", errNotSent, p.stop)}
			continue
		}
		p.send(i)
	}
	p.awaitAll()
	var top uint64
	for i := range evs {
		p.collect(i)
		if r := p.res[i]; r.Err == nil && !r.Duplicate {
			top = max(top, r.ID)
		}
	}
	e.noteIssued(top)
}

// known is the highest id this node knows JetStream issued: the last it
// delivered or a publish through it got.
func (e *NATSEngine) known() uint64 {
	return max(e.delivered.Load(), e.issued.Load())
}

// noteIssued raises issued to id (one compare-and-swap per batch).
func (e *NATSEngine) noteIssued(id uint64) {
	for {
		old := e.issued.Load()
		if id <= old || e.issued.CompareAndSwap(old, id) {
			return
		}
	}
}

// batchPublish is the state of one PublishBatch.
type batchPublish struct {
	e     *NATSEngine
	b     *natsBatchAcks  // the acks of the batch's events
	ctx   context.Context // the caller's
	pctx  context.Context // ctx, also cancelled when the connection drops
	evs   []*Event
	res   []Stored
	reply []byte // the reply subject being built, reused
	known uint64 // e.known() when the batch began
	stop  error  // why no more events are sent; nil while they are
	// unacked is why the events sent and not acknowledged have no ack: set
	// by the wait that gave up on them (the context ended, the connection
	// dropped, JetStream answered nothing for natsRequestTimeout).
	unacked error
}

// send publishes event i with its reply subject, or sets its result when
// that fails at once.
func (p *batchPublish) send(i int) {
	if p.pctx.Err() != nil { // the deadline passed, or the connection dropped
		p.fail(i, context.Cause(p.pctx), false)
		return
	}
	if err := p.e.acks.acquire(p.pctx, p.stallWait); err != nil {
		p.fail(i, err, false)
		return
	}
	p.reply = p.b.appendReply(p.reply[:0], i)
	p.b.sending(i)
	if err := p.e.publishMsg(p.evs[i], string(p.reply)); err != nil {
		p.b.unsent(i)
		p.e.acks.release(1)
		p.fail(i, err, false)
	}
}

// stallWait is how long a publish may wait for a slot of NATSConfig.MaxPending:
// until ctx's deadline, at most natsRequestTimeout (from the batch's first
// publish: a batch that waits so long fails anyway).
func (p *batchPublish) stallWait() time.Duration {
	d := natsRequestTimeout
	if dl, ok := p.ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	return max(d, time.Millisecond)
}

// await waits until at most n events of the batch await their acks, and
// sets stop when the batch cannot go on: an ack said that the engine cannot
// store now, the context ended, the connection dropped, or no ack came for
// natsRequestTimeout.
func (p *batchPublish) await(n int) {
	failed, err := p.b.await(p.pctx, n, true)
	if err == nil {
		return
	}
	if !failed { // no ack came for the events sent: each says so
		p.unacked = err
	}
	p.stop = p.e.mapPublishError(p.ctx, p.pctx, err, "")
}

// awaitAll waits for the acks of every event sent, until the context ends,
// the connection drops or no ack came for natsRequestTimeout.
func (p *batchPublish) awaitAll() {
	if _, err := p.b.await(p.pctx, 0, false); err != nil {
		p.unacked = err
	}
}

// collect sets the result of event i from its ack, unless it has one.
func (p *batchPublish) collect(i int) {
	ack := p.b.ack(i)
	switch ack.state {
	case ackNotSent: // its result was set when it was not sent
		return
	case ackAwaited:
		err := p.unacked
		if err == nil { // cannot be: awaitAll ends without an error only when no ack is awaited
			err = errAckMissing
		}
		p.fail(i, err, true)
		return
	}
	if isDuplicateInProcess(ack.err) && i == len(p.evs)-1 {
		// Nothing of this batch comes after the event, so publishing it
		// again cannot put it behind a later one.
		ack = p.e.publishConflicted(p.pctx, p.evs[i])
	}
	if ack.err != nil {
		p.fail(i, ack.err, true)
		return
	}
	switch {
	case ack.duplicate:
		// The sequence of the event stored first with this key: older
		// than what Run delivered, maybe, and not a sign of lost history.
		p.res[i] = Stored{ID: ack.seq, Duplicate: true}
	case ack.seq <= p.known:
		select {
		case p.e.lossHint <- struct{}{}:
		default:
		}
		p.res[i] = Stored{Err: fmt.Errorf("%w: JetStream stored the event under id %d, which it had issued before: the stream lost its history, and the bridge fences it (removing the event) so that ids never repeat; publish it again", ErrUnavailable, ack.seq)}
	default:
		ev := p.evs[i]
		ev.ID = ack.seq
		if ev.Time.IsZero() {
			// The event's time is when JetStream stored it, which every
			// node reads (decode); the ack does not say it, and this is a
			// little later. The event as the caller holds it goes to no
			// browser.
			ev.Time = time.Now()
		}
		p.res[i] = Stored{ID: ack.seq}
	}
}

// fail sets the result of event i to err, mapped (sent: whether the event
// went out), and stops the batch when the engine cannot store now.
func (p *batchPublish) fail(i int, err error, sent bool) {
	err = p.e.publishError(p.ctx, p.pctx, err, sent)
	p.res[i] = Stored{Err: err}
	if p.stop == nil && (errors.Is(err, ErrUnavailable) || p.ctx.Err() != nil) {
		p.stop = err
	}
}

// isDuplicateInProcess reports whether err is JetStream's answer to an
// event whose key another publish is storing right now.
func isDuplicateInProcess(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeDuplicateInProcess
}

// publishConflicted publishes ev again, and again, while a cluster answers
// that another publish with its key is in process, until that one is
// committed (then this is its duplicate) or failed (then this is stored),
// within ctx and natsRequestTimeout.
func (e *NATSEngine) publishConflicted(ctx context.Context, ev *Event) natsAck {
	ctx, cancel := context.WithTimeout(ctx, natsRequestTimeout)
	defer cancel()
	t := time.NewTimer(natsConflictWait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return natsAck{err: fmt.Errorf("%w: another publish with the same key was still being stored: %w", ErrUnavailable, context.Cause(ctx))}
		case <-t.C:
		}
		ack, err := e.js.PublishMsg(ctx, e.message(ev), jetstream.WithRetryAttempts(0))
		if err != nil && !isDuplicateInProcess(err) {
			return natsAck{err: err}
		}
		if err == nil {
			return natsAck{seq: ack.Sequence, duplicate: ack.Duplicate}
		}
		t.Reset(natsConflictWait)
	}
}

// publishError maps a failed publish: the caller's own deadline or
// cancellation stays what it is; anything that a retry later may fix wraps
// ErrUnavailable. sent says whether the event went out: then it may be
// stored although its ack never came; otherwise the error wraps
// errNotSent.
func (e *NATSEngine) publishError(ctx, pctx context.Context, err error, sent bool) error {
	if !sent {
		return fmt.Errorf("%w: %w", errNotSent, e.mapPublishError(ctx, pctx, err, ""))
	}
	return e.mapPublishError(ctx, pctx, err, " (it may or may not be stored)")
}

// mapPublishError is publishError's mapping; maybe ends the messages that
// cannot tell whether the event is stored.
func (e *NATSEngine) mapPublishError(ctx, pctx context.Context, err error, maybe string) error {
	if ctx.Err() != nil {
		return fmt.Errorf("publish to NATS%s: %w", maybe, ctx.Err())
	}
	if errors.Is(context.Cause(pctx), errConnLost) || errors.Is(err, errConnLost) ||
		errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrReconnectBufExceeded) {
		return fmt.Errorf("%w: %w before JetStream acknowledged the event%s", ErrUnavailable, errConnLost, maybe)
	}
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		e.checkStream()
		return fmt.Errorf("%w: no JetStream stream answered (%w)", ErrUnavailable, err)
	}
	if unavailable(err) {
		return fmt.Errorf("%w: %w%s", ErrUnavailable, err, maybe)
	}
	return fmt.Errorf("publish to NATS: %w", err)
}
