package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
)

const hashUsage = `Usage: bridge hash-token < TOKEN_FILE

Reads a publisher's bearer token from stdin (a trailing newline is ignored)
and prints its token_sha256 for the publishers file (--publishers): the hex
SHA-256 of the token, the same as printf %s "$TOKEN" | sha256sum. Make a token
with, for example, openssl rand -hex 32.

Exit status: 0 printed; 1 no token on stdin, or bad flags.
`

// maxToken bounds what hash-token reads: a token is a header value.
const maxToken = 64 << 10

// runHashToken is `bridge hash-token`.
func runHashToken(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("bridge hash-token", flag.ContinueOnError)
	cmd := &cmdLine{name: "bridge hash-token", intro: hashUsage, fs: fs, extra: []string{"help"}, code: exitUsage}
	if err := cmd.parse(args); errors.Is(err, flag.ErrHelp) {
		cmd.printHelp(stdout)
		return nil
	} else if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cmd.mistake("the token is read from stdin, not from arguments (they show in ps and in shell history)", "")
	}
	raw, err := io.ReadAll(io.LimitReader(stdin, maxToken+1))
	if err != nil {
		return exitf(exitUsage, "read the token from stdin: %w", err)
	}
	tok := bytes.TrimRight(raw, "\r\n")
	switch {
	case len(tok) == 0:
		return exitf(exitUsage, "no token on stdin: bridge hash-token < TOKEN_FILE")
	case len(raw) > maxToken:
		return exitf(exitUsage, "stdin holds more than %d bytes: give the token alone", maxToken)
	case bytes.ContainsAny(tok, " \t\r\n"):
		return exitf(exitUsage, "the token contains white space: give the token alone, without \"Bearer\"")
	}
	sum := sha256.Sum256(tok)
	fmt.Fprintln(stdout, hex.EncodeToString(sum[:]))
	return nil
}
