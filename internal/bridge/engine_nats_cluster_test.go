package bridge

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The tests in this file run engines against one three-server NATS cluster
// (started once per test, shared by its steps) and kill servers under a
// steady publish loop: the state in which a node could go silent while it
// reported ready. Each step asserts on events: every engine delivers an
// event published after the kill while the server is still down, and, once
// it is back, every acknowledged event exactly once and in order. The time
// each engine took to deliver again is logged, not asserted.

// clusterOutageWait bounds how long a node may take to deliver again after a
// server died: far more than the cluster's election plus the engine's stall
// detection, so only a node that never recovers fails.
const clusterOutageWait = 60 * time.Second

// deliveries records what one engine's Run delivered.
type deliveries struct {
	name string
	mu   sync.Mutex
	ids  []uint64
	at   []time.Time
	more chan struct{} // closed and replaced at each delivery
}

func newDeliveries(name string) *deliveries {
	return &deliveries{name: name, more: make(chan struct{})}
}

func (d *deliveries) deliver(ev *Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ids = append(d.ids, ev.ID)
	d.at = append(d.at, time.Now())
	close(d.more)
	d.more = make(chan struct{})
}

// waitFor waits until d delivered an id of at least id, and returns when it
// delivered the first such id; false when limit passed first.
func (d *deliveries) waitFor(t *testing.T, id uint64, limit time.Duration) (time.Time, bool) {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		d.mu.Lock()
		i := slices.IndexFunc(d.ids, func(x uint64) bool { return x >= id })
		var at time.Time
		if i >= 0 {
			at = d.at[i]
		}
		more := d.more
		d.mu.Unlock()
		if i >= 0 {
			return at, true
		}
		select {
		case <-more:
		case <-deadline.C:
			return time.Time{}, false
		case <-t.Context().Done():
			return time.Time{}, false
		}
	}
}

// check asserts that d delivered ids in increasing order, each at most once,
// and every id of acked.
func (d *deliveries) check(t *testing.T, acked []uint64) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := 1; i < len(d.ids); i++ {
		if d.ids[i] <= d.ids[i-1] {
			t.Errorf("%s delivered %d after %d: want increasing ids, none twice", d.name, d.ids[i], d.ids[i-1])
		}
	}
	var missing []uint64
	for _, id := range acked {
		if _, found := slices.BinarySearch(d.ids, id); !found {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s lost %d of %d acknowledged events, first %v", d.name, len(missing), len(acked), missing[:min(len(missing), 5)])
	}
}

// publishLoop publishes to stream through e every interval until stop is
// called, and returns the ids JetStream acknowledged, in order. Publishes
// that fail (Unavailable during an election) are not retried: an event
// without an id may or may not be delivered.
type publishLoop struct {
	mu      sync.Mutex
	acked   []uint64
	started []time.Time   // when the publish of each acked id started
	more    chan struct{} // closed and replaced at each acknowledgement
	stop    func()
}

func startPublishLoop(t *testing.T, e Engine, stream string, interval time.Duration) *publishLoop {
	t.Helper()
	p := &publishLoop{more: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			start := time.Now()
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			id, err := e.Publish(pctx, &Event{Stream: stream, Data: fmt.Appendf(nil, `{"n":%d}`, n)})
			pcancel()
			if err == nil {
				p.mu.Lock()
				p.acked = append(p.acked, id)
				p.started = append(p.started, start)
				close(p.more)
				p.more = make(chan struct{})
				p.mu.Unlock()
			}
		}
	})
	p.stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(p.stop)
	return p
}

// last returns the last acknowledged id, waiting until there is one.
func (p *publishLoop) last(t *testing.T) uint64 {
	t.Helper()
	return p.await(t, suiteWait, func(acked []uint64, _ []time.Time) (uint64, time.Time, bool) {
		if len(acked) == 0 {
			return 0, time.Time{}, false
		}
		return acked[len(acked)-1], time.Time{}, true
	}).id
}

// next waits until the loop got an id acknowledged for a publish that
// started after since, and returns it.
func (p *publishLoop) next(t *testing.T, since time.Time) uint64 {
	t.Helper()
	id, _ := p.nextAt(t, since)
	return id
}

// nextAt is next, with the time that publish started.
func (p *publishLoop) nextAt(t *testing.T, since time.Time) (uint64, time.Time) {
	t.Helper()
	r := p.await(t, clusterOutageWait, func(acked []uint64, started []time.Time) (uint64, time.Time, bool) {
		i := slices.IndexFunc(started, func(x time.Time) bool { return x.After(since) })
		if i < 0 {
			return 0, time.Time{}, false
		}
		return acked[i], started[i], true
	})
	return r.id, r.at
}

type ackAt struct {
	id uint64
	at time.Time
}

// await waits, at most limit, until find finds what it looks for in the
// acknowledgements so far.
func (p *publishLoop) await(t *testing.T, limit time.Duration, find func([]uint64, []time.Time) (uint64, time.Time, bool)) ackAt {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		id, at, ok := find(p.acked, p.started)
		more := p.more
		p.mu.Unlock()
		if ok {
			return ackAt{id, at}
		}
		select {
		case <-more:
		case <-deadline.C:
			t.Fatalf("the publish loop got no acknowledgement it waited for within %v", limit)
		}
	}
}

func (p *publishLoop) ids() []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.acked)
}

// runDelivering runs e, recording its deliveries.
func runDelivering(t *testing.T, e *NATSEngine, name string) *deliveries {
	t.Helper()
	d := newDeliveries(name)
	suiteRun(t, e, d.deliver)
	return d
}

// TestNATSClusterServerLoss kills a NATS server of a three-server cluster,
// first the one some engines are connected to (and know no other URL of),
// then the stream leader, each under a steady publish loop on an engine
// connected elsewhere. Every engine must deliver again while the server is
// down, and lose and repeat nothing.
func TestNATSClusterServerLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS cluster and kills its servers")
	}
	c := startNATSProxiedCluster(t, 3)
	cfg := func(urls ...string) NATSConfig {
		return NATSConfig{URLs: urls, Replicas: 3, ConnectTimeout: suiteWait}
	}
	publisher := newTestNATSEngine(t, cfg(c.url(1), c.url(2)), 100_000, time.Hour)
	engines := map[string]*NATSEngine{
		"only n0 (a)": newTestNATSEngine(t, cfg(c.url(0)), 100_000, time.Hour),
		"only n0 (b)": newTestNATSEngine(t, cfg(c.url(0)), 100_000, time.Hour),
		"all three":   newTestNATSEngine(t, cfg(c.urls()...), 100_000, time.Hour),
		"publisher":   publisher,
	}
	var all []*deliveries
	for _, name := range slices.Sorted(maps.Keys(engines)) {
		all = append(all, runDelivering(t, engines[name], name))
	}
	loop := startPublishLoop(t, publisher, "orders", 50*time.Millisecond)

	kill := func(what string, victim int) {
		before := loop.last(t)
		for _, d := range all {
			if _, ok := d.waitFor(t, before, suiteWait); !ok {
				t.Fatalf("%s: %s did not deliver %d before the kill", what, d.name, before)
			}
		}
		killed := time.Now()
		c.kill(victim)
		after, accepted := loop.nextAt(t, killed)
		t.Logf("%s: the cluster stored a publish sent %v after the kill", what, accepted.Sub(killed).Round(10*time.Millisecond))
		for _, d := range all {
			at, ok := d.waitFor(t, after, clusterOutageWait)
			if !ok {
				t.Errorf("%s: %s delivered nothing published after the kill within %v while the cluster took publishes (ready: %v)", what, d.name, clusterOutageWait, engines[d.name].Ready())
				continue
			}
			t.Logf("%s: %s delivers it %v after the kill, %v after it was sent", what, d.name, at.Sub(killed).Round(10*time.Millisecond), at.Sub(accepted).Round(10*time.Millisecond))
		}
		c.restart(t, victim)
		// Every node keeps up once the server is back.
		back := loop.next(t, time.Now())
		for _, d := range all {
			if _, ok := d.waitFor(t, back, clusterOutageWait); !ok {
				t.Errorf("%s: %s did not deliver after the server came back", what, d.name)
			}
		}
	}

	kill("the only server of two engines", 0)
	kill("the stream leader", streamLeader(t, c.servers, "BRIDGE"))

	loop.stop()
	acked := loop.ids()
	for _, d := range all {
		if _, ok := d.waitFor(t, acked[len(acked)-1], clusterOutageWait); !ok {
			t.Errorf("%s did not deliver the last acknowledged event", d.name)
		}
		d.check(t, acked)
	}
}

// streamLeader returns the index of the server that leads JetStream stream
// name, waiting for an election to end.
func streamLeader(t *testing.T, servers []*natsServer, name string) int {
	t.Helper()
	deadline := time.Now().Add(suiteWait)
	for time.Now().Before(deadline) {
		for i, s := range servers {
			if srv := s.server(); srv != nil && srv.JetStreamIsStreamLeader("$G", name) {
				return i
			}
		}
		// The server has no notification of a leader change: poll, bounded.
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal(errors.New("no stream leader"))
	return -1
}

// TestNATSClusterHistoryLoss: a stream kept in memory by one server of a
// cluster comes back empty when that server restarts, at the first sequence
// it was created with. No id is issued twice: a publish that JetStream
// stores under an old id fails (Unavailable), the stream is fenced above
// every old id, resumes from old ids get bridge.reset history_lost, every
// node's connections are closed to get it, and delivery goes on from the
// fence.
func TestNATSClusterHistoryLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS cluster and kills its servers")
	}
	c := startNATSProxiedCluster(t, 3)
	cfg := NATSConfig{URLs: c.urls(), Replicas: 1, Storage: natsStorageMemory, ConnectTimeout: suiteWait}
	a := newTestNATSEngine(t, cfg, 1000, time.Hour)
	b := newTestNATSEngine(t, cfg, 1000, time.Hour)
	var gaps [2]atomic.Int64
	a.setGapHandler(func() { gaps[0].Add(1) })
	b.setGapHandler(func() { gaps[1].Add(1) })
	da, db := runDelivering(t, a, "a"), runDelivering(t, b, "b")

	var old []uint64
	for range 5 {
		old = append(old, pub(t, a, "orders"))
	}
	for _, d := range []*deliveries{da, db} {
		if _, ok := d.waitFor(t, old[len(old)-1], suiteWait); !ok {
			t.Fatalf("%s did not deliver the events before the loss", d.name)
		}
	}

	holder := streamLeader(t, c.servers, "BRIDGE")
	c.kill(holder)
	c.restart(t, holder)

	// Publish until ids are issued again: every id a publish returns is
	// above every old one.
	var fresh []uint64
	deadline := time.Now().Add(clusterOutageWait)
	for len(fresh) < 3 && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		id, err := a.Publish(ctx, &Event{Stream: "orders", Data: []byte(`{"after":"loss"}`)})
		cancel()
		switch {
		case err == nil && id <= old[len(old)-1]:
			t.Fatalf("Publish after the loss = %d, an id at or below %d, issued before", id, old[len(old)-1])
		case err == nil:
			fresh = append(fresh, id)
		case !errors.Is(err, ErrUnavailable):
			t.Fatalf("Publish after the loss: %v, want success or ErrUnavailable", err)
		default:
			time.Sleep(50 * time.Millisecond) // paces retries while the cluster recovers; bounded above
		}
	}
	if len(fresh) < 3 {
		t.Fatalf("no publish succeeded within %v of the restart", clusterOutageWait)
	}
	for _, d := range []*deliveries{da, db} {
		if _, ok := d.waitFor(t, fresh[len(fresh)-1], clusterOutageWait); !ok {
			t.Errorf("%s delivered nothing after the loss", d.name)
		}
		d.check(t, fresh) // and, as ids only increase, no old id again
	}
	for i, n := range []int64{gaps[0].Load(), gaps[1].Load()} {
		if n == 0 {
			t.Errorf("engine %d closed no connection after the loss: its live subscribers would not learn of it", i)
		}
	}
	for _, e := range []*NATSEngine{a, b} {
		r := suiteReplay(t, e, []string{"orders"}, old[2], 100)
		if r.Reset != ResetHistoryLost {
			t.Errorf("Replay after an old id = %d events, reset %q; want reset %q", len(r.Events), r.Reset, ResetHistoryLost)
		}
		r = suiteReplay(t, e, []string{"orders"}, fresh[0], 100)
		if r.Reset != "" || !slices.Equal(idsOf(r.Events), fresh[1:]) {
			t.Errorf("Replay after %d = %v, reset %q; want %v", fresh[0], idsOf(r.Events), r.Reset, fresh[1:])
		}
	}
	if a.Stats().HistoryLosses+b.Stats().HistoryLosses == 0 {
		t.Error("no engine counted the history loss")
	}
}
