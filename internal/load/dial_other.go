//go:build !linux

package load

import "syscall"

// bindNoPort does nothing here: IP_BIND_ADDRESS_NO_PORT is Linux only.
func bindNoPort(_, _ string, _ syscall.RawConn) error { return nil }

// stalledSocket leaves the socket alone here.
func stalledSocket(int) func(string, string, syscall.RawConn) error { return bindNoPort }
