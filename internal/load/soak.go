package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// SoakConfig is a soak run ([RunSoak]): a bridge under a mixed load for a
// long time, its resources sampled at an interval, and a verdict on whether
// any of them trends up. The zero value of a field means its default.
type SoakConfig struct {
	// URL is the bridge's HTTP base URL (subscribers and /metrics); zero
	// means http://127.0.0.1:8080. GRPCAddr is its gRPC address; zero means
	// 127.0.0.1:50051.
	URL      string
	GRPCAddr string
	// PID is the bridge's process: its RSS and open files are read from
	// /proc. Required.
	PID int

	// Duration is how long the load runs; zero means 10 minutes. Interval
	// is the time between samples; zero means a minute. Warmup is how long
	// samples are left out of the trend; zero means 2 minutes.
	Duration time.Duration
	Interval time.Duration
	Warmup   time.Duration

	// Streams is the number of ordinary streams (zero: 20), published to
	// round robin at Rate events per second in all (zero: 250), 512 bytes
	// each: their histories (1,000 events each by default) are full in 80
	// s, within the warm-up. A hot stream gets HotRate events per second
	// (zero: 50) of 2 KiB: the slow clients read it.
	Streams int
	Rate    float64
	HotRate float64
	// Readers (zero: 200) read 1 to 3 streams each for the whole run;
	// Churners (zero: 100) connect to 1 to 3 streams, read for 0.5 to 10 s,
	// go, and come back, half of the time resuming with the Last-Event-ID
	// of the events they had; Slow clients (zero: 10) subscribe to the hot
	// stream through a small socket buffer, stop reading for 5 to 15 s (the
	// bridge evicts them), read what they were sent, and resume.
	Readers  int
	Churners int
	Slow     int

	// MaxGrowth is how much a resource may grow over the samples after the
	// warm-up, in percent of its median, before the run fails; zero means
	// 10. See [Trend].
	MaxGrowth float64

	// Out receives a line per sample and the verdict; nil means discard.
	Out io.Writer
	// Logger receives progress; nil means discard.
	Logger *slog.Logger
}

// Validate applies defaults and reports invalid fields.
func (c *SoakConfig) Validate() error {
	setDefault(&c.URL, "http://127.0.0.1:8080")
	setDefault(&c.GRPCAddr, "127.0.0.1:50051")
	setDefault(&c.Duration, 10*time.Minute)
	setDefault(&c.Interval, time.Minute)
	setDefault(&c.Warmup, 2*time.Minute)
	setDefault(&c.Streams, 20)
	setDefault(&c.Rate, 250)
	setDefault(&c.HotRate, 50)
	setDefault(&c.Readers, 200)
	setDefault(&c.Churners, 100)
	setDefault(&c.Slow, 10)
	setDefault(&c.MaxGrowth, 10)
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if c.PID <= 0 {
		errs = append(errs, errors.New("the bridge's pid is required: its RSS and open files are read from /proc"))
	}
	if u, err := url.Parse(c.URL); err != nil || u.Scheme != "http" || u.Host == "" {
		errs = append(errs, fmt.Errorf("URL %q must be an http:// base URL", c.URL))
	}
	if c.Duration < 0 || c.Interval < 0 || c.Warmup < 0 || c.Streams < 0 || c.Rate < 0 || c.HotRate < 0 ||
		c.Readers < 0 || c.Churners < 0 || c.Slow < 0 || c.MaxGrowth < 0 {
		errs = append(errs, errors.New("durations, counts and rates must not be negative"))
	}
	if c.Interval > 0 && c.Duration < c.Warmup+3*c.Interval {
		// Judge needs three samples after the warm-up.
		errs = append(errs, fmt.Errorf("a run of %v with a warm-up of %v has fewer than 3 samples of %v to judge", c.Duration, c.Warmup, c.Interval))
	}
	return errors.Join(errs...)
}

// SoakSample is the bridge's state over one interval of a soak run.
// Values that swing with the load (goroutines, open files, connections)
// are the median of the interval's readings; the heap is the lowest
// reading, which comes right after a collection: what is live.
type SoakSample struct {
	Minutes     float64 // since the load started, at the end of the interval
	RSSKiB      int64
	OpenFiles   int64
	Goroutines  int64
	HeapInuse   int64 // go_memstats_heap_inuse_bytes
	HeapAlloc   int64 // go_memstats_alloc_bytes
	Connections int64 // bridge_sse_connections
	Evictions   int64 // bridge_sse_evictions_total, all reasons, since the start
	Published   int64 // publish calls that succeeded, since the start
	Connects    int64 // streams opened by the clients, since the start
	Events      int64 // events the clients received, since the start
}

// soakColumns is the CSV header; SoakSample.csv writes a row in its order.
const soakColumns = "minutes,rss_kib,open_files,goroutines,heap_inuse_bytes,heap_alloc_bytes,connections,evictions,published,connects,events"

func (s SoakSample) csv() string {
	return fmt.Sprintf("%.3f,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d", s.Minutes, s.RSSKiB, s.OpenFiles, s.Goroutines,
		s.HeapInuse, s.HeapAlloc, s.Connections, s.Evictions, s.Published, s.Connects, s.Events)
}

// ParseSoakCSV reads the samples of a CSV that RunSoak wrote.
func ParseSoakCSV(r io.Reader) ([]SoakSample, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) == 0 || strings.TrimSpace(lines[0]) != soakColumns {
		return nil, fmt.Errorf("not a soak CSV: the header is not %q", soakColumns)
	}
	var out []SoakSample
	for i, line := range lines[1:] {
		var s SoakSample
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "%g,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d", &s.Minutes, &s.RSSKiB, &s.OpenFiles,
			&s.Goroutines, &s.HeapInuse, &s.HeapAlloc, &s.Connections, &s.Evictions, &s.Published, &s.Connects, &s.Events); err != nil {
			return nil, fmt.Errorf("soak CSV line %d: %w", i+2, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// SoakSeries names the resources a soak run judges, in order, with their
// unit; SoakValue returns one of a sample.
func SoakSeries() (names, units []string) {
	for _, s := range soakSeries {
		names, units = append(names, s.name), append(units, s.unit)
	}
	return names, units
}

// SoakValue returns resource i of SoakSeries in s.
func SoakValue(i int, s SoakSample) float64 { return soakSeries[i].value(s) }

// Trend is whether one resource grew over the samples after the warm-up:
// the least-squares slope of its samples, the growth that slope makes
// over their span, and that growth in percent of their median. It fails
// when the growth is over the run's MaxGrowth percent and over Floor, the
// least growth that counts for this resource (noise below it: a few
// goroutines, a few pages).
type Trend struct {
	Name      string
	Unit      string  // of Slope, Growth, Median and Floor
	Slope     float64 // per minute
	Growth    float64
	Median    float64
	Percent   float64
	Floor     float64
	MaxGrowth float64
	Fail      bool
}

func (t Trend) String() string {
	verdict := "ok"
	if t.Fail {
		verdict = "FAIL: trends up"
	}
	return fmt.Sprintf("%-10s slope %+.3f %s/min, %+.2f %s over the samples after the warm-up (%+.1f%% of their median %.1f %s; fails over %.0f%% and %.0f %s): %s",
		t.Name, t.Slope, t.Unit, t.Growth, t.Unit, t.Percent, t.Median, t.Unit, t.MaxGrowth, t.Floor, t.Unit, verdict)
}

// SoakResult is the outcome of a soak run.
type SoakResult struct {
	Samples []SoakSample
	Trends  []Trend
	// Pass: no resource trends up.
	Pass bool
	// What the clients did.
	Connects, ConnectErrors, Events, Resets, Ended int64
	Published, PublishErrors                       int64
}

// soakSeries are the resources judged, with the least growth that counts.
var soakSeries = []struct {
	name, unit string
	floor      float64
	value      func(SoakSample) float64
}{
	{"RSS", "MiB", 8, func(s SoakSample) float64 { return float64(s.RSSKiB) / 1024 }},
	{"heap", "MiB", 4, func(s SoakSample) float64 { return float64(s.HeapInuse) / (1 << 20) }},
	{"heap alloc", "MiB", 4, func(s SoakSample) float64 { return float64(s.HeapAlloc) / (1 << 20) }},
	{"goroutines", "", 25, func(s SoakSample) float64 { return float64(s.Goroutines) }},
	{"open files", "", 25, func(s SoakSample) float64 { return float64(s.OpenFiles) }},
}

// Judge computes the trend of every resource over the samples taken after
// the warm-up (warmup, in minutes; see AfterWarmup).
func Judge(samples []SoakSample, warmup, maxGrowth float64) (trends []Trend, pass bool) {
	var after []SoakSample
	for _, s := range samples {
		if AfterWarmup(s, warmup) {
			after = append(after, s)
		}
	}
	pass = len(after) >= 3
	for _, ser := range soakSeries {
		t := Trend{Name: ser.name, Unit: ser.unit, Floor: ser.floor, MaxGrowth: maxGrowth}
		if len(after) >= 3 {
			xs := make([]float64, len(after))
			ys := make([]float64, len(after))
			for i, s := range after {
				xs[i], ys[i] = s.Minutes, ser.value(s)
			}
			t.Slope = slope(xs, ys)
			t.Growth = t.Slope * (xs[len(xs)-1] - xs[0])
			t.Median = medianOf(ys)
			if t.Median > 0 {
				t.Percent = 100 * t.Growth / t.Median
			}
			t.Fail = t.Growth > t.Floor && t.Percent > maxGrowth
		}
		pass = pass && !t.Fail
		trends = append(trends, t)
	}
	return trends, pass
}

// AfterWarmup reports whether s counts in the trend: it was taken after the
// warm-up (warmup, in minutes). The sample taken at the end of the warm-up
// is not: its readings are those of the warm-up's last interval. (The CSV
// keeps minutes to a thousandth, and that sample is taken a little after
// the end.)
func AfterWarmup(s SoakSample, warmup float64) bool { return s.Minutes > warmup+0.001 }

// slope is the least-squares slope of ys over xs.
func slope(xs, ys []float64) float64 {
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx /= float64(len(xs))
	my /= float64(len(ys))
	var num, den float64
	for i := range xs {
		num += (xs[i] - mx) * (ys[i] - my)
		den += (xs[i] - mx) * (xs[i] - mx)
	}
	if den == 0 {
		return 0
	}
	return num / den
}

func medianOf(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

// soak is the state of one soak run.
type soak struct {
	cfg     *SoakConfig
	host    string
	path    string // of /events
	streams []string
	hot     string

	connects, connectErrors, events, resets, ended atomic.Int64
	published, publishErrors                       atomic.Int64
}

// RunSoak runs a soak as cfg says and returns its samples and verdict. The
// CSV of the samples goes to csv (nil: none) as they are taken. It returns
// an error when the bridge cannot be reached or sampled; a run that ran
// its course returns its result whatever the verdict.
func RunSoak(ctx context.Context, cfg SoakConfig, csv io.Writer) (*SoakResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.URL) // Validate checked it
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	sk := &soak{cfg: &cfg, host: host, path: strings.TrimSuffix(u.Path, "/") + "/events", hot: "soak-hot"}
	for i := range cfg.Streams {
		sk.streams = append(sk.streams, fmt.Sprintf("soak-%d", i))
	}
	metricsURL := strings.TrimSuffix(cfg.URL, "/") + "/metrics"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
	defer client.CloseIdleConnections()
	if _, err := ScrapeMetrics(ctx, client, metricsURL); err != nil {
		return nil, fmt.Errorf("the bridge's metrics: %w", err)
	}
	if _, err := sampleProc(cfg.PID); err != nil {
		return nil, err
	}

	normal, err := newGRPCPublisher(cfg.GRPCAddr, 512)
	if err != nil {
		return nil, err
	}
	defer func() { _ = normal.close() }()
	hot, err := newGRPCPublisher(cfg.GRPCAddr, 2048)
	if err != nil {
		return nil, err
	}
	defer func() { _ = hot.close() }()

	// The load runs until the last sample is taken (or ctx ends).
	life, end := context.WithCancel(ctx)
	defer end()
	want := int(cfg.Duration / cfg.Interval)
	var wg sync.WaitGroup
	defer wg.Wait() // every load goroutine ends with life
	wg.Go(func() {
		sk.publish(life, normal, cfg.Rate, func(k int64) string { return sk.streams[k%int64(len(sk.streams))] })
	})
	wg.Go(func() { sk.publish(life, hot, cfg.HotRate, func(int64) string { return sk.hot }) })
	for i := range cfg.Readers {
		wg.Go(func() { sk.reader(life, rand.New(rand.NewPCG(1, uint64(i)))) }) //nolint:gosec // load shaping, not security
	}
	for i := range cfg.Churners {
		wg.Go(func() { sk.churner(life, rand.New(rand.NewPCG(2, uint64(i)))) }) //nolint:gosec // load shaping, not security
	}
	for i := range cfg.Slow {
		wg.Go(func() { sk.slow(life, rand.New(rand.NewPCG(3, uint64(i)))) }) //nolint:gosec // load shaping, not security
	}

	res := &SoakResult{}
	if csv != nil {
		if _, err := fmt.Fprintln(csv, soakColumns); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(cfg.Out, "soak: %v, a sample every %v, trend judged after %v; %d streams at %g events/s and a hot one at %g/s; %d readers, %d churners, %d slow clients\n",
		cfg.Duration, cfg.Interval, cfg.Warmup, cfg.Streams, cfg.Rate, cfg.HotRate, cfg.Readers, cfg.Churners, cfg.Slow)
	start := time.Now()
	var firstEvictions float64 = -1
	readEvery := max(cfg.Interval/12, 50*time.Millisecond)
	tick := time.NewTicker(readEvery)
	defer tick.Stop()
	var rss, files, gor, conns []float64
	heapIn, heapAlloc := math.Inf(1), math.Inf(1)
	var evictions float64
	next := start.Add(cfg.Interval)
	for len(res.Samples) < want && ctx.Err() == nil {
		select {
		case <-ctx.Done():
			continue
		case <-tick.C:
		}
		m, err := ScrapeMetrics(ctx, client, metricsURL)
		if err != nil {
			return nil, fmt.Errorf("the bridge's metrics: %w", err)
		}
		p, err := sampleProc(cfg.PID)
		if err != nil {
			return nil, err
		}
		n, err := openFiles(cfg.PID)
		if err != nil {
			return nil, err
		}
		rss = append(rss, float64(p.rssKiB))
		files = append(files, float64(n))
		gor = append(gor, m.Sum("go_goroutines"))
		conns = append(conns, m.Sum("bridge_sse_connections"))
		heapIn = min(heapIn, m.Sum("go_memstats_heap_inuse_bytes"))
		heapAlloc = min(heapAlloc, m.Sum("go_memstats_alloc_bytes"))
		ev := m.Sum("bridge_sse_evictions_total")
		if firstEvictions < 0 {
			firstEvictions = ev
		}
		evictions = ev - firstEvictions
		if now := time.Now(); now.Before(next) {
			continue
		}
		s := SoakSample{
			Minutes:     time.Since(start).Minutes(),
			RSSKiB:      int64(medianOf(rss)),
			OpenFiles:   int64(medianOf(files)),
			Goroutines:  int64(medianOf(gor)),
			HeapInuse:   int64(heapIn),
			HeapAlloc:   int64(heapAlloc),
			Connections: int64(medianOf(conns)),
			Evictions:   int64(evictions),
			Published:   sk.published.Load(),
			Connects:    sk.connects.Load(),
			Events:      sk.events.Load(),
		}
		res.Samples = append(res.Samples, s)
		fmt.Fprintf(cfg.Out, "%6.2f min  RSS %7.1f MiB  heap %6.1f MiB in use, %6.1f allocated  goroutines %5d  open files %5d  connections %5d  evictions %5d  published %8d  connects %6d  events %9d\n",
			s.Minutes, float64(s.RSSKiB)/1024, float64(s.HeapInuse)/(1<<20), float64(s.HeapAlloc)/(1<<20),
			s.Goroutines, s.OpenFiles, s.Connections, s.Evictions, s.Published, s.Connects, s.Events)
		if csv != nil {
			if _, err := fmt.Fprintln(csv, s.csv()); err != nil {
				return nil, err
			}
		}
		rss, files, gor, conns = rss[:0], files[:0], gor[:0], conns[:0]
		heapIn, heapAlloc = math.Inf(1), math.Inf(1)
		next = next.Add(cfg.Interval)
	}
	end()
	wg.Wait()
	res.Trends, res.Pass = Judge(res.Samples, cfg.Warmup.Minutes(), cfg.MaxGrowth)
	res.Connects, res.ConnectErrors = sk.connects.Load(), sk.connectErrors.Load()
	res.Events, res.Resets, res.Ended = sk.events.Load(), sk.resets.Load(), sk.ended.Load()
	res.Published, res.PublishErrors = sk.published.Load(), sk.publishErrors.Load()
	fmt.Fprintf(cfg.Out, "clients: %d streams opened (%d failed attempts), %d events, %d resets, %d streams ended by the bridge; %d published (%d errors)\n",
		res.Connects, res.ConnectErrors, res.Events, res.Resets, res.Ended, res.Published, res.PublishErrors)
	for _, t := range res.Trends {
		fmt.Fprintln(cfg.Out, t)
	}
	if res.Pass {
		fmt.Fprintln(cfg.Out, "PASS: no resource trends up")
	} else {
		fmt.Fprintln(cfg.Out, "FAIL: a resource trends up (or too few samples to tell)")
	}
	return res, ctx.Err()
}

// openFiles counts the entries of /proc/pid/fd.
func openFiles(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, fmt.Errorf("open files: %w", err)
	}
	defer func() { _ = f.Close() }()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return 0, fmt.Errorf("open files: %w", err)
	}
	return len(names), nil
}

// publish publishes at rate events per second until ctx ends, event k to
// stream(k), on a fixed schedule (a late call is caught up).
func (sk *soak) publish(ctx context.Context, p *grpcPublisher, rate float64, stream func(int64) string) {
	if rate <= 0 {
		return
	}
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for k := int64(0); ; k++ {
		at := start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
		t.Reset(time.Until(at))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := p.publish(callCtx, stream(k), uint64(k), time.Now().UnixNano())
		cancel()
		switch {
		case err == nil:
			sk.published.Add(1)
		case ctx.Err() == nil:
			sk.publishErrors.Add(1)
		}
	}
}

// pick returns 1 to 3 distinct ordinary streams.
func (sk *soak) pick(r *rand.Rand) []string {
	n := 1 + r.IntN(3)
	var out []string
	for len(out) < n && len(out) < len(sk.streams) {
		if s := sk.streams[r.IntN(len(sk.streams))]; !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// open connects to streams, resuming after lastID when it is not empty;
// nil once ctx ended (a failed attempt is counted and retried after a
// pause).
func (sk *soak) open(ctx context.Context, r *rand.Rand, streams []string, lastID []byte, slow bool) *sseConn {
	q := url.Values{"stream": streams}
	control := bindNoPort
	if slow {
		control = stalledSocket(4096)
	}
	for ctx.Err() == nil {
		c, err := dialStream(ctx, ctx, sk.host, sk.path+"?"+q.Encode(), netip.AddrFrom4([4]byte{127, 0, 0, 1}), control, lastID)
		if err == nil {
			sk.connects.Add(1)
			return c
		}
		if ctx.Err() == nil {
			sk.connectErrors.Add(1)
			sk.cfg.Logger.Debug("soak connect", "err", err)
		}
		sleep(ctx, time.Duration(100+r.IntN(900))*time.Millisecond)
	}
	return nil
}

// read counts the events of c until it ends (or is closed), and returns
// the last event id.
func (sk *soak) read(c *sseConn) []byte {
	id, _ := sk.readErr(c)
	return id
}

// readErr is read, with the error that ended the stream.
func (sk *soak) readErr(c *sseConn) ([]byte, error) {
	p := NewParser(c.resp.Body, readBufSize, maxLine)
	for {
		ev, err := p.Next()
		if err != nil {
			return slices.Clone(p.LastEventID()), err
		}
		if string(ev.Type) == resetEvent {
			sk.resets.Add(1)
		} else {
			sk.events.Add(1)
		}
	}
}

// reader reads its streams for the whole run, resuming when the bridge
// ends its stream.
func (sk *soak) reader(ctx context.Context, r *rand.Rand) {
	streams := sk.pick(r)
	var last []byte
	for {
		c := sk.open(ctx, r, streams, last, false)
		if c == nil {
			return
		}
		last = sk.read(c)
		c.close()
		if ctx.Err() != nil {
			return
		}
		sk.ended.Add(1)
		sleep(ctx, time.Duration(100+r.IntN(900))*time.Millisecond)
	}
}

// churner connects, reads for a while, goes and comes back.
func (sk *soak) churner(ctx context.Context, r *rand.Rand) {
	var last []byte
	for ctx.Err() == nil {
		resume := last
		if r.IntN(2) == 0 {
			resume = nil
		}
		c := sk.open(ctx, r, sk.pick(r), resume, false)
		if c == nil {
			return
		}
		stay := time.AfterFunc(time.Duration(500+r.IntN(9500))*time.Millisecond, c.close)
		last = sk.read(c)
		if stay.Stop() && ctx.Err() == nil {
			sk.ended.Add(1) // the bridge ended it first
		}
		c.close()
		sleep(ctx, time.Duration(r.IntN(500))*time.Millisecond)
	}
}

// slow subscribes to the hot stream through a small socket buffer, stops
// reading long enough to be evicted, reads what it was sent and resumes.
func (sk *soak) slow(ctx context.Context, r *rand.Rand) {
	var last []byte
	for ctx.Err() == nil {
		c := sk.open(ctx, r, []string{sk.hot}, last, true)
		if c == nil {
			return
		}
		sleep(ctx, time.Duration(5000+r.IntN(10_000))*time.Millisecond)
		_ = c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		id, err := sk.readErr(c)
		if len(id) > 0 {
			last = id
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			sk.ended.Add(1) // the bridge ended it (evicted, as it should be)
		}
		c.close()
		sleep(ctx, time.Duration(1000+r.IntN(2000))*time.Millisecond)
	}
}

// sleep waits for d or the end of ctx.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
