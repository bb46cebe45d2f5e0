package bridge

import (
	"strings"
	"testing"
	"time"
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
