package bridge

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestManyStreamsLeaveNoBookkeeping subscribes to and publishes on
// thousands of distinct stream names, in waves of connections that then
// leave, and checks that nothing kept per stream or per client outlives
// them: the hub's maps, the connection counters, the rate table, and, once
// its events expire, the memory engine's entries, whose count the memory
// budget bounds meanwhile.
func TestManyStreamsLeaveNoBookkeeping(t *testing.T) {
	t.Parallel()
	const (
		waves, conns, perConn = 4, 16, 32 // 2,048 stream names
		budget                = 1 << 20
	)
	f := newLimitFixture(t, Config{
		MaxConnectionsPerIP: conns, ConnectRatePerIP: 1e6, ConnectRate: -1,
		MaxStreamsPerConnection: perConn, HistoryMemory: budget, HistoryAge: time.Minute,
	})
	clock := newFakeClock(time.Now(), 0) // ids stay above the engine's start
	f.engine.mu.Lock()
	f.engine.now = clock.Now
	f.engine.mu.Unlock()
	pad := `{"pad":"` + strings.Repeat("x", 1000) + `"}` // about 1.5 KB in history: the budget holds some 600
	most := 0
	for w := range waves {
		subs := make([]*stream, conns)
		names := make([][]string, conns)
		for c := range conns {
			query := make([]string, perConn)
			for k := range perConn {
				names[c] = append(names[c], fmt.Sprintf("w%d.c%d.s%d", w, c, k))
				query[k] = "stream=" + names[c][k]
			}
			subs[c] = f.open(t, strings.Join(query, "&"), nil)
			accepted(t, subs[c], 1, 1<<40)
		}
		f.hub.mu.RLock()
		subscribed, open := len(f.hub.subs), len(f.hub.conns)
		f.hub.mu.RUnlock()
		if subscribed != conns*perConn || open != conns {
			t.Fatalf("wave %d: hub holds %d streams and %d connections, want %d and %d", w, subscribed, open, conns*perConn, conns)
		}
		for c := range conns {
			for _, name := range names[c] {
				f.publish(t, name, pad)
			}
		}
		for c, s := range subs {
			for range perConn {
				if b, ok := s.next(t); !ok || !b.hasData {
					t.Fatalf("wave %d, connection %d: block %+v (ok %t), want an event", w, c, b, ok)
				}
			}
			s.close()
		}
		f.waitClosed(t, conns)
		// The fan-out that built the last frames may not have brought
		// history back under its budget yet: the minute's sweep does.
		f.engine.sweep()
		hs := f.engine.HistoryStats()
		if hs.Bytes > budget {
			t.Fatalf("wave %d: history costs %d bytes, over its budget of %d", w, hs.Bytes, budget)
		}
		most = max(most, hs.Streams)
	}
	checkBooks(t, f.engine)

	f.hub.mu.RLock()
	subscribed, open := len(f.hub.subs), len(f.hub.conns)
	f.hub.mu.RUnlock()
	l := f.handler.limits
	if subscribed != 0 || open != 0 || l.openConns() != 0 || l.perIP.size() != 0 || l.ipRate.size() > 1 {
		t.Errorf("all connections gone: hub holds %d streams, %d connections; limits hold %d slots, %d addresses, %d rate buckets; want none (one bucket)",
			subscribed, open, l.openConns(), l.perIP.size(), l.ipRate.size())
	}
	if s := f.engine.HistoryStats(); most >= waves*conns*perConn || s.EvictedMemory == 0 {
		t.Errorf("history kept up to %d of %d streams' entries (%+v), want the budget to have bounded them", most, waves*conns*perConn, s)
	}
	clock.Add(2 * time.Minute)
	f.engine.sweep()
	checkBooks(t, f.engine)
	if s := f.engine.HistoryStats(); s.Streams != 0 || s.Events != 0 || s.Bytes != 0 {
		t.Errorf("every event expired, no subscriber left: %+v, want no stream, no event, no byte", s)
	}
}
