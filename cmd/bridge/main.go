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
