package load

import (
	"fmt"
	"io"
	"time"
)

// Result is the outcome of one run, as the tool prints it with --json.
// Figures about "subscribers" are about the healthy ones; the stalled ones
// are in Stalled. Rates and CPU are over the measured window: from the end
// of the warm-up to the end of publishing (for a run bounded by a number of
// events: to the end of the drain).
type Result struct {
	Workload string    `json:"workload,omitempty"`
	Target   string    `json:"target"`
	Started  time.Time `json:"started"`
	Params   Params    `json:"params"`

	// ConnectSeconds is the time to connect every subscriber (the response
	// header received), stalled ones included.
	ConnectSeconds float64 `json:"connect_s"`
	// ConnectErrors counts failed connection attempts, reconnects included.
	ConnectErrors int64 `json:"connect_errors"`

	// Published counts publish calls that succeeded (fences excluded).
	Published          int64     `json:"published"`
	PublishErrors      int64     `json:"publish_errors"`
	PublishErrorSample string    `json:"publish_error_sample,omitempty"`
	PublishedPerSec    float64   `json:"published_per_s"`
	PublishSeconds     float64   `json:"publish_s"`
	PublishCall        Quantiles `json:"publish_call"`

	// Delivered counts load events received, duplicates included.
	Delivered int64 `json:"delivered"`
	// Expected is, summed over subscribers, the events published to its
	// stream: every subscriber is subscribed for the whole run.
	Expected int64 `json:"expected"`
	// Lost is expected events a subscriber never received, by sequence
	// number; LossySubscribers have at least one.
	Lost             int64 `json:"lost"`
	LossySubscribers int   `json:"lossy_subscribers"`
	// Duplicated counts events received again by the same subscriber.
	Duplicated int64 `json:"duplicated"`
	// Reordered counts events whose id was not above the previous one's.
	Reordered int64 `json:"reordered"`
	// IDMismatches counts events a subscriber received with another id than
	// the one their publish call returned (with Config.CheckIDs; else 0).
	IDMismatches int64 `json:"id_mismatches"`
	// Unacknowledged counts events received whose publish call failed.
	Unacknowledged int64 `json:"unacknowledged"`
	// Resets counts bridge.reset frames.
	Resets int64 `json:"resets"`
	// Foreign counts frames with data that is not a load event.
	Foreign int64 `json:"foreign"`
	// Evictions counts streams the server ended while the run went on;
	// EvictedSubscribers saw at least one. Reconnects reopened them.
	Evictions          int64 `json:"evictions"`
	EvictedSubscribers int   `json:"evicted_subscribers"`
	Reconnects         int64 `json:"reconnects"`
	// Comments counts comment lines (heartbeats).
	Comments int64 `json:"comments"`

	WindowSeconds   float64   `json:"window_s"`
	DeliveredWindow int64     `json:"delivered_window"`
	DeliveredPerSec float64   `json:"delivered_per_s"`
	Latency         Quantiles `json:"latency"`

	DrainSeconds float64 `json:"drain_s"`
	// Unfenced subscribers had not received their stream's fence when the
	// drain ended: what they lack is counted as lost.
	Unfenced int `json:"unfenced"`

	Stalled *StalledResult `json:"stalled,omitempty"`
	// Phases is set by a run with Config.Timeline: publish latency and
	// the server's memory before, during and after its evictions.
	Phases *EvictionResult `json:"phases,omitempty"`

	Server *ProcResult `json:"server,omitempty"`
	Client *ProcResult `json:"client,omitempty"`
	// CPUPerFrameUS is the server's CPU time in the window per event
	// delivered in it, in microseconds.
	CPUPerFrameUS float64 `json:"cpu_us_per_frame,omitempty"`
	// CPUPerPublishedUS is the server's CPU time in the window per event
	// published (accepted) in it, in microseconds: the ingest figure.
	CPUPerPublishedUS float64 `json:"cpu_us_per_published,omitempty"`
	// ClientCPUPerFrameUS is the same for this tool.
	ClientCPUPerFrameUS float64 `json:"client_cpu_us_per_frame,omitempty"`
	// RSSPerConnKiB is (server RSS once connected - RSS before) / connections.
	RSSPerConnKiB float64 `json:"rss_kib_per_conn,omitempty"`
	// RSSPerConnAfterKiB is (server RSS at the end of the measured window -
	// RSS before) / connections: once every connection was written to. A
	// server touches a connection's write buffers only when it first writes
	// a body, so an idle connection that never got a byte looks smaller than
	// one that got an event or a heartbeat; this is the steady-state figure.
	RSSPerConnAfterKiB float64 `json:"rss_kib_per_conn_after,omitempty"`

	// MachineCPUWindowSeconds is the busy CPU time of every processor in the
	// window, and OtherCPUWindowSeconds what of it neither the server nor
	// this tool used: other processes, and kernel work (softirqs) charged to
	// no process. Much of it means something else ran and the figures are
	// noisy.
	MachineCPUWindowSeconds float64 `json:"machine_cpu_window_s,omitempty"`
	OtherCPUWindowSeconds   float64 `json:"other_cpu_window_s,omitempty"`
}

// Params are the settings of a run.
type Params struct {
	Subscribers int     `json:"subscribers"`
	Streams     int     `json:"streams"`
	Stalled     int     `json:"stalled"`
	StallFor    string  `json:"stall_for,omitempty"`
	Rate        float64 `json:"rate"`
	Publishers  int     `json:"publishers"`
	Mode        string  `json:"mode,omitempty"`
	BatchSize   int     `json:"batch_size,omitempty"`
	Events      int     `json:"events,omitempty"`
	PayloadSize int     `json:"payload_size"`
	Warmup      string  `json:"warmup"`
	Duration    string  `json:"duration"`
	SourceIPs   int     `json:"source_ips"`
	URL         string  `json:"url"`
	GRPCAddr    string  `json:"grpc_addr,omitempty"`
}

// StalledResult is what the subscribers that stopped reading saw once they
// read again.
type StalledResult struct {
	Subscribers int `json:"subscribers"`
	// ClosedByServer subscribers found their stream ended by the server.
	ClosedByServer int   `json:"closed_by_server"`
	Reconnects     int64 `json:"reconnects"`
	Resets         int64 `json:"resets"`
	Expected       int64 `json:"expected"`
	Received       int64 `json:"received"`
	Lost           int64 `json:"lost"`
	Duplicated     int64 `json:"duplicated"`
}

// ProcResult is a process's memory and CPU over a run.
type ProcResult struct {
	PID               int     `json:"pid,omitempty"`
	RSSStartKiB       int64   `json:"rss_start_kib"`
	RSSConnectedKiB   int64   `json:"rss_connected_kib"`
	RSSWindowStartKiB int64   `json:"rss_window_start_kib"`
	RSSWindowEndKiB   int64   `json:"rss_window_end_kib"`
	RSSEndKiB         int64   `json:"rss_end_kib"`
	CPUConnectSeconds float64 `json:"cpu_connect_s"`
	CPUWindowSeconds  float64 `json:"cpu_window_s"`
	CPUTotalSeconds   float64 `json:"cpu_total_s"`
}

func newResult(cfg *Config) *Result {
	res := &Result{
		Workload: cfg.Workload,
		Target:   cfg.Target,
		Started:  time.Now().UTC(),
		Params: Params{
			Subscribers: cfg.Subscribers, Streams: cfg.Streams, Stalled: cfg.Stalled,
			Rate: cfg.Rate, Publishers: cfg.Publishers, Events: cfg.Events,
			PayloadSize: cfg.PayloadSize, Warmup: cfg.Warmup.String(), Duration: cfg.Duration.String(),
			SourceIPs: len(cfg.SourceIPs), URL: cfg.URL, Mode: cfg.Mode,
		},
	}
	if cfg.Mode == ModeBatch {
		res.Params.BatchSize = cfg.BatchSize
	}
	if cfg.Stalled > 0 {
		res.Params.StallFor = cfg.StallFor.String()
		if cfg.StallForever {
			res.Params.StallFor = "forever"
		}
	}
	if cfg.Target == TargetBridge {
		res.Params.GRPCAddr = cfg.GRPCAddr
	}
	return res
}

// fill computes the figures once every subscriber goroutine has returned.
func (r *runner) fill(res *Result, w *window, server, client *procTrack) {
	res.Published = r.pubOK.Load()
	res.PublishErrors = r.pubErrors.Load()
	if m := r.pubErrMsg.Load(); m != nil {
		res.PublishErrorSample = *m
	}
	res.PublishCall = r.pubLatency.Summary()
	var stalled StalledResult
	for _, s := range r.subs {
		want := &r.published[s.stream].seqs
		lost := int64(s.received.missing(want))
		res.ConnectErrors += s.dialErrors.Load()
		res.Comments += s.comments
		if s.stalled && r.cfg.StallForever {
			continue // never read: nothing to count (see Phases)
		}
		if s.stalled {
			stalled.Subscribers++
			if s.ended.Load() > 0 {
				stalled.ClosedByServer++
			}
			stalled.Reconnects += s.reconnects.Load()
			stalled.Resets += s.resets.Load()
			stalled.Expected += int64(want.count())
			stalled.Received += s.frames.Load() - s.dups.Load()
			stalled.Lost += lost
			stalled.Duplicated += s.dups.Load()
			continue
		}
		res.Delivered += s.frames.Load()
		res.Expected += int64(want.count())
		res.Lost += lost
		if lost > 0 {
			res.LossySubscribers++
		}
		res.Duplicated += s.dups.Load()
		res.Reordered += s.reordered.Load()
		res.IDMismatches += s.idMismatches(r.published[s.stream].ids)
		res.Unacknowledged += int64(s.received.extra(want))
		res.Resets += s.resets.Load()
		res.Foreign += s.foreign.Load()
		res.Evictions += s.ended.Load()
		if s.ended.Load() > 0 {
			res.EvictedSubscribers++
		}
		res.Reconnects += s.reconnects.Load()
	}
	if stalled.Subscribers > 0 {
		res.Stalled = &stalled
	}

	var lat Histogram
	for i := range r.latency {
		lat.Merge(&r.latency[i])
	}
	res.Latency = lat.Summary()

	if !w.start.IsZero() && !w.end.IsZero() {
		res.WindowSeconds = w.end.Sub(w.start).Seconds()
		res.DeliveredWindow = w.framesEnd - w.framesStart
		if res.WindowSeconds > 0 {
			res.DeliveredPerSec = float64(res.DeliveredWindow) / res.WindowSeconds
			res.PublishedPerSec = float64(w.pubEnd-w.pubStart) / res.WindowSeconds
		}
	}
	conns := len(r.subs)
	if server.ok() {
		res.Server = procResult(server, r.cfg.PID)
		if res.DeliveredWindow > 0 {
			res.CPUPerFrameUS = res.Server.CPUWindowSeconds * 1e6 / float64(res.DeliveredWindow)
		}
		if n := w.pubEnd - w.pubStart; n > 0 {
			res.CPUPerPublishedUS = res.Server.CPUWindowSeconds * 1e6 / float64(n)
		}
		if conns > 0 {
			res.RSSPerConnKiB = float64(res.Server.RSSConnectedKiB-res.Server.RSSStartKiB) / float64(conns)
			res.RSSPerConnAfterKiB = float64(res.Server.RSSWindowEndKiB-res.Server.RSSStartKiB) / float64(conns)
		}
	}
	if client.ok() {
		res.Client = procResult(client, 0)
		if res.DeliveredWindow > 0 {
			res.ClientCPUPerFrameUS = res.Client.CPUWindowSeconds * 1e6 / float64(res.DeliveredWindow)
		}
	}
	if w.machine0 > 0 && w.machine1 > 0 {
		res.MachineCPUWindowSeconds = (w.machine1 - w.machine0).Seconds()
		res.OtherCPUWindowSeconds = res.MachineCPUWindowSeconds
		if res.Server != nil {
			res.OtherCPUWindowSeconds -= res.Server.CPUWindowSeconds
		}
		if res.Client != nil {
			res.OtherCPUWindowSeconds -= res.Client.CPUWindowSeconds
		}
	}
}

// idMismatches counts the events s received with another id than want,
// the ids their publishers got back, by sequence number (0: not published).
func (s *subscriber) idMismatches(want []uint64) int64 {
	var n int64
	for seq, id := range want {
		if id != 0 && s.received.has(uint64(seq)) && (seq >= len(s.ids) || s.ids[seq] != id) {
			n++
		}
	}
	return n
}

func procResult(p *procTrack, pid int) *ProcResult {
	return &ProcResult{
		PID:               pid,
		RSSStartKiB:       p.start.rssKiB,
		RSSConnectedKiB:   p.connected.rssKiB,
		RSSWindowStartKiB: p.win0.rssKiB,
		RSSWindowEndKiB:   p.win1.rssKiB,
		RSSEndKiB:         p.end.rssKiB,
		CPUConnectSeconds: (p.connected.cpu - p.start.cpu).Seconds(),
		CPUWindowSeconds:  (p.win1.cpu - p.win0.cpu).Seconds(),
		CPUTotalSeconds:   (p.end.cpu - p.start.cpu).Seconds(),
	}
}

// WriteText prints res for a person.
func (res *Result) WriteText(w io.Writer) error {
	p := res.Params
	name := res.Workload
	if name == "" {
		name = "custom"
	}
	rate := "flat out"
	if p.Rate > 0 {
		rate = fmt.Sprintf("%g events/s", p.Rate)
	}
	pr := &printer{w: w}
	pr.f("%s against %s: %d subscribers over %d streams, %s by %d publishers, %d-byte events, %s warm-up + %s",
		name, res.Target, p.Subscribers, p.Streams, rate, p.Publishers, p.PayloadSize, p.Warmup, p.Duration)
	if p.Events > 0 {
		pr.f(" (or %d events)", p.Events)
	}
	switch p.Mode {
	case ModeBatch:
		pr.f(", PublishBatch of %d", p.BatchSize)
	case ModeStream:
		pr.f(", PublishStream")
	}
	pr.f("\n")
	pr.f("  connect    %d connections in %.3f s from %d source addresses, %d failed attempts\n",
		p.Subscribers+p.Stalled, res.ConnectSeconds, p.SourceIPs, res.ConnectErrors)
	pr.f("  published  %d (%.0f/s in the window), %d errors; call p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
		res.Published, res.PublishedPerSec, res.PublishErrors, res.PublishCall.P50, res.PublishCall.P99, res.PublishCall.Max)
	if res.PublishErrorSample != "" {
		pr.f("             first error: %s\n", res.PublishErrorSample)
	}
	pr.f("  delivered  %d of %d expected (%.0f/s over a %.2f s window)\n",
		res.Delivered, res.Expected, res.DeliveredPerSec, res.WindowSeconds)
	pr.f("  lost       %d (%d subscribers), duplicated %d, reordered %d, unacknowledged %d, resets %d, id mismatches %d\n",
		res.Lost, res.LossySubscribers, res.Duplicated, res.Reordered, res.Unacknowledged, res.Resets, res.IDMismatches)
	pr.f("  latency    p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms (%d events)\n",
		res.Latency.P50, res.Latency.P90, res.Latency.P99, res.Latency.P999, res.Latency.Max, res.Latency.Count)
	pr.f("  evictions  %d (%d subscribers), reconnects %d; drain %.2f s, %d subscribers without their fence\n",
		res.Evictions, res.EvictedSubscribers, res.Reconnects, res.DrainSeconds, res.Unfenced)
	if s := res.Stalled; s != nil {
		pr.f("  stalled    %d: %d closed by the server, %d reconnects, %d resets; received %d of %d, lost %d, duplicated %d\n",
			s.Subscribers, s.ClosedByServer, s.Reconnects, s.Resets, s.Received, s.Expected, s.Lost, s.Duplicated)
	}
	if ph := res.Phases; ph != nil {
		ph.writeText(pr)
	}
	if s := res.Server; s != nil {
		pr.f("  server     pid %d: RSS %d KiB at start, %d connected, %d at the end; %.3f KiB per connection (%.3f after the window)\n",
			s.PID, s.RSSStartKiB, s.RSSConnectedKiB, s.RSSEndKiB, res.RSSPerConnKiB, res.RSSPerConnAfterKiB)
		pr.f("             CPU %.2f s connecting, %.2f s in the window (%.3f µs per delivered event, %.3f µs per published one), %.2f s in all\n",
			s.CPUConnectSeconds, s.CPUWindowSeconds, res.CPUPerFrameUS, res.CPUPerPublishedUS, s.CPUTotalSeconds)
	}
	if c := res.Client; c != nil {
		pr.f("  client     CPU %.2f s in the window (%.3f µs per delivered event), RSS %d KiB at the end\n",
			c.CPUWindowSeconds, res.ClientCPUPerFrameUS, c.RSSEndKiB)
	}
	if res.MachineCPUWindowSeconds > 0 {
		pr.f("  machine    CPU %.2f s busy in the window, %.2f s of it neither server nor client\n",
			res.MachineCPUWindowSeconds, res.OtherCPUWindowSeconds)
	}
	return pr.err
}

// printer keeps the first write error, so a report is a list of calls.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

// writeText prints the phases for a person, under WriteText's heading.
func (ph *EvictionResult) writeText(pr *printer) {
	pr.f("  evicted    %d by the server while publishing", ph.Evicted)
	if ph.Evicted > 0 {
		pr.f(" %v, from %.1f s to %.1f s (\"during\": to %.1f s)", ph.ByReason, ph.FirstS, ph.LastS, ph.SettledS)
	}
	pr.f("\n")
	for _, p := range []struct {
		name string
		q    Quantiles
	}{{"before", ph.Before}, {"during", ph.During}, {"after", ph.After}} {
		pr.f("  publish    %-6s %5d calls: p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", p.name, p.q.Count, p.q.P50, p.q.P99, p.q.Max)
	}
	if ph.RSSBeforeKiB > 0 {
		pr.f("  RSS        %d KiB before the evictions, peak %d KiB during (%.2f×), %d KiB at the end\n",
			ph.RSSBeforeKiB, ph.RSSPeakKiB, ph.RSSPeakRatio, ph.RSSAfterKiB)
	}
	if ph.HeapSysBeforeBytes > 0 {
		pr.f("  heap       in use %.1f MiB before, peak %.1f MiB; held from the OS %.1f MiB before, peak %.1f MiB\n",
			mib(ph.HeapInuseBeforeBytes), mib(ph.HeapInusePeakBytes), mib(ph.HeapSysBeforeBytes), mib(ph.HeapSysPeakBytes))
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
