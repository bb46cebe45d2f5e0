package bridge

import (
	"context"
	"fmt"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// Idempotency keys: a key names an event, so that a publish retried after
// a timeout or an UNAVAILABLE stores and sends it once (the engines keep
// the keys: engine_memory_dedupe.go; JetStream's duplicate window).

// maxKeyLen is the longest idempotency_key, in bytes.
const maxKeyLen = 128

// keyError says what is wrong with key, an idempotency_key; nil when it is
// valid (empty, or at most maxKeyLen bytes of printable ASCII).
func keyError(key string) error {
	if len(key) > maxKeyLen {
		return fmt.Errorf("idempotency_key is %d bytes: the limit is %d; use a shorter key, such as a UUID or a hash of the event's identity", len(key), maxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("idempotency_key has byte 0x%02x at offset %d: use printable ASCII only (0x20 to 0x7e), such as a UUID", c, i)
		}
	}
	return nil
}

// key is the Key of the event req publishes: its idempotency_key, or none
// while dedupe is off (--dedupe-window negative).
func (p *publishService) key(req *bridgev1.PublishRequest) string {
	if !p.dedupe {
		return ""
	}
	return req.GetIdempotencyKey()
}

// storeKeyed stores ev, which has a Key, through the engine's batch call:
// only it says whether ev was a duplicate.
func (p *publishService) storeKeyed(ctx context.Context, ev *Event) (id uint64, duplicate bool, err error) {
	var res [1]Stored
	p.engine.PublishBatch(ctx, []*Event{ev}, res[:])
	return res[0].ID, res[0].Duplicate, res[0].Err
}
