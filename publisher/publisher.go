package publisher

import (
	"context"
	"crypto/rand"
	"errors"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// ErrClosed is the error of an event published after [Publisher.Close], or
// still buffered when Close gave up (its context ended).
var ErrClosed = errors.New("publisher: closed")

// Publisher publishes events in batches through PublishBatch. Create it
// with [New]; it is safe for concurrent use. See the package documentation
// for batching, order, retries and buffering.
type Publisher struct {
	client bridgev1.BridgeServiceClient
	s      Settings
	flow   *flow
	lanes  []*lane

	closed    atomic.Bool
	closeOnce sync.Once
	stopping  chan struct{} // closed by Close: Publish waits no more
	// abort ends the calls and retries in flight: Close cancels it when
	// its context ends before everything was sent.
	abortCtx context.Context // a context in a struct: it is the Publisher's own, outliving every caller's
	abort    context.CancelFunc
}

// New returns a Publisher that sends through conn, with s (zero fields
// mean the defaults), and starts its lanes' goroutines; call Close to stop
// them. conn stays the caller's: close it after the Publisher.
func New(conn grpc.ClientConnInterface, s Settings) (*Publisher, error) {
	s, err := s.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Publisher{
		client:   bridgev1.NewBridgeServiceClient(conn),
		s:        s,
		flow:     newFlow(s.MaxOutstandingEvents, s.MaxOutstandingBytes),
		stopping: make(chan struct{}),
	}
	p.abortCtx, p.abort = context.WithCancel(context.Background())
	p.lanes = make([]*lane, s.Concurrency)
	for i := range p.lanes {
		p.lanes[i] = newLane(p)
		go p.lanes[i].run() // ends once Close was called and its queue is empty, or at abort
	}
	return p, nil
}

// Publish adds req to a batch and returns its Result, which is ready once
// the bridge stored the event (or refused it, or the Publisher gave up).
// ctx bounds only the wait for room in the buffer (see Settings.
// MaxOutstandingEvents): once Publish returned, the event is sent and
// retried whatever becomes of ctx, so that a request-scoped context that
// ends when a handler returns does not drop the event. Wait for the
// outcome, as long as you like, with Result.Get.
//
// When req has no idempotency_key, the event gets a random one. Publish
// does not modify req; the caller must not modify it (or its payload)
// until the Result is ready.
func (p *Publisher) Publish(ctx context.Context, req *bridgev1.PublishRequest) *Result {
	r := &Result{ready: make(chan struct{})}
	if p.closed.Load() {
		r.set(0, false, ErrClosed)
		return r
	}
	key := req.GetIdempotencyKey()
	if key == "" {
		key = rand.Text()
	}
	// A copy with the key, sharing the payload: cloning the payload would
	// cost as much as the event itself, and the bridge reads it only.
	ev := &bridgev1.PublishRequest{
		Stream:         req.GetStream(),
		Type:           req.GetType(),
		Payload:        req.GetPayload(),
		IdempotencyKey: key,
	}
	it := &item{req: ev, res: r, added: time.Now()}
	it.size = proto.Size(ev)
	it.charge = p.flow.charge(it.size)
	if err := p.flow.acquire(ctx, p.stopping, it.charge); err != nil {
		r.set(0, false, err)
		return r
	}
	if !p.laneOf(ev.GetStream()).add(it) {
		p.flow.release(it.charge)
		r.set(0, false, ErrClosed)
	}
	return r
}

// laneOf returns the lane of stream: always the same one.
func (p *Publisher) laneOf(stream string) *lane {
	if len(p.lanes) == 1 {
		return p.lanes[0]
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(stream))
	return p.lanes[h.Sum32()%uint32(len(p.lanes))] //nolint:gosec // len(p.lanes) is a positive int, far under 2^32
}

// Flush sends every event published before it at once, without waiting
// for MaxDelay, and returns once each has its result (stored, refused, or
// given up), or ctx's error when ctx ends first. It is safe to call
// concurrently with Publish; events published meanwhile may or may not be
// waited for.
func (p *Publisher) Flush(ctx context.Context) error {
	for _, l := range p.lanes {
		if err := l.flush(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Close stops the Publisher: Publish fails with ErrClosed from then on (a
// Publish waiting for room too), the events buffered are sent at once and
// retried as usual, and once each has its result every goroutine of the
// Publisher has exited and Close returns nil. When ctx ends first, Close
// cancels the calls in flight and the retries: the events without a result
// get ErrClosed (those in a cancelled call may have been stored), and
// Close returns ctx's error once every goroutine has exited. Calling Close
// again waits the same way.
func (p *Publisher) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		close(p.stopping)
		for _, l := range p.lanes {
			l.close()
		}
	})
	for _, l := range p.lanes {
		select {
		case <-l.exited:
		case <-ctx.Done():
			p.abort()
			for _, l := range p.lanes {
				<-l.exited // prompt: an aborted lane fails what it holds and returns
			}
			return context.Cause(ctx)
		}
	}
	p.abort() // releases the context's resources
	return nil
}

// Result is what became of one published event. Its methods are safe for
// concurrent use.
type Result struct {
	ready     chan struct{} // closed once id, duplicate and err are set
	id        uint64
	duplicate bool
	err       error
}

// Ready is closed once the result is known.
func (r *Result) Ready() <-chan struct{} { return r.ready }

// Get waits until the result is known, or ctx ends (then it returns ctx's
// error, and the event carries on). id is the event's id, the value of its
// frame's id: field; duplicate reports that the bridge had already stored
// an event with the same idempotency key within its dedupe window (a retry
// whose first attempt was stored): id is that event's, and nothing was
// stored or sent again. err is why the event was not stored: a gRPC status
// error (status.Code works on it, wrapped or not), ErrClosed, or the
// error of Publish's context.
func (r *Result) Get(ctx context.Context) (id uint64, duplicate bool, err error) {
	select {
	case <-r.ready:
		return r.id, r.duplicate, r.err
	case <-ctx.Done():
		return 0, false, context.Cause(ctx)
	}
}

// set records the outcome and wakes the waiters; it is called once.
func (r *Result) set(id uint64, duplicate bool, err error) {
	r.id, r.duplicate, r.err = id, duplicate, err
	close(r.ready)
}
