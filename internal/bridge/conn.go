package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// A connection (conn) is one subscriber's SSE stream, from the moment the
// handler registered it with the hub until it unregistered it. Its states,
// in the order it passes them:
//
//   - registered (hub.register): in the hub's maps, not live. Events the
//     hub delivers are held in pending (at most the queue size; past it,
//     overflow, and the replay reads them from history instead).
//   - dozing (doze.go), for a connection with nothing to replay: headers
//     and retry: sent, no library stream; sleeper is set, and the first
//     held event or a heartbeat wakes it (conn.wake).
//   - with the library (hub.openLibStream, then the library's handler): its
//     first Flush makes the hub replay history (hub.subscribed), then go
//     live: pending is sent, and from then on deliver offers every group
//     straight to the library stream (hub.offer, TryPublish).
//   - evicted (hub.evict, at most once, from any goroutine): its context
//     is cancelled and its write deadline set to now; the handler returns,
//     once the writer got its turn to finish (deadlineWriter.die: dying
//     connections finish a few at a time). A connection whose write failed
//     because the peer went is over the same way, without counting as an
//     eviction.
//   - finished: the handler returned; out is not used any more, and the
//     hub unregisters the connection.
//
// Lock order: the hub's mu, then a connection's mu, then its wmu. deliver
// and heartbeat hold the hub's read lock while they take each connection's
// mu; an eviction under a connection's mu takes its wmu. No code takes them
// in another order, and none blocks on a browser while holding one: writes
// to the peer happen on the connection's own goroutine, under no lock but
// wmu's short deadline updates.

// conn is one SSE connection: its own library stream, its subscriptions, and
// the state that orders replay before live events.
type conn struct {
	id      string // the library stream's id: random, never shown to clients
	streams []string
	// subAt is c's place in the hub's list of each stream's subscribers,
	// streams[j]'s at subAt[j]; under the hub's mu.
	subAt  []int
	resume bool   // the client sent a usable Last-Event-ID
	after  uint64 // that id; meaningless without resume
	format Format
	cancel context.CancelFunc
	// sink, when set, takes the connection's frames instead of a library
	// stream: a gRPC subscriber (subscribe.go). Set before the hub sees
	// the connection, never changed.
	sink *sink

	// Set by checkResume, on the connection's own goroutine before the
	// library or a replay sees the connection (so without mu): caughtUp,
	// history held nothing after the client's Last-Event-ID, so the
	// connection needs no replay; else history, what that read found, for
	// the replay's first read.
	caughtUp bool
	history  *Replay

	mu      sync.Mutex
	live    bool     // replay is done: deliver sends directly
	lastID  uint64   // the last event id sent, once live
	pending []*Event // events delivered during replay, at most queueSize
	// overflow: more events arrived during replay than pending holds; they
	// were dropped and replay catches up from history instead.
	overflow bool
	// firstPending is the id of the first event delivered before the
	// connection went live: where a client without Last-Event-ID starts.
	firstPending uint64
	// sleeper is what the connection dozes in (see doze.go), nil before and
	// after; wakeFor says why it is being woken (wakeEvent, wakePing).
	sleeper dozer
	wakeFor uint8

	// evicted: the hub sends the connection nothing more. Set once, by an
	// eviction (hub.evict, counted) or a write that failed because the
	// peer went (deadlineWriter.failed).
	evicted atomic.Bool
	// queued counts frames handed to the library and not yet flushed; the
	// writer flushes for real only when it drops to zero, so a connection
	// that is behind gets its frames in few large writes instead of one
	// syscall per frame.
	queued atomic.Int64
	// wmu guards out's deadline and finished against the writer goroutine
	// and eviction.
	wmu      sync.Mutex
	out      streamOutput
	finished bool // the handler returned: out must not be used any more

	// closeRetry, when not zero, is the retry: (in nanoseconds) the handler
	// sends as the stream's last words once the library returned: set by a
	// close that is no fault of the client (shutdown, token expiry), so it
	// comes back when it should instead of when the browser's default says.
	closeRetry atomic.Int64
}

// connSeq numbers connections for their library stream ids.
var connSeq atomic.Uint64

// newConnID returns a library stream id no other connection of this process
// has. A counter is enough: the id never leaves the process (the library
// refuses clients that name a stream: the handler sets it), and clients
// cannot create streams (AutoStream is off).
func newConnID() string {
	return "c" + strconv.FormatUint(connSeq.Add(1), 36)
}

// wake wakes c for why when it dozes (see doze); c.mu must be held.
func (c *conn) wake(why uint8) {
	if c.sleeper == nil {
		return
	}
	if c.wakeFor == 0 {
		c.sleeper.wake()
	}
	c.wakeFor |= why
}

// streamOutput is what the bridge needs of a connection's writer besides
// Write: a real flush and write deadlines. [*http.ResponseController] and
// [*h1stream.Stream] implement it.
type streamOutput interface {
	Flush() error
	SetWriteDeadline(time.Time) error
}

// bufferingOutput is a streamOutput that tells a write that only fills its
// buffer ([*h1stream.Stream]): such a write needs no deadline.
type bufferingOutput interface {
	Buffers(n int) bool
}

// deadlineWriter gives every write to the browser a deadline, so a peer that
// stops reading costs one write timeout and is then dropped; the library
// ignores write errors, so a failed write also evicts the connection. The
// deadline is re-armed at most every eighth of the timeout, not before each
// of the library's several writes per frame: each write then has between 7/8
// of the timeout and all of it.
//
// The library calls Write and Flush from its handler goroutine only.
type deadlineWriter struct {
	http.ResponseWriter
	hub     *hub
	c       *conn
	ctx     context.Context // the connection's: replay ends with it
	timeout time.Duration
	armed   time.Time
	started bool // the library's first Flush, of the headers, happened
	// replayDone is closed when the connection's replay goroutine ended;
	// nil when the connection needed none.
	replayDone <-chan struct{}
	// retry is the retry: sent right after the status line, before any
	// frame; zero sends none.
	retry       time.Duration
	wroteHeader bool
	// broken: a write or flush failed or was refused, so a frame may have
	// been cut short.
	broken bool
	// dying: the connection is over and its writer holds one of the hub's
	// dying tokens, which serve gives back when the connection ended.
	dying bool
}

// WriteHeader sends the status, and, on a 200, the connection's retry: as
// the first line of the body: it then reaches the browser with the headers
// in the library's first flush, before any frame, at no cost per frame and
// without a library event (whose id: line would reset the browser's last
// event id).
func (w *deadlineWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return // a dozing stream's, before the library's own (doze.go)
	}
	w.wroteHeader = true
	w.ResponseWriter.WriteHeader(code)
	if code == http.StatusOK && w.retry > 0 {
		// Buffered for the first flush, which needs no deadline (Flush).
		_, _ = w.ResponseWriter.Write([]byte(retryField(w.retry) + "\n"))
	}
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	// The library writes a frame in several small writes, which an
	// HTTP/1.1 stream only buffers: those skip arm's clock reading (a
	// twentieth of the bridge's CPU under a flat-out publisher), and
	// the flush, or a write that does reach the connection, arms it.
	if b, ok := w.c.out.(bufferingOutput); ok && b.Buffers(len(p)) {
		if w.c.evicted.Load() {
			w.broken = true
			return 0, errEvicted
		}
	} else if err := w.arm(); err != nil {
		w.broken = true
		return 0, err
	}
	n, err := w.ResponseWriter.Write(p)
	if err != nil {
		w.failed(err)
	}
	return n, err
}

// Flush implements [http.Flusher], which the library requires. The library
// flushes after every frame; this flushes for real only once no frame handed
// to the library waits behind this one (conn.queued), coalescing a burst
// into few writes. The bufio buffer under the ResponseWriter still spills
// to the socket when full, so nothing waits on a flush that never comes.
// On a connection that is over it flushes nothing and waits for its turn
// to finish (die).
func (w *deadlineWriter) Flush() {
	if w.broken || w.c.evicted.Load() {
		w.die()
		return
	}
	if w.started && w.c.queued.Add(-1) > 0 {
		return
	}
	if !w.started {
		// The library flushes the headers once it registered the
		// subscriber: the connection can go live. The flush itself needs no
		// deadline: the headers and the retry: are a few hundred bytes, which
		// the socket buffer of a new connection always takes at once (an
		// idle connection then holds no timer until its first frame).
		w.started = true
		w.replayDone = w.hub.subscribed(w.ctx, w.c)
		if w.c.evicted.Load() {
			w.broken = true
			return
		}
	} else if w.arm() != nil {
		w.broken = true
		return
	}
	if err := w.c.out.Flush(); err != nil {
		w.failed(err)
	}
}

// die waits, once, until the connection, which is over (evicted, or a
// write failed), may finish: it takes one of the hub's dying tokens, which
// serve gives back once the connection ended. The library's handler returns
// only once it has gone through every frame queued for the connection (up
// to twice the queue size), each formatted (a copy) and refused by Write;
// thousands of connections evicted at once would all do that at once, and
// the goroutines of a publish call would wait behind them for the CPU. So
// they finish a few at a time (one per two processors), and the others wait
// here, between frames: the library's buffer of the last one is back in its
// pool, and a waiting connection holds no copy of any frame.
func (w *deadlineWriter) die() {
	if !w.dying {
		w.dying = true
		w.hub.dying <- struct{}{}
	}
}

// Unwrap lets [http.ResponseController] reach the server's writer.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *deadlineWriter) arm() error {
	if w.c.evicted.Load() {
		return errEvicted
	}
	now := time.Now()
	if now.Sub(w.armed) < w.timeout/8 {
		return nil
	}
	w.c.wmu.Lock()
	defer w.c.wmu.Unlock()
	// Checked again under wmu: an eviction sets the deadline to now under the
	// same lock, and must not be undone by a re-arm.
	if w.c.evicted.Load() {
		return errEvicted
	}
	if err := w.c.out.SetWriteDeadline(now.Add(w.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("set write deadline: %w", err)
	}
	w.armed = now
	return nil
}

// failed handles a write error. A deadline means the peer stopped reading;
// anything else means it went away. Either way the connection is over, and
// the hub sends it nothing more: one that went is not evicted later for the
// queue it leaves unread (while it waits for its turn to finish, see die).
func (w *deadlineWriter) failed(err error) {
	w.broken = true
	if errors.Is(err, os.ErrDeadlineExceeded) {
		w.hub.evict(w.c, evictWriteDeadline)
		return
	}
	w.c.evicted.Store(true)
	w.c.cancel()
}

// lastWordsTimeout bounds the write of a stream's last words: a peer that
// does not take a few bytes in this long is gone anyway.
const lastWordsTimeout = time.Second

// lastWords ends c's stream with the retry: that a close which was no fault
// of the client asked for (conn.closeRetry: shutdown, token expiry). Call it
// once the library returned, on the handler goroutine, before the
// connection is marked finished. Nothing is written after a failed or
// refused write, or to an evicted connection: a frame may have been cut
// short there, and the blank line ending the retry: would complete it.
func lastWords(w *deadlineWriter, c *conn) {
	d := time.Duration(c.closeRetry.Load())
	if d <= 0 || w.broken || c.evicted.Load() {
		return
	}
	c.wmu.Lock()
	err := c.out.SetWriteDeadline(time.Now().Add(min(lastWordsTimeout, w.timeout)))
	c.wmu.Unlock()
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		return
	}
	if _, err := w.ResponseWriter.Write([]byte(retryField(d) + "\n")); err == nil { //nolint:gosec // G705: a number the bridge formats, no client input
		_ = c.out.Flush()
	}
}
