//go:build !unix

package bridge

import (
	"context"
	"net"
)

// dialSmallBuffer dials addr; on this platform with the default buffers.
func dialSmallBuffer(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}
