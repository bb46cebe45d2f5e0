package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"

	"github.com/sse-bridge/bridge/internal/load"
)

// options are the parsed command line.
type options struct {
	cfg      load.Config
	label    string
	json     bool
	logLevel slog.Level
	// cpuProfile is where the run writes bridge-load's own CPU profile:
	// on this loopback, the load shares the machine with the server.
	cpuProfile string
}

// parseFlags parses args in two passes: the first finds --workload, whose
// preset then gives every other flag its default, so flags given explicitly
// override the preset.
func parseFlags(args []string, stderr io.Writer) (*options, error) {
	probe := &options{}
	fs := newFlagSet(probe, io.Discard)
	if err := fs.Parse(args); err != nil {
		// Parse again to print the error (and --help) with the usage.
		_ = newFlagSet(&options{cfg: defaults()}, stderr).Parse(args)
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q (the subcommands are report and soak)", fs.Args())
	}
	opts := &options{cfg: defaults()}
	var preset load.Config
	if w := probe.cfg.Workload; w != "" {
		var ok bool
		if preset, ok = load.Preset(w); !ok {
			return nil, fmt.Errorf("workload %q is unknown: use one of %s", w, strings.Join(load.Workloads, ", "))
		}
		opts.cfg = preset
	}
	if err := newFlagSet(opts, stderr).Parse(args); err != nil {
		return nil, err
	}
	opts.cfg.Workload = preset.Workload // its canonical spelling
	if opts.label != "" {
		opts.cfg.Workload = opts.label
	}
	return opts, nil
}

// defaults are the settings without a workload: a gentle run.
func defaults() load.Config {
	c := load.Config{Rate: 100}
	_ = c.Validate() // fills in the defaults to show them in --help
	c.SourceIPs, c.Logger = nil, nil
	return c
}

// newFlagSet binds every flag to o, with o's current values as defaults.
func newFlagSet(o *options, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("bridge-load", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: bridge-load [flags]\n       bridge-load report RESULT.json...\n       bridge-load soak --pid PID [flags]\n\n"+
			"Drives a bridge (or the baseline server) on loopback and reports throughput,\n"+
			"loss, latency and the server's CPU and memory. --workload sets the numbers of a\n"+
			"workload of BENCHMARKS.md (%s); other flags override them.\n\n", strings.Join(load.Workloads, ", "))
		fs.PrintDefaults()
	}
	c := &o.cfg
	fs.StringVar(&c.Workload, "workload", c.Workload, "preset: "+strings.Join(load.Workloads, ", "))
	fs.StringVar(&c.Target, "target", c.Target, "bridge (publish over gRPC) or baseline (POST /publish)")
	fs.StringVar(&c.URL, "url", c.URL, "the server's HTTP base URL (subscribers GET URL/events?stream=X)")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", c.GRPCAddr, "the bridge's gRPC address")
	fs.IntVar(&c.Subscribers, "subscribers", c.Subscribers, "healthy SSE subscribers (N)")
	fs.IntVar(&c.Streams, "streams", c.Streams, "streams (S); subscriber i reads stream i mod S")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "events per second over all publishers; 0 = flat out")
	fs.IntVar(&c.Publishers, "publishers", c.Publishers, "concurrent publish callers (C)")
	fs.StringVar(&c.Mode, "mode", c.Mode, "how publishers call the bridge: unary (Publish; the baseline's only one), batch (PublishBatch) or stream (PublishStream)")
	fs.IntVar(&c.BatchSize, "batch-size", c.BatchSize, "events per PublishBatch call (--mode batch)")
	fs.IntVar(&c.StreamWindow, "stream-window", c.StreamWindow, "events a publisher has sent on its PublishStream and not yet had a result for, at most (--mode stream)")
	fs.BoolVar(&c.CheckIDs, "check-ids", c.CheckIDs, "check that every subscriber gets each event with the id its publisher got back (16 bytes per event and subscriber)")
	fs.IntVar(&c.Events, "events", c.Events, "stop publishing after this many events (0 = at --duration)")
	fs.IntVar(&c.PayloadSize, "payload", c.PayloadSize, "event size in bytes of JSON")
	fs.DurationVar(&c.Warmup, "warmup", c.Warmup, "publishing before the measured window")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "measured publishing")
	fs.DurationVar(&c.Drain, "drain", c.Drain, "longest wait for deliveries after publishing")
	fs.IntVar(&c.Stalled, "stalled", c.Stalled, "extra subscribers that connect and stop reading")
	fs.DurationVar(&c.StallFor, "stall-for", c.StallFor, "how long stalled subscribers stop reading (0 = until publishing ends)")
	fs.BoolVar(&c.StallForever, "stall-forever", c.StallForever, "stalled subscribers never read nor reconnect (their evictions show only in the bridge's metrics)")
	fs.IntVar(&c.StalledRecvBuffer, "stalled-rcvbuf", c.StalledRecvBuffer, "SO_RCVBUF of stalled subscribers in bytes (0 = system default)")
	fs.IntVar(&c.ConnectConcurrency, "connect-concurrency", c.ConnectConcurrency, "connections opened at once")
	fs.DurationVar(&c.ReconnectDelay, "reconnect-delay", c.ReconnectDelay, "wait before reconnecting after the server ended a stream")
	fs.DurationVar(&c.PublishTimeout, "publish-timeout", c.PublishTimeout, "deadline of each publish call")
	fs.IntVar(&c.PID, "pid", c.PID, "the server's process id, for RSS and CPU from /proc (0 = none)")
	fs.BoolVar(&c.Timeline, "timeline", c.Timeline, "sample the server while publishing (RSS; the bridge's /metrics) and split publish latency and memory into before, during and after its evictions")
	fs.StringVar(&c.StreamPrefix, "stream-prefix", c.StreamPrefix, "stream names are PREFIX-0, PREFIX-1, ...")
	fs.Func("source-ips", "local source addresses: auto (one 127.0.0.x per 2,000 connections), a count N (127.0.0.1 to 127.0.0.N) or a comma-separated list", func(s string) error {
		ips, err := parseSourceIPs(s)
		c.SourceIPs = ips
		return err
	})
	fs.StringVar(&o.label, "label", o.label, "the run's name in reports (default: the workload)")
	fs.BoolVar(&o.json, "json", o.json, "print the result as JSON")
	fs.StringVar(&o.cpuProfile, "cpuprofile", o.cpuProfile, "write bridge-load's own CPU profile of the run to this file (go tool pprof)")
	fs.TextVar(&o.logLevel, "log-level", o.logLevel, "progress on stderr: debug, info, warn or error")
	return fs
}

// parseSourceIPs reads --source-ips; nil means automatic.
func parseSourceIPs(s string) ([]netip.Addr, error) {
	if s == "" || s == "auto" {
		return nil, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 254 {
			return nil, fmt.Errorf("source address count %d is not between 1 and 254", n)
		}
		ips := make([]netip.Addr, n)
		for i := range ips {
			ips[i] = netip.AddrFrom4([4]byte{127, 0, 0, byte(1 + i)})
		}
		return ips, nil
	}
	var ips []netip.Addr
	for f := range strings.SplitSeq(s, ",") {
		ip, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("source address: %w", err)
		}
		ips = append(ips, ip)
	}
	return ips, nil
}
