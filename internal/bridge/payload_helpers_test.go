package bridge

import (
	"testing"

	"github.com/sse-bridge/bridge/internal/payload"
)

// compiledInEncoder is an encoder with the default options that knows only
// the compiled-in types.
func compiledInEncoder(tb testing.TB) *payload.Encoder {
	tb.Helper()
	types, err := payload.NewRegistry(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return payload.NewEncoder(types, false, false)
}
