package bridge

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
)

// natsPresence is the presence link of the nats engine: core NATS, subject
// PREFIX-presence (see NATSEngine.presenceLink). Nothing is stored: a
// report is worth something for a few seconds only, and a node that misses
// one gets the next.
type natsPresence struct {
	nc      *nats.Conn
	subject string
}

// presencePending bounds the reports waiting for this node's receive (the
// subscription's pending limits): past it nats.go drops them, and a report
// with a missing part is ignored (bridge_presence_reports_lost_total).
const presencePending = 10_000

var errPresenceOffline = errors.New("not connected to NATS")

// send publishes data, or fails at once while the connection is down: a
// report buffered through an outage would only be stale when it arrives.
func (l *natsPresence) send(data []byte) error {
	if l.nc.Status() != nats.CONNECTED {
		return errPresenceOffline
	}
	if err := l.nc.Publish(l.subject, data); err != nil {
		return fmt.Errorf("publish presence report: %w", err)
	}
	return nil
}

// listen subscribes to every node's reports; receive runs on the
// subscription's goroutine (nats.go's), one message at a time.
func (l *natsPresence) listen(receive func([]byte)) (stop func(), err error) {
	sub, err := l.nc.Subscribe(l.subject, func(m *nats.Msg) { receive(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", l.subject, err)
	}
	if err := sub.SetPendingLimits(presencePending, presencePending*presenceChunkBytes); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to %s: %w", l.subject, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}
