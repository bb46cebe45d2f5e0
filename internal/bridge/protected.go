package bridge

import (
	"context"
	"net"
	"net/netip"

	"google.golang.org/grpc/peer"
)

// Protected mode (after Redis's): a bridge started with no publisher auth
// must not let the whole network publish to every stream just because its
// gRPC port is reachable. Until publishers are configured (--publishers,
// --publisher-jwt) or the mode is waived (--grpc-insecure), only loopback
// callers get past grpcAuth.authorize, so `grpcurl -plaintext
// localhost:50051` works out of the box and nothing else does.

// peerAddr is the caller's address as the transport saw it; grpc-go takes it
// from the accepted connection's RemoteAddr. Nil when unknown.
func peerAddr(ctx context.Context) net.Addr {
	if p, ok := peer.FromContext(ctx); ok {
		return p.Addr
	}
	return nil
}

// isLocal reports whether addr is on this machine: an IPv4 loopback address
// (127.0.0.0/8), ::1 (IPv4-mapped loopback included), or a unix socket. Any
// other address, and an address it cannot read, is not local: protected
// mode fails closed.
func isLocal(addr net.Addr) bool {
	switch a := addr.(type) {
	case nil:
		return false
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	if addr.Network() == "unix" {
		return true
	}
	ap, err := netip.ParseAddrPort(addr.String())
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

func addrString(addr net.Addr) string {
	if addr == nil {
		return "an unknown address"
	}
	return addr.String()
}

// logMode says at start who may use the gRPC side: a WARN unless publisher
// auth is on.
// mode names the publisher auth in force, for the start-up line.
func (a *grpcAuth) mode() string {
	switch {
	case a.configured() && a.jwt != nil && a.pubs != nil:
		return "publishers file and JWT"
	case a.configured() && a.jwt != nil:
		return "JWT"
	case a.configured():
		return "publishers file"
	case a.insecure:
		return "off (--grpc-insecure)"
	}
	return "protected mode (loopback only)"
}

func (a *grpcAuth) logMode() {
	switch {
	case a.configured():
		n := 0
		if a.pubs != nil {
			n = len(a.pubs.current().list)
		}
		a.log.Info("publisher auth on: gRPC calls other than health need a publisher's credential",
			"publishers", n, "jwt", a.jwt != nil)
	case a.insecure:
		a.log.Warn("publisher auth off and protected mode waived (--grpc-insecure): any client that reaches the gRPC port can publish to any stream; set --publishers to require credentials")
	default:
		a.log.Warn("protected mode: no publisher auth configured, so gRPC serves only loopback callers (health excepted); set --publishers FILE to let others publish with credentials, or --grpc-insecure to let anyone")
	}
}
