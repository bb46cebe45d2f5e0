package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/r3labs/sse/v2"
)

// errClosed is returned by hub.register once the hub is shutting down.
var errClosed = errors.New("bridge: hub closed")

// Eviction reasons: the values of the reason label of
// bridge_sse_evictions_total.
const (
	evictQueueFull     = "queue_full"
	evictWriteDeadline = "write_deadline"
	evictHeartbeat     = "heartbeat"
	evictReplayFailed  = "replay_failed"
	// evictEngineGap: the engine lost events before this node delivered
	// them (NATS: trimmed from JetStream first), so every connection is
	// closed to resume from history or get a reset.
	evictEngineGap = "engine_gap"
	// evictTokenExpiry: the subscriber's token is about to expire; the
	// browser reconnects carrying its refreshed token.
	evictTokenExpiry = "token_expiry" //nolint:gosec // G101: a metric label, not a credential
)

var evictReasons = [...]string{evictQueueFull, evictWriteDeadline, evictHeartbeat, evictReplayFailed, evictEngineGap, evictTokenExpiry}

// hubStats are the hub's counters, read by the metrics collector. Atomics, so
// the fan-out path pays an add and nothing more.
type hubStats struct {
	delivered      atomic.Int64 // frames (events) handed to connections
	dozing         atomic.Int64 // connections dozing now (doze.go)
	replays        atomic.Int64 // resumes that replayed history
	replayedEvents atomic.Int64
	resets         atomic.Int64 // bridge.reset frames sent
	replaysCapped  atomic.Int64 // resets because more than the replay cap was missed
	evictions      [len(evictReasons)]atomic.Int64
}

// pingFrame is the heartbeat: a comment-only event, which the library writes
// as ": ping". One value serves every connection; the library never mutates it.
var pingFrame = &sse.Event{Comment: []byte("ping")}

// hub tracks the live SSE connections and fans events out to them. It owns the
// r3labs server: one library stream per HTTP connection, so that a slow
// browser fills only its own queue. Nothing in the hub ever blocks on a
// browser: fan-out uses TryPublish and evicts the connection it fails for.
//
// A hub is safe for concurrent use. deliver must be called by one goroutine at
// a time, in id order (the engine's dispatcher does so).
type hub struct {
	lib *sse.Server
	// streamHeaders are the headers the library sets on a stream (see
	// libHeaders), for the streams that send theirs before the library
	// sees them (doze.go).
	streamHeaders http.Header
	engine        Engine
	log           *slog.Logger
	queueSize     int
	replayLimit   int
	// retry is the configured --retry, and connectRate the node's connect
	// rate (0: none): they spread the reconnects of a shutdown.
	retry       time.Duration
	connectRate float64
	// ce are the CloudEvents attributes of the frames of this hub's
	// connections (--cloudevents-source, --public-url).
	ce *cloudEventsAttrs
	// tracer makes the delivery spans (tracing.go); nil when tracing is off.
	tracer *deliveryTracer
	// presence counts the connections per stream (presence.go): register
	// and unregister keep it up to date.
	presence *presence

	// byStream and streamAt are deliver's scratch (spread): a batch's
	// events by stream, and each stream's index in byStream.
	byStream [][]*Event
	streamAt map[string]int

	mu     sync.RWMutex
	subs   map[string][]*conn // stream name -> its connections
	conns  map[string]*conn   // library stream id -> connection
	closed bool

	// dying holds a token for each connection that is finishing after it
	// was evicted or a write failed: they finish a few at a time (see
	// deadlineWriter.die). died counts those that finished since the last
	// time none was left (finishedDying).
	dying chan struct{}
	died  atomic.Int64

	stats hubStats
}

// newHub returns a hub whose library server buffers queueSize frames per
// connection.
func newHub(engine Engine, queueSize, replayLimit int, log *slog.Logger) *hub {
	h := &hub{
		engine:      engine,
		log:         log,
		queueSize:   queueSize,
		replayLimit: replayLimit,
		ce:          defaultCloudEvents,
		subs:        make(map[string][]*conn),
		conns:       make(map[string]*conn),
		dying:       make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)),
		presence:    newPresence(log),
	}
	lib := sse.New()
	lib.AutoReplay = false // it would keep every event forever and rewrite our ids
	lib.AutoStream = false // clients must never create or name library streams
	lib.EncodeBase64 = false
	lib.EventTTL = 0 // with AutoReplay off, a TTL drops every event
	lib.BufferSize = queueSize
	lib.Headers = map[string]string{"X-Accel-Buffering": "no"}
	// No OnSubscribe: the library would start a goroutine per connect to run
	// it. The handler's first Flush says the same thing for free (see
	// hub.subscribed).
	h.lib = lib
	h.streamHeaders = libHeaders(lib)
	return h
}

// register adds a connection for streams, resuming after id after when resume
// is set; without resume, after means nothing (a fresh connection starts
// from the first event delivered to it). From now on deliver queues the
// connection's events until replay is done. It returns errClosed once the hub is shutting down. The connection's
// library stream is created only when the connection is handed to the
// library (openLibStream): a dozing one has none.
func (h *hub) register(streams []string, format Format, resume bool, after uint64, out streamOutput, cancel context.CancelFunc) (*conn, error) {
	c := newConn(streams, format, resume, after, out, cancel)
	return c, h.add(c)
}

// newConn is a connection not yet registered.
func newConn(streams []string, format Format, resume bool, after uint64, out streamOutput, cancel context.CancelFunc) *conn {
	return &conn{
		id:      newConnID(),
		streams: streams,
		format:  format,
		resume:  resume,
		after:   after,
		cancel:  cancel,
		out:     out,
	}
}

// registerSink registers a connection whose frames go to sk (a gRPC
// subscriber, subscribe.go) instead of a library stream; otherwise as
// register. It never has a library stream, never dozes and gets no
// heartbeats (gRPC keeps its connections alive itself).
func (h *hub) registerSink(streams []string, format Format, resume bool, after uint64, sk *sink, cancel context.CancelFunc) (*conn, error) {
	c := newConn(streams, format, resume, after, sinkOutput{}, cancel)
	c.sink = sk
	return c, h.add(c)
}

// add puts c in the hub's maps, or returns errClosed once the hub is
// shutting down.
func (h *hub) add(c *conn) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return errClosed
	}
	h.conns[c.id] = c
	c.subAt = make([]int, len(c.streams))
	for j, s := range c.streams {
		c.subAt[j] = len(h.subs[s])
		h.subs[s] = append(h.subs[s], c)
	}
	h.mu.Unlock()
	// After the hub's lock: counting never holds up fan-out. add and
	// unregister of one connection run one after the other, so its count
	// never goes below zero.
	h.presence.add(c.streams, 1)
	return nil
}

// watched reports whether a connection subscribes to stream. The memory
// engine asks, under its own lock, before it lets the entry of a stream
// whose history emptied go (MemoryEngine.settle): lock order, the engine's
// lock, then the hub's; nothing calls the engine holding the hub's lock.
func (h *hub) watched(stream string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.subs[stream]) > 0
}

// movedTo records that c's entry in the list of stream's subscribers moved
// from place from to place to (unregister). Under h.mu.
func (c *conn) movedTo(stream string, from, to int) {
	for j, s := range c.streams {
		if s == stream && c.subAt[j] == from {
			c.subAt[j] = to
			return
		}
	}
}

// openLibStream creates c's library stream; call it right before c is
// handed to the library's handler. (Removed by unregister.)
func (h *hub) openLibStream(c *conn) {
	h.lib.CreateStream(c.id)
}

// unregister removes c. Call it once the library's handler for c returned,
// or, for a connection never handed to the library, once its stream ended.
func (h *hub) unregister(c *conn) {
	h.mu.Lock()
	_, registered := h.conns[c.id]
	delete(h.conns, c.id)
	for j, s := range c.streams {
		if !registered {
			break // never added (add refused it): in no list
		}
		// c's place, filled by the last subscriber of the list: a
		// disconnect costs the same however many share the stream.
		list := h.subs[s]
		i, last := c.subAt[j], len(list)-1
		moved := list[last]
		list[i] = moved
		list[last] = nil
		list = list[:last]
		// c itself when it was last, or subscribes to s twice.
		moved.movedTo(s, last, i)
		if len(list) == 0 {
			delete(h.subs, s)
		} else {
			h.subs[s] = list
		}
	}
	h.mu.Unlock()
	if registered {
		h.presence.add(c.streams, -1)
	}
	// The library's handler returned, so its subscriber is gone and removing
	// the stream leaks nothing. (A stream never created: nothing to remove.)
	if c.sink == nil {
		h.lib.RemoveStream(c.id)
	}
}

// subscribed is called on c's handler goroutine once the library registered
// c's subscriber (its first Flush, of the headers, comes after that): from
// then on frames published to c's stream reach the browser. A connection with
// nothing to replay goes live right here, with no goroutine of its own: the
// common connect, and the cheap one; what was delivered to it meanwhile (a
// dozing connection's first events, see doze.go) is queued first, in order.
// Its library stream is new and empty, and pending holds at most queueSize
// events, so every one fits. Any other connection starts replay, which may
// block on the browser and so cannot run on the goroutine that writes to it;
// replaying reports whether it did, and the handler waits for done before it
// returns.
func (h *hub) subscribed(ctx context.Context, c *conn) (done <-chan struct{}) {
	if !c.resume || c.caughtUp {
		c.mu.Lock()
		if !c.overflow {
			defer c.mu.Unlock()
			// A caught-up resume already has every event up to its
			// Last-Event-ID, some of which the dispatcher may still deliver.
			// Any other connection starts at the first event held for
			// it: its after means nothing, and a lastID taken from it
			// could skip every event, for good (a silent stream).
			if c.caughtUp {
				c.lastID = c.after
			}
			sent := 0
			for _, ev := range c.pending {
				if ev.ID <= c.lastID {
					continue
				}
				if !h.tryEvent(c, ev) {
					return nil // evicted: cannot happen, see above
				}
				c.lastID = ev.ID
				sent++
			}
			h.stats.delivered.Add(int64(sent))
			clear(c.pending)
			c.pending = nil
			c.live = true
			return nil
		}
		c.mu.Unlock()
	}
	ch := make(chan struct{})
	go func() { // owned by c's handler, which waits for ch
		defer close(ch)
		h.replay(ctx, c)
	}()
	return ch
}

// replay sends c what it missed, then the events delivered meanwhile, then
// marks it live; it runs on a goroutine owned by c's HTTP handler (started by
// subscribed) and returns when that is done or ctx ends. Replay frames go out with the library's
// blocking Publish: that paces a long replay to the browser's speed on the
// connection's own stream, so it never evicts the client it is for and never
// delays anyone else. Events delivered during the replay wait in c.pending;
// when more arrive than it holds, replay reads them from history instead, so
// a client connecting during a burst is not evicted either.
func (h *hub) replay(ctx context.Context, c *conn) {
	// last is the id of the last event sent (or the client's Last-Event-ID);
	// based says whether it is set yet.
	last, based := c.after, c.resume
	if c.resume {
		var ok bool
		if last, ok = h.sendHistory(ctx, c, last); !ok {
			return
		}
	}
	for ctx.Err() == nil {
		c.mu.Lock()
		if c.overflow {
			c.overflow = false
			if !based {
				last, based = c.firstPending-1, true
			}
			c.mu.Unlock()
			var ok bool
			if last, ok = h.sendHistory(ctx, c, last); !ok {
				return
			}
			continue
		}
		batch := c.pending
		c.pending = nil
		if len(batch) == 0 {
			c.live = true
			c.lastID = last
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		for _, ev := range batch {
			if !based || ev.ID > last {
				if !h.sendEvent(ctx, c, ev) {
					return
				}
				last, based = ev.ID, true
			}
		}
	}
}

// sendHistory sends c the events of its streams after id after, or a reset
// frame when history cannot cover them, and returns the id sent last. ok is
// false when the connection is over.
func (h *hub) sendHistory(ctx context.Context, c *conn, after uint64) (last uint64, ok bool) {
	var r Replay
	var err error
	if c.history != nil && after == c.after { // read by checkResume
		r, c.history = *c.history, nil
	} else {
		r, err = h.engine.Replay(ctx, c.streams, after, h.replayLimit)
	}
	if err != nil {
		if ctx.Err() == nil {
			h.log.Warn("read history for resume", "err", err)
			h.evict(c, evictReplayFailed)
		}
		return 0, false
	}
	if r.Reset != "" {
		h.stats.resets.Add(1)
		if r.Reset == ResetTooFarBehind {
			h.stats.replaysCapped.Add(1)
		}
		if c.sink != nil {
			return r.Head, c.sink.put(ctx, sinkItem{reset: r.Reset, head: r.Head})
		}
		h.send(c, resetFrame(r.Head, r.Reset))
		return r.Head, true
	}
	if len(r.Events) > 0 {
		h.stats.replays.Add(1)
		h.stats.replayedEvents.Add(int64(len(r.Events)))
	}
	last = after
	for _, ev := range r.Events {
		if ctx.Err() != nil {
			return 0, false
		}
		if !h.sendEvent(ctx, c, ev) {
			return 0, false
		}
		last = ev.ID
	}
	return last, true
}

// sendEvent hands c one event of its replay, waiting while its queue is
// full; false when ctx ended first (a sink's wait ends with it; a library
// stream's ends when the library drops the stream).
func (h *hub) sendEvent(ctx context.Context, c *conn, ev *Event) bool {
	if c.sink != nil {
		return c.sink.put(ctx, sinkItem{event: ev})
	}
	h.send(c, ev.frame(c.format, h.ce))
	return true
}

// send hands c one frame of its replay, waiting while its queue is full.
func (h *hub) send(c *conn, frame *sse.Event) {
	c.queued.Add(1)
	h.lib.Publish(c.id, frame)
}

// resumeCheckTimeout bounds checkResume's read of history: the response
// headers wait for it, and nothing watches the socket meanwhile. A read
// takes a few milliseconds (NATS: a handful of JetStream requests, the
// memory engine: none); one that takes longer (an engine waiting for an
// unreachable NATS) gives up, and the connection is set up at once, its
// headers sent, its socket watched while its replay reads again.
const resumeCheckTimeout = 500 * time.Millisecond

// checkResume reads the history of c, a resume, after the client's
// Last-Event-ID, once c is registered (so nothing published from then on can
// fall between that read and what deliver holds for c), and reports whether
// it held nothing to send: c is caught up and needs no replay (c.caughtUp).
// Otherwise what it read waits in c.history for the replay, which then does
// not read it again. A failed read, or one past resumeCheckTimeout, says
// false: the replay reads again, and evicts c if that fails too. Call it on
// c's own goroutine, before c is handed to the library.
func (h *hub) checkResume(ctx context.Context, c *conn) (caughtUp bool) {
	ctx, cancel := context.WithTimeout(ctx, resumeCheckTimeout)
	defer cancel()
	r, err := h.engine.Replay(ctx, c.streams, c.after, h.replayLimit)
	switch {
	case err != nil:
		return false
	case r.Reset == "" && len(r.Events) == 0:
		c.caughtUp = true
		return true
	default:
		c.history = &r
		return false
	}
}

// resetFrame tells a client that history cannot cover its gap. Its id is the
// last id assigned when history was read, so the browser's next
// Last-Event-ID continues from there instead of asking again.
func resetFrame(head uint64, reason string) *sse.Event {
	data, _ := json.Marshal(struct { //nolint:errchkjson // a struct of strings always marshals
		Reason string `json:"reason"`
		ID     string `json:"lastEventId"`
	}{reason, strconv.FormatUint(head, 10)})
	return &sse.Event{
		ID:    []byte(strconv.FormatUint(head, 10)),
		Event: []byte(ResetEvent),
		Data:  data,
	}
}

// maxGroup bounds how many events one frame group holds: large enough to
// turn a burst into few writes, small enough to keep one library event (and
// the write it becomes) modest.
const maxGroup = 64

// maxGroupBytes bounds the size of one frame group. The library formats
// every write of every connection into a buffer of package fmt's, which fmt
// reuses only up to 64 KiB: a larger group would cost each connection a
// new copy of it per write, garbage at once, or held for as long as a
// stalled peer blocks the write (2,000 stalled connections held 130 MiB of
// such copies of one group), and each write again when they are evicted.
// Groups stay under half that, so a buffer that grows for one (it doubles)
// stays reusable; a single larger event is still sent alone.
const maxGroupBytes = 32 << 10

// groupFrameBytes bounds the bytes ev adds to a group's frame in any
// format: its data, and its id, type and stream, which the envelope formats
// wrap with their field names (about 150 bytes).
func groupFrameBytes(ev *Event) int {
	return len(ev.Data) + len(ev.Type) + len(ev.Stream) + 200
}

// deliver offers a batch of events to the connections subscribed to their
// streams, in frame groups (at most maxGroup events and maxGroupBytes of one
// stream), each handed to a connection as one library event (one
// TryPublish, one wake-up of its writer, one write, one set of the
// library's formatting calls). It never blocks: a connection whose queue is
// full is evicted.
//
// A connection of one stream gets the batch's events of its stream grouped,
// however the batch interleaves them with other streams' (spread): under
// many publishers a batch holds a few events of each of many streams, and a
// group per stream rather than per event cut the bridge's CPU per event by
// about a fifth. A connection of several streams must see every frame in
// id order, so it gets runs of consecutive events of one stream, as they
// come.
func (h *hub) deliver(batch []*Event) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.tracer != nil || !h.spread(batch) {
		h.deliverRuns(batch, false)
		return
	}
	multi := false
	for _, list := range h.byStream {
		conns := h.subs[list[0].Stream]
		for len(list) > 0 && len(conns) > 0 {
			n := groupLen(list)
			g := &group{events: list[:n]}
			for _, c := range conns {
				if len(c.streams) == 1 {
					h.offer(c, g)
				} else {
					multi = true
				}
			}
			list = list[n:]
		}
	}
	h.clearByStream()
	if multi {
		h.deliverRuns(batch, true)
	}
}

// spread reports whether some stream's events are not all consecutive in
// batch: then it sorts them into h.byStream, a list per stream in id order
// (reused from batch to batch, by deliver's one goroutine).
func (h *hub) spread(batch []*Event) bool {
	runs := 1
	for i := 1; i < len(batch); i++ {
		if batch[i].Stream != batch[i-1].Stream {
			runs++
		}
	}
	if runs <= 2 { // one run, or two of different streams
		return false
	}
	if h.streamAt == nil {
		h.streamAt = make(map[string]int)
	}
	for _, ev := range batch {
		i, ok := h.streamAt[ev.Stream]
		if !ok {
			i = len(h.byStream)
			h.streamAt[ev.Stream] = i
			if i < cap(h.byStream) {
				h.byStream = h.byStream[:i+1]
			} else {
				h.byStream = append(h.byStream, nil)
			}
		}
		h.byStream[i] = append(h.byStream[i], ev)
	}
	if len(h.byStream) == runs { // every stream in one run: the runs are the groups
		h.clearByStream()
		return false
	}
	return true
}

// clearByStream empties spread's lists, keeping their room: no event
// outlives its delivery in them.
func (h *hub) clearByStream() {
	for i := range h.byStream {
		clear(h.byStream[i])
		h.byStream[i] = h.byStream[i][:0]
	}
	h.byStream = h.byStream[:0]
	clear(h.streamAt)
}

// deliverRuns offers batch in runs of consecutive events of one stream (at
// most a group each), to every connection of the run's stream, or, with
// onlyMulti, to those of several streams only.
func (h *hub) deliverRuns(batch []*Event, onlyMulti bool) {
	for len(batch) > 0 {
		n := groupLen(batch)
		conns := h.subs[batch[0].Stream]
		if h.tracer != nil {
			h.tracer.start(batch[:n], len(conns))
		}
		if len(conns) > 0 {
			g := &group{events: batch[:n]}
			for _, c := range conns {
				if !onlyMulti || len(c.streams) > 1 {
					h.offer(c, g)
				}
			}
		}
		if h.tracer != nil {
			h.tracer.end()
		}
		batch = batch[n:]
	}
}

// groupLen returns how many events at the start of batch (not empty) form
// its first group: consecutive events of one stream, at most maxGroup of
// them and maxGroupBytes (groupFrameBytes), and always the first one.
func groupLen(batch []*Event) int {
	n, size := 1, groupFrameBytes(batch[0])
	for n < len(batch) && n < maxGroup && batch[n].Stream == batch[0].Stream {
		if size += groupFrameBytes(batch[n]); size > maxGroupBytes {
			break
		}
		n++
	}
	return n
}

// group is a run of consecutive events of one stream, with its frame in each
// format built at most once. It lives only during deliver: it aliases the
// engine's batch.
type group struct {
	events []*Event
	frames [numFormats]*sse.Event
}

// frame returns one library event that writes every event of g, in order;
// ce are the CloudEvents attributes (see Event.frame).
// The library writes "id: ID\ndata: DATA\nevent: EVENT\n\n" without escaping
// DATA, so DATA here carries the first event's data and, after it, the
// complete frames of the others but the last one's event line: the bytes on
// the wire are exactly those of the separate frames. sselib_test.go pins the
// library behaviour this relies on.
func (g *group) frame(f Format, ce *cloudEventsAttrs) *sse.Event {
	if len(g.events) == 1 {
		return g.events[0].frame(f, ce)
	}
	if fr := g.frames[f]; fr != nil {
		return fr
	}
	if f == FormatData {
		g.frames[f] = g.dataFrame()
		return g.frames[f]
	}
	first := g.events[0].frame(f, ce)
	size := 0
	for _, ev := range g.events {
		fr := ev.frame(f, ce)
		size += len(fr.ID) + len(fr.Data) + len(fr.Event) + 24
	}
	data := make([]byte, 0, size)
	data = append(data, first.Data...)
	prev := first
	for _, ev := range g.events[1:] {
		fr := ev.frame(f, ce)
		if len(prev.Event) > 0 {
			data = append(data, "\nevent: "...)
			data = append(data, prev.Event...)
		}
		data = append(data, "\n\nid: "...)
		data = append(data, fr.ID...)
		data = append(data, "\ndata: "...)
		data = append(data, fr.Data...)
		prev = fr
	}
	g.frames[f] = &sse.Event{ID: first.ID, Data: data, Event: prev.Event}
	return g.frames[f]
}

// dataFrame is frame in the data format, written from the events
// themselves: their own frames, which the other formats' groups are made
// of, would cost an allocation each, for a group that is written once.
func (g *group) dataFrame() *sse.Event {
	size := 0
	for _, ev := range g.events {
		size += maxIDDigits + len(ev.Data) + len(ev.Type) + 24
	}
	box := new(frameBox)
	fr := &box.Event
	first := g.events[0]
	fr.ID = strconv.AppendUint(box.id[:0], first.ID, 10)
	data := make([]byte, 0, size)
	data = append(data, first.Data...)
	prev := first
	for _, ev := range g.events[1:] {
		if prev.Type != "" {
			data = append(data, "\nevent: "...)
			data = append(data, prev.Type...)
		}
		data = append(data, "\n\nid: "...)
		data = strconv.AppendUint(data, ev.ID, 10)
		data = append(data, "\ndata: "...)
		data = append(data, ev.Data...)
		prev = ev
	}
	fr.Data = data
	if prev.Type != "" {
		fr.Event = []byte(prev.Type)
	}
	return fr
}

func (h *hub) offer(c *conn, g *group) {
	if c.evicted.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		for _, ev := range g.events {
			h.hold(c, ev)
		}
		return
	}
	first, last := g.events[0].ID, g.events[len(g.events)-1].ID
	switch {
	case last <= c.lastID: // all sent by replay already
		return
	case first <= c.lastID: // partly sent by replay: rare, right after it
		for _, ev := range g.events {
			if ev.ID > c.lastID && !h.tryEvent(c, ev) {
				return
			}
			c.lastID = max(c.lastID, ev.ID)
		}
	default:
		if c.sink != nil {
			// The group aliases the engine's batch: the sink keeps a copy.
			if !h.trySink(c, sinkItem{group: slices.Clone(g.events)}) {
				return
			}
		} else if !h.tryPublish(c, g.frame(c.format, h.ce), evictQueueFull) {
			return
		}
		c.lastID = last
	}
	h.stats.delivered.Add(int64(len(g.events)))
}

// hold keeps ev for a connection that is not live yet. Called with c.mu held.
func (h *hub) hold(c *conn, ev *Event) {
	if c.firstPending == 0 {
		c.firstPending = ev.ID
	}
	switch {
	case c.overflow:
	case len(c.pending) >= h.queueSize:
		c.overflow = true // replay reads these from history
		clear(c.pending)
		c.pending = c.pending[:0]
	default:
		c.pending = append(c.pending, ev)
	}
	c.wake(wakeEvent)
}

// tryEvent queues ev for c without blocking, and evicts c when its queue
// is full.
func (h *hub) tryEvent(c *conn, ev *Event) bool {
	if c.sink != nil {
		return h.trySink(c, sinkItem{event: ev})
	}
	return h.tryPublish(c, ev.frame(c.format, h.ce), evictQueueFull)
}

// trySink queues it for c, a sink's connection, without blocking, and
// evicts c when the sink's queue is full: as tryPublish for a library
// stream.
func (h *hub) trySink(c *conn, it sinkItem) bool {
	select {
	case c.sink.ch <- it:
		return true
	default:
		c.sink.full.Store(true)
		h.evict(c, evictQueueFull)
		return false
	}
}

// tryPublish queues frame for c without blocking, and evicts c for reason
// when its queue is full. (queued goes up first: counted after, the writer
// could flush the frame before it is counted and skip a later real flush.)
func (h *hub) tryPublish(c *conn, frame *sse.Event, reason string) bool {
	c.queued.Add(1)
	if !h.lib.TryPublish(c.id, frame) {
		c.queued.Add(-1)
		h.evict(c, reason)
		return false
	}
	return true
}

// heartbeat sends a ping comment to every live connection every interval until
// ctx ends, and wakes every dozing one to write its own (doze.go). A
// connection whose queue is full is evicted; one whose peer is gone fails its
// write and is dropped by the write deadline.
func (h *hub) heartbeat(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.mu.RLock()
			for _, c := range h.conns {
				if c.evicted.Load() {
					continue
				}
				// Only live connections: before its subscriber is
				// registered the library drops a frame without a
				// trace, which would leave queued one too high; a
				// replaying connection is busy being written to.
				// A dozing one writes its ping itself (doze.go).
				c.mu.Lock()
				live := c.live
				c.wake(wakePing)
				c.mu.Unlock()
				if live && c.sink == nil {
					h.tryPublish(c, pingFrame, evictHeartbeat)
				}
			}
			h.mu.RUnlock()
		}
	}
}

// collectAfter is how many connections must have died in one wave (see
// finishedDying) for its end to be worth a garbage collection.
const collectAfter = 256

// finishedDying is called by a dying connection once it ended and gave its
// token back (deadlineWriter.die). When it was the last of a wave of at
// least collectAfter connections, it runs the garbage collector twice:
// what they held (a write in progress each, when a peer stopped reading)
// was live at the collection before, the collector's next goal is a
// multiple of that, and, left to itself, it would let the heap grow that
// large again before reclaiming any of it. Twice, because the library's
// buffers of their last writes went back to package fmt's pool, which a
// collection only moves aside and the next one frees. Collected now, their
// memory is free at once and goes back to the system as the runtime
// returns what it does not need.
func (h *hub) finishedDying() {
	n := h.died.Add(1)
	if len(h.dying) > 0 {
		return // the wave goes on: another connection holds a token
	}
	if h.died.CompareAndSwap(n, 0) && n >= collectAfter {
		runtime.GC()
		runtime.GC()
	}
}

// evict closes c because it cannot keep up: its request context is cancelled,
// so the library's handler returns, and a write blocked on the peer fails now.
// The browser reconnects with its Last-Event-ID. Only the first call counts.
func (h *hub) evict(c *conn, reason string) {
	if !c.evicted.CompareAndSwap(false, true) {
		return
	}
	h.countEviction(reason)
	h.log.Debug("evict connection", "reason", reason, "streams", c.streams)
	c.cancel()
	c.wmu.Lock()
	if !c.finished {
		_ = c.out.SetWriteDeadline(time.Now()) // best effort: not every writer has deadlines
	}
	c.wmu.Unlock()
}

func (h *hub) countEviction(reason string) {
	for i, r := range evictReasons {
		if r == reason {
			h.stats.evictions[i].Add(1)
		}
	}
}

// evictionCount returns how many connections were evicted for reason.
func (h *hub) evictionCount(reason string) int64 {
	for i, r := range evictReasons {
		if r == reason {
			return h.stats.evictions[i].Load()
		}
	}
	return 0
}

// subscriptionCount returns the number of (connection, stream) pairs.
func (h *hub) subscriptionCount() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	n := 0
	for _, c := range h.conns {
		n += len(c.streams)
	}
	return n
}

// connCount returns the number of open SSE connections.
func (h *hub) connCount() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.conns)
}

// close refuses new connections and cancels every open one, so their handlers
// return and the HTTP server can shut down. Each is first given a retry: of
// its own (see shutdownRetry), so a restart is not a reconnect storm.
func (h *hub) close() (conns int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	lo, hi := shutdownRetry(h.retry, len(h.conns), h.connectRate)
	for _, c := range h.conns {
		c.closeRetry.CompareAndSwap(0, int64(jitter(lo, hi)))
		c.cancel()
	}
	return len(h.conns)
}

// cutWrites makes every write in progress or to come fail at once, on
// every connection: the last step of a shutdown whose connections did not
// end in time (a peer that does not read its last words).
func (h *hub) cutWrites() {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, c := range h.conns {
		c.wmu.Lock()
		if !c.finished {
			_ = c.out.SetWriteDeadline(time.Now())
		}
		c.wmu.Unlock()
	}
}

// closeWithRetry ends c for reason, a reason that is no fault of the
// client (token expiry): unlike evict, the write in progress is not cut and
// the stream ends with a retry: of retry, so the reconnect comes that soon.
// Only the first close of c counts.
func (h *hub) closeWithRetry(c *conn, reason string, retry time.Duration) {
	if c.evicted.Load() || !c.closeRetry.CompareAndSwap(0, int64(max(retry, time.Millisecond))) {
		return
	}
	h.countEviction(reason)
	h.log.Debug("close connection", "reason", reason, "streams", c.streams)
	c.cancel()
}

// evictAll closes every connection of the hub; the browsers reconnect with
// their Last-Event-ID. The NATS engine's gap handler calls it (see
// NATSEngine.Run) when events were lost before this node delivered them.
func (h *hub) evictAll(reason string) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, c := range h.conns {
		h.evict(c, reason)
	}
}
