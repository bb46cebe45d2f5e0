package bridge

import (
	"strconv"
	"sync"
	"time"

	"github.com/r3labs/sse/v2"
)

// Event is one published event as engines store it and the hub sends it.
// After an engine assigned its ID, an Event is never modified, so one *Event is
// shared by history, every connection and every goroutine that reads it.
type Event struct {
	// ID is unique and increases across all streams of the bridge.
	ID uint64
	// Stream is the stream the event was published to.
	Stream string
	// Type is the SSE event name; empty means no `event:` line.
	Type string
	// Data is the frame's data: one line of JSON.
	Data []byte
	// Time is when the bridge accepted the event.
	Time time.Time

	frameOnce sync.Once
	frame     *sse.Event
}

// sseFrame returns the library event for e, built once and shared by every
// connection: EncodeBase64 is off, so the library never mutates it.
func (e *Event) sseFrame() *sse.Event {
	e.frameOnce.Do(func() {
		e.frame = &sse.Event{
			ID:   []byte(strconv.FormatUint(e.ID, 10)),
			Data: e.Data,
		}
		if e.Type != "" {
			e.frame.Event = []byte(e.Type)
		}
	})
	return e.frame
}
