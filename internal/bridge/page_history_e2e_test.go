package bridge_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// TestPageHistoryThenLiveInBrowser: "Show recent history" on the page, in
// chromium, with two streams and events published before, during and after
// the history loads: the page shows every event once, in id order, the
// history first (marked as such), then the live ones.
func TestPageHistoryThenLiveInBrowser(t *testing.T) {
	t.Parallel()
	newTab := startBrowser(t)
	b := startBridge(t, bridge.Config{})
	streams := []string{"orders", "users"}

	var (
		mu        sync.Mutex
		published []uint64
	)
	record := func(id uint64) {
		mu.Lock()
		published = append(published, id)
		mu.Unlock()
	}
	for i := range 5 {
		for _, s := range streams {
			record(b.publish(t, jsonReq(t, s, map[string]any{"before": float64(i)})))
		}
	}
	tab := newTab(t)
	do(tab, t, "open the page",
		chromedp.Navigate(b.baseURL+"/?stream=orders&stream=users"),
		chromedp.WaitVisible(chromedp.CSS(`#status[data-state="open"]`)),
	)

	// A publisher that keeps going while the page reads history and
	// subscribes again: 60 events, 30 a stream, so each stream's history
	// up to where the page cuts it is within the page's limit of 50; one
	// every 5 ms, so they span the load (which costs tens of ms here).
	// Which of them come from history and which live varies; the page
	// must show each once, in order, either way.
	during := make([]*bridgev1.PublishRequest, 60)
	for i := range during {
		during[i] = jsonReq(t, streams[i%2], map[string]any{"during": float64(i)})
	}
	loopErr := make(chan error, 1)
	go func() { // ends after 60 events or the first failed publish
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for _, req := range during {
			<-tick.C
			ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
			res, err := b.client.Publish(ctx, req)
			cancel()
			if err != nil {
				loopErr <- err
				return
			}
			record(res.GetId())
		}
		loopErr <- nil
	}()
	do(tab, t, "show recent history",
		chromedp.Click(chromedp.ID("history")),
		chromedp.WaitVisible(chromedp.CSS(`#status[data-history-state="shown"][data-state="open"]`)),
	)
	if err := <-loopErr; err != nil {
		t.Fatalf("publish during the history load: %v", err)
	}
	var last uint64
	for i := range 5 {
		for _, s := range streams {
			last = b.publish(t, jsonReq(t, s, map[string]any{"after": float64(i)}))
			record(last)
		}
	}
	waitFrame(tab, t, last)

	slices.Sort(published)
	var want []shownFrame
	for _, n := range published {
		want = append(want, shownFrame{id(n), "message"})
	}
	// Frames on a connection arrive in order, so once the last shows, a
	// duplicate would have shown before it.
	items := run(tab, t, chromedp.AttributesAll(chromedp.CSSAll("#events li")))
	slices.Reverse(items) // oldest first
	var got []shownFrame
	fromHistory := 0
	for i, a := range items {
		got = append(got, shownFrame{a["data-event-id"], a["data-event-type"]})
		switch {
		case a["data-history"] == "1" && i == fromHistory:
			fromHistory++
		case a["data-history"] == "1":
			t.Errorf("frame %d (id %s) is from history after a live one", i, a["data-event-id"])
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("frames on the page, oldest first (-want +got):\n%s", diff)
	}
	if fromHistory < 10 {
		t.Errorf("%d frames from history, want at least the 10 published before the click", fromHistory)
	}
	status := run(tab, t, chromedp.Attributes(chromedp.CSS("#status")))
	if status["data-history"] != strconv.Itoa(fromHistory) || status["data-events"] != strconv.Itoa(len(got)-fromHistory) || status["data-resets"] != "0" {
		t.Errorf("status %v, want %d from history, %d live, no reset", status, fromHistory, len(got)-fromHistory)
	}
	t.Logf("%d events: %d from history, %d live", len(got), fromHistory, len(got)-fromHistory)
	screenshot(tab, t)
}
