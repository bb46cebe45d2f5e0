package bridge_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gosse "github.com/tmaxmax/go-sse"
	"google.golang.org/grpc/codes"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// TestPublishStreamNATSGoesAway: NATS goes away while a PublishStream
// publishes, every event with an idempotency key: its server stops, or the
// network between the bridge and it breaks (then JetStream may have stored
// events whose acks were lost with the connection). Each event gets its
// result, in order: an id, or Unavailable, and the stream goes on to its
// end. Once NATS is back, the publisher sends again, with the same keys,
// every event answered Unavailable: each gets an id, the stored one's when
// there is one. The subscriber, on one connection all along, then has
// every event exactly once, in order, with the id its publisher holds, and
// nothing else.
func TestPublishStreamNATSGoesAway(t *testing.T) {
	t.Parallel()
	t.Run("server stops", func(t *testing.T) {
		t.Parallel()
		ns := bridge.StartNATS(t)
		publishThroughOutage(t, natsConfig(ns), ns.Stop, func() { ns.Start(t) })
	})
	t.Run("connection cut", func(t *testing.T) {
		t.Parallel()
		ns := bridge.StartNATS(t)
		proxy := startCutProxy(t, strings.TrimPrefix(ns.URL, "nats://"))
		cfg := natsConfig(ns)
		cfg.NATS.URLs = []string{"nats://" + strings.TrimPrefix(proxy.url(), "http://")}
		publishThroughOutage(t, cfg, proxy.cut, proxy.restore)
	})
}

// publishThroughOutage is TestPublishStreamNATSGoesAway with a bridge of
// cfg: goAway takes NATS away (and returns once it is gone), comeBack
// brings it back.
func publishThroughOutage(t *testing.T, cfg bridge.Config, goAway, comeBack func()) {
	t.Helper()
	cfg.MaxStreamInflight = 16
	b := startBridge(t, cfg)
	sub := subscribe(t, b.baseURL, "stream=g", "")
	// Read all along, as a browser does: frames left unread would fill the
	// connection's queue and get the subscriber evicted.
	frames := make(chan []gosse.Event, 1)
	go func() { // ends at the marker frame, or when the stream ends
		var got []gosse.Event
		for ev := range sub.events {
			got = append(got, ev)
			if ev.Data == `"end"` {
				break
			}
		}
		frames <- got
	}()

	const n = 1000
	reqs := seqReqs(t, "g", n, 0)
	for i, r := range reqs {
		r.IdempotencyKey = fmt.Sprintf("event-%d", i)
	}
	// NATS goes away mid-flight, with acks on their way; the publisher
	// stays at most 100 events ahead of the results it read, and waits at
	// the 150th until NATS is gone: at least 750 events go while it is.
	var read atomic.Int64
	stopped := make(chan struct{})
	run := runStreamPaced(t.Context(), t, b.client, reqs, &read, 100, func(got int) {
		switch got {
		case 50:
			go func() { // ends once the server stopped
				defer close(stopped)
				goAway()
			}()
		case 150:
			<-stopped
		}
	})
	<-stopped // when the stream ended before its 150th result
	if !errors.Is(run.end, io.EOF) || len(run.results) != n {
		t.Fatalf("stream ended with %v after %d results, want OK after %d", run.end, len(run.results), n)
	}
	ids := make([]uint64, n)
	var again []int // the events answered Unavailable
	for i, r := range run.results {
		switch {
		case r.GetStatus() == nil && r.GetId() != 0:
			ids[i] = r.GetId()
		case resultCode(r) == codes.Unavailable:
			again = append(again, i)
		default:
			t.Fatalf("result %d = %v, want an id, or Unavailable while NATS is down", i, r)
		}
	}
	if len(again) == 0 {
		t.Fatal("no event was answered Unavailable: NATS went away after the stream's last event")
	}
	stored := n - len(again)

	comeBack()
	lostAcks := 0
	deadline := time.Now().Add(waitLimit)
	for len(again) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d events still answered Unavailable %v after NATS came back", len(again), waitLimit)
		}
		retry := make([]*bridgev1.PublishRequest, len(again))
		for j, i := range again {
			retry[j] = reqs[i]
		}
		r := runStream(t.Context(), t, b.client, retry, nil)
		if !errors.Is(r.end, io.EOF) || len(r.results) != len(retry) {
			t.Fatalf("retry stream ended with %v after %d results, want OK after %d", r.end, len(r.results), len(retry))
		}
		var still []int
		for j, res := range r.results {
			switch {
			case res.GetStatus() == nil && res.GetId() != 0:
				ids[again[j]] = res.GetId()
				if res.GetDuplicate() {
					lostAcks++ // stored, its ack lost with the connection
				}
			case resultCode(res) == codes.Unavailable:
				still = append(still, again[j])
			default:
				t.Fatalf("retry of event %d = %v, want an id, or Unavailable until the node is connected again", again[j], res)
			}
		}
		if len(still) > 0 {
			// Pacing while the node reconnects, not synchronisation:
			// the loop ends on results, and the deadline bounds it.
			time.Sleep(20 * time.Millisecond)
		}
		again = still
	}
	b.publish(t, jsonReq(t, "g", "end"))

	var got []gosse.Event
	select {
	case got = <-frames:
	case <-time.After(waitLimit):
		t.Fatalf("no marker frame within %v", waitLimit)
	}
	if len(got) == 0 || got[len(got)-1].Data != `"end"` {
		t.Fatalf("the subscriber's stream ended after %d frames, before the marker", len(got))
	}
	seen := make([]bool, n)
	var last uint64
	for _, ev := range got[:len(got)-1] {
		if ev.Type == bridge.ResetEvent {
			t.Fatalf("subscriber got %s: %s", ev.Type, ev.Data)
		}
		var seq int
		if err := json.Unmarshal([]byte(ev.Data), &seq); err != nil || seq < 0 || seq >= n {
			t.Fatalf("frame %q: want an event's sequence number", ev.Data)
		}
		if seen[seq] {
			t.Fatalf("event %d delivered twice", seq)
		}
		seen[seq] = true
		if ev.LastEventID != id(ids[seq]) {
			t.Errorf("event %d delivered with id %s, want %d, the id its publisher got", seq, ev.LastEventID, ids[seq])
		}
		if n := parseID(t, ev.LastEventID); n <= last {
			t.Errorf("event %d: id %d after %d, want increasing ids", seq, n, last)
		} else {
			last = n
		}
	}
	for seq, ok := range seen {
		if !ok {
			t.Errorf("event %d (id %d) never delivered", seq, ids[seq])
		}
	}
	t.Logf("%d events stored on the first try, %d after NATS came back, of which %d had been stored before, their acks lost", stored, n-stored, lostAcks)
}
