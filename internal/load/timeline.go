package load

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Timeline sampling (Config.Timeline).
const (
	// rssEvery is how often the server's RSS is read from /proc: often
	// enough to catch a spike of a few hundred milliseconds.
	rssEvery = 20 * time.Millisecond
	// scrapeEvery is how often the bridge's /metrics is read: each scrape
	// costs the server some CPU, so less often.
	scrapeEvery = 100 * time.Millisecond
	// settle is how long after the last eviction is counted still counts
	// as during the evictions: the connections' goroutines unwind, their
	// memory is collected.
	settle = time.Second
)

// timeline records, while publishing lasts, every publish call and
// samples of the server: its RSS, and from the bridge's /metrics its
// evictions, heap and goroutines. Its figures split the run into before,
// during and after the server's evictions (see EvictionResult).
type timeline struct {
	start  time.Time // of publishing: every offset is from it
	pid    int
	url    string // the bridge's /metrics; "" for none
	client *http.Client
	log    func(msg string, args ...any)

	mu    sync.Mutex
	calls []timedCall

	// Written by run only, read once it returned.
	rss     []rssPoint
	points  []TimelinePoint
	reasons map[string]float64 // evictions by reason at the last scrape, minus the first
	first   map[string]float64
	// prevCalls is len(calls) at the previous scrape.
	prevCalls int
}

type timedCall struct{ at, took time.Duration }

type rssPoint struct {
	at  time.Duration
	kib int64
}

// TimelinePoint is one scrape of the bridge during publishing.
type TimelinePoint struct {
	// At is the time since publishing started, in seconds.
	At float64 `json:"t_s"`
	// Evictions counts the connections the bridge evicted since publishing
	// started, all reasons.
	Evictions    int64 `json:"evictions"`
	RSSKiB       int64 `json:"rss_kib,omitempty"`
	HeapInuse    int64 `json:"heap_inuse_bytes"`
	HeapSys      int64 `json:"heap_sys_bytes"`
	Goroutines   int64 `json:"goroutines"`
	Connections  int64 `json:"connections"`
	PublishCalls int   `json:"publish_calls"` // completed since the previous point
	// PublishMaxMs is the longest of those calls, in milliseconds.
	PublishMaxMs float64 `json:"publish_max_ms"`
}

func newTimeline(cfg *Config, start time.Time) *timeline {
	tl := &timeline{start: start, pid: cfg.PID, log: cfg.Logger.Warn}
	if cfg.Target == TargetBridge {
		tl.url = strings.TrimSuffix(cfg.URL, "/") + "/metrics"
		tl.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
	}
	return tl
}

// call records a publish call that started at t and took d.
func (tl *timeline) call(t time.Time, d time.Duration) {
	tl.mu.Lock()
	tl.calls = append(tl.calls, timedCall{t.Sub(tl.start), d})
	tl.mu.Unlock()
}

// run samples until stop is closed.
func (tl *timeline) run(ctx context.Context, stop <-chan struct{}) {
	if tl.client != nil {
		defer tl.client.CloseIdleConnections()
	}
	rssTick := time.NewTicker(rssEvery)
	defer rssTick.Stop()
	var scrapeTick <-chan time.Time
	if tl.url != "" {
		t := time.NewTicker(scrapeEvery)
		defer t.Stop()
		scrapeTick = t.C
		tl.scrape(ctx)
	}
	tl.sampleRSS()
	for {
		select {
		case <-stop:
			tl.sampleRSS()
			if tl.url != "" {
				tl.scrape(ctx)
			}
			return
		case <-ctx.Done():
			return
		case <-rssTick.C:
			tl.sampleRSS()
		case <-scrapeTick:
			tl.scrape(ctx)
		}
	}
}

func (tl *timeline) sampleRSS() {
	if tl.pid == 0 {
		return
	}
	s, err := sampleProc(tl.pid)
	if err != nil {
		return
	}
	tl.rss = append(tl.rss, rssPoint{s.at.Sub(tl.start), s.rssKiB})
}

func (tl *timeline) scrape(ctx context.Context) {
	m, err := ScrapeMetrics(ctx, tl.client, tl.url)
	at := time.Since(tl.start)
	if err != nil {
		tl.log("scrape the bridge's metrics", "err", err)
		return
	}
	reasons := m.Label("bridge_sse_evictions_total")
	if tl.first == nil {
		tl.first = reasons
	}
	var evicted float64
	tl.reasons = map[string]float64{}
	for r, v := range reasons {
		if d := v - tl.first[r]; d > 0 {
			tl.reasons[r] = d
			evicted += d
		}
	}
	tl.mu.Lock()
	calls := len(tl.calls)
	var longest time.Duration
	for _, c := range tl.calls[tl.prevCalls:] {
		longest = max(longest, c.took)
	}
	tl.mu.Unlock()
	p := TimelinePoint{
		At:          at.Seconds(),
		Evictions:   int64(evicted),
		HeapInuse:   int64(m.Sum("go_memstats_heap_inuse_bytes")),
		HeapSys:     int64(m.Sum("go_memstats_heap_sys_bytes")),
		Goroutines:  int64(m.Sum("go_goroutines")),
		Connections: int64(m.Sum("bridge_sse_connections")),
	}
	if n := len(tl.rss); n > 0 {
		p.RSSKiB = tl.rss[n-1].kib
	}
	p.PublishCalls, tl.prevCalls = calls-tl.prevCalls, calls
	p.PublishMaxMs = ms(longest)
	tl.points = append(tl.points, p)
}

// EvictionResult splits a run with Config.Timeline into three phases by
// the evictions the bridge counted: before the first, during them (from
// the scrape before the first to one second after the last), and after.
// Publish calls belong to the phase they overlap (one that spans the
// start of the evictions is "during"); calls in the warm-up are left out.
type EvictionResult struct {
	// Evicted counts the connections the bridge evicted while publishing
	// lasted, by reason in ByReason.
	Evicted  int64            `json:"evicted"`
	ByReason map[string]int64 `json:"by_reason,omitempty"`
	// FirstS and LastS bound the evictions, in seconds since publishing
	// started (to the scrape interval, 0.1 s); SettledS is where "during"
	// ends.
	FirstS   float64 `json:"first_s"`
	LastS    float64 `json:"last_s"`
	SettledS float64 `json:"settled_s"`

	Before Quantiles `json:"publish_before"`
	During Quantiles `json:"publish_during"`
	After  Quantiles `json:"publish_after"`

	// RSSBeforeKiB is the server's RSS at the last sample before the
	// evictions; RSSPeakKiB the highest sample during them, and
	// RSSPeakRatio their ratio; RSSAfterKiB the last sample.
	RSSBeforeKiB int64   `json:"rss_before_kib,omitempty"`
	RSSPeakKiB   int64   `json:"rss_peak_kib,omitempty"`
	RSSAfterKiB  int64   `json:"rss_after_kib,omitempty"`
	RSSPeakRatio float64 `json:"rss_peak_ratio,omitempty"`
	// The Go heap in use, and held from the OS, before (last scrape) and
	// at its highest during the evictions.
	HeapInuseBeforeBytes int64 `json:"heap_inuse_before_bytes,omitempty"`
	HeapInusePeakBytes   int64 `json:"heap_inuse_peak_bytes,omitempty"`
	HeapSysBeforeBytes   int64 `json:"heap_sys_before_bytes,omitempty"`
	HeapSysPeakBytes     int64 `json:"heap_sys_peak_bytes,omitempty"`

	Timeline []TimelinePoint `json:"timeline,omitempty"`
}

// result computes the phases; measureFrom is the end of the warm-up, as an
// offset from the start of publishing.
func (tl *timeline) result(measureFrom time.Duration) *EvictionResult {
	res := &EvictionResult{Timeline: tl.points}
	var first, last time.Duration = -1, -1
	var final int64
	if n := len(tl.points); n > 0 {
		final = tl.points[n-1].Evictions
		for r, v := range tl.reasons {
			if res.ByReason == nil {
				res.ByReason = map[string]int64{}
			}
			res.ByReason[r] = int64(v)
		}
	}
	res.Evicted = final
	for i, p := range tl.points {
		at := time.Duration(p.At * float64(time.Second))
		if first < 0 && p.Evictions > 0 {
			first = 0
			if i > 0 {
				first = time.Duration(tl.points[i-1].At * float64(time.Second))
			}
		}
		if p.Evictions == final && final > 0 && last < 0 {
			last = at
		}
	}
	var before, during, after Histogram
	tl.mu.Lock()
	calls := slices.Clone(tl.calls)
	tl.mu.Unlock()
	settled := last + settle
	if first < 0 {
		// No eviction: every measured call is "before".
		first, last, settled = 1<<62, 1<<62, 1<<62
	} else {
		res.FirstS, res.LastS, res.SettledS = first.Seconds(), last.Seconds(), settled.Seconds()
	}
	for _, c := range calls {
		switch {
		case c.at < measureFrom:
		case c.at+c.took < first:
			before.Record(c.took)
		case c.at > settled:
			after.Record(c.took)
		default:
			during.Record(c.took)
		}
	}
	res.Before, res.During, res.After = before.Summary(), during.Summary(), after.Summary()

	for _, s := range tl.rss {
		switch {
		case s.at < first:
			res.RSSBeforeKiB = s.kib
		case s.at <= settled:
			res.RSSPeakKiB = max(res.RSSPeakKiB, s.kib)
		}
	}
	if n := len(tl.rss); n > 0 {
		res.RSSAfterKiB = tl.rss[n-1].kib
	}
	if res.RSSBeforeKiB > 0 && res.RSSPeakKiB > 0 {
		res.RSSPeakRatio = float64(res.RSSPeakKiB) / float64(res.RSSBeforeKiB)
	}
	for _, p := range tl.points {
		at := time.Duration(p.At * float64(time.Second))
		switch {
		case at <= first && p.Evictions == 0: // the scrape at first saw none yet
			res.HeapInuseBeforeBytes, res.HeapSysBeforeBytes = p.HeapInuse, p.HeapSys
		case at <= settled:
			res.HeapInusePeakBytes = max(res.HeapInusePeakBytes, p.HeapInuse)
			res.HeapSysPeakBytes = max(res.HeapSysPeakBytes, p.HeapSys)
		}
	}
	return res
}
