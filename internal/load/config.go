package load

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Targets: what the load tool drives.
const (
	// TargetBridge is the bridge: publish over gRPC, subscribe at /events.
	TargetBridge = "bridge"
	// TargetBaseline is the plain r3labs server of cmd/baseline: publish with
	// POST /publish, subscribe at /events.
	TargetBaseline = "baseline"
)

// Publish modes: how the publishers call the bridge.
const (
	// ModeUnary is one call per event: the bridge's Publish, or the
	// baseline's POST /publish.
	ModeUnary = "unary"
	// ModeBatch is the bridge's PublishBatch, BatchSize events a call.
	ModeBatch = "batch"
	// ModeStream is the bridge's PublishStream: one stream per publisher,
	// up to StreamWindow events sent and not yet answered.
	ModeStream = "stream"
)

// Config is one load run. The zero value of a field means its default,
// applied by [Config.Validate]; [Preset] returns the workloads of the issue.
type Config struct {
	// Workload names the run in the report; "" for a custom run.
	Workload string
	// Target is TargetBridge (the default) or TargetBaseline.
	Target string
	// URL is the server's HTTP base URL: subscribers GET URL/events?stream=X,
	// the baseline is published to at URL/publish. Zero means
	// http://127.0.0.1:8080.
	URL string
	// GRPCAddr is the bridge's gRPC address (TargetBridge only). Zero means
	// 127.0.0.1:50051.
	GRPCAddr string

	// Subscribers is the number of healthy SSE subscribers: subscriber i
	// subscribes to stream i mod Streams. Zero means 100.
	Subscribers int
	// Streams is the number of streams; events go round-robin over them.
	// Zero means 1.
	Streams int
	// Stalled subscribers connect (one per stream, round-robin) and then stop
	// reading: for StallFor, or until publishing ends when StallFor is zero.
	// Then they read what they were sent, reconnect if the server closed
	// them, and report apart from the healthy ones. None by default.
	//
	// Their sockets use a 1460-byte MSS, as across a real network: with
	// loopback's 64 KiB one, the server's send buffer grows to megabytes
	// before a write blocks.
	Stalled  int
	StallFor time.Duration
	// StallForever: stalled subscribers never read, nor reconnect: they
	// stay connected, unread, until the run ends, like browsers whose
	// network went away. Whether the server closed them is seen only in
	// its metrics (Timeline); they are left out of the loss figures.
	StallForever bool
	// StalledRecvBuffer, when positive, is the SO_RCVBUF of stalled
	// subscribers, in bytes: the kernel then buffers less for them (a
	// browser's tab that stopped reading has a full buffer of some size).
	// Zero leaves the system default.
	StalledRecvBuffer int

	// Rate is the total publish rate in events per second. Zero means flat
	// out: each publisher calls again as soon as its call returns. Events
	// follow a fixed schedule, so a publisher that fell behind catches up.
	Rate float64
	// Publishers is the number of concurrent publish callers. Zero means 4.
	Publishers int
	// Mode is ModeUnary (the default), ModeBatch or ModeStream; the
	// baseline has only ModeUnary.
	Mode string
	// BatchSize is the number of events of one PublishBatch call (ModeBatch).
	// Zero means 100.
	BatchSize int
	// StreamWindow bounds the events one publisher has sent on its
	// PublishStream and not yet had a result for (ModeStream). Zero means 100.
	StreamWindow int
	// CheckIDs keeps the id the server returned for every event and the id
	// each subscriber received it with, and counts those that differ
	// (Result.IDMismatches): every id a publisher got back must reach the
	// readers of its stream. It costs 16 bytes per event and subscriber.
	CheckIDs bool
	// Events, when positive, ends publishing after that many events (or at
	// Duration, whichever comes first) instead of at Duration.
	Events int
	// PayloadSize is the size of each event's JSON in bytes (the bare
	// object, about 50 bytes, when smaller). Zero means 128.
	PayloadSize int

	// Warmup is published through but not measured: delivered/s, latency
	// and server CPU count from its end. Zero means none.
	Warmup time.Duration
	// Duration is how long the measured publishing lasts. Zero means 10s.
	Duration time.Duration
	// Drain bounds the wait, after publishing, for every subscriber to
	// receive the fence event that ends its stream; events not received by
	// then count as lost. Zero means 20s (a server that froze needs time to
	// work off its backlog).
	Drain time.Duration

	// SourceIPs are the local addresses subscribers connect from, round
	// robin (a TCP connection needs a distinct source port per source
	// address, so tens of thousands need several). Nil means one 127.0.0.x
	// address per 2,000 connections, from 127.0.0.1.
	SourceIPs []netip.Addr
	// ConnectConcurrency bounds the connections being opened at once.
	// Zero means 128.
	ConnectConcurrency int
	// ReconnectDelay is how long a subscriber whose stream ended waits
	// before it reconnects with its Last-Event-ID. Zero means at once.
	ReconnectDelay time.Duration

	// PublishTimeout bounds each publish call. Zero means 10s.
	PublishTimeout time.Duration
	// ReadyTimeout bounds the wait for the server to accept connections.
	// Zero means 10s.
	ReadyTimeout time.Duration
	// ConnectTimeout bounds connecting every subscriber. Zero means 60s.
	ConnectTimeout time.Duration

	// PID is the server's process id, whose RSS and CPU are read from
	// /proc; zero means none.
	PID int
	// Timeline records every publish call and, while publishing lasts,
	// samples the server: its RSS every 20 ms (with PID) and the bridge's
	// /metrics every 100 ms (evictions, heap, goroutines). The result then
	// splits publish latency and memory into before, during and after the
	// bridge's evictions (Result.Phases).
	Timeline bool
	// StreamPrefix names the streams: prefix-0, prefix-1, … Zero means "load".
	StreamPrefix string

	// Logger receives progress. Nil means discard.
	Logger *slog.Logger
}

// connsPerSourceIP is how many connections the default SourceIPs put on one
// source address: well inside the 28,232 ephemeral ports of Linux's default
// range, with room for connections in TIME_WAIT from an earlier run.
const connsPerSourceIP = 2000

// Validate applies defaults to zero fields and reports every invalid one.
func (c *Config) Validate() error {
	setDefault(&c.Target, TargetBridge)
	setDefault(&c.URL, "http://127.0.0.1:8080")
	setDefault(&c.GRPCAddr, "127.0.0.1:50051")
	setDefault(&c.Subscribers, 100)
	setDefault(&c.Streams, 1)
	setDefault(&c.Publishers, 4)
	setDefault(&c.Mode, ModeUnary)
	setDefault(&c.BatchSize, 100)
	setDefault(&c.StreamWindow, 100)
	setDefault(&c.PayloadSize, 128)
	setDefault(&c.Duration, 10*time.Second)
	setDefault(&c.Drain, 20*time.Second)
	setDefault(&c.ConnectConcurrency, 128)
	setDefault(&c.PublishTimeout, 10*time.Second)
	setDefault(&c.ReadyTimeout, 10*time.Second)
	setDefault(&c.ConnectTimeout, 60*time.Second)
	setDefault(&c.StreamPrefix, "load")
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.SourceIPs == nil {
		n := (c.Subscribers + c.Stalled + connsPerSourceIP - 1) / connsPerSourceIP
		for i := range max(n, 1) {
			c.SourceIPs = append(c.SourceIPs, netip.AddrFrom4([4]byte{127, 0, 0, byte(1 + i)}))
		}
	}

	var errs []error
	if c.Target != TargetBridge && c.Target != TargetBaseline {
		errs = append(errs, fmt.Errorf("target %q is unknown: use %s or %s", c.Target, TargetBridge, TargetBaseline))
	}
	switch {
	case c.Mode != ModeUnary && c.Mode != ModeBatch && c.Mode != ModeStream:
		errs = append(errs, fmt.Errorf("publish mode %q is unknown: use %s, %s or %s", c.Mode, ModeUnary, ModeBatch, ModeStream))
	case c.Mode != ModeUnary && c.Target == TargetBaseline:
		errs = append(errs, fmt.Errorf("the baseline has only POST /publish: publish mode %s is for the bridge", c.Mode))
	}
	if u, err := url.Parse(c.URL); err != nil || u.Scheme != "http" || u.Host == "" {
		errs = append(errs, fmt.Errorf("URL %q must be an http:// base URL such as http://127.0.0.1:8080", c.URL))
	}
	for name, v := range map[string]int{
		"subscribers": c.Subscribers, "streams": c.Streams, "publishers": c.Publishers,
		"payload size": c.PayloadSize, "connect concurrency": c.ConnectConcurrency,
		"batch size": c.BatchSize, "stream window": c.StreamWindow,
	} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %d", name, v))
		}
	}
	if c.Stalled < 0 || c.Events < 0 || c.Rate < 0 {
		errs = append(errs, errors.New("stalled, events and rate must not be negative"))
	}
	if c.PayloadSize > 1<<20 {
		errs = append(errs, fmt.Errorf("payload size %d is over 1 MiB", c.PayloadSize))
	}
	for _, d := range []time.Duration{c.StallFor, c.Warmup, c.Duration, c.Drain, c.ReconnectDelay, c.PublishTimeout, c.ReadyTimeout, c.ConnectTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("durations must not be negative, got %v", d))
		}
	}
	for _, ip := range c.SourceIPs {
		if !ip.Is4() || !ip.IsLoopback() {
			errs = append(errs, fmt.Errorf("source address %v is not in 127.0.0.0/8: this tool measures on loopback only", ip))
		}
	}
	if len(c.SourceIPs) == 0 {
		errs = append(errs, errors.New("no source address"))
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() }) // map order
	return errors.Join(errs...)
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// Workloads lists the presets BENCHMARKS.md describes, in order.
var Workloads = []string{"W1", "W1b", "W2", "W3", "W4", "W5", "W6"}

// Preset returns the configuration of a named workload of BENCHMARKS.md ("W1",
// "W1b", "W2", "W3", "W4", "W5"; case does not matter). Each publishes for 10 s
// after a 2 s warm-up, or a fixed number of events; with the drain (which
// ends as soon as every subscriber has its fence, at most 20 s) a run stays
// well under a minute. The issue fixes subscribers,
// streams, rates and the stalled client; it leaves the payload of W1 to W3
// open: 128 bytes here, a small JSON event.
//
//   - W1: 1 stream, 1,000 subscribers, 1,000 events/s (saturation: compare
//     delivered/s and CPU per frame).
//   - W1b: W1 at 200 events/s (compare latency).
//   - W2: 100 subscribers, flat out.
//   - W3: 10,000 idle subscribers over 100 streams (memory per connection,
//     time to connect), then one event to each stream.
//   - W4: W1 with 2 KiB events plus one subscriber that never reads (until
//     publishing ends), whose socket has a 4 KiB receive buffer and a
//     1460-byte MSS, as a browser's across a network: with loopback's
//     defaults the kernel holds megabytes of its stream before a server's
//     write blocks.
//   - W5: mass eviction. One healthy reader and 2,000 subscribers that
//     connect and never read (sockets as W4's), all of one stream, then
//     10 s of 200 events/s of 4 KiB, without warm-up: the 2,000 fill
//     their buffers from the first event on and are evicted at about the
//     same moment, about a second in. With the timeline, the report gives
//     publish latency and the server's memory before, during and after
//     the evictions (bridge only: the baseline would freeze for good).
//   - W6 (ingest): 100 streams with one subscriber each, 16 publishers flat
//     out: how many events a second the server accepts, at what CPU per
//     event, with every id a publisher got back checked at its reader.
func Preset(name string) (Config, bool) {
	w1 := Config{
		Subscribers: 1000, Streams: 1, Rate: 1000, Publishers: 4, PayloadSize: 128,
		Warmup: 2 * time.Second, Duration: 10 * time.Second,
	}
	var c Config
	switch strings.ToUpper(name) {
	case "W1":
		c = w1
	case "W1B":
		c = w1
		c.Rate = 200
	case "W2":
		c = w1
		c.Subscribers, c.Rate = 100, 0
	case "W3":
		c = Config{
			Subscribers: 10_000, Streams: 100, Events: 100, Publishers: 4,
			PayloadSize: 128, Duration: 10 * time.Second,
		}
	case "W4":
		c = w1
		c.PayloadSize, c.Stalled, c.StalledRecvBuffer = 2048, 1, 4096
	case "W5":
		c = Config{
			Subscribers: 1, Streams: 1, Rate: 200, Publishers: 2, PayloadSize: 4096,
			Stalled: 2000, StallForever: true, StalledRecvBuffer: 4096, Timeline: true,
			Duration: 10 * time.Second,
		}
	case "W6":
		c = w1
		c.Subscribers, c.Streams, c.Rate, c.Publishers, c.CheckIDs = 100, 100, 0, 16, true
	default:
		return Config{}, false
	}
	for _, w := range Workloads {
		if strings.EqualFold(w, name) {
			c.Workload = w
		}
	}
	return c, true
}
