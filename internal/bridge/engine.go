package bridge

import (
	"context"
	"errors"
)

// ErrUnavailable is returned (wrapped) by an [Engine] that cannot serve now,
// for example while its backing store is unreachable. Publish maps it to the
// gRPC code Unavailable.
var ErrUnavailable = errors.New("bridge: engine unavailable")

// Engine assigns ids, keeps each stream's bounded history and feeds every
// event, in id order, to the hub. The memory engine keeps all of it in process;
// a NATS JetStream engine keeps it in a JetStream stream shared by every node.
//
// Implementations are safe for concurrent use.
type Engine interface {
	// Publish assigns ev its ID (and Time, when zero), stores it in the history
	// of ev.Stream, and returns the ID once the event is stored. The caller
	// must not modify ev afterwards. A Time the engine assigns is when it
	// stored the event; Run and Replay give every node that time, which a
	// remote store (NATS) reads from its clock: ev.Time may then differ
	// from it by the round trip of the store.
	Publish(ctx context.Context, ev *Event) (uint64, error)

	// PublishBatch stores evs in order, as Publish would one by one, and
	// sets res[i] (len(res) == len(evs)) to what became of evs[i]. An
	// event with a Key that names an event stored on the same stream
	// within the dedupe window is not stored: its result has that event's
	// ID and Duplicate set. A failure of one event (its res[i].Err) does
	// not stop the next ones unless the engine cannot store at all (then
	// every later result has the same error): the batch is not atomic,
	// but what is stored is stored in order. The caller must not modify
	// evs afterwards.
	PublishBatch(ctx context.Context, evs []*Event, res []Stored)

	// Replay returns, in id order, the events of streams whose id is greater
	// than after. When history can no longer cover that gap (events were
	// trimmed, the id predates a restart that lost history, or more than
	// limit events would be replayed; limit 0 means no limit), it returns no
	// events and a non-empty Reset, one of the Reset* reasons. Head is the last id assigned when Replay read
	// history: after a reset, the client continues from there.
	Replay(ctx context.Context, streams []string, after uint64, limit int) (Replay, error)

	// Run calls deliver with every event stored from now on, in batches, one
	// call at a time and in id order (within and across calls), until ctx
	// ends; then it returns nil. deliver must not block and must not keep the
	// slice. Batches let the hub hand a connection several events in one
	// write (group commit): an engine passes what it has at hand, never
	// waiting to fill a batch. An event must be in history before it is
	// delivered, so a Replay that starts after a connection was registered
	// misses nothing.
	Run(ctx context.Context, deliver func([]*Event)) error

	// Latest returns the last n events (n > 0) of stream that history
	// holds, oldest first (fewer when it holds fewer), and Head, the last id
	// assigned when it read them: history covered every event of stream up
	// to Head, so a client that resumes after Head misses none and gets
	// none twice. Reset is always empty.
	Latest(ctx context.Context, stream string, n int) (Replay, error)
}

// Stored is what an engine did with one event of [Engine.PublishBatch].
type Stored struct {
	// ID is the event's id, or with Duplicate the id of the event stored
	// first with the same key; zero when Err is set.
	ID uint64
	// Duplicate: the event's Key named an event already stored on its
	// stream within the dedupe window; nothing was stored.
	Duplicate bool
	// Err is why the event was not stored: it wraps ErrUnavailable when the
	// engine cannot store now, or is the context's error.
	Err error
}

// Replay is the answer of [Engine.Replay].
type Replay struct {
	Events []*Event
	Reset  string // empty, or one of the Reset* reasons
	Head   uint64
}

// Reasons of a reset: the reason of a bridge.reset frame's data, so a page
// can tell them apart without parsing prose. Every one means the same to a
// page (refetch your state, then carry on with live events); they differ for
// whoever reads the logs or tunes the limits.
const (
	// ResetTooFarBehind: more events were missed than one (re)connect may
	// replay (--max-replay). Replay is all or nothing, never partial.
	ResetTooFarBehind = "too_far_behind"
	// ResetTrimmed: events after the client's id left history (by count,
	// age or, with the memory engine, its memory budget) before it came
	// back.
	ResetTrimmed = "history_trimmed"
	// ResetHistoryLost: the id predates the history this bridge holds (the
	// memory engine restarted, or the JetStream stream was recreated).
	ResetHistoryLost = "history_lost"
	// ResetUnknownID: the id is newer than any event of this bridge (it came
	// from another deployment, or was made up).
	ResetUnknownID = "unknown_id"
)
