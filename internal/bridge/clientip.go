package bridge

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Which client a request counts against, for the per-address limits.
//
// Without trusted proxies only the TCP peer counts: X-Forwarded-For is
// whatever the client wants it to be, and believing it would let one client
// spread its connections over any number of made-up addresses (or pin its
// load on someone else's). With --trusted-proxies, the header is read from
// the right, the end the proxies append to: every address that is a trusted
// proxy is skipped, and the first that is not is the client. Anything to the
// left of it was written by the client itself and is never looked at.

// proxyTrust holds the prefixes of the proxies whose X-Forwarded-For is
// believed. The zero value trusts none. Safe for concurrent use (read only).
type proxyTrust struct {
	prefixes []netip.Prefix
}

// parseTrustedProxies parses CIDR prefixes ("10.0.0.0/8", "fd00::/8") or
// single addresses ("192.0.2.7", a /32 or /128).
func parseTrustedProxies(list []string) (proxyTrust, error) {
	var t proxyTrust
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			t.prefixes = append(t.prefixes, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return proxyTrust{}, fmt.Errorf("trusted proxy %q is neither a CIDR prefix (10.0.0.0/8) nor an address", s)
		}
		a = a.Unmap()
		t.prefixes = append(t.prefixes, netip.PrefixFrom(a, a.BitLen()))
	}
	return t, nil
}

func (t proxyTrust) trusts(a netip.Addr) bool {
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP returns the address of r's client: the TCP peer, or, when the
// peer is a trusted proxy, the rightmost X-Forwarded-For address that is
// not one. When every address in the header is a trusted proxy, the
// leftmost counts; when one does not parse, the trusted hop that wrote it
// does. The zero Addr means the peer has no IP address (a Unix socket, an
// in-memory listener): all such clients then share one key.
func (t proxyTrust) clientIP(r *http.Request) netip.Addr {
	peer := remoteIP(r.RemoteAddr)
	if len(t.prefixes) == 0 || !peer.IsValid() || !t.trusts(peer) {
		return peer
	}
	client := peer
	values := r.Header.Values("X-Forwarded-For")
	// Several header lines are one list, in order (RFC 9110 §5.3).
	for i := len(values) - 1; i >= 0; i-- {
		rest := values[i]
		for rest != "" {
			item := rest
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				item, rest = rest[j+1:], rest[:j]
			} else {
				rest = ""
			}
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			a, ok := parseForwardedIP(item)
			if !ok {
				return client
			}
			client = a
			if !t.trusts(a) {
				return a
			}
		}
	}
	return client
}

// remoteIP is the address part of an http.Request's RemoteAddr.
func remoteIP(remoteAddr string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(remoteAddr); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

// parseForwardedIP parses one X-Forwarded-For item: an address, possibly
// with a port ("192.0.2.1:443", "[2001:db8::1]:443"), as some proxies write.
func parseForwardedIP(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// addrKey is the key the per-address limits count a as: the address itself
// for IPv4, its /64 for IPv6, since one subscriber line or host usually gets
// a whole /64 and picks addresses from it at will. The zone is dropped.
func addrKey(a netip.Addr) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	a = a.WithZone("")
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64) // never fails for an IPv6 address
	return p
}
