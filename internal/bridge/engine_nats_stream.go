package bridge

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream metadata that keeps Replay's trim check sound when the per-subject
// limit was raised; see perSubjectLimit.
const (
	// metaHistoryFloor is the lowest MaxMsgsPerSubject that may have trimmed
	// subjects before metaHistoryFloorUntil.
	metaHistoryFloor = "sse-bridge.history-floor"
	// metaHistoryFloorUntil is a stream sequence: messages after it were all
	// stored under the current limit.
	metaHistoryFloorUntil = "sse-bridge.history-floor-until"
)

// ensureStream creates the JetStream stream, or updates the settings the
// bridge owns on an existing one (subjects, limits retention, discard old,
// MaxMsgsPerSubject, MaxAge, Duplicates, replicas) and leaves the others (MaxBytes,
// placement, ...) as an operator set them. It refuses a stream it cannot
// use: another retention policy, another storage type or persist mode
// (JetStream cannot change them), a mirror or a sealed stream.
func (e *NATSEngine) ensureStream(ctx context.Context) (*jetstream.StreamInfo, error) {
	s, err := e.js.Stream(ctx, e.want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		info, err := e.createStream(ctx)
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return info, err
		}
		s, err = e.js.Stream(ctx, e.want.Name) // another node created it first
		if err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	return e.updateStream(ctx, s.CachedInfo())
}

// createStream creates the stream with its first sequence at the current
// time in Unix microseconds: ids from any earlier incarnation of the stream
// (or from a memory engine) are below it, so Replay resets them instead of
// mistaking them for ids of this stream. Two nodes racing to create get
// ErrStreamNameAlreadyInUse for the loser: their first sequences differ.
func (e *NATSEngine) createStream(ctx context.Context) (*jetstream.StreamInfo, error) {
	cfg := e.want
	// Above what this node delivered or issued too: a fenced stream's ids
	// may run ahead of the clock (see natsFenceGrid).
	cfg.FirstSeq = max(uint64(time.Now().UnixMicro()), e.known()+1)
	s, err := e.js.CreateStream(ctx, cfg)
	if err != nil {
		return nil, err
	}
	info := s.CachedInfo()
	if err := createdAsAsked(cfg, info.Config); err != nil {
		return nil, err
	}
	e.log.Info("created JetStream stream", "stream", cfg.Name, "first_seq", cfg.FirstSeq, "persist", persistName(info.Config.PersistMode))
	return info, nil
}

// createdAsAsked checks that the stream a NATS server created with want has
// the settings JetStream cannot change later but an older server ignores:
// the persist mode, which nats-server before 2.12 does not know (it creates
// the stream in sync mode, and the node would run without what
// --nats-persist async asked for, saying nothing).
func createdAsAsked(want, got jetstream.StreamConfig) error {
	if got.PersistMode != want.PersistMode {
		return fmt.Errorf("the NATS server created stream %q with persist mode %s, not %s, which needs nats-server 2.12 or later: upgrade it, or start with --nats-persist %s (and delete the stream to change it later)",
			want.Name, persistName(got.PersistMode), persistName(want.PersistMode), persistName(got.PersistMode))
	}
	return nil
}

// persistName is the --nats-persist value of JetStream's mode m.
func persistName(m jetstream.PersistModeType) string {
	if m == jetstream.AsyncPersistMode {
		return natsPersistAsync
	}
	return natsPersistSync
}

func (e *NATSEngine) updateStream(ctx context.Context, info *jetstream.StreamInfo) (*jetstream.StreamInfo, error) {
	old := info.Config
	name := old.Name
	switch {
	case old.Retention != jetstream.LimitsPolicy:
		return nil, fmt.Errorf("stream %q has %s retention: the bridge needs limits retention; choose another --nats-stream or delete this one", name, old.Retention)
	case old.Storage != e.want.Storage:
		have := strings.ToLower(old.Storage.String())
		return nil, fmt.Errorf("stream %q keeps its messages in %s storage, and JetStream cannot change that: use --nats-storage %s, or delete the stream", name, have, have)
	case old.PersistMode != e.want.PersistMode:
		have := persistName(old.PersistMode)
		return nil, fmt.Errorf("stream %q was created with persist mode %s, and JetStream cannot change that: use --nats-persist %s, or delete the stream", name, have, have)
	case old.Mirror != nil:
		return nil, fmt.Errorf("stream %q is a mirror, which takes no publishes: choose another --nats-stream", name)
	case old.Sealed:
		return nil, fmt.Errorf("stream %q is sealed, which takes no publishes: choose another --nats-stream", name)
	}
	cfg := old
	cfg.Subjects = e.want.Subjects
	cfg.Discard = jetstream.DiscardOld
	cfg.MaxMsgsPerSubject = e.want.MaxMsgsPerSubject
	cfg.MaxAge = e.want.MaxAge
	cfg.Duplicates = e.want.Duplicates
	cfg.Replicas = e.want.Replicas
	if cfg.Description == "" {
		cfg.Description = e.want.Description
	}
	// Raising the per-subject limit: subjects trimmed under the old limit
	// may hold fewer messages than the new one. Record the old limit as a
	// floor for ids from before the change, first with an open end (a crash
	// between the two updates leaves the floor in force for every id), then
	// ending at the last sequence stored under the old limit.
	raise := old.MaxMsgsPerSubject > 0 && cfg.MaxMsgsPerSubject > old.MaxMsgsPerSubject
	if raise {
		floor := old.MaxMsgsPerSubject
		if f, _, ok := historyFloor(old.Metadata); ok {
			floor = min(floor, f)
		}
		cfg.Metadata = maps.Clone(old.Metadata)
		if cfg.Metadata == nil {
			cfg.Metadata = map[string]string{}
		}
		cfg.Metadata[metaHistoryFloor] = strconv.FormatInt(floor, 10)
		cfg.Metadata[metaHistoryFloorUntil] = strconv.FormatUint(math.MaxUint64, 10)
	}
	if sameSettings(old, cfg) {
		return info, nil
	}
	updated, err := e.js.UpdateStream(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if raise {
		cfg.Metadata[metaHistoryFloorUntil] = strconv.FormatUint(updated.CachedInfo().State.LastSeq, 10)
		if updated, err = e.js.UpdateStream(ctx, cfg); err != nil {
			return nil, err
		}
	}
	e.log.Info("updated JetStream stream", "stream", name,
		"subjects", cfg.Subjects, "max_msgs_per_subject", fmt.Sprintf("%d -> %d", old.MaxMsgsPerSubject, cfg.MaxMsgsPerSubject),
		"max_age", fmt.Sprintf("%v -> %v", old.MaxAge, cfg.MaxAge), "duplicates", fmt.Sprintf("%v -> %v", old.Duplicates, cfg.Duplicates), "replicas", fmt.Sprintf("%d -> %d", old.Replicas, cfg.Replicas))
	return updated.CachedInfo(), nil
}

// sameSettings reports whether a and b agree on everything updateStream sets.
func sameSettings(a, b jetstream.StreamConfig) bool {
	return slices.Equal(a.Subjects, b.Subjects) &&
		a.Discard == b.Discard &&
		a.MaxMsgsPerSubject == b.MaxMsgsPerSubject &&
		a.MaxAge == b.MaxAge &&
		a.Duplicates == b.Duplicates &&
		a.Replicas == b.Replicas &&
		a.Description == b.Description &&
		a.Metadata[metaHistoryFloor] == b.Metadata[metaHistoryFloor] &&
		a.Metadata[metaHistoryFloorUntil] == b.Metadata[metaHistoryFloorUntil]
}

// historyFloor reads the floor metadata; ok is false when there is none.
func historyFloor(meta map[string]string) (floor int64, until uint64, ok bool) {
	f, err1 := strconv.ParseInt(meta[metaHistoryFloor], 10, 64)
	u, err2 := strconv.ParseUint(meta[metaHistoryFloorUntil], 10, 64)
	if err1 != nil || err2 != nil || f <= 0 {
		return 0, 0, false
	}
	return f, u, true
}

// perSubjectLimit is the per-subject limit that Replay's trim check must
// assume for a resume after id after: the stream's current
// MaxMsgsPerSubject, or the floor recorded when it was raised for ids from
// before the raise. Zero means no limit. (A limit changed by hand, not
// through the bridge, is not recorded: see the README.)
func perSubjectLimit(cfg jetstream.StreamConfig, after uint64) int64 {
	limit := max(cfg.MaxMsgsPerSubject, 0)
	if floor, until, ok := historyFloor(cfg.Metadata); ok && after < until {
		if limit == 0 || floor < limit {
			limit = floor
		}
	}
	return limit
}

// recreateIfMissing creates the stream again when it is gone: a NATS server
// with memory storage restarted, or someone deleted it. The new stream
// starts at the current time in microseconds, above every old id, so
// clients resuming from the old stream get bridge.reset. It never updates
// an existing stream: nodes configured differently would fight over it.
func (e *NATSEngine) recreateIfMissing(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := e.js.Stream(ctx, e.want.Name)
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return
	}
	e.log.Warn("JetStream stream is gone: creating it again; clients resuming from older ids get bridge.reset", "stream", e.want.Name)
	if _, err := e.createStream(ctx); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		e.log.Error("create JetStream stream again", "stream", e.want.Name, "err", err)
	}
}
