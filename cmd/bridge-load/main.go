// Command bridge-load drives a running bridge, or the baseline r3labs server
// of cmd/baseline, with SSE subscribers and publishers on loopback, and
// reports throughput, loss, latency and the server's CPU and memory (see
// BENCHMARKS.md).
//
//	bridge-load --workload W1 --pid 1234 --json > w1.json
//	bridge-load --target baseline --url http://127.0.0.1:8090 --workload W1
//	bridge-load report results/*.json
//	bridge-load soak --pid 1234 --duration 10m --csv soak.csv
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/sse-bridge/bridge/internal/load"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "bridge-load:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "report" {
		return report(args[1:], stdout)
	}
	if len(args) > 0 && args[0] == "soak" {
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		return soak(ctx, args[1:], stdout, stderr)
	}
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	cfg := opts.cfg
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: opts.logLevel}))
	if n, err := load.RaiseFileLimit(); err != nil {
		cfg.Logger.Warn("cannot raise the open-file limit", "err", err)
	} else {
		cfg.Logger.Info("open-file limit", "files", n)
	}
	if opts.cpuProfile != "" {
		f, err := os.Create(opts.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, runErr := load.Run(ctx, cfg)
	if res != nil {
		if err := write(stdout, res, opts.json); err != nil {
			return err
		}
	}
	return runErr
}

func write(w io.Writer, res *load.Result, asJSON bool) error {
	if !asJSON {
		return res.WriteText(w)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// report prints the comparison table of result files written with --json.
func report(files []string, stdout io.Writer) error {
	if len(files) == 0 {
		return errors.New("report: give the result files (JSON, from --json)")
	}
	var results []*load.Result
	for _, f := range files {
		b, err := os.ReadFile(f) //nolint:gosec // the user names the files to read
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		var r load.Result
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("report: %s: %w", f, err)
		}
		results = append(results, &r)
	}
	return load.WriteComparison(stdout, results)
}
