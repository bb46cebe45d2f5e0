// Package tlsreload keeps the TLS certificates of the bridge's two
// listeners, and the CA pool that verifies publishers' client certificates,
// current: each is loaded from its files at start, and again on request
// (SIGHUP) or when a poll sees a file change. Handshakes read the value in
// force through an atomic pointer, so a reload never blocks or breaks one,
// and a file that fails to load leaves the value loaded before in force.
package tlsreload

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Files names the TLS files of the two listeners. Empty fields mean no TLS
// there; a certificate and its key go together.
type Files struct {
	// HTTPCert and HTTPKey are the PEM certificate (chain) and key of the
	// HTTP listener.
	HTTPCert, HTTPKey string
	// GRPCCert and GRPCKey are the PEM certificate (chain) and key of the
	// gRPC listener.
	GRPCCert, GRPCKey string
	// GRPCClientCA is a PEM file of the CAs that sign publishers' client
	// certificates; it needs the gRPC pair.
	GRPCClientCA string
}

// Reloader holds the TLS inputs of both listeners — the HTTP key pair, the
// gRPC key pair and the gRPC client CA pool — and replaces each when its
// files change. Handshakes read the value in force through an atomic
// pointer, so a reload never blocks or breaks one; connections already open
// keep the certificate they were made with.
//
// A nil *Reloader means TLS is off on both listeners; its methods accept
// that.
type Reloader struct {
	log *slog.Logger

	// mu serializes loads: SIGHUP and the poll may ask at the same time, and
	// each source's digest must match the value it put in force.
	mu       sync.Mutex
	httpPair *watchedFiles[tls.Certificate] // nil: plain HTTP
	grpcPair *watchedFiles[tls.Certificate] // nil: plaintext gRPC
	clientCA *watchedFiles[caPool]          // nil: no client certificates asked for
}

// New loads every TLS file f names, logging to log. It returns nil when f
// names none, and an error naming the files when one does not load: a
// bridge with a broken certificate must not start.
func New(f Files, log *slog.Logger) (*Reloader, error) {
	r := &Reloader{log: log}
	if f.HTTPCert != "" {
		r.httpPair = newKeyPairFiles("HTTP TLS certificate", f.HTTPCert, f.HTTPKey)
	}
	if f.GRPCCert != "" {
		r.grpcPair = newKeyPairFiles("gRPC TLS certificate", f.GRPCCert, f.GRPCKey)
	}
	if f.GRPCClientCA != "" {
		r.clientCA = newCAFiles("gRPC client CA", f.GRPCClientCA)
	}
	sources := r.sources()
	if len(sources) == 0 {
		return nil, nil
	}
	var errs []error
	for _, s := range sources {
		if _, err := s.load(true); err != nil {
			errs = append(errs, err)
			continue
		}
		r.log.Info("TLS files loaded", s.logAttrs()...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads every file again and puts each that loads in force for new
// handshakes; open connections keep the certificate they were made with. A
// file that does not load — unreadable, not PEM, a key that does not match
// its certificate — leaves the value loaded before in force, and the error
// (joining every failure) names it. Each outcome is logged, without key
// material. A nil Reloader does nothing. Safe for concurrent use.
func (r *Reloader) Reload() error { return r.reload(true) }

// reload loads the files of every source again — all of them when force is
// set, else those whose contents changed since the last attempt — and logs
// each outcome. A source that fails keeps its value in force; the error joins
// every failure. Safe for concurrent use.
func (r *Reloader) reload(force bool) error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, s := range r.sources() {
		loaded, err := s.load(force)
		switch {
		case err != nil:
			r.log.Error("TLS reload failed: keeping the files loaded before", "err", err)
			errs = append(errs, err)
		case loaded:
			r.log.Info("TLS files reloaded", s.logAttrs()...)
		}
	}
	return errors.Join(errs...)
}

// Watch polls the files every interval, reloading those that changed, until
// ctx ends. It returns at once when r is nil or interval is not positive.
func (r *Reloader) Watch(ctx context.Context, interval time.Duration) {
	if r == nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = r.reload(false) // it logs the outcome
		}
	}
}

func (r *Reloader) sources() []tlsSource {
	var out []tlsSource
	if r.httpPair != nil {
		out = append(out, r.httpPair)
	}
	if r.grpcPair != nil {
		out = append(out, r.grpcPair)
	}
	if r.clientCA != nil {
		out = append(out, r.clientCA)
	}
	return out
}

// tlsSource is what the reloader needs of a [watchedFiles].
type tlsSource interface {
	load(force bool) (loaded bool, err error)
	logAttrs() []any
}

// watchedFiles is one TLS input read from files. It keeps the value parsed
// at the last successful load, and a digest of the files at the last
// attempt: polling compares contents, not modification times (which a
// rewrite within the same second, or a restored backup, leaves unchanged),
// and a broken file is reported once per change, not at every poll.
//
// A poll loads a change only once it has settled — the same digest at two
// polls in a row — so a certificate and key rewritten one after the other
// are not caught half-way and reported as a mismatch.
type watchedFiles[T any] struct {
	what     string // names the input in logs and errors
	files    []string
	parse    func(contents [][]byte) (*T, error)
	describe func(*T) []any // log attributes of a value; never key material

	value atomic.Pointer[T]
	// Guarded by Reloader.mu.
	digest  [sha256.Size]byte // of the last attempt
	pending [sha256.Size]byte // of a change seen by the last poll, not loaded yet
}

// current returns the value in force. Safe for concurrent use.
func (w *watchedFiles[T]) current() *T { return w.value.Load() }

// load reads the files and, when force is set or they changed since the last
// attempt (and the change settled), parses them and puts the result in
// force. loaded reports a value put in force; on error the value before
// stays.
func (w *watchedFiles[T]) load(force bool) (loaded bool, err error) {
	contents := make([][]byte, len(w.files))
	h := sha256.New()
	var readErr error
	for i, f := range w.files {
		b, err := os.ReadFile(f) //nolint:gosec // G304: the operator names the file on the command line
		if err != nil {
			// Hash the failure, not a partial read, so the same failure is
			// not reported again at the next poll.
			readErr = errors.Join(readErr, err)
			b = []byte(err.Error())
		}
		contents[i] = b
		// Length-prefixed, so bytes moving from one file to the other
		// still change the digest.
		_ = binary.Write(h, binary.BigEndian, uint64(len(b)))
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	if !force {
		settled := sum == w.pending
		w.pending = sum
		if sum == w.digest || !settled {
			return false, nil
		}
	}
	w.digest = sum
	if readErr != nil {
		return false, fmt.Errorf("%s: %w", w.what, readErr)
	}
	v, err := w.parse(contents)
	if err != nil {
		return false, fmt.Errorf("%s %s: %w", w.what, strings.Join(w.files, " and "), err)
	}
	w.value.Store(v)
	return true, nil
}

func (w *watchedFiles[T]) logAttrs() []any {
	return append([]any{"what", w.what, "files", w.files}, w.describe(w.current())...)
}

// newKeyPairFiles watches a PEM certificate (chain) file and its key file.
func newKeyPairFiles(what, certFile, keyFile string) *watchedFiles[tls.Certificate] {
	return &watchedFiles[tls.Certificate]{
		what:  what,
		files: []string{certFile, keyFile},
		parse: func(c [][]byte) (*tls.Certificate, error) {
			pair, err := tls.X509KeyPair(c[0], c[1])
			if err != nil {
				return nil, err
			}
			if pair.Leaf == nil { // filled in by X509KeyPair unless GODEBUG x509keypairleaf=0
				if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
					return nil, err
				}
			}
			return &pair, nil
		},
		describe: func(pair *tls.Certificate) []any {
			leaf := pair.Leaf
			attrs := []any{"subject", leaf.Subject.String(), "serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter.UTC()}
			if time.Now().After(leaf.NotAfter) {
				attrs = append(attrs, "expired", true) // served anyway: clients decide
			}
			return attrs
		},
	}
}

// caPool is a parsed CA file.
type caPool struct {
	pool  *x509.CertPool
	count int // certificates in the pool, for the log
}

// newCAFiles watches a PEM file of CA certificates.
func newCAFiles(what, file string) *watchedFiles[caPool] {
	return &watchedFiles[caPool]{
		what:     what,
		files:    []string{file},
		parse:    func(c [][]byte) (*caPool, error) { return parseCAPool(c[0]) },
		describe: func(p *caPool) []any { return []any{"certificates", p.count} },
	}
}

// parseCAPool parses every CERTIFICATE block of a PEM file. Unlike
// [x509.CertPool.AppendCertsFromPEM], which skips what it cannot parse, it
// refuses a file with a broken certificate or none: a CA that silently
// went missing would refuse every client that relies on it.
func parseCAPool(data []byte) (*caPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return &caPool{pool: pool, count: n}, nil
}
