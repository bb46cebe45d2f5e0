//go:build !unix

package bridge_test

import "time"

// processCPU returns false: this platform's CPU time is not read here.
func processCPU() (time.Duration, bool) { return 0, false }
