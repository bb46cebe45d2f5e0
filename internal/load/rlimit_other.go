//go:build !unix

package load

import "errors"

// RaiseFileLimit is not supported here.
func RaiseFileLimit() (uint64, error) { return 0, errors.New("no RLIMIT_NOFILE on this system") }
