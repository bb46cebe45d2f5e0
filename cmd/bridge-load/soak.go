package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/sse-bridge/bridge/internal/load"
)

// errSoakFailed is what a soak run whose verdict is a failure returns.
var errSoakFailed = errors.New("soak failed: a resource of the bridge trends up (or too few samples to tell)")

// soak runs `bridge-load soak`: a long mixed load on a running bridge,
// sampled every interval, failing when a resource trends up.
func soak(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg load.SoakConfig
	var csvPath string
	var logLevel slog.Level
	fs := flag.NewFlagSet("bridge-load soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: bridge-load soak --pid PID [flags]\n\n"+
			"Runs a mixed load on a bridge (publishing to many streams, subscribers connecting,\n"+
			"going and resuming, slow clients that get evicted) and samples the bridge's RSS,\n"+
			"open files, goroutines and heap every interval; fails (exit status 1) when any of\n"+
			"them trends up after the warm-up (see BENCHMARKS.md).\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080", "the bridge's HTTP base URL")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", "127.0.0.1:50051", "the bridge's gRPC address")
	fs.IntVar(&cfg.PID, "pid", 0, "the bridge's process id (required: RSS and open files from /proc)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "how long the load runs (default 10m)")
	fs.DurationVar(&cfg.Interval, "interval", 0, "time between samples (default 1m)")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "samples before this are left out of the trend (default 2m)")
	fs.IntVar(&cfg.Streams, "streams", 0, "ordinary streams (default 20)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "events per second over the ordinary streams (default 250)")
	fs.Float64Var(&cfg.HotRate, "hot-rate", 0, "events per second to the hot stream the slow clients read (default 50)")
	fs.IntVar(&cfg.Readers, "readers", 0, "subscribers that read for the whole run (default 200)")
	fs.IntVar(&cfg.Churners, "churners", 0, "subscribers that come, read a while, go and resume (default 100)")
	fs.IntVar(&cfg.Slow, "slow", 0, "slow clients, evicted over and over (default 10)")
	fs.Float64Var(&cfg.MaxGrowth, "max-growth", 0, "growth after the warm-up, in percent of the median, over which a resource fails (default 10)")
	fs.StringVar(&csvPath, "csv", "", "write the samples to this CSV file")
	fs.TextVar(&logLevel, "log-level", slog.LevelWarn, "progress on stderr: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("soak: unexpected arguments %q", fs.Args())
	}
	cfg.Out = stdout
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel}))
	if _, err := load.RaiseFileLimit(); err != nil {
		cfg.Logger.Warn("cannot raise the open-file limit", "err", err)
	}
	var csv io.Writer
	if csvPath != "" {
		f, err := os.Create(filepath.Clean(csvPath))
		if err != nil {
			return fmt.Errorf("soak: %w", err)
		}
		defer func() { _ = f.Close() }()
		csv = f
	}
	res, err := load.RunSoak(ctx, cfg, csv)
	if err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	if !res.Pass {
		return errSoakFailed
	}
	return nil
}
