package tlsreload

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// ConfigureHTTP gives srv the TLS configuration of the HTTP listener, when it
// has a certificate; [Serve] then serves HTTPS. Browsers get HTTP/2
// through ALPN: all of a page's EventSources share one connection instead of
// being capped at six per origin, as they are over HTTP/1.1.
func (r *Reloader) ConfigureHTTP(srv *http.Server, writeTimeout time.Duration) {
	if r == nil || r.httpPair == nil {
		return
	}
	srv.TLSConfig = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: serveCertificate(r.httpPair),
	}
	// An HTTP/2 write deadline resets its stream by queueing a frame on the
	// shared connection; a peer that stops reading the connection altogether
	// leaves that frame, and the handler, waiting. This bounds the wait.
	srv.HTTP2 = &http.HTTP2Config{WriteByteTimeout: writeTimeout}
}

// Serve serves srv on l: HTTPS (HTTP/2 and HTTP/1.1) when
// [Reloader.ConfigureHTTP] gave it a TLS configuration, else plain HTTP.
func Serve(srv *http.Server, l net.Listener) error {
	if srv.TLSConfig == nil {
		return srv.Serve(l)
	}
	// ServeTLS, unlike Serve on a tls.NewListener, sets up HTTP/2 for the
	// connections; with no file names it takes the certificate from
	// TLSConfig.GetCertificate, so reloads reach it.
	return srv.ServeTLS(l, "", "")
}

// GRPCServerOption returns the transport credentials of the gRPC listener:
// TLS with the reloading certificate and, with a client CA, client
// certificates verified when given (tls.VerifyClientCertIfGiven: a publisher
// authenticating with a token needs none; one the CA did not sign fails the
// handshake). The verified chain is in the peer's credentials.TLSInfo. With
// no gRPC certificate it is a no-op: plaintext.
func (r *Reloader) GRPCServerOption() grpc.ServerOption {
	if r == nil || r.grpcPair == nil {
		return grpc.EmptyServerOption{}
	}
	getCert := serveCertificate(r.grpcPair)
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: getCert,
	}
	if r.clientCA != nil {
		// Per handshake, so a reloaded CA file applies to the next connection.
		cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return &tls.Config{
				MinVersion:     tls.VersionTLS12,
				GetCertificate: getCert,
				ClientAuth:     tls.VerifyClientCertIfGiven,
				ClientCAs:      r.clientCA.current().pool,
				// A resumed session skips verification against the current
				// pool, so a CA removed by a reload would still let its
				// clients in; gRPC connections are long-lived, so a full
				// handshake each time costs little.
				SessionTicketsDisabled: true,
			}, nil
		}
	}
	// credentials.NewTLS adds "h2" to NextProtos, here and in what
	// GetConfigForClient returns: gRPC requires it.
	return grpc.Creds(credentials.NewTLS(cfg))
}

// serveCertificate returns a [tls.Config.GetCertificate] that serves the
// pair in force in w.
func serveCertificate(w *watchedFiles[tls.Certificate]) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return w.current(), nil }
}
