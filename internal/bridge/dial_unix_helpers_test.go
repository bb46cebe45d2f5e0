//go:build unix

package bridge

import (
	"context"
	"net"
	"syscall"
)

// dialSmallBuffer dials addr with a 4 KiB receive buffer set before the
// connection is made (set later, Linux drops segments already in flight and
// the sender backs off for seconds), so a client that stops reading blocks
// the server's writes soon.
func dialSmallBuffer(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return d.DialContext(ctx, "tcp", addr)
}
