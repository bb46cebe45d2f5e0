package bridge

import (
	"sync"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// inbox is what a publish stream's reader hands its handler: the requests
// received and not yet taken, and the count of events received and not yet
// answered, which --max-stream-inflight bounds. One mutex guards both. The
// reader wakes the handler only when the inbox was empty, and the writer
// wakes the reader only when it waits for room: a busy stream costs two
// uncontended locks per event where a channel hand-off each way, and one
// for each slot, cost a third of a core at 300,000 events a second.
//
// The reader calls reserve, put and end; the handler take and recycle; the
// writer answered. Safe for that concurrent use.
type inbox struct {
	mu       sync.Mutex
	recv     []received
	inflight int
	max      int
	waiting  bool  // the reader waits for room
	ended    bool  // the reader returned, err says why; nothing follows
	err      error // the reader's last error
	// spare holds requests the handler is done with, for the reader to
	// receive into again: a request costs an allocation, and the events
	// made of one keep nothing of it that a later receive overwrites (its
	// strings are immutable; the rendered data a receive leaves in it is
	// replaced, not reused: payload.DecodeRequest, protobuf's Reset).
	spare []*bridgev1.PublishRequest
	// ready has a token when there may be something to take or the reader
	// ended; room, when the writer freed slots the reader waited for.
	ready chan struct{}
	room  chan struct{}
}

func newInbox(inflight int) *inbox {
	return &inbox{max: inflight, ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// reserve takes a slot for the next request, waiting while every slot is
// taken, and returns a request to receive it into; false when done closed
// first.
func (q *inbox) reserve(done <-chan struct{}) (*bridgev1.PublishRequest, bool) {
	q.mu.Lock()
	for q.inflight >= q.max {
		q.waiting = true
		q.mu.Unlock()
		select {
		case <-q.room:
		case <-done:
			return nil, false
		}
		q.mu.Lock()
	}
	q.inflight++
	var req *bridgev1.PublishRequest
	if n := len(q.spare); n > 0 {
		req = q.spare[n-1]
		q.spare[n-1] = nil
		q.spare = q.spare[:n-1]
	}
	q.mu.Unlock()
	if req == nil {
		req = new(bridgev1.PublishRequest)
	}
	return req, true
}

// put hands the handler r, which holds a slot.
func (q *inbox) put(r received) {
	q.mu.Lock()
	wake := len(q.recv) == 0
	q.recv = append(q.recv, r)
	q.mu.Unlock()
	if wake {
		signal(q.ready)
	}
}

// end records that the reader returned, with err, after its last put.
func (q *inbox) end(err error) {
	q.mu.Lock()
	q.ended, q.err = true, err
	q.mu.Unlock()
	signal(q.ready)
}

// take returns what was received since the last take, in order, and
// whether the reader ended after it (with its error); into, emptied, holds
// the next ones.
func (q *inbox) take(into []received) (got []received, ended bool, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	got, q.recv = q.recv, into[:0]
	return got, q.ended, q.err
}

// recycle keeps the requests of got, which the handler is done with, for
// the reader to receive into.
func (q *inbox) recycle(got []received) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, r := range got {
		if r.req != nil && len(q.spare) < q.max {
			q.spare = append(q.spare, r.req)
		}
	}
}

// answered frees the slots of n events whose results were sent (or never
// will be: the stream broke), and wakes the reader if it waits for one.
func (q *inbox) answered(n int) {
	q.mu.Lock()
	q.inflight -= n
	wake := q.waiting
	q.waiting = false
	q.mu.Unlock()
	if wake {
		signal(q.room)
	}
}
