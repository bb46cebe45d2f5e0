package bridge

import (
	"container/list"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Admission limits of GET /events: how fast connections may start and how
// many may be open, per node, per client address and per token subject.
// sseHandler checks them after the cheap checks of the request itself and
// before any token work; a refusal is shed (200, a jittered retry:, end of
// stream), because a browser given any other status stops for good, and
// these refusals are ones a retry later fixes.

// Rejection reasons: the values of the reason label of
// bridge_rejections_total. A fixed set, never client input.
const (
	rejectMethod             = "method_not_allowed"
	rejectOrigin             = "origin"
	rejectBadRequest         = "bad_request"
	rejectStreamNameTooLong  = "stream_name_too_long"
	rejectTooManyStreams     = "too_many_streams"
	rejectConnectRate        = "connect_rate"
	rejectConnectRatePerIP   = "connect_rate_per_ip"
	rejectMaxConns           = "max_connections"
	rejectMaxConnsPerIP      = "max_connections_per_ip"
	rejectMaxConnsPerSubject = "max_connections_per_subject"
	rejectDraining           = "draining"
)

// maxRateKeys bounds the per-address connect rate table. An entry is about
// 150 bytes, so a full table is about 10 MB.
const maxRateKeys = 1 << 16

// grpcMessageOverhead is what a Publish request may carry besides its
// event's data: the stream name, the type, the Any's type URL, protobuf
// framing.
const grpcMessageOverhead = 64 << 10

// maxGRPCMessage is the largest gRPC message the server reads: larger ones
// get ResourceExhausted from the transport before they are decoded. Up to
// it, an event whose JSON is over maxPayload still reaches Publish, whose
// InvalidArgument says what to do about it.
func maxGRPCMessage(maxPayload int) int { return maxPayload + grpcMessageOverhead }

// admission holds the connection limits of one node. A nil *admission
// admits everything. Safe for concurrent use.
type admission struct {
	maxConns   int64                      // <= 0: no limit
	conns      atomic.Int64               // connections holding a node slot
	perIP      *connCounter[netip.Prefix] // nil: no per-address limit
	perSubject *connCounter[string]       // nil: no per-subject limit
	rate       *rate.Limiter              // nil: no node connect rate
	ipRate     *rateTable                 // nil: no per-address connect rate
	now        func() time.Time
}

// newAdmission builds the limits of cfg (validated: negative means off).
func newAdmission(cfg *Config) *admission {
	a := &admission{maxConns: int64(max(cfg.MaxConnections, 0)), now: time.Now}
	if cfg.MaxConnectionsPerIP > 0 {
		a.perIP = newConnCounter[netip.Prefix](cfg.MaxConnectionsPerIP)
	}
	if cfg.MaxConnectionsPerSubject > 0 {
		a.perSubject = newConnCounter[string](cfg.MaxConnectionsPerSubject)
	}
	if cfg.ConnectRate > 0 {
		a.rate = rate.NewLimiter(rate.Limit(cfg.ConnectRate), burstOf(cfg.ConnectRate))
	}
	if cfg.ConnectRatePerIP > 0 {
		a.ipRate = newRateTable(cfg.ConnectRatePerIP, maxRateKeys, time.Now)
	}
	return a
}

// burstOf is the bucket size of a connect rate of r per second: one
// second's worth, and at least one.
func burstOf(r float64) int {
	return int(max(1, math.Min(math.Ceil(r), math.MaxInt32)))
}

// admit reserves a place for a new connection from the client at key: the
// per-address connect rate, the node's connect rate, then the node's and
// the address's connection counts. The per-address rate goes first so that
// one client's flood does not use up the node's rate for everyone. On
// success release gives the place back (call it exactly once, when the
// connection ends, whatever way it ends); otherwise reason says which limit
// refused it and nothing is held.
func (a *admission) admit(key netip.Prefix) (release func(), reason string) {
	if a == nil {
		return func() {}, ""
	}
	now := a.now()
	if a.ipRate != nil && !a.ipRate.allow(key, now) {
		return nil, rejectConnectRatePerIP
	}
	if a.rate != nil && !a.rate.AllowN(now, 1) {
		return nil, rejectConnectRate
	}
	if a.maxConns > 0 {
		if a.conns.Add(1) > a.maxConns {
			a.conns.Add(-1)
			return nil, rejectMaxConns
		}
	} else {
		a.conns.Add(1) // counted either way, for openConns
	}
	if a.perIP != nil && !a.perIP.acquire(key) {
		a.conns.Add(-1)
		return nil, rejectMaxConnsPerIP
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			if a.perIP != nil {
				a.perIP.release(key)
			}
			a.conns.Add(-1)
		})
	}, ""
}

// admitSubject reserves a place for a connection of the token subject sub,
// once the token is verified. An empty subject (a token without sub, or no
// token for public streams) is not limited here: the address limits still
// hold. release and reason are as for admit.
func (a *admission) admitSubject(sub string) (release func(), reason string) {
	if a == nil || a.perSubject == nil || sub == "" {
		return func() {}, ""
	}
	if !a.perSubject.acquire(sub) {
		return nil, rejectMaxConnsPerSubject
	}
	var once sync.Once
	return func() { once.Do(func() { a.perSubject.release(sub) }) }, ""
}

// openConns is the number of node slots held: admitted connections not yet
// released.
func (a *admission) openConns() int64 {
	if a == nil {
		return 0
	}
	return a.conns.Load()
}

// connCounter counts open connections per key, up to max each. An entry
// lives only while its key holds a connection, so the map never holds idle
// entries and is no larger than the number of open connections, which
// --max-connections bounds: there is nothing to expire and no separate cap
// to set.
type connCounter[K comparable] struct {
	max int
	mu  sync.Mutex
	n   map[K]int
}

func newConnCounter[K comparable](limit int) *connCounter[K] {
	return &connCounter[K]{max: limit, n: make(map[K]int)}
}

// acquire takes one place of key; false when key holds max already.
func (c *connCounter[K]) acquire(key K) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] >= c.max {
		return false
	}
	c.n[key]++
	return true
}

// release gives back one place of key taken by acquire.
func (c *connCounter[K]) release(key K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] <= 1 {
		delete(c.n, key)
		return
	}
	c.n[key]--
}

// size returns the number of keys held.
func (c *connCounter[K]) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.n)
}

// rateTable is a token bucket per client address, for the per-address
// connect rate. Unlike a connection count, a bucket outlives the request
// that used it, so the table must forget, or it becomes the attack (one
// entry per address ever seen):
//
//   - An entry unused for burst/rate, the time its bucket takes to refill,
//     is dropped: a full bucket is what a new entry starts with, so
//     forgetting it changes no decision.
//   - The table holds at most max entries. When a new address comes and it
//     is full, the least recently used entry is evicted, not the newcomer
//     refused. Refusing newcomers would let whoever fills the table (easy
//     with IPv6 /64s) lock every new client out of the node; evicting gives
//     the evicted address a fresh bucket, so under that attack the
//     per-address rate fails open, and the node's connect rate, which no
//     table can exhaust, still bounds the total.
//
// Safe for concurrent use.
type rateTable struct {
	limit rate.Limit
	burst int
	idle  time.Duration
	max   int

	mu      sync.Mutex
	entries map[netip.Prefix]*list.Element // of *rateEntry
	lru     list.List                      // front: most recently used
	now     func() time.Time
}

type rateEntry struct {
	key  netip.Prefix
	lim  *rate.Limiter
	used time.Time
}

func newRateTable(perSecond float64, maxKeys int, now func() time.Time) *rateTable {
	burst := burstOf(perSecond)
	return &rateTable{
		limit:   rate.Limit(perSecond),
		burst:   burst,
		idle:    time.Duration(float64(burst) / perSecond * float64(time.Second)),
		max:     maxKeys,
		entries: make(map[netip.Prefix]*list.Element),
		now:     now,
	}
}

// allow takes one token of key's bucket at now.
func (t *rateTable) allow(key netip.Prefix, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(now)
	if el, ok := t.entries[key]; ok {
		e := el.Value.(*rateEntry) //nolint:forcetypeassert // the list holds nothing else
		e.used = now
		t.lru.MoveToFront(el)
		return e.lim.AllowN(now, 1)
	}
	if len(t.entries) >= t.max {
		oldest := t.lru.Back()
		delete(t.entries, oldest.Value.(*rateEntry).key) //nolint:forcetypeassert // as above
		t.lru.Remove(oldest)
	}
	e := &rateEntry{key: key, lim: rate.NewLimiter(t.limit, t.burst), used: now}
	t.entries[key] = t.lru.PushFront(e)
	return e.lim.AllowN(now, 1)
}

// expire drops the entries unused for t.idle, oldest first: the list is in
// order of last use, so it stops at the first one still in use. Amortized,
// each entry is dropped once.
func (t *rateTable) expire(now time.Time) {
	for el := t.lru.Back(); el != nil; el = t.lru.Back() {
		e := el.Value.(*rateEntry) //nolint:forcetypeassert // as above
		if now.Sub(e.used) < t.idle {
			return
		}
		delete(t.entries, e.key)
		t.lru.Remove(el)
	}
}

// size returns the number of entries held.
func (t *rateTable) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}
