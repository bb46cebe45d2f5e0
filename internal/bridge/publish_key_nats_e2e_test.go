package bridge_test

import (
	"context"
	"sync"
	"testing"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// TestIdempotencyNATSTwoNodes: with the nats engine, a key names its event
// across nodes: the same key published on two bridges of one JetStream,
// one after the other, at once through all three RPCs, and again after the
// first publisher gave up on its result, is stored and sent once, and every
// publish gets the first event's id.
func TestIdempotencyNATSTwoNodes(t *testing.T) {
	t.Parallel()
	ns := bridge.StartNATS(t)
	nodes := []*testBridge{startBridge(t, natsConfig(ns)), startBridge(t, natsConfig(ns))}
	sub := subscribe(t, nodes[0].baseURL, "stream=orders", "")

	// One after the other, on A then B.
	first := nodes[0].publishKeyed(t, keyed(t, "orders", "k1", 1.0))
	again := nodes[1].publishKeyed(t, keyed(t, "orders", "k1", "another payload"))
	if first.GetDuplicate() || !again.GetDuplicate() || again.GetId() != first.GetId() {
		t.Fatalf("k1 on A = %v, then on B = %v: want a new event, then its duplicate", first, again)
	}

	// At once, on both nodes, through Publish, PublishBatch and PublishStream.
	const n = 24
	type answer struct {
		id  uint64
		dup bool
		err error
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
			defer cancel()
			c := nodes[i%2].client
			req := keyed(t, "orders", "k2", float64(i))
			switch i % 3 {
			case 0:
				r, err := c.Publish(ctx, req)
				answers[i] = answer{r.GetId(), r.GetDuplicate(), err}
			case 1:
				r, err := c.PublishBatch(ctx, &bridgev1.PublishBatchRequest{Events: []*bridgev1.PublishRequest{req}})
				res := r.GetResults()
				if err == nil && (len(res) != 1 || res[0].GetStatus() != nil) {
					t.Errorf("batch %d: results %v, want one stored", i, res)
					return
				}
				answers[i] = answer{res[0].GetId(), res[0].GetDuplicate(), err}
			default:
				s, err := c.PublishStream(ctx)
				if err == nil {
					err = s.Send(req)
				}
				var r *bridgev1.PublishResult
				if err == nil {
					r, err = s.Recv()
				}
				if err == nil && r.GetStatus() != nil {
					t.Errorf("stream %d: result %v, want stored", i, r)
				}
				answers[i] = answer{r.GetId(), r.GetDuplicate(), err}
			}
		})
	}
	wg.Wait()
	stored := 0
	for i, a := range answers {
		if a.err != nil {
			t.Fatalf("publish %d of k2 = %v", i, a.err)
		}
		if a.id == 0 || a.id != answers[0].id {
			t.Errorf("publish %d of k2 got id %d, want %d as every other", i, a.id, answers[0].id)
		}
		if !a.dup {
			stored++
		}
	}
	if stored != 1 {
		t.Errorf("%d publishes of k2 stored, want exactly 1", stored)
	}

	// A publisher on B gives up before its result comes; its retry on A
	// gets the stored event's id.
	ctx, cancel := context.WithCancel(t.Context())
	s, err := nodes[1].client.PublishStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(keyed(t, "orders", "k3", 3.0)); err != nil {
		t.Fatal(err)
	}
	frames := []frameOf{sub.nextFrame(t), sub.nextFrame(t), sub.nextFrame(t)}
	cancel()
	retry := nodes[0].publishKeyed(t, keyed(t, "orders", "k3", 3.0))
	if !retry.GetDuplicate() || id(retry.GetId()) != frames[2].ID {
		t.Errorf("retry of k3 = %v, want the duplicate of id %s", retry, frames[2].ID)
	}

	// Exactly one event per key reached the subscriber, then the marker.
	nodes[1].publish(t, jsonReq(t, "orders", "end"))
	frames = append(frames, sub.nextFrame(t))
	want := []string{id(first.GetId()), id(answers[0].id), id(retry.GetId())}
	for i, w := range want {
		if frames[i].ID != w {
			t.Errorf("frame %d has id %s, want %s (ids %v)", i, frames[i].ID, w, want)
		}
	}
	if frames[3].Data != `"end"` {
		t.Errorf("frame after the three keys = %+v, want the end marker: a duplicate was sent", frames[3])
	}
}
