package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// replayBatch is how many messages one pull of Replay asks for.
const replayBatch = 256

// Replay implements [Engine] on JetStream. It reads the events of streams
// after id after with a consumer filtered on their subjects, up to the
// stream's last sequence when Replay began (Head).
//
// JetStream trims by limits (MaxMsgsPerSubject, MaxAge, and any stream-wide
// limit), and keeps no record of which subject lost what. Replay resets
// unless it can prove that no event of the requested streams after after was
// removed, from what JetStream does keep (checked after reading, so removals
// during the read count too):
//
//   - Age and stream-wide limits remove the oldest messages of the whole
//     stream. If one of them came after after, the stream's first sequence
//     is now beyond after+1: reset.
//   - The per-subject limit M removes a subject's oldest message only when
//     the subject holds M+1, so M newer messages of it remain (until age
//     removes them, which the first rule sees). So if subject S lost a
//     message after after, S now holds at least M messages after after, and
//     none at or before it (the oldest go first). Replay resets when S holds
//     M or more messages and its first one is after after. (M is the limit
//     in force, or a lower one that was in force before it was raised: see
//     perSubjectLimit.)
//
// This is conservative, never silent: a client may be reset when nothing it
// wanted was lost (for example when unrelated events aged out since its
// id), but it never gets a replay with a hole. What it cannot see: messages
// deleted one by one, or a subject purged, by hand; purge the whole stream
// instead (its first sequence then moves and every older id resets).
//
// While NATS is unreachable, Replay waits for it until ctx ends (the
// connection meanwhile gets heartbeats). The read itself is several
// JetStream requests; an error of any of them wraps [ErrUnavailable] when a
// retry may work.
func (e *NATSEngine) Replay(ctx context.Context, streams []string, after uint64, limit int) (Replay, error) {
	if err := e.waitReady(ctx); err != nil {
		return Replay{}, err
	}
	info, err := e.stream.Info(ctx)
	if err != nil {
		return Replay{}, e.requestError("read stream state", err)
	}
	head := info.State.LastSeq
	r := Replay{Head: head}
	if r.Reset = staleID(info, after); r.Reset != "" || after == head || len(streams) == 0 {
		return r, nil
	}

	subjects := make([]string, len(streams))
	for i, s := range streams {
		subjects[i] = e.prefix + s
	}
	cons, err := e.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    after + 1,
		FilterSubjects: subjects,
		AckPolicy:      jetstream.AckNonePolicy,
		MemoryStorage:  true,
		Replicas:       1,
		// Deleted below; this only cleans up after a node that died first.
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return Replay{}, e.requestError("create replay consumer", err)
	}
	defer e.deleteConsumer(ctx, cons.CachedInfo().Name)

	// NumPending counts the matching messages up to the last sequence when
	// the consumer was created. Past the limit, that is a reset either way:
	// they all come before a Head read now, or one was removed meanwhile,
	// which is a reset too.
	if pending := cons.CachedInfo().NumPending; limit > 0 && pending > uint64(limit) {
		if info, err := e.stream.Info(ctx); err == nil {
			r.Head = info.State.LastSeq
		}
		r.Reset = ResetTooFarBehind
		return r, nil
	}
	events, seen, err := e.fetch(cons, after, head, limit)
	if err != nil {
		return Replay{}, err
	}
	if limit > 0 && len(events) > limit {
		r.Reset = ResetTooFarBehind
		return r, nil
	}
	if info.Config.Replicas > 1 && seen < head {
		if err := e.checkTail(ctx, subjects, seen, head); err != nil {
			return Replay{}, err
		}
	}
	if r.Reset, err = e.trimmedAfter(ctx, streams, after); err != nil {
		return Replay{}, err
	}
	if r.Reset == "" {
		r.Events = events
	}
	return r, nil
}

// Latest implements [Engine] on JetStream: it reads every message of
// stream's subject up to the stream's last sequence when it began (Head),
// at most --history-size of them, and keeps the last n. A message stored
// after that read began has a sequence above Head, so it is not returned
// and a resume after Head gets it.
func (e *NATSEngine) Latest(ctx context.Context, stream string, n int) (Replay, error) {
	if err := e.waitReady(ctx); err != nil {
		return Replay{}, err
	}
	info, err := e.stream.Info(ctx)
	if err != nil {
		return Replay{}, e.requestError("read stream state", err)
	}
	r := Replay{Head: info.State.LastSeq}
	if r.Head == 0 || info.State.Msgs == 0 {
		return r, nil
	}
	cons, err := e.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		FilterSubject:     e.prefix + stream,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: time.Minute, // as Replay's
	})
	if err != nil {
		return Replay{}, e.requestError("create history consumer", err)
	}
	defer e.deleteConsumer(ctx, cons.CachedInfo().Name)
	if cons.CachedInfo().NumPending == 0 {
		return r, nil
	}
	events, _, err := e.fetch(cons, 0, r.Head, 0)
	if err != nil {
		return Replay{}, err
	}
	if len(events) > n {
		events = events[len(events)-n:]
	}
	r.Events = events
	return r, nil
}

// staleID says why a resume after id after cannot be served from the stream
// at all, or returns "".
func staleID(info *jetstream.StreamInfo, after uint64) string {
	st := info.State
	switch {
	case after > st.LastSeq:
		return ResetUnknownID
	case after+1 >= st.FirstSeq:
		return ""
	case after+1 < info.Config.FirstSeq, after+1 < lostBefore(info.Config.Metadata):
		return ResetHistoryLost
	}
	return ResetTrimmed
}

// fetch reads the consumer's messages up to sequence head, and one more
// than limit at most (limit 0: no limit). seen is the last sequence read up
// to head (after when none).
//
// In a cluster the consumer may live on another server, whose interest in
// pull requests takes a moment to reach this one: a pull that got no
// message and found no responder is tried again, for about a second at
// most.
func (e *NATSEngine) fetch(cons jetstream.Consumer, after, head uint64, limit int) (events []*Event, seen uint64, err error) {
	seen = after
	retry := 10 * time.Millisecond
	for {
		batch, err := cons.FetchNoWait(replayBatch)
		if err != nil {
			return nil, 0, e.requestError("read history", err)
		}
		n, done := 0, false
		for msg := range batch.Messages() { // read to the end: that ends the fetch's goroutine
			n++
			meta, err := msg.Metadata()
			if err != nil || done {
				continue
			}
			seq := meta.Sequence.Stream
			if seq > head {
				done = true
				continue
			}
			seen = seq
			if ev, ok := e.decode(msg.Subject(), seq, msg.Headers(), msg.Data(), meta.Timestamp); ok {
				events = append(events, ev)
			}
			done = seq == head || meta.NumPending == 0 || (limit > 0 && len(events) > limit)
		}
		err = batch.Error()
		if n == 0 && errors.Is(err, nats.ErrNoResponders) && retry < time.Second {
			time.Sleep(retry) // a bounded backoff, not a synchronisation
			retry *= 2
			continue
		}
		if err != nil {
			return nil, 0, e.requestError("read history", err)
		}
		if done || n == 0 {
			return events, seen, nil
		}
	}
}

// trimmedAfter says why JetStream may have removed events of streams after
// id after, or returns "" when it cannot have; see Replay for the rules.
func (e *NATSEngine) trimmedAfter(ctx context.Context, streams []string, after uint64) (string, error) {
	info, err := e.stream.Info(ctx)
	if err != nil {
		return "", e.requestError("read stream state", err)
	}
	if after+1 < info.State.FirstSeq {
		return ResetTrimmed, nil
	}
	limit := uint64(perSubjectLimit(info.Config, after)) //nolint:gosec // perSubjectLimit is never negative
	if limit == 0 || info.State.Msgs < limit {
		return "", nil // no subject holds limit messages: none was trimmed by it
	}
	counted := false
	for _, name := range streams {
		subject := e.prefix + name
		first, err := e.nextSeq(ctx, info.State.FirstSeq, subject)
		if err != nil {
			return "", e.requestError("read first event of "+name, err)
		}
		if first == 0 || first <= after {
			continue // no message, or its oldest is still there, so none newer went
		}
		si, err := e.stream.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			return "", e.requestError("count events of "+name, err)
		}
		if held := si.State.Subjects[subject]; held >= limit {
			return ResetTrimmed, nil
		}
		counted = true
	}
	if !counted {
		return "", nil
	}
	// A count below the limit proves nothing if age took some of those
	// messages before it was taken (the server reads the first sequence
	// before it counts), or if the limit was lowered meanwhile: look again.
	final, err := e.stream.Info(ctx)
	if err != nil {
		return "", e.requestError("read stream state", err)
	}
	if after+1 < final.State.FirstSeq || uint64(perSubjectLimit(final.Config, after)) < limit { //nolint:gosec // never negative
		return ResetTrimmed, nil
	}
	return "", nil
}

// checkTail makes sure that no message of subjects in (seen, head] escaped
// the replay consumer. In a cluster, an R1 consumer may live on a replica
// that lags the stream leader, whose state gave head; the leader then has
// messages the consumer did not see yet. That read is not retried here: the
// error evicts the connection, and the browser's reconnect reads again.
func (e *NATSEngine) checkTail(ctx context.Context, subjects []string, seen, head uint64) error {
	for _, subject := range subjects {
		next, err := e.nextSeq(ctx, seen+1, subject)
		if err != nil {
			return e.requestError("check the end of history", err)
		}
		if next != 0 && next <= head {
			return fmt.Errorf("%w: the replica that served the replay lags the stream leader (it has not stored event %d yet)", ErrUnavailable, next)
		}
	}
	return nil
}

// nextSeq returns the sequence of the first message on subject at or after
// seq, or 0 when there is none. It asks the stream leader through the
// JetStream API's message get, never a direct get, which any replica may
// answer from a state that lags (nats.go uses one when the stream allows
// direct gets).
func (e *NATSEngine) nextSeq(ctx context.Context, seq uint64, subject string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, natsRequestTimeout)
	defer cancel()
	req, err := json.Marshal(struct {
		Seq    uint64 `json:"seq"`
		NextBy string `json:"next_by_subj"`
	}{seq, subject})
	if err != nil {
		return 0, err
	}
	msg, err := e.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+e.want.Name, req)
	if err != nil {
		return 0, err
	}
	var resp struct {
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("JetStream message get: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return 0, nil
	case resp.Error != nil:
		return 0, resp.Error
	case resp.Message == nil:
		return 0, errors.New("JetStream message get: empty answer")
	}
	return resp.Message.Seq, nil
}

// deleteConsumer removes a replay consumer, best effort: its inactivity
// threshold removes it anyway.
func (e *NATSEngine) deleteConsumer(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := e.stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		e.log.Debug("delete replay consumer", "consumer", name, "err", err)
	}
}
