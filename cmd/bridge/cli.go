package main

import (
	"errors"
	"fmt"
)

// Exit codes of `bridge publish` and `bridge tail`, so scripts can tell what
// went wrong.
const (
	exitOK        = 0
	exitUsage     = 1 // bad flags or input: fix the command
	exitConnect   = 2 // the bridge could not be reached (or timed out)
	exitRefused   = 3 // the bridge refused the request: its message says why
	exitStreamEnd = 4 // tail --reconnect=false: the bridge ended the stream
)

// exitCommandLine is the exit status of `bridge` (serve) when its command
// line or a BRIDGE_* variable is wrong: an unknown flag, a value that does
// not parse, settings that do not go together. As with Go's flag package,
// it is 2; a bridge that fails to start or to serve exits 1. (publish and
// tail keep 1 for bad flags: their 2 says the bridge could not be reached.)
const exitCommandLine = 2

// exitError carries an exit code with its message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitf(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// exitCode maps an error from a subcommand to the process's exit status.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitUsage
}
