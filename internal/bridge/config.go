package bridge

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Config is everything [Run] and [Serve] need. The zero value of each field
// means its default; [Config.Validate] applies the defaults and checks the rest.
type Config struct {
	// GRPCAddr is where [Run] listens for gRPC. Zero means ":50051".
	GRPCAddr string
	// HTTPAddr is where [Run] listens for HTTP (SSE, the page). Zero means ":8080".
	HTTPAddr string
	// AdminAddr, when set, is where [Run] serves /metrics, /healthz,
	// /readyz and Go's pprof (/debug/pprof/), in plain HTTP; the HTTP
	// listener then serves none of them. Empty (the default) serves the
	// first three on the HTTP listener, and pprof nowhere. Keep it off the
	// public network (127.0.0.1:9090, or an internal interface).
	AdminAddr string

	// Engine chooses where ids and history live: "memory" (in this process;
	// a restart loses history) or "nats" (a NATS JetStream stream shared by
	// every node, set up by the NATS field). Zero means "memory".
	Engine string
	// NATS configures the "nats" engine; the memory engine ignores it.
	NATS NATSConfig

	// HistorySize is how many events each stream keeps for resume. Zero means
	// 1000. The nats engine sets it as the JetStream stream's
	// MaxMsgsPerSubject.
	HistorySize int
	// HistoryAge is how long an event stays in history. Zero means one hour.
	// The nats engine sets it as the JetStream stream's MaxAge.
	HistoryAge time.Duration
	// HistoryMemory bounds, in bytes, the memory the memory engine's history
	// takes, all streams together: events, their data and the frames built
	// from them, and each stream's bookkeeping. Over it the oldest events of
	// all go first, whatever their stream; a resume that needed one gets a
	// bridge.reset frame (reason history_trimmed). Zero means 256 MiB; it
	// must be at least 1 MiB and at least 16 events of MaxPayload. The nats
	// engine ignores it (JetStream keeps history).
	HistoryMemory int64
	// MaxReplay is the most events one (re)connect replays; past it the
	// client gets a bridge.reset frame (reason too_far_behind) instead, never
	// a partial replay. Zero means 1000; negative means no limit.
	MaxReplay int

	// Heartbeat is the interval of `: ping` comments on every connection.
	// Zero means 15s.
	Heartbeat time.Duration
	// WriteTimeout bounds every write to a browser: a peer that stops reading
	// for this long is dropped. Zero means 10s.
	WriteTimeout time.Duration
	// QueueSize is how many writes may wait for one connection; a connection
	// whose queue is full is evicted. One write carries a group of up to 64
	// consecutive events of a stream (fan-out batches what arrives together),
	// so a queue of 64 absorbs bursts of thousands of frames while costing
	// half a KiB per connection. Zero means 64.
	QueueSize int
	// EagerStreams hands every new SSE connection to the library at
	// connect, as the bridge did before streams dozed: off (the default),
	// a connection with nothing to replay (new, or a resume that
	// missed nothing) dozes until its first
	// event, on one goroutine and without a library stream, and that first
	// event costs the connection's library set-up (see doze.go and
	// BENCHMARKS.md). On suits nodes whose connections mostly watch a few
	// broadcast streams, where the first event after a mass connect wakes
	// every connection at once.
	EagerStreams bool
	// MaxStreamsPerConnection is how many streams one SSE connection may
	// subscribe to; more is a 400. Zero means 32; negative means no limit.
	MaxStreamsPerConnection int
	// CORSOrigins lists the origins allowed to subscribe from another site
	// ("*" allows any). Empty means same-origin only.
	CORSOrigins []string

	// JWTKey is a file holding the key that verifies subscriber tokens: an
	// HMAC secret of at least 32 bytes (a trailing newline is ignored), or a
	// PEM public key (RSA, ECDSA or Ed25519). Empty (the default) means
	// subscriber auth is off: any client can read any stream.
	JWTKey string
	// JWKS is a JSON Web Key Set that verifies subscriber tokens, instead of
	// JWTKey (set one of them): a file, read at start and by
	// [Server.ReloadJWKS], or an https URL (http for loopback only), fetched
	// at start, every 15 minutes, and when a token names an unknown key id
	// (at most every 30s). Needs JWTAudience. Only RSA (at least 2048 bits),
	// ECDSA and Ed25519 keys count: a file with another key (an HMAC "oct"
	// key, a private key) is refused, such keys at a URL are ignored. While
	// a URL's set cannot be fetched, subscribers with tokens are asked to
	// retry (200, retry:, end of stream). Empty (the default) means none.
	JWKS string
	// JWKSCA is a PEM file of the CAs that sign the JWKS URL's certificate.
	// Empty means the system's roots.
	JWKSCA string
	// JWTAlg pins the one accepted algorithm. Empty means inferred from the
	// key: HS256 for a secret, RS256 for RSA, ES256/384/512 by the ECDSA
	// curve, EdDSA for Ed25519; with JWKS, the alg each key declares, or
	// its family when it declares none. "none" is never accepted, and
	// neither is HMAC with JWKS.
	JWTAlg string
	// JWTIssuer, when set, is the iss every token must carry. None by default.
	JWTIssuer string
	// JWTAudience, when set, must be in every token's aud. None by default;
	// required with JWKS, whose keys usually sign tokens for many services.
	JWTAudience string
	// JWTLeeway is the clock skew allowed on exp and nbf. Zero means 10s; a
	// negative value means none.
	JWTLeeway time.Duration
	// JWTClaim is the claim holding the grants, {"subscribe": [patterns]}
	// (and "publish", read with PublisherJWT). Zero means "bridge".
	JWTClaim string
	// AuthQueryToken accepts the token as ?access_token= (for clients that
	// can set neither a header nor a cookie; the URL may end up in logs).
	// False by default.
	AuthQueryToken bool
	// AuthCookie is the name of the cookie holding the token. Zero means
	// "__Secure-bridge_token".
	AuthCookie string
	// PublicStreams are grant patterns of streams anyone may read without a
	// token when auth is on. None by default.
	PublicStreams []string

	// TLSCert and TLSKey are the PEM certificate (chain) and key files of
	// the HTTP listener. With both set it serves HTTPS, and HTTP/2 to clients
	// that offer it (ALPN), so a browser's EventSources share one connection.
	// Empty (the default) means plain HTTP; set both or neither.
	TLSCert string
	TLSKey  string
	// GRPCTLSCert and GRPCTLSKey are the PEM certificate and key files of the
	// gRPC listener. Empty (the default) means plaintext gRPC; set both or
	// neither.
	GRPCTLSCert string
	GRPCTLSKey  string
	// GRPCClientCA is a PEM file of the CAs that sign publishers' client
	// certificates. When set, the gRPC listener asks for a client certificate
	// and refuses the handshake of one the CAs did not sign; a client without
	// a certificate still connects (to authenticate another way). Needs the
	// gRPC TLS pair. None by default.
	GRPCClientCA string
	// TLSReloadInterval is how often the TLS files are checked for a change;
	// a changed file is loaded again (so are all of them on
	// [Server.ReloadTLS]). Zero means 5s; negative means never (reload on
	// request only).
	TLSReloadInterval time.Duration

	// Publishers is a JSON file listing who may publish: for each publisher
	// a name, one credential (token_sha256, the hex SHA-256 of a bearer
	// token, or cert, a client certificate principal), the stream patterns
	// it may publish to, and an optional rate; see publishers.go and the
	// README. Empty (the default) means no publishers file.
	Publishers string
	// PublisherJWT also accepts, as a publisher's bearer token, a JWT
	// verified as subscriber tokens are (JWTKey) whose grants claim lists
	// {"publish": [patterns]}. False by default; needs JWTKey.
	PublisherJWT bool
	// GRPCInsecure waives protected mode: with neither Publishers nor
	// PublisherJWT, any caller that reaches the gRPC port may publish, not
	// only loopback callers. False by default; an error with publisher auth.
	GRPCInsecure bool

	// DescriptorSets are files of google.protobuf.FileDescriptorSet whose
	// message types the bridge renders, besides the compiled-in ones. None by
	// default.
	DescriptorSets []string
	// JSONProtoNames renders typed events with proto field names (order_id)
	// instead of lowerCamelCase (orderId). False by default.
	JSONProtoNames bool
	// JSONEmitDefaults renders fields at their default value (0, "", false,
	// empty lists, null messages) instead of leaving them out. False by default.
	JSONEmitDefaults bool
	// CloudEventsSource is the `source` attribute of every event in the
	// cloudevents format: a URI reference that names this bridge (or the
	// system it serves), such as "/sse-bridge", "//events.acme.example" or
	// "https://acme.example/bridge". Zero means "/sse-bridge".
	CloudEventsSource string
	// PublicURL is the base URL browsers reach this bridge's HTTP listener
	// at (https://events.acme.example, or with a path prefix a proxy
	// adds). When set, each cloudevents frame whose type names a message
	// the bridge renders carries `dataschema`: PublicURL + /types/ + the
	// type. CloudEvents wants an absolute URI there, and only the operator
	// knows the public one (behind a proxy the request's Host is not it),
	// so empty, the default, means no dataschema.
	PublicURL string

	// MaxPayload is the largest event data (the JSON, in bytes) accepted.
	// Zero means 64 KiB. gRPC messages larger than MaxPayload + 64 KiB, or
	// MaxBatchBytes when that is more, are refused by the transport
	// (ResourceExhausted).
	MaxPayload int

	// Publishing at scale: batches, publish streams and idempotency keys
	// (docs/contract.md).

	// MaxBatch is the most events one PublishBatch may carry; more is
	// InvalidArgument. Zero means 1000.
	MaxBatch int
	// MaxBatchBytes is the largest gRPC request the bridge reads, in bytes,
	// so the largest PublishBatch: the server's receive limit is the larger
	// of it and MaxPayload + 64 KiB. A larger request is refused unread by
	// gRPC (ResourceExhausted). Zero means 4 MiB, gRPC's own default.
	MaxBatchBytes int
	// MaxStreamInflight bounds the events one PublishStream has received
	// and not yet answered; past it the bridge stops reading the stream,
	// and gRPC flow control holds the publisher back. Zero means 128.
	MaxStreamInflight int
	// MaxPublishStreams is how many PublishStream calls one node serves at
	// once; one more is refused with ResourceExhausted. Zero means 100;
	// negative means no limit.
	MaxPublishStreams int
	// DedupeWindow is how long an idempotency key names its event: a
	// publish with a key seen on the same stream within it stores nothing
	// and returns the first event's id as a duplicate. Zero means 2m;
	// negative turns dedupe off (keys are checked, then ignored).
	DedupeWindow time.Duration
	// DedupeKeys bounds the keys the memory engine remembers, all streams
	// together; when full, the oldest go first (before their window ends).
	// The table is not part of HistoryMemory: at most about 320 bytes a key
	// (docs/operations.md). Zero means 100,000. The nats engine ignores it
	// (JetStream keeps its own duplicate window).
	DedupeKeys int

	// Limits: for the counts and rates below, zero means the default and a
	// negative value turns the limit off. Over a connection limit or a
	// connect rate, a subscriber is shed: 200, a retry: of 5 to 30 s
	// (jittered), and the end of the stream.

	// MaxConnections is how many SSE connections one node holds. Zero means
	// 10,000.
	MaxConnections int
	// MaxConnectionsPerIP is how many SSE connections one client address
	// (an IPv6 /64) may hold; see TrustedProxies. Zero means no limit.
	MaxConnectionsPerIP int
	// MaxConnectionsPerSubject is how many SSE connections one token subject
	// (sub) may hold; it needs subscriber auth. Zero means no limit.
	MaxConnectionsPerSubject int
	// ConnectRate is how many SSE connects per second one node accepts, with
	// a burst of one second's worth. Zero means 1000.
	ConnectRate float64
	// ConnectRatePerIP is how many SSE connects per second one client
	// address accepts, with a burst of one second's worth. Zero means no
	// limit.
	ConnectRatePerIP float64
	// MaxGRPCStreams is how many RPCs one gRPC connection (HTTP/2) may have
	// open at once: its MaxConcurrentStreams. It bounds, per connection,
	// the Subscribe calls that ended while their reader was not reading,
	// whose last messages and status wait for the reader (at most 64 KiB
	// each) until it reads or its connection closes. A client over it
	// waits for a call to end before it starts another. Zero means 1000.
	MaxGRPCStreams int
	// MaxStreamName is the longest stream name accepted, in bytes, on both
	// sides: 400 on /events, InvalidArgument on Publish. Zero means 128; at
	// most 1024.
	MaxStreamName int
	// MaxHeaderBytes bounds the size of an HTTP request's header; over it
	// the answer is 431. Zero means 32 KiB.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds the time to read an HTTP request's header;
	// past it the connection is closed. Zero means 10s.
	ReadHeaderTimeout time.Duration
	// TrustedProxies are the CIDR prefixes (or addresses) of the proxies
	// whose X-Forwarded-For is believed for the per-address limits: the
	// client is the rightmost address that is not a trusted proxy. Empty
	// means only the TCP peer counts.
	TrustedProxies []string
	// Retry is the reconnection delay every SSE connection is sent first,
	// as a retry: field of a random value between Retry and 2×Retry, so that
	// clients dropped together do not come back together. Zero means 2s.
	Retry time.Duration

	// PresenceInterval is the least time between two presence reports of
	// this node to the others (NATS engine): a change of its subscriber
	// counts reaches every node within about this long. With no change a
	// node still reports every third of PresenceTimeout. Zero means 1s.
	PresenceInterval time.Duration
	// PresenceTimeout is how long a node's reported counts hold without a
	// new report: a node that stops reporting (killed, cut off from NATS)
	// drops out of the cluster counts this long after its last report. At
	// least 3 × PresenceInterval. Zero means 5s.
	PresenceTimeout time.Duration
	// PresenceMaxEntries bounds the counts this node keeps of the other
	// nodes, as (node, stream) entries; past it a report's further streams
	// are left out (bridge_presence_dropped_entries_total). Zero means
	// 100,000.
	PresenceMaxEntries int
	// PresenceEvents are grant patterns of the streams that get a
	// bridge.presence event when their subscriber count changes. None by
	// default.
	PresenceEvents []string
	// PresenceEventInterval is the least time between two bridge.presence
	// events of one stream; changes in between are coalesced into the next
	// one, which carries the latest count. Zero means 1s.
	PresenceEventInterval time.Duration

	// DrainDelay is how long the bridge keeps serving, reporting not ready,
	// after it is told to stop and before it stops accepting: time for load
	// balancers to notice. Zero means none.
	DrainDelay time.Duration
	// ShutdownTimeout bounds gRPC's graceful stop and the HTTP server's
	// shutdown. Zero means 10s.
	ShutdownTimeout time.Duration

	// Logger receives the bridge's logs. Nil means discard.
	Logger *slog.Logger
	// TuneMemoryLimit, with the memory engine, keeps Go's soft memory limit
	// just above what is live plus the collector's headroom for everything
	// but history, so that a full --history-memory is not multiplied by
	// GOGC (memtune.go); a limit already set stays the ceiling. Off by
	// default, since it sets a process-wide value: the bridge command turns
	// it on unless GOMEMLIMIT is set.
	TuneMemoryLimit bool
	// TracerProvider, when set, turns tracing on: spans of every publish
	// and delivery, and the traceparent of traced publishes in the frames
	// (tracing.go). Nil (the default) means off. The caller owns it (and
	// shuts it down after Serve returned).
	TracerProvider trace.TracerProvider

	// jwksUnknownKIDEvery is the least time between two key set fetches
	// caused by unknown key ids. Zero means jwksUnknownKIDEvery; tests
	// shorten it (export_test.go) to see a recovery without waiting.
	jwksUnknownKIDEvery time.Duration
	// dedupeClock, when set, is the memory engine's dedupe table's clock:
	// tests move it past DedupeWindow without waiting (export_test.go).
	dedupeClock func() time.Time
}

// Defaults: the value each zero field of [Config] takes. They exist here
// only; [DefaultConfig] hands them to the command line, whose help and the
// configuration reference (docs/configuration.md) show them.
const (
	defaultGRPCAddr    = ":50051"
	defaultHTTPAddr    = ":8080"
	defaultEngine      = EngineMemory
	defaultHistorySize = 1000
	defaultHistoryAge  = time.Hour
	// defaultHistoryMemory: some 60,000 events of 4 KB, or over half a
	// million of 100 bytes, across any number of streams; a small part of
	// a node of a few GiB, whose connections need the rest.
	defaultHistoryMemory           = 256 << 20
	defaultMaxReplay               = 1000
	defaultHeartbeat               = 15 * time.Second
	defaultWriteTimeout            = 10 * time.Second
	defaultQueueSize               = 64
	defaultMaxStreamsPerConnection = 32
	defaultJWTLeeway               = 10 * time.Second
	defaultJWTClaim                = "bridge"
	defaultAuthCookie              = "__Secure-bridge_token"
	// defaultTLSReloadInterval: a renewed certificate is served within
	// seconds, for the cost of reading a few small files.
	defaultTLSReloadInterval     = 5 * time.Second
	defaultMaxPayload            = 64 << 10
	defaultCloudEventsSource     = "/sse-bridge"
	defaultMaxConnections        = 10_000
	defaultConnectRate           = 1000
	defaultMaxStreamName         = MaxStreamName
	defaultMaxHeaderBytes        = 32 << 10
	defaultReadHeaderTimeout     = 10 * time.Second
	defaultRetry                 = 2 * time.Second
	defaultShutdownTimeout       = 10 * time.Second
	defaultPresenceInterval      = time.Second
	defaultPresenceTimeout       = 5 * time.Second
	defaultPresenceMaxEntries    = 100_000
	defaultPresenceEventInterval = time.Second
	defaultNATSURL               = "nats://127.0.0.1:4222"
	defaultNATSStream            = "BRIDGE"
	defaultNATSSubjectPrefix     = "bridge"
	defaultNATSReplicas          = 1
	defaultNATSStorage           = natsStorageFile
	defaultNATSPersist           = natsPersistSync
	defaultNATSConnectTimeout    = 5 * time.Second
	defaultNATSMaxPending        = 4096
	maxNATSMaxPending            = 1 << 20
	defaultMaxBatch              = 1000
	defaultMaxBatchBytes         = 4 << 20
	// defaultMaxStreamInflight: enough to keep a publish stream's store
	// calls full (each takes what has arrived, up to this many) while
	// bounding what one stream holds: 128 requests of at most
	// --max-payload + 64 KiB.
	defaultMaxStreamInflight = 128
	defaultMaxPublishStreams = 100
	defaultDedupeWindow      = 2 * time.Minute
	defaultDedupeKeys        = 100_000
	defaultMaxGRPCStreams    = 1000
)

// DefaultConfig returns the configuration a zero [Config] stands for: every
// field at its default. The command line takes its flags' defaults from it.
func DefaultConfig() Config {
	var c Config
	c.applyDefaults()
	c.Logger = nil
	return c
}

// applyDefaults gives every zero field of c its default.
func (c *Config) applyDefaults() {
	setDefault(&c.GRPCAddr, defaultGRPCAddr)
	setDefault(&c.HTTPAddr, defaultHTTPAddr)
	setDefault(&c.Engine, defaultEngine)
	c.NATS.setDefaults()
	setDefault(&c.HistorySize, defaultHistorySize)
	setDefault(&c.HistoryAge, defaultHistoryAge)
	setDefault(&c.HistoryMemory, defaultHistoryMemory)
	setDefault(&c.MaxReplay, defaultMaxReplay)
	setDefault(&c.Heartbeat, defaultHeartbeat)
	setDefault(&c.WriteTimeout, defaultWriteTimeout)
	setDefault(&c.QueueSize, defaultQueueSize)
	setDefault(&c.MaxStreamsPerConnection, defaultMaxStreamsPerConnection)
	setDefault(&c.JWTLeeway, defaultJWTLeeway)
	setDefault(&c.JWTClaim, defaultJWTClaim)
	setDefault(&c.AuthCookie, defaultAuthCookie)
	setDefault(&c.TLSReloadInterval, defaultTLSReloadInterval)
	setDefault(&c.MaxPayload, defaultMaxPayload)
	setDefault(&c.MaxBatch, defaultMaxBatch)
	setDefault(&c.MaxBatchBytes, defaultMaxBatchBytes)
	setDefault(&c.MaxStreamInflight, defaultMaxStreamInflight)
	setDefault(&c.MaxPublishStreams, defaultMaxPublishStreams)
	setDefault(&c.DedupeWindow, defaultDedupeWindow)
	setDefault(&c.DedupeKeys, defaultDedupeKeys)
	setDefault(&c.CloudEventsSource, defaultCloudEventsSource)
	setDefault(&c.MaxConnections, defaultMaxConnections)
	setDefault(&c.MaxGRPCStreams, defaultMaxGRPCStreams)
	setDefault(&c.ConnectRate, defaultConnectRate)
	setDefault(&c.MaxStreamName, defaultMaxStreamName)
	setDefault(&c.MaxHeaderBytes, defaultMaxHeaderBytes)
	setDefault(&c.ReadHeaderTimeout, defaultReadHeaderTimeout)
	setDefault(&c.Retry, defaultRetry)
	setDefault(&c.ShutdownTimeout, defaultShutdownTimeout)
	setDefault(&c.PresenceInterval, defaultPresenceInterval)
	setDefault(&c.PresenceTimeout, defaultPresenceTimeout)
	setDefault(&c.PresenceMaxEntries, defaultPresenceMaxEntries)
	setDefault(&c.PresenceEventInterval, defaultPresenceEventInterval)
	setDefault(&c.jwksUnknownKIDEvery, jwksUnknownKIDEvery)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate applies defaults to zero fields, then checks every field. It
// reports every invalid setting, joined into one error (each says what to
// set instead), not just the first.
func (c *Config) Validate() error {
	c.applyDefaults()

	var errs []error
	positive := func(name string, v int64) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %d", name, v))
		}
	}
	positive("history size", int64(c.HistorySize))
	positive("history age", int64(c.HistoryAge))
	positive("history memory", c.HistoryMemory)
	positive("heartbeat", int64(c.Heartbeat))
	positive("write timeout", int64(c.WriteTimeout))
	positive("queue size", int64(c.QueueSize))
	positive("max payload", int64(c.MaxPayload))
	positive("max gRPC streams", int64(c.MaxGRPCStreams))
	positive("shutdown timeout", int64(c.ShutdownTimeout))
	positive("drain delay", int64(c.DrainDelay))
	positive("max batch (--max-batch)", int64(c.MaxBatch))
	positive("max batch bytes (--max-batch-bytes)", int64(c.MaxBatchBytes))
	positive("max stream in-flight (--max-stream-inflight)", int64(c.MaxStreamInflight))
	positive("dedupe keys (--dedupe-keys)", int64(c.DedupeKeys))
	switch c.Engine {
	case EngineMemory:
		errs = append(errs, c.validateHistoryMemory()...)
	case EngineNATS:
		errs = append(errs, c.NATS.validate()...)
	default:
		errs = append(errs, fmt.Errorf("engine %q is unknown: use %q or %q", c.Engine, EngineMemory, EngineNATS))
	}
	for _, o := range c.CORSOrigins {
		if o != "*" && !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
			errs = append(errs, fmt.Errorf("CORS origin %q must be \"*\" or start with http:// or https://", o))
		}
		if strings.HasSuffix(o, "/") {
			errs = append(errs, fmt.Errorf("CORS origin %q must not end with a slash: browsers send origins without a path", o))
		}
	}
	if err := checkURIReference(c.CloudEventsSource); err != nil {
		errs = append(errs, fmt.Errorf("CloudEvents source (--cloudevents-source) %q: %w", c.CloudEventsSource, err))
	}
	if err := checkPublicURL(c.PublicURL); err != nil {
		errs = append(errs, fmt.Errorf("public URL (--public-url) %q: %w", c.PublicURL, err))
	}
	errs = append(errs, c.validateAuth()...)
	errs = append(errs, c.validateLimits()...)
	errs = append(errs, c.validateTLS()...)
	errs = append(errs, c.validatePublishers()...)
	errs = append(errs, c.validatePresence()...)
	return errors.Join(errs...)
}

// validatePresence checks the presence settings.
func (c *Config) validatePresence() []error {
	var errs []error
	if c.PresenceInterval < 0 || c.PresenceTimeout < 0 || c.PresenceEventInterval < 0 || c.PresenceMaxEntries < 0 {
		errs = append(errs, errors.New("presence interval, timeout, event interval and max entries must not be negative"))
	}
	if c.PresenceTimeout < 3*c.PresenceInterval {
		errs = append(errs, fmt.Errorf("presence timeout (--presence-timeout, %v) must be at least 3 times the presence interval (--presence-interval, %v): a node reports at least every third of the timeout, so one lost report does not drop it", c.PresenceTimeout, c.PresenceInterval))
	}
	for _, p := range c.PresenceEvents {
		if !validPattern(p) {
			errs = append(errs, fmt.Errorf("presence events pattern %q is invalid: tokens of letters, digits, '_' and '-' separated by dots, '*' for one token, '>' last for the rest", p))
		}
	}
	return errs
}

// minHistoryMemory is the least [Config.HistoryMemory]: 16 events of the
// default --max-payload, and room for a few thousand small ones. Below it
// history would hold so little that most resumes would be reset.
const minHistoryMemory = 1 << 20

// minHistoryEvents is how many events of --max-payload the history budget
// must hold at least, so that one large event does not empty history.
const minHistoryEvents = 16

// validateHistoryMemory checks the memory engine's budget. (Negative is an
// error, for every engine, not "no limit": an unbounded history is what the
// budget is there to prevent; a very large value is one, for whoever means
// it.)
func (c *Config) validateHistoryMemory() []error {
	switch least := max(minHistoryMemory, minHistoryEvents*int64(c.MaxPayload)); {
	case c.HistoryMemory < 0: // reported by Validate
	case c.HistoryMemory < minHistoryMemory:
		return []error{fmt.Errorf("history memory (--history-memory) must be at least %d bytes (1 MiB), got %d: history would hold almost nothing; set it to %d or more, or 0 for the default (%d, 256 MiB)", minHistoryMemory, c.HistoryMemory, least, int64(defaultHistoryMemory))}
	case c.HistoryMemory < least:
		return []error{fmt.Errorf("history memory (--history-memory, %d bytes) must hold at least %d events of --max-payload (%d bytes): set it to at least %d, or lower --max-payload", c.HistoryMemory, minHistoryEvents, c.MaxPayload, least)}
	}
	return nil
}

// AuthEnabled reports whether subscriber auth is on: a verifier is configured.
func (c *Config) AuthEnabled() bool { return c.JWTKey != "" || c.JWKS != "" }

func (c *Config) validateAuth() []error {
	var errs []error
	if !c.AuthEnabled() {
		for name, set := range map[string]bool{
			"JWT algorithm": c.JWTAlg != "", "JWT issuer": c.JWTIssuer != "", "JWT audience": c.JWTAudience != "",
			"query token": c.AuthQueryToken, "public streams": len(c.PublicStreams) > 0, "JWKS CA": c.JWKSCA != "",
		} {
			if set {
				errs = append(errs, fmt.Errorf("%s is set but subscriber auth is off: set the JWT key (--jwt-key) or key set (--jwks) too", name))
			}
		}
		return errs
	}
	if c.JWKS != "" {
		errs = append(errs, c.validateJWKS()...)
	} else if c.JWKSCA != "" {
		errs = append(errs, errors.New("the JWKS CA (--jwks-ca) is set but there is no key set URL (--jwks)"))
	}
	if slices.Contains(c.CORSOrigins, "*") {
		errs = append(errs, errors.New("CORS origin \"*\" cannot be used with subscriber auth: browsers send no credentials to \"*\"; list the origins of your pages"))
	}
	if strings.EqualFold(c.JWTAlg, "none") {
		errs = append(errs, errors.New("JWT algorithm \"none\" is never accepted"))
	}
	if !validCookieName(c.AuthCookie) {
		errs = append(errs, fmt.Errorf("auth cookie name %q is invalid: use letters, digits and !#$%%&'*+-.^_`|~", c.AuthCookie))
	}
	if c.JWTClaim == "" {
		errs = append(errs, errors.New("JWT claim name is empty"))
	}
	for _, p := range c.PublicStreams {
		if !validPattern(p) {
			errs = append(errs, fmt.Errorf("public stream pattern %q is invalid: tokens of letters, digits, '_' and '-' separated by dots, '*' for one token, '>' last for the rest", p))
		}
	}
	return errs
}

func (c *Config) validateJWKS() []error {
	var errs []error
	if c.JWTKey != "" {
		errs = append(errs, errors.New("set one of the JWT key (--jwt-key) and the JWT key set (--jwks), not both"))
	}
	if c.JWTAudience == "" {
		errs = append(errs, errors.New("a JWT key set (--jwks) needs the JWT audience (--jwt-audience): its keys usually sign tokens for other services too, and only aud tells tokens for this bridge apart"))
	}
	if c.JWTAlg != "" && !slices.Contains(jwksAlgs, c.JWTAlg) {
		errs = append(errs, fmt.Errorf("JWT algorithm %q cannot be used with a key set (--jwks): use one of %s (HMAC secrets go in --jwt-key)", c.JWTAlg, strings.Join(jwksAlgs, ", ")))
	}
	if isJWKSURL(c.JWKS) {
		if err := checkJWKSURL(c.JWKS); err != nil {
			errs = append(errs, err)
		}
	} else if c.JWKSCA != "" {
		errs = append(errs, errors.New("the JWKS CA (--jwks-ca) is for a key set URL, and --jwks names a file"))
	}
	return errs
}

// validCookieName reports whether name is an RFC 6265 token.
func validCookieName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// The engines [Config.Engine] names.
const (
	EngineMemory = "memory"
	EngineNATS   = "nats"
)

// NATSConfig is where the nats engine connects and which JetStream stream it
// keeps events in. The zero value of each field means its default.
type NATSConfig struct {
	// URLs are the NATS servers to connect to (more than one for a cluster).
	// Empty means nats://127.0.0.1:4222.
	URLs []string
	// User and Password authenticate with a user name. None by default.
	User     string
	Password string
	// Token authenticates with a token. None by default.
	Token string
	// CredsFile is a credentials file (a user JWT and its NKey seed), as
	// issued by nsc. None by default.
	CredsFile string
	// TLSCA is a PEM file of the CAs that sign the servers' certificates.
	// Empty means the system's roots; any TLS field turns TLS on.
	TLSCA string
	// TLSCert and TLSKey are the PEM certificate and key of the client, for
	// servers that verify clients. None by default; set both or neither.
	TLSCert string
	TLSKey  string

	// Stream is the name of the JetStream stream that holds every bridge
	// stream's events. Zero means "BRIDGE".
	Stream string
	// SubjectPrefix is the subject prefix of events: bridge stream NAME is
	// stored on subject PREFIX.NAME, and the JetStream stream takes
	// PREFIX.>. Zero means "bridge".
	SubjectPrefix string
	// Replicas is how many copies of the stream a NATS cluster keeps (1 to
	// 5). Zero means 1.
	Replicas int
	// Storage is where the NATS servers keep the stream: "file" (survives a
	// NATS restart) or "memory". Zero means "file".
	Storage string
	// Persist is when a NATS server writes an event of a file stream to
	// its file: "sync", before it acknowledges the event (a crash of the
	// NATS server process loses no acknowledged event), or "async", in the
	// background shortly after (about a third less NATS server CPU per
	// event; such a crash loses the events of the last moments, after
	// their publishers got ids, which the bridges handle as a lost history:
	// see docs/nats.md). Async needs file storage and one replica
	// (a replicated stream is written in the background anyway: the other
	// servers hold the copies). JetStream fixes it when the stream is
	// created. Zero means "sync".
	Persist string
	// ConnectTimeout bounds the start: connecting to NATS and creating or
	// updating the stream. Zero means 5s.
	ConnectTimeout time.Duration
	// DedupeWindow is how long JetStream remembers an event's idempotency
	// key (the stream's duplicate window, kept in the NATS servers'
	// memory): a key published again within it stores nothing. At most
	// the history age (JetStream's limit); zero means 2 minutes. A Server
	// sets it from Config.DedupeWindow.
	DedupeWindow time.Duration
	// MaxPending bounds the events this node has published to JetStream
	// and not yet had acknowledged, all publishes together (the memory of
	// the publishes in flight and of the JetStream ack routing). A publish
	// that finds them all taken waits for one, until its deadline and at
	// most 5s, then fails with UNAVAILABLE (retry with the same idempotency
	// key). 1 to 1,048,576; zero means 4096.
	MaxPending int
}

// The storages [NATSConfig.Storage] names.
const (
	natsStorageFile   = "file"
	natsStorageMemory = "memory"
)

// The persist modes [NATSConfig.Persist] names.
const (
	natsPersistSync  = "sync"
	natsPersistAsync = "async"
)

// setDefaults gives every zero field of n its default.
func (n *NATSConfig) setDefaults() {
	if len(n.URLs) == 0 {
		n.URLs = []string{defaultNATSURL}
	}
	setDefault(&n.Stream, defaultNATSStream)
	setDefault(&n.SubjectPrefix, defaultNATSSubjectPrefix)
	setDefault(&n.Replicas, defaultNATSReplicas)
	setDefault(&n.Storage, defaultNATSStorage)
	setDefault(&n.Persist, defaultNATSPersist)
	setDefault(&n.ConnectTimeout, defaultNATSConnectTimeout)
	setDefault(&n.DedupeWindow, defaultDedupeWindow)
	setDefault(&n.MaxPending, defaultNATSMaxPending)
}

func (n *NATSConfig) validate() []error {
	var errs []error
	for _, u := range n.URLs {
		if err := checkNATSURL(u); err != nil {
			errs = append(errs, err)
		}
	}
	// JetStream allows more in a stream name; these characters are safe in
	// every API subject and file system.
	if !validNATSStreamName(n.Stream) {
		errs = append(errs, fmt.Errorf("NATS stream name %q is invalid: use letters, digits, '_' and '-' (at most 64)", n.Stream))
	}
	// The prefix follows the rules of stream names, so PREFIX.NAME is a
	// literal subject: tokens of letters, digits, '_' and '-' (no wildcard,
	// no '$' system subject).
	if !ValidStreamName(n.SubjectPrefix) {
		errs = append(errs, fmt.Errorf("NATS subject prefix %q is invalid: use tokens of letters, digits, '_' and '-' separated by single dots, like \"bridge\" or \"acme.sse\"", n.SubjectPrefix))
	}
	if n.Replicas < 1 || n.Replicas > 5 {
		errs = append(errs, fmt.Errorf("NATS replicas must be 1 to 5, got %d", n.Replicas))
	}
	if n.Storage != natsStorageFile && n.Storage != natsStorageMemory {
		errs = append(errs, fmt.Errorf("NATS storage %q is unknown: use %q or %q", n.Storage, natsStorageFile, natsStorageMemory))
	}
	switch {
	case n.Persist != natsPersistSync && n.Persist != natsPersistAsync:
		errs = append(errs, fmt.Errorf("NATS persist mode %q is unknown: use %q or %q", n.Persist, natsPersistSync, natsPersistAsync))
	case n.Persist == natsPersistAsync && n.Storage != natsStorageFile:
		errs = append(errs, fmt.Errorf("NATS persist mode %q needs file storage: memory storage writes no file", natsPersistAsync))
	case n.Persist == natsPersistAsync && n.Replicas > 1:
		errs = append(errs, fmt.Errorf("NATS persist mode %q needs one replica: JetStream writes a replicated stream in the background already; drop --nats-persist", natsPersistAsync))
	}
	if n.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("NATS connect timeout must not be negative, got %v", n.ConnectTimeout))
	}
	if n.DedupeWindow < 0 {
		errs = append(errs, fmt.Errorf("dedupe window must not be negative, got %v", n.DedupeWindow))
	}
	if n.MaxPending < 1 || n.MaxPending > maxNATSMaxPending {
		errs = append(errs, fmt.Errorf("NATS max pending must be 1 to %d, got %d", maxNATSMaxPending, n.MaxPending))
	}
	if n.Password != "" && n.User == "" {
		errs = append(errs, errors.New("a NATS password needs a NATS user"))
	}
	if credentials := btoi(n.User != "") + btoi(n.Token != "") + btoi(n.CredsFile != ""); credentials > 1 {
		errs = append(errs, errors.New("give one NATS credential: a user and password, a token, or a creds file"))
	}
	if (n.TLSCert == "") != (n.TLSKey == "") {
		errs = append(errs, errors.New("NATS TLS certificate and key go together: set both or neither"))
	}
	return errs
}

// checkURIReference checks that s is a URI reference (RFC 3986), as the
// CloudEvents source must be: no spaces or control characters, and
// something url.Parse accepts.
func checkURIReference(s string) error {
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return errors.New("not a URI reference: it holds a space or a control character; percent-encode it")
		}
	}
	if _, err := url.Parse(s); err != nil {
		return fmt.Errorf("not a URI reference: %w", err)
	}
	return nil
}

// checkPublicURL checks --public-url: empty, or an absolute http or https
// URL with a host and neither query nor fragment, since /types/NAME is
// appended to it.
func checkPublicURL(s string) error {
	if s == "" {
		return nil
	}
	if err := checkURIReference(s); err != nil {
		return err
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return err
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return errors.New("give an absolute http or https URL, such as https://events.acme.example")
	case u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "#"):
		return errors.New("give it without a query or fragment: /types/NAME is appended to it")
	case u.User != nil:
		return errors.New("give it without user information")
	}
	return nil
}

// checkNATSURL checks a NATS server URL: nats://, tls://, ws:// or wss://,
// or host:port alone (nats.go reads that as nats://).
func checkNATSURL(u string) error {
	if strings.TrimSpace(u) == "" {
		return errors.New("NATS URL is empty")
	}
	if !strings.Contains(u, "://") {
		return nil
	}
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("NATS URL %q: %w", redactURLs([]string{u}), err)
	}
	switch p.Scheme {
	case "nats", "tls", "ws", "wss":
		return nil
	}
	return fmt.Errorf("NATS URL %q has the scheme %s, which NATS does not speak: use nats://HOST:4222 (or tls://, ws://, wss://)", redactURLs([]string{u}), p.Scheme)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func validNATSStreamName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// validatePublishers checks the publisher fields of c; the file itself is
// read by [New].
func (c *Config) validatePublishers() []error {
	var errs []error
	if c.PublisherJWT && !c.AuthEnabled() {
		errs = append(errs, errors.New("publisher JWTs (--publisher-jwt) need a JWT key to verify them: set --jwt-key too"))
	}
	if c.GRPCInsecure && (c.Publishers != "" || c.PublisherJWT) {
		errs = append(errs, errors.New("--grpc-insecure waives protected mode, which is off anyway with publisher auth (--publishers, --publisher-jwt): drop --grpc-insecure"))
	}
	return errs
}

func (c *Config) validateTLS() []error {
	var errs []error
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("TLS certificate (--tls-cert) and key (--tls-key) go together: set both or neither"))
	}
	if (c.GRPCTLSCert == "") != (c.GRPCTLSKey == "") {
		errs = append(errs, errors.New("gRPC TLS certificate (--grpc-tls-cert) and key (--grpc-tls-key) go together: set both or neither"))
	}
	if c.GRPCClientCA != "" && c.GRPCTLSCert == "" {
		errs = append(errs, errors.New("gRPC client CA (--grpc-client-ca) needs TLS on the gRPC listener: set --grpc-tls-cert and --grpc-tls-key too"))
	}
	return errs
}

// validateLimits checks the limits.
func (c *Config) validateLimits() []error {
	var errs []error
	if c.MaxStreamName < 1 || c.MaxStreamName > maxStreamNameLimit {
		errs = append(errs, fmt.Errorf("max stream name must be 1 to %d bytes, got %d", maxStreamNameLimit, c.MaxStreamName))
	}
	if c.MaxHeaderBytes < 0 {
		errs = append(errs, fmt.Errorf("max header bytes must not be negative, got %d", c.MaxHeaderBytes))
	}
	if c.ReadHeaderTimeout < 0 {
		errs = append(errs, fmt.Errorf("read header timeout must not be negative, got %v", c.ReadHeaderTimeout))
	}
	if c.Retry < 0 {
		errs = append(errs, fmt.Errorf("retry must not be negative, got %v", c.Retry))
	}
	if math.IsNaN(c.ConnectRate) || math.IsNaN(c.ConnectRatePerIP) {
		errs = append(errs, errors.New("connect rates must be numbers of connects per second"))
	}
	if c.MaxConnectionsPerSubject > 0 && !c.AuthEnabled() {
		errs = append(errs, errors.New("max connections per subject is set but subscriber auth is off: the subject is the token's sub, so set the JWT key (--jwt-key) too"))
	}
	if _, err := parseTrustedProxies(c.TrustedProxies); err != nil {
		errs = append(errs, err)
	}
	return errs
}
