package bridge_test

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// scrape reads /metrics and returns each sample by its name and labels, as
// the exposition format writes them (`name{label="v"}`).
func scrape(t *testing.T, baseURL string) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d", resp.StatusCode)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	return samples
}

func TestMetricsMoveAsEventsFlow(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{HistorySize: 2})
	before := scrape(t, b.baseURL)
	for _, name := range []string{
		`bridge_events_published_total{result="ok"}`, `bridge_events_published_total{result="invalid"}`,
		`bridge_frames_delivered_total`, `bridge_sse_connections`, `bridge_sse_dozing_connections`, `bridge_sse_subscriptions`,
		`bridge_sse_evictions_total{reason="queue_full"}`, `bridge_sse_evictions_total{reason="write_deadline"}`,
		`bridge_sse_evictions_total{reason="heartbeat"}`, `bridge_replays_total`, `bridge_resets_total`,
		`bridge_history_events`, `bridge_history_bytes`, `bridge_history_limit_bytes`, `bridge_history_streams`,
		`bridge_history_evicted_events_total{reason="size"}`, `bridge_history_evicted_events_total{reason="age"}`,
		`bridge_history_evicted_events_total{reason="memory"}`, `go_goroutines`, `process_resident_memory_bytes`,
	} {
		if _, ok := before[name]; !ok {
			t.Errorf("/metrics has no %s", name)
		}
	}

	one := subscribe(t, b.baseURL, "stream=m.a", "")
	two := subscribe(t, b.baseURL, "stream=m.a&stream=m.b", "")
	var ids []uint64
	for i := range 3 {
		ids = append(ids, b.publish(t, jsonReq(t, "m.a", float64(i))))
	}
	for range ids {
		one.next(t)
		two.next(t)
	}
	if _, err := b.client.Publish(t.Context(), &bridgev1.PublishRequest{Stream: "bad name"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Publish(bad) = %v", err)
	}
	// A resume that history covers, and one it does not (history holds 2).
	resumed := subscribe(t, b.baseURL, "stream=m.a", id(ids[1]))
	resumed.next(t)
	reset := subscribe(t, b.baseURL, "stream=m.a", id(ids[0]-1))
	if ev := reset.next(t); ev.Type != bridge.ResetEvent {
		t.Fatalf("frame %+v, want a reset", ev)
	}

	after := scrape(t, b.baseURL)
	if got, limit := after[`bridge_history_bytes`], after[`bridge_history_limit_bytes`]; got <= 0 || got > limit || limit != 256<<20 {
		t.Errorf("bridge_history_bytes %v, limit %v; want some, at most the limit, 256 MiB", got, limit)
	}
	for name, want := range map[string]float64{
		`bridge_events_published_total{result="ok"}`:           3,
		`bridge_events_published_total{result="invalid"}`:      1,
		`bridge_frames_delivered_total`:                        6,
		`bridge_sse_connections`:                               4,
		`bridge_sse_dozing_connections`:                        0, // each had an event, or resumed
		`bridge_sse_subscriptions`:                             5,
		`bridge_replays_total`:                                 1,
		`bridge_resets_total`:                                  1,
		`bridge_history_events`:                                2,
		`bridge_history_streams`:                               1, // m.a; m.b never had an event
		`bridge_history_evicted_events_total{reason="size"}`:   1, // history holds 2
		`bridge_history_evicted_events_total{reason="memory"}`: 0,
		`bridge_publish_duration_seconds_count`:                3,
		`bridge_grpc_server_handled_total{grpc_code="OK",grpc_method="/bridge.v1.BridgeService/Publish"}`: 3,
	} {
		if got := after[name] - before[name]; got != want {
			t.Errorf("%s went up by %v, want %v", name, got, want)
		}
	}
}

func TestHealthEndpoints(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{})
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, b.baseURL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}
