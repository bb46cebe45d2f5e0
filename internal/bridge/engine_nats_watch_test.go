package bridge

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestNATSStalledDeliveryIsReportedAndHealed: while the stream holds events
// this node has not delivered and delivery makes no progress, the engine
// says it is not ready (why, too), and it starts a new consumer; once
// delivery moves again it is ready, and every event arrived once, in order.
// The stall is made by a deliver that blocks (the hub's never does; a dead
// consumer looks the same from the watch).
func TestNATSStalledDeliveryIsReportedAndHealed(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	e := newTestNATSEngine(t, NATSConfig{URLs: []string{ns.URL}, Stream: "STALL", SubjectPrefix: "stall"}, 1000, time.Hour)
	release := make(chan struct{})
	d := newDeliveries("stalling")
	first := true
	suiteRun(t, e, func(ev *Event) {
		if first {
			first = false
			<-release
		}
		d.deliver(ev)
	})

	var ids []uint64
	for range 3 {
		ids = append(ids, pub(t, e, "s"))
	}
	awaitReady(t, e, false)
	if err := e.Ready(); !strings.Contains(err.Error(), "no event delivered") {
		t.Errorf("Ready() = %v, want it to say that no event was delivered", err)
	}
	if s := e.Stats(); !s.Stalled || s.Stalls != 1 || s.Lag == 0 {
		t.Errorf("Stats() while stalled = %+v, want stalled once, with a lag", s)
	}
	m := newMetrics(newHub(e, 8, 100, nil), e)
	if got := gauge(t, m, "bridge_nats_delivery_stalled"); got != 1 {
		t.Errorf("bridge_nats_delivery_stalled = %v while stalled, want 1", got)
	}
	if got := gauge(t, m, "bridge_nats_delivery_lag_events"); got < 1 {
		t.Errorf("bridge_nats_delivery_lag_events = %v while stalled, want at least 1", got)
	}
	close(release)
	awaitReady(t, e, true)
	ids = append(ids, pub(t, e, "s"))
	if _, ok := d.waitFor(t, ids[len(ids)-1], suiteWait); !ok {
		t.Fatal("nothing delivered after the stall")
	}
	d.check(t, ids)
	if s := e.Stats(); s.Stalled || s.ConsumerRestarts == 0 {
		t.Errorf("Stats() after the stall = %+v, want not stalled and a consumer restart", s)
	}
}

// gauge returns the value of the metric named name, which has no labels.
func gauge(t *testing.T, m *metrics, name string) float64 {
	t.Helper()
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			if g := f.GetMetric()[0].GetGauge(); g != nil {
				return g.GetValue()
			}
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestNATSEngineFencesBelowIssuedIDs: the stream loses events whose ids a
// publish got but no node delivered yet, as when a NATS server loses the
// tail of its file (--nats-persist async, a machine crash). The node fences
// the stream all the same: the next event's id is above every id issued
// before, never one of the lost events' ids.
func TestNATSEngineFencesBelowIssuedIDs(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	admin := natsAdmin(t, ns.URL)
	e := newTestNATSEngine(t, NATSConfig{URLs: []string{ns.URL}, Stream: "TAIL", SubjectPrefix: "tail"}, 1000, time.Hour)
	release := make(chan struct{})
	suiteRun(t, e, func(*Event) { <-release }) // delivers nothing until the end
	t.Cleanup(func() { close(release) })       // runs before suiteRun's cleanup

	var top uint64
	for range 5 {
		top = pub(t, e, "s")
	}
	if d := e.delivered.Load(); d >= top {
		t.Fatalf("delivered %d, want below the last id issued, %d", d, top)
	}
	// The stream comes back without its last three events. The node may
	// re-create the stream while it is gone (with ids above top): then
	// delete it and try again.
	cfg := streamInfo(t, admin, "TAIL").Config
	cfg.FirstSeq = top - 2
	for attempt := 0; ; attempt++ {
		if err := admin.DeleteStream(t.Context(), "TAIL"); err != nil {
			t.Fatal(err)
		}
		_, err := admin.CreateStream(t.Context(), cfg)
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || attempt == 10 {
			t.Fatalf("re-create the stream below the issued ids: %v", err)
		}
	}
	deadline := time.Now().Add(suiteWait)
	for e.Stats().HistoryLosses == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the stream's last sequence is below id %d a publish got, and the node did not fence it", top)
		}
		time.Sleep(10 * time.Millisecond)
	}
	fence := lostBefore(streamInfo(t, admin, "TAIL").Config.Metadata)
	if id := pub(t, e, "s"); id <= top || id < fence || fence <= top {
		t.Errorf("after the fence at %d, a new event got id %d; ids up to %d were issued before", fence, id, top)
	}
}
