// Command bridge publishes events sent over gRPC to browsers as Server-Sent
// Events. `bridge` and `bridge serve` start it; `bridge --help` lists every
// setting with its environment variable and default.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/sse-bridge/bridge/internal/bridge"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "bridge:", err)
		os.Exit(exitCode(err))
	}
}

func run(ctx context.Context, args []string) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 {
		switch args[0] {
		case "serve":
			args = args[1:]
		case "publish":
			return runPublish(ctx, args[1:], os.Stdin, os.Stdout, os.Stderr)
		case "tail":
			return runTail(ctx, args[1:], os.Stdout, os.Stderr)
		case "hash-token":
			return runHashToken(args[1:], os.Stdin, os.Stdout, os.Stderr)
		}
	}
	cfg, err := parseFlags(args, os.LookupEnv, os.Stderr)
	if err != nil {
		return err
	}
	srv, err := bridge.New(cfg)
	if err != nil {
		return err
	}
	setGCPercent(os.LookupEnv)
	// SIGHUP reloads the descriptor sets, the TLS files, the publishers file
	// and the JWKS file; whatever fails to load keeps what was loaded before.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() { // ends with ctx, when the bridge has stopped
		for {
			select {
			case <-hup:
				_ = srv.Reload() // it logs the outcome
			case <-ctx.Done():
				return
			}
		}
	}()
	return srv.Run(ctx)
}

// serveGCPercent is the garbage collector's target (GOGC) while the bridge
// serves, unless GOGC is set. Most of a bridge's heap is the state of
// connections that live for minutes or hours; at Go's default (100) a
// reconnect storm of thousands of browsers (after a restart, a network blip)
// collects every time the heap doubles and re-scans all of it, about a
// fifth of the CPU of each connect. At 200 it collects a third as often
// for at most half again the heap headroom (measured in BENCHMARKS.md).
const serveGCPercent = 200

// setGCPercent sets serveGCPercent when the environment (lookup) sets no
// GOGC of its own.
func setGCPercent(lookup func(string) (string, bool)) {
	if _, set := lookup("GOGC"); !set {
		debug.SetGCPercent(serveGCPercent)
	}
}
