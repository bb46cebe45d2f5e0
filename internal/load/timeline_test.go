package load

import (
	"os"
	"testing"
	"time"
)

// TestTimelinePhases: calls, RSS and heap samples fall in the phase they
// overlap, and the evictions are bounded by the scrapes around them.
func TestTimelinePhases(t *testing.T) {
	t.Parallel()
	s := time.Second
	ms := time.Millisecond
	tl := &timeline{
		reasons: map[string]float64{"queue_full": 9, "write_deadline": 1},
		points: []TimelinePoint{
			{At: 1.0, HeapInuse: 100, HeapSys: 200},
			{At: 2.0, HeapInuse: 110, HeapSys: 210},
			{At: 2.1, Evictions: 4, HeapInuse: 300, HeapSys: 400},
			{At: 2.5, Evictions: 10, HeapInuse: 150, HeapSys: 400},
			{At: 3.0, Evictions: 10, HeapInuse: 50, HeapSys: 500},
			{At: 5.0, Evictions: 10, HeapInuse: 40, HeapSys: 600},
		},
		rss: []rssPoint{{1 * s, 1000}, {1900 * ms, 1100}, {2200 * ms, 1500}, {3 * s, 2000}, {4 * s, 1200}},
		calls: []timedCall{
			{at: 100 * ms, took: ms},        // in the warm-up
			{at: 1 * s, took: 2 * ms},       // before
			{at: 1990 * ms, took: 5 * ms},   // before: ends before the scrape before the first eviction
			{at: 1995 * ms, took: 30 * ms},  // during: spans its start
			{at: 2300 * ms, took: 100 * ms}, // during
			{at: 3400 * ms, took: 3 * ms},   // during: within a second of the last eviction
			{at: 3600 * ms, took: 4 * ms},   // after
		},
	}
	res := tl.result(500 * ms)
	if res.Evicted != 10 || res.ByReason["queue_full"] != 9 || res.ByReason["write_deadline"] != 1 {
		t.Errorf("evicted %d %v, want 10: 9 queue_full, 1 write_deadline", res.Evicted, res.ByReason)
	}
	if res.FirstS != 2.0 || res.LastS != 2.5 || res.SettledS != 3.5 {
		t.Errorf("evictions from %v to %v, settled %v; want 2.0, 2.5, 3.5", res.FirstS, res.LastS, res.SettledS)
	}
	if res.Before.Count != 2 || res.Before.Max != 5 || res.During.Count != 3 || res.During.Max != 100 || res.After.Count != 1 || res.After.Max != 4 {
		t.Errorf("publish before %+v, during %+v, after %+v", res.Before, res.During, res.After)
	}
	if res.RSSBeforeKiB != 1100 || res.RSSPeakKiB != 2000 || res.RSSAfterKiB != 1200 || res.RSSPeakRatio != 2000.0/1100 {
		t.Errorf("RSS before %d, peak %d (%.2f), after %d; want 1100, 2000, 1200", res.RSSBeforeKiB, res.RSSPeakKiB, res.RSSPeakRatio, res.RSSAfterKiB)
	}
	if res.HeapInuseBeforeBytes != 110 || res.HeapInusePeakBytes != 300 || res.HeapSysBeforeBytes != 210 || res.HeapSysPeakBytes != 500 {
		t.Errorf("heap %+v", res)
	}
}

// TestTimelineWithoutEvictions: every measured call is "before".
func TestTimelineWithoutEvictions(t *testing.T) {
	t.Parallel()
	tl := &timeline{
		points: []TimelinePoint{{At: 1}, {At: 2}},
		rss:    []rssPoint{{time.Second, 10}, {2 * time.Second, 20}},
		calls:  []timedCall{{at: time.Second, took: time.Millisecond}, {at: 9 * time.Second, took: time.Millisecond}},
	}
	res := tl.result(0)
	if res.Evicted != 0 || res.Before.Count != 2 || res.During.Count != 0 || res.After.Count != 0 {
		t.Errorf("evicted %d; before %+v, during %+v, after %+v", res.Evicted, res.Before, res.During, res.After)
	}
	if res.RSSBeforeKiB != 20 || res.RSSPeakKiB != 0 || res.RSSPeakRatio != 0 {
		t.Errorf("RSS before %d, peak %d: want the last sample, no peak", res.RSSBeforeKiB, res.RSSPeakKiB)
	}
}

// TestRunTimeline: a run with the timeline against a bridge scrapes its
// metrics and records every publish call.
func TestRunTimeline(t *testing.T) {
	t.Parallel()
	url, grpcAddr := startBridge(t)
	cfg := smallRun(TargetBridge, url, grpcAddr)
	cfg.Timeline = true
	cfg.Stalled, cfg.StallForever = 2, true
	cfg.PID = os.Getpid()
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Run() = %v", err)
	}
	checkComplete(t, res, cfg)
	ph := res.Phases
	if ph == nil || len(ph.Timeline) == 0 {
		t.Fatalf("phases %+v: want a timeline", ph)
	}
	if ph.Evicted != 0 || ph.Before.Count != uint64(cfg.Events) || ph.During.Count != 0 || ph.RSSBeforeKiB <= 0 {
		t.Errorf("evicted %d, publish before %+v, during %+v, RSS %d; want no eviction, every call before, an RSS",
			ph.Evicted, ph.Before, ph.During, ph.RSSBeforeKiB)
	}
	last := ph.Timeline[len(ph.Timeline)-1]
	if last.Goroutines <= 0 || last.HeapInuse <= 0 || last.Connections != int64(cfg.Subscribers+cfg.Stalled) {
		t.Errorf("last scrape %+v: want goroutines, heap and %d connections", last, cfg.Subscribers+cfg.Stalled)
	}
	if res.Stalled != nil {
		t.Errorf("stalled %+v: subscribers that never read have no figures", res.Stalled)
	}
}
