package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// How a bridge event is stored in JetStream: the subject is PREFIX.STREAM,
// the body is the event's data exactly as SSE sends it (one line of JSON),
// and its type, when it has one, travels in a header (and a trace context
// in traceparent, tracing.go). So `nats sub 'bridge.>'` shows the payloads
// as they are, and other consumers need no envelope. The id is not stored:
// it is the stream sequence JetStream assigns, the same on every node. The
// time is when JetStream stored the message, which is when the bridge
// accepted the event (Publish answers once it is stored), and is also the
// same on every node. An event with neither a type nor a key nor a trace
// context is a message without headers: the cheapest one to publish,
// store, deliver and decode.
const (
	natsHeaderType = "Bridge-Type"
	// natsHeaderTime (RFC 3339) carries the time of an event published
	// with a time of its own (no publish path of the bridge sets one), and
	// of every event stored by earlier versions, which wrote it always.
	natsHeaderTime = "Bridge-Time"
)

const (
	// natsReconnectWait is the pause between reconnect attempts to one
	// server (nats.go adds jitter); with several URLs the others are tried
	// in between. Shorter than nats.go's 2s so a node catches up soon after
	// a NATS restart.
	natsReconnectWait = time.Second
	// natsPingInterval finds a dead connection that never closed (a server
	// whose host died, a partition): nats.go gives up on a connection after
	// two unanswered pings, so within about three intervals, 4 to 6s,
	// instead of nats.go's default of four minutes. A ping a second costs
	// nothing; a shorter interval would start cutting connections to a
	// server that is only busy.
	natsPingInterval = 2 * time.Second
	// natsDialTimeout bounds one attempt to connect to one server, reconnects
	// included: a dead host answers nothing, and nats.go tries the servers
	// one after the other, so a node whose server died reaches another one
	// this much later per dead server it tries first. A live server answers
	// in milliseconds, TLS included.
	natsDialTimeout = 2 * time.Second
	// natsCloseTimeout bounds Close: draining a healthy connection takes
	// milliseconds, and one to an unreachable server is closed at once.
	natsCloseTimeout = 5 * time.Second
	// natsRequestTimeout bounds a JetStream API request made without
	// nats.go's own default (5s, the same).
	natsRequestTimeout = 5 * time.Second
	// natsSetUpAttempt bounds one attempt of the start's JetStream
	// requests, which take milliseconds when JetStream is up.
	natsSetUpAttempt = 2 * time.Second
	// natsHeaderRoom is what the headers of an event add to its data, at
	// most, when the start checks --max-payload against the server's limit.
	natsHeaderRoom = 1 << 10
)

// NATSEngine is the [Engine] for many nodes: every event is a message of one
// JetStream stream that all bridges share, so any node can resume any client
// and a bridge restart loses nothing.
//
//   - Ids are JetStream stream sequences: unique, increasing across all
//     bridge streams and the same on every node. A stream the bridge creates
//     starts at the current time in Unix microseconds (like the memory
//     engine's ids), so an id from a memory engine, or from a JetStream
//     stream that was deleted and created again, is older than every id of
//     the new stream and its client gets bridge.reset instead of events it
//     never had.
//   - Publish returns once JetStream acknowledged the event.
//   - Run follows the stream with an ordered consumer from the sequence that
//     was last at start; after a NATS outage it resumes after the last
//     delivered sequence, so nothing is lost or repeated. Its watch
//     (engine_nats_watch.go) finds a stalled consumer and a stream that lost
//     its history, and heals both.
//   - Replay reads JetStream with a consumer filtered on the requested
//     streams, and resets instead of leaving a gap; see Replay.
//
// A NATSEngine is safe for concurrent use; Run must be called once. Close it
// after Run returned.
type NATSEngine struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	want   jetstream.StreamConfig // what ensureStream creates or updates
	prefix string                 // the subject prefix with its trailing dot
	start  uint64                 // the first sequence Run delivers
	urls   string                 // the configured URLs, credentials redacted, for messages
	log    *slog.Logger
	ensure chan struct{} // capacity 1: check that the stream exists
	closed chan struct{} // closed by the connection's closed handler
	onGap  func()        // set before Run starts; see setGapHandler

	// restart (capacity 1): the watch asks follow for a new consumer.
	// lossHint (capacity 1): a publish got an id issued before; the watch
	// looks at the stream at once.
	restart, lossHint chan struct{}
	// delivered is the last stream sequence Run delivered (or skipped);
	// fence is that of a history loss Run has not followed yet (0: none).
	delivered, fence atomic.Uint64
	// issued is the highest id a publish through this node got (see
	// noteIssued). A stream whose last sequence falls below it lost events
	// a publisher holds the ids of, even when no node delivered them yet
	// (a NATS server that lost the tail of its file: --nats-persist async,
	// or a machine crash): the watch fences it as it does below delivered,
	// so those ids are never issued again.
	issued atomic.Uint64
	// Figures for metrics (see Stats).
	lag                                     atomic.Uint64
	stalls, consumerRestarts, historyLosses atomic.Int64
	// gaps counts the runs of events trimmed from JetStream before this
	// node delivered them; gapLogged is when the last was logged, and
	// gapsUnlogged how many came since. Only follow's goroutine writes
	// the last two.
	gaps         atomic.Int64
	gapLogged    time.Time
	gapsUnlogged int

	// acks takes the acks of publishes (engine_nats_acks.go) and holds the
	// batches being published, to cancel when the connection drops.
	acks *natsAcks

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when Ready's answer may have changed
	stalled error         // why delivery is stalled (the watch), nil while it is not
}

// errConnLost ends a publish whose connection dropped before the ack came.
var errConnLost = errors.New("NATS connection lost")

// NewNATSEngine connects to NATS, checks JetStream, creates or updates the
// JetStream stream (cfg.Stream, subjects cfg.SubjectPrefix.>, at most
// historySize messages per subject and none older than historyAge) and
// returns the engine. Zero fields of cfg mean their defaults; historySize and
// historyAge must be positive. maxPayload, when positive, is checked against
// the server's max_payload. Everything is bounded by cfg.ConnectTimeout; the
// error says what is wrong (unreachable server, no JetStream, no
// permission). log may be nil.
func NewNATSEngine(ctx context.Context, cfg NATSConfig, historySize int, historyAge time.Duration, maxPayload int, log *slog.Logger) (*NATSEngine, error) {
	cfg.setDefaults()
	if err := errors.Join(cfg.validate()...); err != nil {
		return nil, err
	}
	if historySize <= 0 || historyAge <= 0 {
		return nil, fmt.Errorf("history size and age must be positive, got %d and %v", historySize, historyAge)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &NATSEngine{
		prefix:   cfg.SubjectPrefix + ".",
		urls:     redactURLs(cfg.URLs),
		log:      log,
		ensure:   make(chan struct{}, 1),
		restart:  make(chan struct{}, 1),
		lossHint: make(chan struct{}, 1),
		closed:   make(chan struct{}),
		changed:  make(chan struct{}),
	}
	storage := jetstream.FileStorage
	if cfg.Storage == natsStorageMemory {
		storage = jetstream.MemoryStorage
	}
	e.want = jetstream.StreamConfig{
		Name:              cfg.Stream,
		Description:       "sse-bridge events: subject " + e.prefix + "NAME holds bridge stream NAME",
		Subjects:          []string{e.prefix + ">"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: int64(historySize),
		MaxAge:            historyAge,
		// JetStream refuses a duplicate window longer than MaxAge.
		Duplicates: min(cfg.DedupeWindow, historyAge),
		Storage:    storage,
		Replicas:   cfg.Replicas,
	}
	if cfg.Persist == natsPersistAsync {
		e.want.PersistMode = jetstream.AsyncPersistMode
	}

	nc, err := nats.Connect(strings.Join(cfg.URLs, ","), e.options(cfg)...)
	if err != nil {
		return nil, connectError(e.urls, err)
	}
	e.nc = nc
	fail := func(err error) (*NATSEngine, error) {
		e.nc.Close()
		e.waitClosed()
		return nil, err
	}
	if maxPayload > 0 && int64(maxPayload)+natsHeaderRoom > nc.MaxPayload() {
		return fail(fmt.Errorf("--max-payload %d does not fit the NATS server's max_payload of %d bytes (with %d bytes for headers): lower --max-payload or raise max_payload", maxPayload, nc.MaxPayload(), natsHeaderRoom))
	}
	e.js, err = jetstream.New(nc)
	if err != nil {
		return fail(fmt.Errorf("JetStream client: %w", err))
	}
	if e.acks, err = newNATSAcks(nc, cfg.MaxPending); err != nil {
		return fail(err)
	}
	sctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	info, err := e.setUp(sctx)
	if err != nil {
		return fail(err)
	}
	e.start = info.State.LastSeq + 1
	e.delivered.Store(info.State.LastSeq)
	log.Info("nats engine ready", "url", nc.ConnectedUrlRedacted(), "stream", cfg.Stream,
		"subjects", e.want.Subjects, "first_seq", info.State.FirstSeq, "last_seq", info.State.LastSeq,
		"max_msgs_per_subject", historySize, "max_age", historyAge, "duplicates", e.want.Duplicates, "storage", cfg.Storage, "replicas", cfg.Replicas)
	return e, nil
}

// setUp checks JetStream and creates or updates the stream. While a NATS
// cluster is still forming (no JetStream leader yet, not enough peers), it
// tries again until ctx ends, so bridges may start together with NATS.
func (e *NATSEngine) setUp(ctx context.Context) (*jetstream.StreamInfo, error) {
	wait := 100 * time.Millisecond
	for {
		info, err := e.setUpOnce(ctx)
		if err == nil || ctx.Err() != nil || !retryAtStart(err) || errors.Is(e.nc.LastError(), nats.ErrPermissionViolation) {
			return info, err
		}
		e.log.Info("JetStream not ready yet: trying again", "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// setUpOnce is one attempt of setUp. Each attempt has its own timeout: a
// NATS cluster without a JetStream leader may leave a request unanswered.
func (e *NATSEngine) setUpOnce(ctx context.Context) (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, natsSetUpAttempt)
	defer cancel()
	if _, err := e.js.AccountInfo(ctx); err != nil {
		return nil, e.startError("check JetStream", err)
	}
	info, err := e.ensureStream(ctx)
	if err != nil {
		return nil, e.startError(fmt.Sprintf("create or update JetStream stream %q", e.want.Name), err)
	}
	if e.stream, err = e.js.Stream(ctx, e.want.Name); err != nil {
		return nil, e.startError(fmt.Sprintf("open JetStream stream %q", e.want.Name), err)
	}
	return info, nil
}

// retryAtStart reports whether a failed start may work a little later.
func retryAtStart(err error) bool {
	return unavailable(err) &&
		!errors.Is(err, jetstream.ErrJetStreamNotEnabled) &&
		!errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount)
}

// options turns cfg (validated: at most one credential) into nats.go
// options; the handlers keep readiness and in-flight publishes in step with
// the connection.
func (e *NATSEngine) options(cfg NATSConfig) []nats.Option {
	opts := []nats.Option{
		nats.Name("sse-bridge"),
		nats.Timeout(min(cfg.ConnectTimeout, natsDialTimeout)),
		// Never give up: a node without NATS keeps its SSE connections open
		// and reports not ready until NATS is back.
		nats.MaxReconnects(-1),
		nats.ReconnectWait(natsReconnectWait),
		nats.IgnoreAuthErrorAbort(),
		nats.PingInterval(natsPingInterval),
		nats.DrainTimeout(natsCloseTimeout),
		// No reconnect buffer: a publish while the connection is down fails
		// at once, instead of going out after the reconnect behind the
		// back of a caller that was told Unavailable (and, in a batch,
		// after events sent later).
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if !nc.IsClosed() && !nc.IsDraining() { // not our own Close
				e.log.Warn("NATS connection lost: publishes answer Unavailable until it is back", "err", err)
			}
			e.connectionChanged(true)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			e.log.Info("NATS connection back", "url", nc.ConnectedUrlRedacted())
			e.connectionChanged(false)
			e.checkStream() // a NATS server that kept streams in memory lost ours
			// The consumer may have lived on the server this connection
			// lost; a new one costs a request, waiting for nats.go to find
			// out costs seconds of silence.
			select {
			case e.restart <- struct{}{}:
			default:
			}
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			e.connectionChanged(true)
			close(e.closed)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			e.log.Warn("NATS error", "err", err)
		}),
	}
	switch {
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	if cfg.TLSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	}
	return opts
}

// redactURLs lists urls for messages, without the user info a URL may
// carry (a user and password, or a token).
func redactURLs(urls []string) string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = u
		if p, err := url.Parse(u); err == nil && p.User != nil {
			p.User = url.User("redacted")
			out[i] = p.String()
		} else if err != nil && strings.Contains(u, "@") {
			out[i] = "(a URL with credentials)"
		}
	}
	return strings.Join(out, ",")
}

// connectError explains a failed connect.
func connectError(urls string, err error) error {
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired),
		errors.Is(err, nats.ErrAuthRevoked), errors.Is(err, nats.ErrAccountAuthExpired):
		return fmt.Errorf("connect to NATS at %s: %w (check --nats-user and --nats-password, --nats-token or --nats-creds)", urls, err)
	case errors.Is(err, nats.ErrNoServers):
		return fmt.Errorf("connect to NATS at %s: %w (is the server running and reachable? check --nats-url)", urls, err)
	case errors.As(err, new(net.Error)):
		// Something answered the connection but no NATS greeting came
		// (another service on that port), or the network failed midway.
		return fmt.Errorf("connect to NATS at %s: %w (is a NATS server running there and reachable? check --nats-url)", urls, err)
	}
	return fmt.Errorf("connect to NATS at %s: %w", urls, err)
}

// jsErrCodeSubjectOverlap is JetStream's error code for subjects another
// stream already takes (the server's JSStreamSubjectOverlapErr).
const jsErrCodeSubjectOverlap jetstream.ErrorCode = 10065

// startError explains a failure of the start's JetStream requests.
func (e *NATSEngine) startError(what string, err error) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fmt.Errorf("%s: %w: the NATS server at %s has no JetStream for this account (start nats-server with -js, or add jetstream {} to its configuration)", what, err, e.nc.ConnectedUrlRedacted())
	case errors.Is(e.nc.LastError(), nats.ErrPermissionViolation):
		return fmt.Errorf("%s: %w: the NATS user has no permission for it (%w); it needs to publish to $JS.API.> and %s>, and to subscribe to _INBOX.>", what, err, e.nc.LastError(), e.prefix)
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeSubjectOverlap:
		return fmt.Errorf("%s: %w: another JetStream stream takes subjects under %s>: choose another --nats-subject-prefix, or --nats-stream to use that stream", what, err, e.prefix)
	case errors.As(err, &apiErr):
		return fmt.Errorf("%s: JetStream refused: %w", what, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("%s: %w: JetStream did not answer in time (is JetStream enabled, and may this user use it?)", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// connectionChanged wakes readiness watchers and, when the connection is
// down, ends every publish waiting for an ack: it cannot come any more, and
// the caller should hear Unavailable now rather than at its deadline.
func (e *NATSEngine) connectionChanged(down bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	close(e.changed)
	e.changed = make(chan struct{})
	if down && e.acks != nil { // nil: the connection failed before the start's end
		e.acks.cancelAll(errConnLost)
	}
}

// Ready reports whether this node serves fully now: nil while it is
// connected to NATS and delivering (see engine_nats_watch.go), an error
// wrapping [ErrUnavailable] that says why not otherwise. /readyz and gRPC
// health follow it.
func (e *NATSEngine) Ready() error {
	if err := e.connected(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stalled
}

// connected reports whether the engine can publish and replay now: nil
// while connected to NATS, an error wrapping [ErrUnavailable] otherwise.
// Unlike Ready, a stalled delivery does not count: publishing and replaying
// do not need it, and a new consumer needs a connection only.
func (e *NATSEngine) connected() error {
	if s := e.nc.Status(); s != nats.CONNECTED {
		return fmt.Errorf("%w: NATS connection is %s", ErrUnavailable, strings.ToLower(s.String()))
	}
	return nil
}

// ReadyChanged returns a channel that is closed at the next change of
// [NATSEngine.Ready]'s answer (or soon after; read Ready again then).
func (e *NATSEngine) ReadyChanged() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.changed
}

// waitReady waits until the engine is connected, ctx ends, or the connection
// is closed for good.
func (e *NATSEngine) waitReady(ctx context.Context) error {
	for {
		changed := e.ReadyChanged()
		err := e.connected()
		if err == nil || e.nc.IsClosed() {
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for NATS: %w", ctx.Err())
		}
	}
}

// presenceLink returns the link presence reports travel on between nodes:
// core NATS on subject PREFIX-presence, beside the JetStream stream's
// PREFIX.> rather than under it, so JetStream stores none of them (and no
// stream name can collide with it).
func (e *NATSEngine) presenceLink() presenceLink {
	return &natsPresence{nc: e.nc, subject: e.presenceSubject()}
}

// presenceSubject is the subject of presence reports.
func (e *NATSEngine) presenceSubject() string {
	return strings.TrimSuffix(e.prefix, ".") + "-presence"
}

// setGapHandler sets what Run calls when it finds that events were removed
// from JetStream before it could deliver them; see Run. Call it before Run.
func (e *NATSEngine) setGapHandler(f func()) { e.onGap = f }

// checkStream asks Run's maintenance goroutine to make sure the stream
// exists. It never blocks.
func (e *NATSEngine) checkStream() {
	select {
	case e.ensure <- struct{}{}:
	default: // a check is pending already
	}
}

// unavailable reports whether err from a NATS or JetStream request means
// the server could not be reached or could not serve now.
func unavailable(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrReconnectBufExceeded),
		errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, errAckTimeout),
		errors.Is(err, errTooManyPending),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, jetstream.ErrStreamNotFound),
		errors.As(err, &apiErr) && apiErr.Code == 503:
		return true
	}
	return false
}

// requestError wraps the error of a JetStream request made for Replay. A
// missing stream is created again (see recreateIfMissing).
func (e *NATSEngine) requestError(what string, err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		e.checkStream()
	}
	if unavailable(err) {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// decode turns a stored message into an event; stored is when JetStream
// stored it. A message that cannot be a bridge event (a subject outside the
// prefix or with an invalid stream name, no data, or data of more than one
// line) is skipped, with a log line: sending it could break the browser's
// stream (an empty event ends it, a line break ends the data early).
func (e *NATSEngine) decode(subject string, seq uint64, hdr nats.Header, data []byte, stored time.Time) (*Event, bool) {
	name, ok := strings.CutPrefix(subject, e.prefix)
	if !ok || !validStreamSyntax(name) || len(data) == 0 || bytes.IndexByte(data, '\n') >= 0 || bytes.IndexByte(data, '\r') >= 0 {
		e.log.Warn("skip a JetStream message that is no bridge event", "subject", subject, "seq", seq)
		return nil, false
	}
	ev := &Event{ID: seq, Stream: name, Data: data, Time: stored}
	if len(hdr) > 0 {
		ev.Type = hdr.Get(natsHeaderType)
		natsGetTrace(hdr, ev)
		if t, err := time.Parse(time.RFC3339Nano, hdr.Get(natsHeaderTime)); err == nil {
			ev.Time = t
		}
	}
	return ev, true
}

// Close drains and closes the NATS connection and waits until nats.go's
// goroutines are done (a few seconds at most). Call it after Run returned.
// Nothing is lost by a failed drain: every publish was acknowledged or has
// already failed, and Run has stopped; so Close reports nothing.
func (e *NATSEngine) Close() {
	if err := e.nc.Drain(); err != nil {
		e.nc.Close() // draining a connection that is down fails: close it
	}
	if !e.waitClosed() {
		e.nc.Close()
		<-e.closed
	}
}

// waitClosed waits for the closed handler, at most natsCloseTimeout plus a
// second, and reports whether it ran.
func (e *NATSEngine) waitClosed() bool {
	t := time.NewTimer(natsCloseTimeout + time.Second)
	defer t.Stop()
	select {
	case <-e.closed:
		return true
	case <-t.C:
		return false
	}
}
