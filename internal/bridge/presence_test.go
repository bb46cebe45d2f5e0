package bridge

import (
	"fmt"
	"testing"
)

// BenchmarkPresenceAdd is the cost presence adds to a connect and its
// disconnect (one stream), with few or many other streams watched: it must
// not grow with them.
func BenchmarkPresenceAdd(b *testing.B) {
	for _, others := range []int{0, 100_000} {
		for _, events := range []bool{false, true} {
			b.Run(fmt.Sprintf("others=%d/events=%v", others, events), func(b *testing.B) {
				p := newPresence(nil)
				if events {
					p.events = grantSet{"room.*", "lobby"}
				}
				for i := range others {
					p.add([]string{fmt.Sprintf("s%d", i)}, 1)
				}
				streams := []string{"room.1"}
				p.add(streams, 1) // the stream has a subscriber already
				b.ReportAllocs()
				for b.Loop() {
					p.add(streams, 1)
					p.add(streams, -1)
					// What the events goroutine would take: keep evDue from
					// being a set the benchmark never empties.
					clear(p.evDue)
				}
			})
		}
	}
}

// TestPresenceData pins the data of a bridge.presence event.
func TestPresenceData(t *testing.T) {
	t.Parallel()
	if got, want := string(presenceData("room.1", 3)), `{"stream":"room.1","count":3}`; got != want {
		t.Errorf("presenceData = %s, want %s", got, want)
	}
}
