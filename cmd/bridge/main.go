// Command bridge publishes events sent over gRPC to browsers as Server-Sent
// Events. `bridge` and `bridge serve` start it; `bridge --help` lists every
// setting with its environment variable and default.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/sse-bridge/bridge/internal/bridge"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], stdio{
		stdin:     os.Stdin,
		stdout:    os.Stdout,
		stderr:    os.Stderr,
		lookupEnv: os.LookupEnv,
		root:      os.DirFS("/"),
	}))
}

// stdio is what a run of the command sees of its process: the standard
// streams, the environment, and the file system where its cgroup's memory
// limit is read (nil: none is).
type stdio struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
	root           fs.FS
}

// run runs the command line args and returns the process's exit status,
// having written any error to stderr, each line starting with "bridge: ".
func run(ctx context.Context, args []string, s stdio) int {
	err := dispatch(ctx, args, s)
	if err == nil {
		return exitOK
	}
	var b strings.Builder
	for line := range strings.Lines(err.Error()) {
		b.WriteString("bridge: " + strings.TrimSuffix(line, "\n") + "\n")
	}
	_, _ = io.WriteString(s.stderr, b.String())
	return exitCode(err)
}

// commands are the words `bridge` takes before its flags.
var commands = []string{"serve", "publish", "tail", "hash-token", "version", "help"}

// dispatch runs the command args[0] names; `bridge` alone, or followed by
// flags, serves.
func dispatch(ctx context.Context, args []string, s stdio) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) == 0 {
		return serve(ctx, args, s)
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		if len(rest) > 0 && isVersionFlag(rest[0]) {
			return printVersion(nil, s.stdout)
		}
		return serve(ctx, rest, s)
	case "publish":
		return runPublish(ctx, rest, s.stdin, s.stdout, s.stderr)
	case "tail":
		return runTail(ctx, rest, s.stdout, s.stderr)
	case "hash-token":
		return runHashToken(rest, s.stdin, s.stdout)
	case "types":
		return runTypes(ctx, rest, s.stdout, s.stderr)
	case "version":
		return printVersion(rest, s.stdout)
	case "help":
		return help(ctx, rest, s)
	default:
		if isVersionFlag(cmd) {
			return printVersion(rest, s.stdout)
		}
		if !strings.HasPrefix(cmd, "-") {
			return unknownCommand(cmd)
		}
		return serve(ctx, args, s)
	}
}

// isVersionFlag reports whether arg asks for the version, as a flag.
func isVersionFlag(arg string) bool { return arg == "--version" || arg == "-version" }

// unknownCommand is the error of `bridge WORD` when WORD is no command:
// serve takes no arguments, so it was meant as one.
func unknownCommand(cmd string) error {
	lines := []string{fmt.Sprintf("unknown command %q", cmd)}
	if near := suggest(cmd, commands); len(near) > 0 {
		lines = append(lines, "did you mean bridge "+strings.Join(near, " or bridge ")+"?")
	}
	lines = append(lines, "see bridge --help")
	return &exitError{code: exitCommandLine, err: errors.New(strings.Join(lines, "\n"))}
}

// help is `bridge help [COMMAND]`: the --help of a command. The topic
// config-markdown, not listed, prints the configuration reference
// (docs/configuration.md).
func help(ctx context.Context, args []string, s stdio) error {
	if len(args) == 0 {
		serveHelp(s.stdout)
		return nil
	}
	switch topic := args[0]; topic {
	case "serve":
		serveHelp(s.stdout)
		return nil
	case "publish", "tail", "hash-token":
		return dispatch(ctx, []string{topic, "--help"}, s)
	case "version":
		_, _ = io.WriteString(s.stdout, versionUsage)
		return nil
	case "config-markdown":
		_, _ = io.WriteString(s.stdout, configMarkdown())
		return nil
	default:
		return &exitError{code: exitCommandLine, err: fmt.Errorf("no help for %q: try bridge help, bridge help publish, bridge help tail or bridge help hash-token", topic)}
	}
}

// serve is `bridge` and `bridge serve`: it runs the bridge until ctx ends
// (SIGTERM, SIGINT), reloading on SIGHUP.
func serve(ctx context.Context, args []string, s stdio) error {
	cfg, err := parseFlags(args, s.lookupEnv, s.stderr)
	if errors.Is(err, flag.ErrHelp) {
		serveHelp(s.stdout)
		return nil
	}
	if err != nil {
		return err
	}
	// Tracing, when the OTEL_* environment asks for it (otel.go); its last
	// spans are flushed once the bridge stopped.
	tp, stopTracing, err := startTracing(ctx, s.lookupEnv, cfg.Logger)
	if err != nil {
		return err
	}
	defer stopTracing()
	cfg.TracerProvider = tp
	setGCPercent(s.lookupEnv)
	setMemoryLimit(s.lookupEnv, s.root, &cfg) // sets cfg.TuneMemoryLimit: before New
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
