package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The acks of JetStream publishes. Each event is published with a reply
// subject of its own, PREFIX.BATCH-INDEX (base 36), where PREFIX is an inbox
// of the engine's connection; one subscription, PREFIX.*, takes every ack.
// Its handler reads the ack, usually without encoding/json, records it in
// the batch's slot for the event and wakes the batch's goroutine only when
// what it waits for came. nats.go's asynchronous publishing does the same
// per event with a future, a timer and a reflective JSON decode of each
// ack: as much CPU as the publish itself, on the publishing node's share of
// a busy machine.

var (
	// errAckTimeout: no ack came for natsRequestTimeout (a cluster without
	// quorum stores nothing and answers nothing).
	errAckTimeout = fmt.Errorf("JetStream acknowledged nothing for %v", natsRequestTimeout)
	// errTooManyPending: NATSConfig.MaxPending events awaited their acks
	// for as long as the publish could wait to send (wrapped with the
	// figure).
	errTooManyPending = errors.New("events await their acknowledgement from JetStream (--nats-max-pending)")
	// errAckMissing never happens: a wait ended with an event neither
	// acknowledged nor given up on.
	errAckMissing = errors.New("no acknowledgement from JetStream")
)

// natsAcks routes the acks of the engine's publishes to their batches and
// bounds the events awaiting theirs (NATSConfig.MaxPending). Safe for
// concurrent use.
type natsAcks struct {
	prefix string // the reply subjects' prefix, with its trailing dot
	sub    *nats.Subscription
	// slots holds a token per event sent and not yet acknowledged (or
	// given up on); its length is the bridge_nats_publish_pending_events
	// gauge, so the hot path keeps no counter of its own.
	slots chan struct{}
	// waited counts the events whose publish found every slot taken and
	// got one after waiting; refused those that waited in vain (their
	// publish failed with UNAVAILABLE). Either says JetStream acknowledges
	// more slowly than this node publishes.
	waited, refused atomic.Int64

	mu      sync.Mutex
	next    uint64
	batches map[uint64]*natsBatchAcks // the batches being published
}

// newNATSAcks subscribes to the replies of the engine's publishes on nc.
// The subscription lives as long as the connection: nats.go renews it
// after a reconnect.
func newNATSAcks(nc *nats.Conn, maxPending int) (*natsAcks, error) {
	a := &natsAcks{
		prefix:  nc.NewInbox() + ".",
		slots:   make(chan struct{}, maxPending),
		batches: make(map[uint64]*natsBatchAcks),
	}
	var err error
	if a.sub, err = nc.Subscribe(a.prefix+"*", a.handle); err != nil {
		return nil, fmt.Errorf("subscribe to JetStream acknowledgements: %w", err)
	}
	return a, nil
}

// register starts the bookkeeping of a batch of n events; cancel is called
// when the connection drops (see cancelAll). Call finish when the batch is
// done.
func (a *natsAcks) register(n int, cancel context.CancelCauseFunc) *natsBatchAcks {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.next++
	b := &natsBatchAcks{
		base:   a.prefix + strconv.FormatUint(a.next, 36) + "-",
		cancel: cancel,
		acks:   make([]natsAck, n),
		want:   -1,
		wake:   make(chan struct{}, 1),
	}
	a.batches[a.next] = b
	b.id = a.next
	return b
}

// finish ends b's bookkeeping: acks that come later are dropped, and the
// slots of its events still awaiting theirs are freed.
func (a *natsAcks) finish(b *natsBatchAcks) {
	a.mu.Lock()
	delete(a.batches, b.id)
	a.mu.Unlock()
	b.mu.Lock()
	b.done = true
	left := b.pending
	b.pending = 0
	b.mu.Unlock()
	a.release(left)
}

// cancelAll cancels every batch being published with cause: their acks
// cannot come any more.
func (a *natsAcks) cancelAll(cause error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range a.batches {
		b.cancel(cause)
	}
}

// acquire takes a slot for an event about to be sent, waiting at most
// wait() for one to be freed.
func (a *natsAcks) acquire(ctx context.Context, wait func() time.Duration) error {
	select {
	case a.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(wait())
	defer t.Stop()
	select {
	case a.slots <- struct{}{}:
		a.waited.Add(1)
		return nil
	case <-ctx.Done():
		a.refused.Add(1)
		return context.Cause(ctx)
	case <-t.C:
		a.refused.Add(1)
		return fmt.Errorf("%d %w", cap(a.slots), errTooManyPending)
	}
}

// pending returns how many events await their acks, and the most that may.
func (a *natsAcks) pending() (n, limit int) {
	return len(a.slots), cap(a.slots)
}

// release frees n slots.
func (a *natsAcks) release(n int) {
	for range n {
		<-a.slots
	}
}

// handle records an ack (on the subscription's goroutine).
func (a *natsAcks) handle(m *nats.Msg) {
	id, i, ok := parseAckToken(strings.TrimPrefix(m.Subject, a.prefix))
	if !ok {
		return
	}
	a.mu.Lock()
	b := a.batches[id]
	a.mu.Unlock()
	if b == nil {
		return // finished: it gave up on this ack
	}
	ack := readPubAck(m)
	if b.record(i, ack) {
		a.release(1)
	}
}

// parseAckToken reads BATCH-INDEX, both base 36.
func parseAckToken(tok string) (batch uint64, index int, ok bool) {
	bs, is, found := strings.Cut(tok, "-")
	if !found {
		return 0, 0, false
	}
	batch, err := strconv.ParseUint(bs, 36, 64)
	if err != nil {
		return 0, 0, false
	}
	i, err := strconv.ParseUint(is, 36, 31)
	if err != nil {
		return 0, 0, false
	}
	return batch, int(i), true
}

// natsAck is what became of one event of a batch.
type natsAck struct {
	seq       uint64
	duplicate bool
	err       error // JetStream refused the event, or no stream answered
	state     uint8 // ackNotSent, ackAwaited or ackCame
}

const (
	ackNotSent = iota
	ackAwaited
	ackCame
)

// natsBatchAcks is the acks of one batch: written by the ack handler, read
// by the batch's goroutine.
type natsBatchAcks struct {
	id     uint64
	base   string // the reply subjects' prefix up to the index
	cancel context.CancelCauseFunc

	mu      sync.Mutex
	acks    []natsAck
	pending int   // events sent and not acknowledged
	fail    error // the first ack that says the engine cannot store now
	// want is the most events awaiting acks that the batch's goroutine
	// waits for (-1: it does not wait); with stopOnFail, fail wakes it
	// too.
	want       int
	stopOnFail bool
	wake       chan struct{} // capacity 1: what the goroutine waits for came
	done       bool          // finished: acks are dropped
}

// appendReply appends the reply subject of event i to buf.
func (b *natsBatchAcks) appendReply(buf []byte, i int) []byte {
	return strconv.AppendUint(append(buf, b.base...), uint64(i), 36) //nolint:gosec // i >= 0
}

// sending records that event i is about to be sent: its ack may come before
// the publish call returns.
func (b *natsBatchAcks) sending(i int) {
	b.mu.Lock()
	b.acks[i].state = ackAwaited
	b.pending++
	b.mu.Unlock()
}

// unsent takes back sending(i): the publish failed, no ack will come.
func (b *natsBatchAcks) unsent(i int) {
	b.mu.Lock()
	if b.acks[i].state == ackAwaited {
		b.acks[i].state = ackNotSent
		b.pending--
	}
	b.mu.Unlock()
}

// awaiting returns how many events were sent and not acknowledged.
func (b *natsBatchAcks) awaiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pending
}

// record keeps ack as event i's and reports whether it was awaited (it
// then freed a slot).
func (b *natsBatchAcks) record(i int, ack natsAck) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done || i >= len(b.acks) || b.acks[i].state != ackAwaited {
		return false
	}
	ack.state = ackCame
	b.acks[i] = ack
	b.pending--
	if ack.err != nil && b.fail == nil && unavailable(ack.err) {
		b.fail = ack.err
	}
	if b.want >= 0 && (b.pending <= b.want || b.stopOnFail && b.fail != nil) {
		b.want = -1
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// await waits until at most n events await their acks. With stopOnFail it
// returns early, with the ack's error and failed set, once an ack said
// that the engine cannot store now. Otherwise the error is why it gave up
// waiting: ctx ended (its cause), or no ack came for natsRequestTimeout.
func (b *natsBatchAcks) await(ctx context.Context, n int, stopOnFail bool) (failed bool, err error) {
	ready := func() bool { // with mu held
		if stopOnFail && b.fail != nil {
			err, failed = b.fail, true
			return true
		}
		if b.pending <= n {
			return true
		}
		b.want, b.stopOnFail = n, stopOnFail
		return false
	}
	b.mu.Lock()
	done := ready()
	b.mu.Unlock()
	if done {
		return failed, err
	}
	t := time.NewTimer(natsRequestTimeout)
	defer t.Stop()
	for {
		select {
		case <-b.wake:
			b.mu.Lock()
			done = ready()
			b.mu.Unlock()
			if done {
				return failed, err
			}
			t.Reset(natsRequestTimeout) // an ack came: JetStream answers
		case <-ctx.Done():
			err = context.Cause(ctx)
		case <-t.C:
			err = errAckTimeout
		}
		if err != nil {
			b.mu.Lock()
			b.want = -1
			b.mu.Unlock()
			return false, err
		}
	}
}

// ack returns what became of event i: its ack if it came (state ackCame),
// or that it was not sent or is still awaited.
func (b *natsBatchAcks) ack(i int) natsAck {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.acks[i]
}

// statusNoResponders is the status of the reply NATS sends when nothing
// listens on a subject: no stream takes it.
const statusNoResponders = "503"

// readPubAck reads JetStream's reply to a publish.
func readPubAck(m *nats.Msg) natsAck {
	if len(m.Data) == 0 {
		if m.Header.Get("Status") == statusNoResponders {
			return natsAck{err: jetstream.ErrNoStreamResponse}
		}
		return natsAck{err: jetstream.ErrInvalidJSAck}
	}
	if seq, dup, ok := parsePubAck(m.Data); ok {
		return natsAck{seq: seq, duplicate: dup}
	}
	var pa struct {
		Error     *jetstream.APIError `json:"error"`
		Stream    string              `json:"stream"`
		Sequence  uint64              `json:"seq"`
		Duplicate bool                `json:"duplicate"`
	}
	switch err := json.Unmarshal(m.Data, &pa); {
	case err != nil:
		return natsAck{err: fmt.Errorf("%w: %w", jetstream.ErrInvalidJSAck, err)}
	case pa.Error != nil:
		return natsAck{err: pa.Error}
	case pa.Stream == "":
		return natsAck{err: jetstream.ErrInvalidJSAck}
	}
	return natsAck{seq: pa.Sequence, duplicate: pa.Duplicate}
}

// parsePubAck reads a PubAck, {"stream":"S","seq":N} with an optional
// "duplicate":true and other members of plain values ("domain", ...),
// without reflection. ok is false for anything else (an "error", an
// escape, a nested value, bad syntax): encoding/json reads it then.
func parsePubAck(b []byte) (seq uint64, dup, ok bool) {
	i := skipJSONSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return 0, false, false
	}
	var haveStream, haveSeq bool
	for {
		i = skipJSONSpace(b, i+1) // past '{' or ','
		key, n, ok := jsonPlainString(b, i)
		if !ok {
			return 0, false, false
		}
		i = skipJSONSpace(b, n)
		if i >= len(b) || b[i] != ':' {
			return 0, false, false
		}
		i = skipJSONSpace(b, i+1)
		end := i
		for end < len(b) && b[end] != ',' && b[end] != '}' && !isJSONSpace(b[end]) {
			end++
		}
		val := b[i:end]
		switch string(key) {
		case "stream":
			s, n, ok := jsonPlainString(b, i)
			if !ok || len(s) == 0 {
				return 0, false, false
			}
			end, haveStream = n, true
		case "seq":
			v, ok := parseDecimal(val)
			if !ok {
				return 0, false, false
			}
			seq, haveSeq = v, true
		case "duplicate":
			switch string(val) {
			case "true":
				dup = true
			case "false":
			default:
				return 0, false, false
			}
		case "error":
			return 0, false, false
		default: // a member this does not read: a plain string or a scalar
			if i < len(b) && b[i] == '"' {
				_, n, ok := jsonPlainString(b, i)
				if !ok {
					return 0, false, false
				}
				end = n
			} else if len(val) == 0 || val[0] == '{' || val[0] == '[' {
				return 0, false, false
			}
		}
		i = skipJSONSpace(b, end)
		if i >= len(b) {
			return 0, false, false
		}
		if b[i] == '}' {
			break
		}
		if b[i] != ',' {
			return 0, false, false
		}
	}
	if skipJSONSpace(b, i+1) != len(b) || !haveStream || !haveSeq {
		return 0, false, false
	}
	return seq, dup, true
}

// jsonPlainString reads the JSON string at b[i], which must have no escape,
// and returns its bytes and the index after it.
func jsonPlainString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	n := bytes.IndexByte(b[i+1:], '"')
	if n < 0 {
		return nil, 0, false
	}
	s := b[i+1 : i+1+n]
	if bytes.IndexByte(s, '\\') >= 0 {
		return nil, 0, false
	}
	return s, i + n + 2, true
}

// parseDecimal reads an unsigned decimal of at most 19 digits (JSON's
// form: no sign, no leading zero but for 0 itself).
func parseDecimal[T string | []byte](b T) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 || len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	var v uint64
	for i := range len(b) {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && isJSONSpace(b[i]) {
		i++
	}
	return i
}
