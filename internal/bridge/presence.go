package bridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Presence: how many connections are subscribed to each stream.
//
//   - On this node the hub counts, in register and unregister, every
//     connection it holds (SSE, and any other kind registered there): one
//     map update per stream of the connection, no scan of the others. A
//     stream with no subscriber has no entry.
//   - With the NATS engine every node reports its own non-zero counts to the
//     others with core NATS (presenceLink): a full report, in chunks of at
//     most presenceChunkStreams streams, when its counts changed but at most
//     every --presence-interval, and every third of --presence-timeout
//     anyway. Every node keeps the last complete report of every other node
//     (at most --presence-max-entries entries in all); a node not heard from
//     for --presence-timeout drops out, one that shuts down says goodbye.
//   - The cluster count of a stream is this node's count now plus the last
//     reported counts of the others. It is not a snapshot of one instant:
//     each other node's part is at most --presence-interval old while
//     reports arrive (a lost report: until the next one, a third of
//     --presence-timeout later), and a node that vanished counts until
//     --presence-timeout after its last report.
//   - Streams matching --presence-events get a bridge.presence event when
//     their cluster count changes, at most one per --presence-event-interval
//     per stream, carrying the latest count. One node publishes it: the
//     stream's owner, chosen among the live nodes by rendezvous hashing, so
//     nodes agree without talking as long as they see the same nodes.

// PresenceEvent is the SSE event name of the frames that carry a stream's
// subscriber count (--presence-events): data {"stream":NAME,"count":N}.
// Publishers may not use it.
const PresenceEvent = "bridge.presence"

// maxPresenceStreams bounds the streams one Presence call or /presence
// request asks about.
const maxPresenceStreams = 1000

// maxPresenceNodes bounds the other nodes presence keeps: reports of further
// nodes are ignored (and counted as dropped) until some drop out.
const maxPresenceNodes = 1024

// Chunks of a report: at most presenceChunkStreams streams, and about
// presenceChunkBytes of JSON (a stream name is at most 1 KiB), well under
// NATS's default max_payload of 1 MiB.
const (
	presenceChunkStreams = 500
	presenceChunkBytes   = 32 << 10
)

// presenceEventTimeout bounds the store of one round of presence events.
const presenceEventTimeout = 5 * time.Second

// presenceEventPass is the least time between two looks at the streams
// whose presence event may be due: short next to --presence-event-interval,
// long enough that a burst of connects costs a few looks, not one each.
const presenceEventPass = 10 * time.Millisecond

// presenceLink carries presence reports between nodes: core NATS with the
// nats engine (engine_nats.go). Messages may be lost, never reordered
// between one sender and one receiver.
type presenceLink interface {
	// send publishes one report message; it must not block for long.
	send(data []byte) error
	// listen calls receive with every message of every node (this one's
	// included), on one goroutine, until stop.
	listen(receive func(data []byte)) (stop func(), err error)
}

// presenceMsg is one message of a report: a node's counts, or part of them.
// Parts of one report are sent in a row with consecutive seq; a receiver
// that misses one keeps the report before.
type presenceMsg struct {
	Node   string         `json:"node"`
	Seq    uint64         `json:"seq"`              // per message, from 1
	Report uint64         `json:"report"`           // per report, from 1
	Part   int            `json:"part"`             // 0, 1, ... within the report
	Last   bool           `json:"last,omitempty"`   // the report's last part
	Bye    bool           `json:"bye,omitempty"`    // the node shuts down: forget it
	Counts map[string]int `json:"counts,omitempty"` // stream -> connections, all > 0
}

// presenceStats are presence's counters, read by the metrics collector.
type presenceStats struct {
	reportsSent, reportsReceived, reportsLost atomic.Int64
	droppedEntries                            atomic.Int64
	eventsPublished, eventsFailed             atomic.Int64
}

// localCount is one stream's entry on this node.
type localCount struct {
	n      int
	events bool // the stream matches --presence-events
}

// presencePeer is what this node knows of another node.
type presencePeer struct {
	counts map[string]int // its last complete report
	heard  time.Time
	seq    uint64 // the seq of its last message
	// The report being received: its parts so far; broken when one was
	// missed (it is then ignored up to its last part).
	staging map[string]int
	report  uint64
	broken  bool
}

// sentEvent is the last bridge.presence event this node published for a
// stream.
type sentEvent struct {
	count int // -1: the publish failed; send again
	at    time.Time
}

// presence counts subscribers per stream; see the top of this file. Safe
// for concurrent use. Two locks, so a connect never waits for the work on
// the other nodes' table: mu guards this node's counts and what they make
// due, rmu the other nodes' counts and the events sent. Lock order: rmu,
// then mu; presence calls nothing outside itself while holding either.
type presence struct {
	node       string // this node's id, random per start
	log        *slog.Logger
	interval   time.Duration // --presence-interval
	timeout    time.Duration // --presence-timeout
	eventEvery time.Duration // --presence-event-interval
	maxEntries int           // --presence-max-entries
	events     grantSet      // --presence-events

	wake   chan struct{} // capacity 1: local counts changed
	evWake chan struct{} // capacity 1: a presence event may be due

	mu      sync.Mutex
	local   map[string]localCount
	changed bool // local counts changed since the last report
	// evDue: streams whose presence event may be due (only streams that
	// match --presence-events).
	evDue map[string]struct{}

	rmu     sync.Mutex
	peers   map[string]*presencePeer
	entries int // the sum of len(counts) and len(staging) over peers
	// evSent: the last event of streams that had one recently (only
	// streams that match --presence-events).
	evSent map[string]sentEvent
	// quietUntil: with a link, no presence event before the other nodes
	// were heard from, so a node that just started does not take every
	// stream for its own.
	quietUntil time.Time

	stats presenceStats
}

// newPresence returns presence for one node with the defaults; the server
// sets the configured values before anything runs.
func newPresence(log *slog.Logger) *presence {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var id [8]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand)
	return &presence{
		node:       hex.EncodeToString(id[:]),
		log:        log,
		interval:   defaultPresenceInterval,
		timeout:    defaultPresenceTimeout,
		eventEvery: defaultPresenceEventInterval,
		maxEntries: defaultPresenceMaxEntries,
		wake:       make(chan struct{}, 1),
		evWake:     make(chan struct{}, 1),
		local:      make(map[string]localCount),
		peers:      make(map[string]*presencePeer),
		evDue:      make(map[string]struct{}),
		evSent:     make(map[string]sentEvent),
	}
}

// add counts a connection in (delta 1) or out (-1) of streams, which hold no
// name twice. The hub calls it in register and unregister: one map update
// per stream.
func (p *presence) add(streams []string, delta int) {
	due := false
	p.mu.Lock()
	for _, s := range streams {
		lc, ok := p.local[s]
		if !ok && len(p.events) > 0 {
			lc.events = p.events.allows(s)
		}
		lc.n += delta
		if lc.n <= 0 {
			delete(p.local, s)
		} else {
			p.local[s] = lc
		}
		if lc.events {
			p.evDue[s] = struct{}{}
			due = true
		}
	}
	p.changed = true
	p.mu.Unlock()
	signal(p.wake)
	if due {
		signal(p.evWake)
	}
}

// signal wakes whoever waits on ch (capacity 1) without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// StreamCount is the subscriber count of one stream: on this node, and
// across the cluster as last reported.
type StreamCount struct {
	Stream  string `json:"stream"`
	Node    int    `json:"nodeCount"`
	Cluster int    `json:"clusterCount"`
}

// counts returns the counts of streams, in their order, and how many nodes
// the cluster counts add up (this one included). Work: streams × nodes.
func (p *presence) counts(streams []string) (out []StreamCount, nodes int) {
	out = make([]StreamCount, len(streams))
	p.mu.Lock()
	for i, s := range streams {
		out[i] = StreamCount{Stream: s, Node: p.local[s].n}
	}
	p.mu.Unlock()
	p.rmu.Lock()
	defer p.rmu.Unlock()
	for i := range out {
		out[i].Cluster = out[i].Node + p.remote(out[i].Stream)
	}
	return out, 1 + len(p.peers)
}

// remote is the sum of the other nodes' counts of s; p.rmu held.
func (p *presence) remote(s string) int {
	n := 0
	for _, pr := range p.peers {
		n += pr.counts[s]
	}
	return n
}

// run reports this node's counts over link and keeps the other nodes'
// counts, until ctx ends; then it says goodbye. It runs on a goroutine the
// server owns, and returns when ctx ends.
func (p *presence) run(ctx context.Context, link presenceLink) {
	stop, err := link.listen(p.receive)
	if err != nil {
		p.log.Warn("presence: cannot hear other nodes: cluster counts are this node's only", "err", err)
	} else {
		defer stop()
	}
	keepalive := p.timeout / 3
	p.rmu.Lock()
	p.quietUntil = time.Now().Add(keepalive + p.interval)
	p.rmu.Unlock()
	var seq, report uint64
	var last time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			seq++
			p.sendMsg(link, &presenceMsg{Node: p.node, Seq: seq, Bye: true})
			return
		case <-p.wake:
		case <-timer.C:
		}
		now := time.Now()
		p.expire(now)
		p.mu.Lock()
		changed := p.changed
		p.mu.Unlock()
		next := last.Add(keepalive)
		if changed {
			next = last.Add(p.interval)
		}
		if !now.Before(next) {
			report++
			seq = p.report(link, seq, report)
			last = now
			next = now.Add(keepalive)
		}
		// Wake at least every interval, to drop nodes gone quiet.
		timer.Reset(min(next.Sub(now), p.interval))
	}
}

// report sends this node's counts, in chunks, as report number report; it
// returns the seq of the last message sent.
func (p *presence) report(link presenceLink, seq, report uint64) uint64 {
	p.mu.Lock()
	snap := make([]string, 0, len(p.local))
	ns := make([]int, 0, len(p.local))
	for s, lc := range p.local {
		snap = append(snap, s)
		ns = append(ns, lc.n)
	}
	p.changed = false
	p.mu.Unlock()
	msg := &presenceMsg{Node: p.node, Report: report, Counts: make(map[string]int)}
	size := 0
	for i, s := range snap {
		msg.Counts[s] = ns[i]
		size += len(s) + 16
		if len(msg.Counts) == presenceChunkStreams || size >= presenceChunkBytes {
			if i == len(snap)-1 {
				break // the last part: sent below
			}
			seq++
			msg.Seq = seq
			p.sendMsg(link, msg)
			msg = &presenceMsg{Node: p.node, Report: report, Part: msg.Part + 1, Counts: make(map[string]int)}
			size = 0
		}
	}
	seq++
	msg.Seq, msg.Last = seq, true
	p.sendMsg(link, msg)
	p.stats.reportsSent.Add(1)
	return seq
}

func (p *presence) sendMsg(link presenceLink, msg *presenceMsg) {
	data, err := json.Marshal(msg)
	if err == nil {
		err = link.send(data)
	}
	if err != nil {
		p.log.Debug("presence: report not sent", "err", err)
	}
}

// receive takes one message of another node's report (its own are
// ignored). It runs on the link's goroutine; its work is bounded by the
// message's size.
func (p *presence) receive(data []byte) {
	var m presenceMsg
	if err := json.Unmarshal(data, &m); err != nil || m.Node == "" {
		p.log.Debug("presence: ignore a malformed report", "err", err)
		return
	}
	if m.Node == p.node {
		return
	}
	now := time.Now()
	var due []string
	p.rmu.Lock()
	pr := p.peers[m.Node]
	switch {
	case m.Bye:
		if pr != nil {
			due = p.forget(m.Node, pr, due)
		}
		p.rmu.Unlock()
		p.markDue(due)
		return
	case pr == nil && len(p.peers) >= maxPresenceNodes:
		p.rmu.Unlock()
		p.stats.droppedEntries.Add(int64(len(m.Counts)))
		return
	case pr == nil:
		pr = &presencePeer{counts: map[string]int{}}
		p.peers[m.Node] = pr
	}
	pr.heard = now
	missed := pr.seq != 0 && m.Seq != pr.seq+1
	pr.seq = m.Seq
	if m.Part == 0 {
		p.entries -= len(pr.staging)
		pr.staging, pr.report, pr.broken = make(map[string]int, len(m.Counts)), m.Report, false
	} else if missed || m.Report != pr.report || pr.staging == nil {
		pr.broken = true
	}
	if !pr.broken {
		for s, n := range m.Counts {
			if n <= 0 || n > math.MaxInt32 || !validStreamSyntax(s) {
				continue
			}
			// The node's report in force is replaced by this one: only the
			// others' entries and this report's count against the bound.
			if p.entries-len(pr.counts) >= p.maxEntries {
				p.stats.droppedEntries.Add(1)
				continue
			}
			if _, ok := pr.staging[s]; !ok {
				p.entries++
			}
			pr.staging[s] = n
		}
	}
	if m.Last {
		p.stats.reportsReceived.Add(1)
		if pr.broken {
			p.stats.reportsLost.Add(1)
			p.entries -= len(pr.staging)
		} else {
			due = p.commit(pr, due)
		}
		pr.staging, pr.broken = nil, false
	}
	p.rmu.Unlock()
	p.markDue(due)
}

// commit puts pr's staged report in force, and appends to due the streams
// with presence events whose count changed; p.rmu held.
func (p *presence) commit(pr *presencePeer, due []string) []string {
	if len(p.events) > 0 {
		for s, n := range pr.staging {
			if pr.counts[s] != n && p.events.allows(s) {
				due = append(due, s)
			}
		}
		for s := range pr.counts {
			if _, ok := pr.staging[s]; !ok && p.events.allows(s) {
				due = append(due, s)
			}
		}
	}
	p.entries -= len(pr.counts)
	pr.counts = pr.staging
	return due
}

// forget drops a node, which said goodbye or went quiet, and appends to due
// the streams with presence events it counted in; p.rmu held.
func (p *presence) forget(node string, pr *presencePeer, due []string) []string {
	delete(p.peers, node)
	p.entries -= len(pr.counts) + len(pr.staging)
	if len(p.events) > 0 {
		for s := range pr.counts {
			if p.events.allows(s) {
				due = append(due, s)
			}
		}
	}
	return due
}

// markDue marks streams for the events goroutine to look at.
func (p *presence) markDue(streams []string) {
	if len(streams) == 0 {
		return
	}
	p.mu.Lock()
	for _, s := range streams {
		p.evDue[s] = struct{}{}
	}
	p.mu.Unlock()
	signal(p.evWake)
}

// expire drops the nodes not heard from for the timeout.
func (p *presence) expire(now time.Time) {
	var due []string
	p.rmu.Lock()
	for node, pr := range p.peers {
		if now.Sub(pr.heard) > p.timeout {
			p.log.Info("presence: a node stopped reporting: its counts no longer count", "node", node, "streams", len(pr.counts))
			due = p.forget(node, pr, due)
		}
	}
	p.rmu.Unlock()
	p.markDue(due)
}

// owns reports whether this node publishes the presence events of s: the
// live node with the highest hash of its id and s; p.rmu held.
func (p *presence) owns(s string) bool {
	mine := nodeHash(p.node, s)
	for node := range p.peers {
		if h := nodeHash(node, s); h > mine || (h == mine && node > p.node) {
			return false
		}
	}
	return true
}

func nodeHash(node, stream string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(node))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(stream))
	return h.Sum64()
}

// runEvents publishes the bridge.presence events through publish until ctx
// ends. It runs on a goroutine the server owns (only with
// --presence-events), apart from run, so a slow store never delays the
// reports.
func (p *presence) runEvents(ctx context.Context, publish func(context.Context, []*Event, []Stored)) {
	timer := time.NewTimer(p.eventEvery)
	defer timer.Stop()
	pause := time.NewTimer(presenceEventPass)
	defer pause.Stop()
	var swept time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.evWake:
		case <-timer.C:
		}
		now := time.Now()
		if now.Sub(swept) >= p.eventEvery {
			p.sweepEvents(now)
			swept = now
		}
		evs, wait := p.dueEvents(now)
		if len(evs) > 0 {
			pctx, cancel := context.WithTimeout(ctx, presenceEventTimeout)
			res := make([]Stored, len(evs))
			publish(pctx, evs, res)
			cancel()
			p.published(evs, res)
		}
		timer.Reset(wait)
		// A pass looks at every stream due: during a connect storm, one
		// pass per presenceEventPass rather than one per connect.
		pause.Reset(presenceEventPass)
		select {
		case <-ctx.Done():
			return
		case <-pause.C:
		}
	}
}

// dueEvents returns the presence events to publish now, and how long until
// the next may be due.
func (p *presence) dueEvents(now time.Time) (evs []*Event, wait time.Duration) {
	wait = p.eventEvery
	p.rmu.Lock()
	defer p.rmu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Before(p.quietUntil) {
		return nil, p.quietUntil.Sub(now)
	}
	for s := range p.evDue {
		if !p.owns(s) {
			delete(p.evDue, s)
			delete(p.evSent, s)
			continue
		}
		count := p.local[s].n + p.remote(s)
		last, sent := p.evSent[s]
		switch {
		case sent && last.count == count, !sent && count == 0:
			delete(p.evDue, s)
			continue
		case sent && now.Sub(last.at) < p.eventEvery:
			wait = min(wait, last.at.Add(p.eventEvery).Sub(now))
			continue // coalesced: the latest count goes when the interval is over
		}
		delete(p.evDue, s)
		p.evSent[s] = sentEvent{count: count, at: now}
		evs = append(evs, &Event{Stream: s, Type: PresenceEvent, Data: presenceData(s, count)})
	}
	return evs, wait
}

// presenceData is the data of a bridge.presence event.
func presenceData(stream string, count int) []byte {
	b := make([]byte, 0, len(stream)+32)
	b = append(b, `{"stream":`...)
	b = strconv.AppendQuote(b, stream) // a stream name is plain ASCII: JSON quoting is Go quoting
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, int64(count), 10)
	return append(b, '}')
}

// published records the outcome of a round of events: a failed one is due
// again one interval later.
func (p *presence) published(evs []*Event, res []Stored) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, ev := range evs {
		if res[i].Err == nil {
			p.stats.eventsPublished.Add(1)
			continue
		}
		p.stats.eventsFailed.Add(1)
		p.log.Warn("presence: publish a bridge.presence event", "stream", ev.Stream, "err", res[i].Err)
		p.evSent[ev.Stream] = sentEvent{count: -1, at: time.Now()}
		p.evDue[ev.Stream] = struct{}{}
	}
}

// sweepEvents forgets the last event of streams that are at zero and quiet
// for an interval: a stream with no subscriber keeps no entry.
func (p *presence) sweepEvents(now time.Time) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	for s, last := range p.evSent {
		if _, due := p.evDue[s]; !due && last.count == 0 && now.Sub(last.at) >= p.eventEvery {
			delete(p.evSent, s)
		}
	}
}

// presenceTable is what the metrics report of presence.
type presenceTable struct {
	localStreams, peers, entries int
}

func (p *presence) table() presenceTable {
	p.mu.Lock()
	local := len(p.local)
	p.mu.Unlock()
	p.rmu.Lock()
	defer p.rmu.Unlock()
	return presenceTable{localStreams: local, peers: len(p.peers), entries: p.entries}
}

// presenceStreams checks the streams of a Presence call or /presence
// request: at least one, at most maxPresenceStreams, each a valid name of at
// most maxName bytes. A name given twice is kept once, in its first place.
// The error says what to fix.
func presenceStreams(streams []string, maxName int) ([]string, error) {
	if len(streams) == 0 {
		return nil, errors.New("no stream: name at least one stream to count (streams, or ?stream=NAME)")
	}
	if len(streams) > maxPresenceStreams {
		return nil, fmt.Errorf("%d streams: at most %d in one request; split it", len(streams), maxPresenceStreams)
	}
	out := make([]string, 0, len(streams))
	seen := make(map[string]struct{}, len(streams))
	for _, s := range streams {
		if !validStreamName(s, maxName) {
			return nil, streamNameError(s, maxName)
		}
		if _, dup := seen[s]; !dup {
			seen[s] = struct{}{}
			out = append(out, s)
		}
	}
	return out, nil
}

// presenceHandler serves GET /presence?stream=NAME[&stream=NAME...]: the
// counts of the streams as JSON, {"streams":[{"stream","nodeCount",
// "clusterCount"}],"nodes":N}. Not for browsers: on the admin listener it
// is open to whoever reaches it (operators); on the public listener it needs
// a publisher's token whose grants cover every stream (auth not nil).
type presenceHandler struct {
	presence *presence
	maxName  int
	auth     *grpcAuth // nil: no credential asked (the admin listener)
}

// presenceJSON is the body of /presence.
type presenceJSON struct {
	Streams []StreamCount `json:"streams"`
	Nodes   int           `json:"nodes"`
}

func (h *presenceHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	streams, err := presenceStreams(r.URL.Query()["stream"], h.maxName)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if h.auth != nil {
		if code, msg := h.auth.allowPresence(r, streams); code != 0 {
			if code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="bridge presence"`)
			}
			http.Error(w, msg, code)
			return
		}
	}
	counts, nodes := h.presence.counts(streams)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(presenceJSON{Streams: counts, Nodes: nodes})
}
