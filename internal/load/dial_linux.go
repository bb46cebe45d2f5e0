package load

import "syscall"

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (linux/in.h), missing from
// package syscall on amd64.
const ipBindAddressNoPort = 0x18

// bindNoPort delays the choice of a source port from bind to connect, so a
// port is unique per connection (4-tuple) instead of per source address:
// binding a source address would otherwise cap it at the ephemeral range.
func bindNoPort(_, _ string, c syscall.RawConn) error {
	return setsockopt(c, syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
}

// stalledSocket sets up the socket of a stalled subscriber before it
// connects, as across a real network: a 1460-byte MSS instead of
// loopback's 64 KiB (with which the server's send buffer grows to
// megabytes), and the receive buffer rcvbuf when positive. Set after
// connecting, both would come too late.
func stalledSocket(rcvbuf int) func(string, string, syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		if err := bindNoPort(network, address, c); err != nil {
			return err
		}
		if err := setsockopt(c, syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 1460); err != nil {
			return err
		}
		if rcvbuf > 0 {
			return setsockopt(c, syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
		}
		return nil
	}
}

func setsockopt(c syscall.RawConn, level, opt, value int) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), level, opt, value)
	}); err != nil {
		return err
	}
	return serr
}
