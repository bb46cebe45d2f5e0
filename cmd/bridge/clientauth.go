package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// clientAuth holds the credential flags `bridge publish` and `bridge tail`
// share: a bearer token, and TLS to the bridge.
type clientAuth struct {
	token, tokenFile string
	ca, cert, key    string
}

// tokenEnv is read when neither --token nor --token-file is given: a token
// in the environment does not show in ps, as a flag's value does.
const tokenEnv = "BRIDGE_TOKEN"

func (c *clientAuth) register(fs *flag.FlagSet) {
	fs.StringVar(&c.token, "token", "", "bearer `token` sent to the bridge (prefer --token-file or "+tokenEnv+": a flag shows in ps)")
	fs.StringVar(&c.tokenFile, "token-file", "", "`file` holding the bearer token (a trailing newline is ignored)")
	fs.StringVar(&c.ca, "ca", "", "PEM `file` of the CAs that sign the bridge's certificate; none means the system's roots; any of --ca, --cert, --key turns TLS on")
	fs.StringVar(&c.cert, "cert", "", "PEM client certificate `file`, with --key, for a bridge that verifies clients (mTLS)")
	fs.StringVar(&c.key, "key", "", "PEM client key `file`, with --cert")
}

// clientCmdLine is the command line of `bridge publish` or `bridge tail`:
// groups of their own, then the credential flags of clientAuth.register.
func clientCmdLine(name, intro string, fs *flag.FlagSet, groups ...flagGroup) *cmdLine {
	return &cmdLine{
		name:   name,
		intro:  intro,
		fs:     fs,
		groups: append(groups, flagGroup{title: "Credentials", flags: []string{"token-file", "token", "ca", "cert", "key"}}),
		env: func(name string) string {
			if name == "token" {
				return tokenEnv
			}
			return ""
		},
		extra: []string{"help"},
		code:  exitUsage,
	}
}

// bearer returns the token to send: --token, else the content of
// --token-file, else $BRIDGE_TOKEN; empty when there is none.
func (c *clientAuth) bearer(lookupEnv func(string) (string, bool)) (string, error) {
	if c.token != "" && c.tokenFile != "" {
		return "", exitf(exitUsage, "give --token or --token-file, not both")
	}
	tok := c.token
	if c.tokenFile != "" {
		raw, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return "", exitf(exitUsage, "--token-file: %w", err)
		}
		tok = strings.TrimRight(string(raw), "\r\n")
		if tok == "" {
			return "", exitf(exitUsage, "--token-file %s is empty", c.tokenFile)
		}
	}
	if tok == "" && c.tokenFile == "" {
		tok, _ = lookupEnv(tokenEnv)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", exitf(exitUsage, "the token contains white space: give the token alone, without \"Bearer\"")
	}
	return tok, nil
}

// tlsConfig is the TLS configuration for --ca, --cert and --key; nil when
// none is set (plaintext).
func (c *clientAuth) tlsConfig() (*tls.Config, error) {
	return clientTLS(c.ca, c.cert, c.key)
}

// clientTLS builds a client TLS configuration: ca, when set, replaces the
// system's roots; cert and key, set together, are the client's certificate.
// Nil, nil when all three are empty.
func clientTLS(ca, cert, key string) (*tls.Config, error) {
	if ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca) //nolint:gosec // the user names the file on the command line
		if err != nil {
			return nil, exitf(exitUsage, "--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, exitf(exitUsage, "--ca %s holds no PEM certificate", ca)
		}
		cfg.RootCAs = pool
	}
	if (cert == "") != (key == "") {
		return nil, exitf(exitUsage, "--cert and --key go together: give both or neither")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, exitf(exitUsage, "--cert/--key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// bearerCreds sends a token as gRPC "authorization: Bearer" metadata on
// every call.
type bearerCreds string

func (b bearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false so that a token also goes over
// plaintext: grpc-go refuses credentials that require security on an
// insecure connection, and a bridge on loopback is reached without TLS.
// warnPlaintext covers the other case.
func (bearerCreds) RequireTransportSecurity() bool { return false }

// httpClient is the HTTP client and bearer token for requests to u with
// c's credentials: over TLS (u becomes https) when c has TLS settings, with
// a warning on stderr when a token would travel in plaintext. Call done
// once the requests are over.
func (c *clientAuth) httpClient(u *url.URL, stderr io.Writer) (client *http.Client, token string, done func(), err error) {
	token, err = c.bearer(os.LookupEnv)
	if err != nil {
		return nil, "", nil, err
	}
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return nil, "", nil, err
	}
	client, done = http.DefaultClient, func() {}
	if tlsCfg != nil {
		u.Scheme = "https"
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsCfg
		client, done = &http.Client{Transport: tr}, tr.CloseIdleConnections
	}
	if token != "" && u.Scheme == "http" {
		warnPlaintext(stderr, u.Host)
	}
	return client, token, done, nil
}

// warnPlaintext warns on stderr when a token is about to cross the network
// in clear: sent without TLS to a host that is not this machine.
func warnPlaintext(w io.Writer, host string) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return
	}
	fmt.Fprintf(w, "warning: sending the token without TLS to %s: anyone on the way can read it; use --ca (the bridge serving TLS)\n", host)
}

// errNoToken is the hint added when a bridge refuses a call that carried no
// token.
var errNoToken = errors.New("give the publisher's token with --token-file, --token or " + tokenEnv)
