package bridge

import "time"

// Test helpers shared with the external test package bridge_test.
var (
	PingFile = pingFile
	WriteSet = writeSet
)

// WithJWKSUnknownKIDEvery returns cfg with the least time between two key
// set fetches caused by unknown key ids set to d.
func WithJWKSUnknownKIDEvery(cfg Config, d time.Duration) Config {
	cfg.jwksUnknownKIDEvery = d
	return cfg
}
