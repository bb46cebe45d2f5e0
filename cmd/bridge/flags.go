package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/sse-bridge/bridge/internal/bridge"
)

// Defaults of the settings that exist on the command line only; every other
// flag takes its default from bridge.DefaultConfig.
const (
	defaultLogLevel  = "info"
	defaultLogFormat = "text"
	defaultJSONNames = jsonNamesCamel
)

// The values of --json-names.
const (
	jsonNamesCamel = "camel"
	jsonNamesProto = "proto"
)

// serveIntro is the text of `bridge --help` before the flags.
const serveIntro = `Usage: bridge [serve] [flags]
       bridge publish [flags] --stream NAME PAYLOAD
       bridge tail [flags] --stream NAME [--stream NAME...]
       bridge hash-token < TOKEN_FILE
       bridge version
       bridge help [publish | tail | hash-token]

bridge (or bridge serve) serves gRPC Publish and Server-Sent Events at
/events. Every flag can also be set with an environment variable, BRIDGE_ and
the flag's name in upper snake case (--grpc-addr is BRIDGE_GRPC_ADDR); a flag
on the command line wins. SIGHUP reloads the descriptor sets, the TLS files,
the publishers file and the JWKS file; SIGTERM or SIGINT drains and stops.
publish and tail are clients of a running bridge, hash-token prints the
token_sha256 of a publisher's token: see bridge help publish, and so on.
`

// serveGroups are the headings of `bridge --help` and of the configuration
// reference, docs/configuration.md; every flag but the deprecated names is
// under exactly one.
var serveGroups = []flagGroup{
	{
		title: "Listeners",
		about: "Where the bridge listens: gRPC for publishers (Publish, server reflection, health), HTTP for subscribers (/events, the page at /, /metrics, /healthz, /readyz).",
		flags: []string{"grpc-addr", "http-addr", "admin-addr"},
	},
	{
		title: "Engine",
		about: "Where event ids and history live. The memory engine keeps them in this process (a restart loses history); the nats engine keeps them in a NATS JetStream stream that every bridge node shares, so a browser can resume on any node. The --nats-* flags set it up; the memory engine ignores them.",
		flags: []string{"engine", "nats-url", "nats-user", "nats-password", "nats-token", "nats-creds", "nats-tls-ca", "nats-tls-cert", "nats-tls-key", "nats-stream", "nats-subject-prefix", "nats-replicas", "nats-storage", "nats-persist", "nats-connect-timeout", "nats-max-pending"},
	},
	{
		title: "History",
		about: "How much of each stream is kept for browsers that reconnect with a Last-Event-ID, how much memory all of it may take (memory engine), and how much one reconnect may replay. A resume that needs an event history no longer holds gets a bridge.reset frame, never a gap.",
		flags: []string{"history-size", "history-age", "history-memory", "max-replay"},
	},
	{
		title: "Subscribers",
		about: "The SSE connections: heartbeats, how long a write to a slow browser may take, how many writes wait for one, the reconnection delay, cross-origin access, and when a connection is set up for writing.",
		flags: []string{"heartbeat", "write-timeout", "queue-size", "retry", "cors-origins", "eager-streams"},
	},
	{
		title: "Subscriber auth",
		about: "Tokens (JWTs) of subscribers. With neither --jwt-key nor --jwks, auth is off and any client can read any stream; the other flags of this group need one of them.",
		flags: []string{"jwt-key", "jwks", "jwks-ca", "jwt-alg", "jwt-issuer", "jwt-audience", "jwt-leeway", "jwt-claim", "auth-query-token", "auth-cookie", "public-streams"},
	},
	{
		title: "Publishers",
		about: "Who may publish. With none of these flags the bridge is in protected mode: only callers on this machine (loopback) may publish.",
		flags: []string{"publishers", "publisher-jwt", "grpc-insecure"},
	},
	{
		title: "Limits",
		about: "Limits that keep the bridge serving everyone while some clients misbehave, per node. Over a connection limit or a connect rate a subscriber is shed: status 200, a retry: of 5 to 30 s, and the end of the stream. For the counts and rates, a negative value turns the limit off.",
		flags: []string{"max-connections", "max-connections-per-ip", "max-connections-per-subject", "connect-rate", "connect-rate-per-ip", "trusted-proxies", "max-streams-per-connection", "max-stream-name", "max-payload", "max-grpc-streams", "max-header-bytes", "read-header-timeout"},
	},
	{
		title: "Publishing",
		about: "Batches, publish streams and idempotency keys: how much one call may carry, how much one stream may have in flight, and how long a key names its event.",
		flags: []string{"max-batch", "max-batch-bytes", "max-stream-inflight", "max-publish-streams", "dedupe-window", "dedupe-keys"},
	},
	{
		title: "TLS",
		about: "TLS of the two listeners, and client certificates of publishers. The files are reloaded on SIGHUP and when they change.",
		flags: []string{"tls-cert", "tls-key", "grpc-tls-cert", "grpc-tls-key", "grpc-client-ca", "tls-reload-interval"},
	},
	{
		title: "Typed events and JSON",
		about: "The protobuf types the bridge renders as JSON, besides the compiled-in ones, and how it renders them.",
		flags: []string{"descriptor-set", "json-names", "emit-defaults", "cloudevents-source", "public-url"},
	},
	{
		title: "Presence",
		about: "Subscriber counts per stream (rpc Presence, GET /presence) and the optional bridge.presence events. With --engine nats every node reports its counts to the others over core NATS (subject PREFIX-presence) and the cluster counts add them up.",
		flags: []string{"presence-interval", "presence-timeout", "presence-max-entries", "presence-events", "presence-event-interval"},
	},
	{
		title: "Logs",
		about: "The logs, on standard error.",
		flags: []string{"log-level", "log-format"},
	},
	{
		title: "Shutdown",
		about: "What SIGTERM and SIGINT do: report not ready for a while, then stop accepting, let in-flight work finish, and end every SSE stream so browsers reconnect elsewhere.",
		flags: []string{"drain-delay", "shutdown-timeout"},
	},
}

// serveFlags are the flags of `bridge` (serve). Most set a field of cfg;
// the others set strings that parseFlags turns into fields.
type serveFlags struct {
	cmd       cmdLine
	cfg       bridge.Config
	cors      string
	natsURLs  string
	logLevel  string
	logFormat string
	jsonNames string
}

// newServeFlags defines every flag of `bridge`, each with its default from
// bridge.DefaultConfig (or, for the few settings of the command line only,
// from the constants above).
func newServeFlags() *serveFlags {
	def := bridge.DefaultConfig()
	s := &serveFlags{}
	cfg := &s.cfg
	fs := flag.NewFlagSet("bridge", flag.ContinueOnError)
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", def.GRPCAddr, "`address` of the gRPC listener (Publish, reflection, health)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", def.HTTPAddr, "`address` of the HTTP listener (/events, the page at /)")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", def.AdminAddr, "`address` of a listener of its own for /metrics, /healthz, /readyz and pprof, which the HTTP listener then does not serve; none means those three on the HTTP listener and no pprof; keep it off the public network")
	fs.IntVar(&cfg.HistorySize, "history-size", def.HistorySize, "`events` kept per stream for resume (with --engine nats: the JetStream stream's MaxMsgsPerSubject)")
	fs.DurationVar(&cfg.HistoryAge, "history-age", def.HistoryAge, "how long an event stays in history (a `duration`; with --engine nats: the JetStream stream's MaxAge)")
	fs.Int64Var(&cfg.HistoryMemory, "history-memory", def.HistoryMemory, "memory the history of all streams may take, in `bytes` (268435456 is 256 MiB): events, their data and frames, each stream's bookkeeping; over it the oldest events of all go first; at least 1 MiB and 16 times --max-payload (memory engine)")
	fs.IntVar(&cfg.MaxReplay, "max-replay", def.MaxReplay, "most `events` one (re)connect replays; past it the client gets bridge.reset (too_far_behind), never a partial replay; negative for no limit")
	fs.IntVar(&cfg.MaxReplay, "replay-limit", def.MaxReplay, "deprecated: use --max-replay")
	fs.DurationVar(&cfg.Heartbeat, "heartbeat", def.Heartbeat, "`interval` of \": ping\" comments on every SSE connection")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", def.WriteTimeout, "deadline of every write to a browser (a `duration`); a client that stops reading is dropped")
	fs.IntVar(&cfg.QueueSize, "queue-size", def.QueueSize, "`writes` that may wait for one connection (each carries up to 64 events of a stream); a connection whose queue is full is evicted and resumes")
	fs.BoolVar(&cfg.EagerStreams, "eager-streams", def.EagerStreams, "set every SSE connection up for writing at connect; by default one with nothing to replay waits for its first event on one goroutine (less memory per idle connection, more CPU for that first event)")
	fs.IntVar(&cfg.MaxStreamsPerConnection, "max-streams-per-connection", def.MaxStreamsPerConnection, "`streams` one SSE connection may subscribe to (more is a 400); negative for no limit")
	fs.IntVar(&cfg.MaxStreamsPerConnection, "max-streams", def.MaxStreamsPerConnection, "deprecated: use --max-streams-per-connection")
	fs.IntVar(&cfg.MaxConnections, "max-connections", def.MaxConnections, "SSE `connections` one node holds; over it a connect is shed (200, retry: 5-30 s, end); negative for no limit")
	fs.IntVar(&cfg.MaxConnectionsPerIP, "max-connections-per-ip", def.MaxConnectionsPerIP, "SSE `connections` one client address (IPv6: its /64) may hold, shed over it; 0 for no limit (see --trusted-proxies)")
	fs.IntVar(&cfg.MaxConnectionsPerSubject, "max-connections-per-subject", def.MaxConnectionsPerSubject, "SSE `connections` one token subject (sub) may hold, shed over it; 0 for no limit; needs --jwt-key")
	fs.Float64Var(&cfg.ConnectRate, "connect-rate", def.ConnectRate, "SSE connects per second one node accepts (a `rate`, burst one second's worth), shed over it; negative for no limit")
	fs.Float64Var(&cfg.ConnectRatePerIP, "connect-rate-per-ip", def.ConnectRatePerIP, "SSE connects per second one client address accepts (a `rate`, burst one second's worth), shed over it; 0 for no limit")
	fs.IntVar(&cfg.MaxStreamName, "max-stream-name", def.MaxStreamName, "longest stream name, in `bytes` (400 on /events, InvalidArgument on Publish; at most 1024)")
	fs.IntVar(&cfg.MaxHeaderBytes, "max-header-bytes", def.MaxHeaderBytes, "largest HTTP request header, in `bytes`; over it the answer is 431")
	fs.DurationVar(&cfg.ReadHeaderTimeout, "read-header-timeout", def.ReadHeaderTimeout, "time allowed to read an HTTP request header (a `duration`); past it the connection is closed")
	fs.Var(newListFlag(&cfg.TrustedProxies, def.TrustedProxies), "trusted-proxies", "CIDR `prefixes` (or addresses) of proxies whose X-Forwarded-For the per-address limits believe; none means only the TCP peer counts; repeat or separate with commas")
	fs.DurationVar(&cfg.Retry, "retry", def.Retry, "reconnection delay sent to every SSE connection as retry:, a random value from 1 to 2 times this `duration`")
	fs.StringVar(&s.cors, "cors-origins", strings.Join(def.CORSOrigins, ","), "comma-separated `origins` allowed to subscribe from other sites, or * for any; none means same origin only")
	fs.StringVar(&cfg.JWTKey, "jwt-key", def.JWTKey, "`file` of the key that verifies subscriber tokens: an HMAC secret of at least 32 bytes, or a PEM public key (RSA, ECDSA, Ed25519); none (and no --jwks) means auth off, any client reads any stream")
	fs.StringVar(&cfg.JWKS, "jwks", def.JWKS, "JSON Web Key Set verifying subscriber tokens, instead of --jwt-key: a `file` (SIGHUP reloads it) or an https URL (fetched every 15m and on an unknown kid); needs --jwt-audience; RSA, ECDSA and Ed25519 keys only")
	fs.StringVar(&cfg.JWKSCA, "jwks-ca", def.JWKSCA, "PEM `file` of the CAs of the --jwks URL's certificate; none means the system's roots")
	fs.StringVar(&cfg.JWTAlg, "jwt-alg", def.JWTAlg, "the one accepted JWT `algorithm` (HS256, RS256, ES256, EdDSA, ...); none means inferred from --jwt-key")
	fs.StringVar(&cfg.JWTIssuer, "jwt-issuer", def.JWTIssuer, "`iss` every subscriber token must carry")
	fs.StringVar(&cfg.JWTAudience, "jwt-audience", def.JWTAudience, "`aud` every subscriber token must include")
	fs.DurationVar(&cfg.JWTLeeway, "jwt-leeway", def.JWTLeeway, "clock skew allowed on exp and nbf (a `duration`; negative for none)")
	fs.StringVar(&cfg.JWTClaim, "jwt-claim", def.JWTClaim, "`claim` holding the grants, {\"subscribe\": [patterns]} (and \"publish\", with --publisher-jwt)")
	fs.BoolVar(&cfg.AuthQueryToken, "auth-query-token", def.AuthQueryToken, "also accept the token as ?access_token= (it may end up in proxy logs)")
	fs.StringVar(&cfg.AuthCookie, "auth-cookie", def.AuthCookie, "`name` of the cookie holding the subscriber token")
	fs.Var(newListFlag(&cfg.PublicStreams, def.PublicStreams), "public-streams", "stream `patterns` anyone may read without a token when auth is on (* one token, > the rest); repeat the flag, or separate with commas")
	fs.StringVar(&cfg.TLSCert, "tls-cert", def.TLSCert, "PEM certificate (chain) `file` of the HTTP listener, with --tls-key: serves HTTPS and HTTP/2; SIGHUP or a change of the file reloads it")
	fs.StringVar(&cfg.TLSKey, "tls-key", def.TLSKey, "PEM private key `file` of the HTTP listener, with --tls-cert")
	fs.StringVar(&cfg.GRPCTLSCert, "grpc-tls-cert", def.GRPCTLSCert, "PEM certificate (chain) `file` of the gRPC listener, with --grpc-tls-key: serves gRPC over TLS; SIGHUP or a change of the file reloads it")
	fs.StringVar(&cfg.GRPCTLSKey, "grpc-tls-key", def.GRPCTLSKey, "PEM private key `file` of the gRPC listener, with --grpc-tls-cert")
	fs.StringVar(&cfg.GRPCClientCA, "grpc-client-ca", def.GRPCClientCA, "PEM `file` of the CAs of publishers' client certificates (mTLS): a certificate they did not sign fails the handshake; clients without one still connect; needs --grpc-tls-cert")
	fs.DurationVar(&cfg.TLSReloadInterval, "tls-reload-interval", def.TLSReloadInterval, "how often the TLS files are checked for a change (a `duration`; negative: only on SIGHUP)")
	fs.StringVar(&cfg.Publishers, "publishers", def.Publishers, "JSON `file` of the publishers: name, token_sha256 or cert, streams, rate; SIGHUP reloads it; none means protected mode unless --publisher-jwt or --grpc-insecure")
	fs.BoolVar(&cfg.PublisherJWT, "publisher-jwt", def.PublisherJWT, "also accept JWTs verified with --jwt-key whose grants claim lists {\"publish\": [patterns]} as publisher tokens")
	fs.BoolVar(&cfg.GRPCInsecure, "grpc-insecure", def.GRPCInsecure, "with no publisher auth, let any caller publish, not only loopback ones (turns protected mode off; trusted networks only)")
	fs.Var(newListFlag(&cfg.DescriptorSets, def.DescriptorSets), "descriptor-set", "`file` of google.protobuf.FileDescriptorSet (buf build -o FILE) whose types the bridge renders; repeat the flag, or separate files with commas; SIGHUP reloads them")
	fs.Var(newChoiceFlag(&s.jsonNames, defaultJSONNames, jsonNamesCamel, jsonNamesProto), "json-names", "field `names` of typed events in JSON: camel (orderId) or proto (order_id)")
	fs.BoolVar(&cfg.JSONEmitDefaults, "emit-defaults", def.JSONEmitDefaults, "render fields at their default value (0, \"\", false, [], null) instead of leaving them out")
	fs.StringVar(&cfg.CloudEventsSource, "cloudevents-source", def.CloudEventsSource, "`URI` reference sent as the source of every event in the cloudevents format (a path such as /sse-bridge, or https://acme.example/bridge)")
	fs.StringVar(&cfg.PublicURL, "public-url", def.PublicURL, "base `URL` browsers reach the HTTP listener at (https://events.acme.example); cloudevents frames of known types then carry dataschema URL/types/TYPE (CloudEvents wants an absolute URI: none when empty)")
	fs.IntVar(&cfg.MaxPayload, "max-payload", def.MaxPayload, "largest event data accepted, in `bytes` of JSON")
	fs.DurationVar(&cfg.PresenceInterval, "presence-interval", def.PresenceInterval, "least time between two presence reports of this node to the others (a `duration`; --engine nats): a change of its counts reaches them within about this long")
	fs.DurationVar(&cfg.PresenceTimeout, "presence-timeout", def.PresenceTimeout, "a node whose presence reports stop for this long (a `duration`) drops out of the cluster counts; at least 3 times --presence-interval")
	fs.IntVar(&cfg.PresenceMaxEntries, "presence-max-entries", def.PresenceMaxEntries, "most (node, stream) `counts` kept of the other nodes; past it a report's further streams are left out")
	fs.Var(newListFlag(&cfg.PresenceEvents, def.PresenceEvents), "presence-events", "stream `patterns` that get a bridge.presence event ({\"stream\",\"count\"}) when their subscriber count changes (* one token, > the rest); repeat the flag, or separate with commas")
	fs.DurationVar(&cfg.PresenceEventInterval, "presence-event-interval", def.PresenceEventInterval, "least time between two bridge.presence events of one stream (a `duration`); changes in between are coalesced into the next, with the latest count")
	fs.IntVar(&cfg.MaxBatch, "max-batch", def.MaxBatch, "most `events` one PublishBatch may carry; more is InvalidArgument")
	fs.IntVar(&cfg.MaxBatchBytes, "max-batch-bytes", def.MaxBatchBytes, "largest gRPC request read, so the largest PublishBatch, in `bytes` (at least --max-payload + 64 KiB is read); larger is refused unread (ResourceExhausted)")
	fs.IntVar(&cfg.MaxStreamInflight, "max-stream-inflight", def.MaxStreamInflight, "`events` one PublishStream may have received and not yet answered; past it the bridge stops reading it (gRPC flow control holds the publisher back)")
	fs.IntVar(&cfg.MaxPublishStreams, "max-publish-streams", def.MaxPublishStreams, "PublishStream calls one node serves at once (`streams`); one more is ResourceExhausted; negative for no limit")
	fs.DurationVar(&cfg.DedupeWindow, "dedupe-window", def.DedupeWindow, "how long an idempotency_key names its event on its stream (a `duration`): a publish with a key seen within it stores nothing and returns the first id as a duplicate; negative turns dedupe off")
	fs.IntVar(&cfg.DedupeKeys, "dedupe-keys", def.DedupeKeys, "idempotency `keys` the memory engine remembers, all streams; when full the oldest go first (memory engine)")
	fs.IntVar(&cfg.MaxGRPCStreams, "max-grpc-streams", def.MaxGRPCStreams, "`calls` one gRPC connection may have open at once (HTTP/2 max concurrent streams); more wait for one to end")
	fs.DurationVar(&cfg.DrainDelay, "drain-delay", def.DrainDelay, "on SIGTERM, how long to keep serving while /readyz reports not ready, before stopping (a `duration`)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", def.ShutdownTimeout, "how long shutdown waits for in-flight publishes and connections (a `duration`)")
	fs.StringVar(&cfg.Engine, "engine", def.Engine, "`engine` that keeps ids and history: memory (in this process, lost on restart) or nats (a NATS JetStream stream every bridge shares; see --nats-*)")
	fs.StringVar(&s.natsURLs, "nats-url", strings.Join(def.NATS.URLs, ","), "comma-separated NATS server `URLs` (--engine nats)")
	fs.StringVar(&cfg.NATS.User, "nats-user", def.NATS.User, "NATS `user` name, with --nats-password")
	fs.StringVar(&cfg.NATS.Password, "nats-password", def.NATS.Password, "NATS `password` (prefer BRIDGE_NATS_PASSWORD: a flag shows in ps)")
	fs.StringVar(&cfg.NATS.Token, "nats-token", def.NATS.Token, "NATS authentication `token` (prefer BRIDGE_NATS_TOKEN)")
	fs.StringVar(&cfg.NATS.CredsFile, "nats-creds", def.NATS.CredsFile, "NATS credentials `file` (user JWT and NKey seed, from nsc)")
	fs.StringVar(&cfg.NATS.TLSCA, "nats-tls-ca", def.NATS.TLSCA, "PEM `file` of the CAs of the NATS servers' certificates; any --nats-tls-* turns TLS on")
	fs.StringVar(&cfg.NATS.TLSCert, "nats-tls-cert", def.NATS.TLSCert, "PEM client certificate `file` for NATS, with --nats-tls-key")
	fs.StringVar(&cfg.NATS.TLSKey, "nats-tls-key", def.NATS.TLSKey, "PEM client key `file` for NATS, with --nats-tls-cert")
	fs.StringVar(&cfg.NATS.Stream, "nats-stream", def.NATS.Stream, "`name` of the JetStream stream that holds the events; created or updated at start")
	fs.StringVar(&cfg.NATS.SubjectPrefix, "nats-subject-prefix", def.NATS.SubjectPrefix, "subject `prefix`: bridge stream NAME is stored on subject PREFIX.NAME")
	fs.IntVar(&cfg.NATS.Replicas, "nats-replicas", def.NATS.Replicas, "`copies` of the JetStream stream a NATS cluster keeps (1 to 5)")
	fs.StringVar(&cfg.NATS.Storage, "nats-storage", def.NATS.Storage, "JetStream `storage` of the stream: file (survives a NATS restart) or memory")
	fs.StringVar(&cfg.NATS.Persist, "nats-persist", def.NATS.Persist, "`mode` in which NATS writes an event to its file: sync (before its ack: a NATS crash loses no acked event) or async (after: a third less NATS CPU; file storage, one replica)")
	fs.DurationVar(&cfg.NATS.ConnectTimeout, "nats-connect-timeout", def.NATS.ConnectTimeout, "bound on connecting to NATS and setting up the stream at start (a `duration`)")
	fs.IntVar(&cfg.NATS.MaxPending, "nats-max-pending", def.NATS.MaxPending, "most `events` published to JetStream and awaiting its ack, all publishes together; a publish waits for room, then fails UNAVAILABLE")
	fs.Var(newLevelFlag(&s.logLevel, defaultLogLevel), "log-level", "`level` of logs: debug, info, warn or error")
	fs.Var(newChoiceFlag(&s.logFormat, defaultLogFormat, "text", "json"), "log-format", "`format` of logs: text or json")
	s.cmd = cmdLine{
		name:   "bridge",
		intro:  serveIntro,
		fs:     fs,
		groups: serveGroups,
		env:    envName,
		extra:  []string{"help", "version"},
		code:   exitCommandLine,
	}
	return s
}

// parseFlags turns the command line, with BRIDGE_* environment variables as
// fallbacks, into a valid bridge.Config. A flag given on the command line
// wins over the environment. It returns flag.ErrHelp for --help (which it
// does not print: see serveHelp), and an *exitError with exitCommandLine for
// a command line or environment to fix.
func parseFlags(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (bridge.Config, error) {
	s := newServeFlags()
	cfg, err := s.parse(args, lookupEnv, stderr)
	if err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, &exitError{code: exitCommandLine, err: err}
	}
	return cfg, nil
}

// parse parses args and the environment into s, and returns the
// configuration they make, not yet validated.
func (s *serveFlags) parse(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (bridge.Config, error) {
	fs := s.cmd.fs
	if err := s.cmd.parse(args); err != nil {
		return s.cfg, err
	}
	if fs.NArg() > 0 {
		return s.cfg, s.cmd.mistake(fmt.Sprintf("unexpected argument %q", fs.Arg(0)), boolValueHint(fs, args))
	}
	if err := applyEnv(fs, lookupEnv); err != nil {
		return s.cfg, s.cmd.mistake(err.Error(), "")
	}
	warnDeprecated(fs, lookupEnv, stderr)

	cfg := s.cfg
	if err := natsWithoutEngine(fs, cfg.Engine); err != nil {
		return cfg, err
	}
	if s.cors != "" {
		for o := range strings.SplitSeq(s.cors, ",") {
			if o = strings.TrimSpace(o); o != "" {
				cfg.CORSOrigins = append(cfg.CORSOrigins, o)
			}
		}
	}
	for u := range strings.SplitSeq(s.natsURLs, ",") {
		if u = strings.TrimSpace(u); u != "" {
			cfg.NATS.URLs = append(cfg.NATS.URLs, u)
		}
	}
	cfg.JSONProtoNames = s.jsonNames == jsonNamesProto
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.logLevel)); err != nil { // levelFlag checked it
		return cfg, s.cmd.mistake(fmt.Sprintf("invalid value %q for --log-level: %v", s.logLevel, err), "")
	}
	opts := &slog.HandlerOptions{Level: level}
	if s.logFormat == "json" {
		cfg.Logger = slog.New(slog.NewJSONHandler(stderr, opts))
	} else {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, opts))
	}
	return cfg, nil
}

// boolValueHint suggests --flag=false for the argument of a bool flag given
// as its own word (--eager-streams false), which ends the flags: the value
// of a bool flag goes after "=".
func boolValueHint(fs *flag.FlagSet, args []string) string {
	i := len(args) - fs.NArg() // the first argument that is not a flag
	if i < 1 || (fs.Arg(0) != "true" && fs.Arg(0) != "false") {
		return ""
	}
	name := strings.TrimLeft(args[i-1], "-")
	if f := fs.Lookup(name); f != nil && valueExample(f) == "true or false" {
		return fmt.Sprintf("did you mean --%s=%s? (the value of an on/off flag goes after =)", name, fs.Arg(0))
	}
	return ""
}

// serveHelp writes the --help of `bridge`.
func serveHelp(w io.Writer) {
	newServeFlags().cmd.printHelp(w)
}

// deprecatedFlags maps each renamed flag's old name to its new one. Both
// set the same field; the old one (and its environment variable) keeps
// working, with a warning, and is left out of --help.
var deprecatedFlags = map[string]string{
	"max-streams":  "max-streams-per-connection",
	"replay-limit": "max-replay",
}

// natsWithoutEngine refuses NATS settings given (as flags or BRIDGE_NATS_*
// variables) to a bridge whose engine is not nats: they would be ignored,
// and nodes meant to share ids and history would share nothing.
func natsWithoutEngine(fs *flag.FlagSet, engine string) error {
	if engine == bridge.EngineNATS {
		return nil
	}
	var set []string
	fs.Visit(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, "nats-") {
			set = append(set, "--"+f.Name)
		}
	})
	if len(set) == 0 {
		return nil
	}
	return &exitError{code: exitCommandLine, err: fmt.Errorf(
		"%s set (as a flag or a BRIDGE_NATS_* variable), but the engine is %s, which ignores it: add --engine nats (BRIDGE_ENGINE=nats) to share ids and history through NATS, or drop the NATS settings",
		strings.Join(set, ", "), engine)}
}

// applyEnv sets every flag not given on the command line from its BRIDGE_*
// environment variable, when that is set. A flag and its deprecated name
// are one setting: either given on the command line wins over both
// variables, and the new name's variable wins over the old one's.
func applyEnv(fs *flag.FlagSet, lookupEnv func(string) (string, bool)) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for old, current := range deprecatedFlags {
		if given[old] || given[current] {
			given[old], given[current] = true, true
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		if current, ok := deprecatedFlags[f.Name]; ok {
			if _, set := lookupEnv(envName(current)); set {
				return
			}
		}
		name := envName(f.Name)
		if v, ok := lookupEnv(name); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %s", name, v, valueProblem(f, e.Error()))
			}
		}
	})
	return err
}

// warnDeprecated says which deprecated flags or variables were used, and
// what replaces them.
func warnDeprecated(fs *flag.FlagSet, lookupEnv func(string) (string, bool), stderr io.Writer) {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, old := range slices.Sorted(maps.Keys(deprecatedFlags)) {
		current := deprecatedFlags[old]
		if given[old] {
			fmt.Fprintf(stderr, "bridge: --%s is deprecated: use --%s\n", old, current)
		}
		if _, set := lookupEnv(envName(old)); set {
			fmt.Fprintf(stderr, "bridge: %s is deprecated: use %s\n", envName(old), envName(current))
		}
	}
}

// envName is the environment variable of a flag: BRIDGE_ + upper snake case.
func envName(flagName string) string {
	return "BRIDGE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// listFlag is a repeatable flag; each value may also hold several items
// separated by commas (which is how the environment variable lists them).
// The first value given replaces the default.
type listFlag struct {
	items *[]string
	set   bool
}

// newListFlag is a listFlag setting *items, which starts as def.
func newListFlag(items *[]string, def []string) *listFlag {
	*items = slices.Clone(def)
	return &listFlag{items: items}
}

func (l *listFlag) String() string {
	if l == nil || l.items == nil {
		return ""
	}
	return strings.Join(*l.items, ",")
}

func (l *listFlag) Set(v string) error {
	if !l.set {
		*l.items, l.set = nil, true
	}
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*l.items = append(*l.items, item)
		}
	}
	return nil
}

// choiceFlag is a string flag whose value is one of a few words.
type choiceFlag struct {
	value   *string
	choices []string
}

// newChoiceFlag is a choiceFlag setting *value, which starts as def.
func newChoiceFlag(value *string, def string, choices ...string) *choiceFlag {
	*value = def
	return &choiceFlag{value: value, choices: choices}
}

func (c *choiceFlag) String() string {
	if c == nil || c.value == nil {
		return ""
	}
	return *c.value
}

func (c *choiceFlag) Set(v string) error {
	if !slices.Contains(c.choices, v) {
		return fmt.Errorf("one of %s", strings.Join(c.choices, ", "))
	}
	*c.value = v
	return nil
}

// levelFlag is a log level: a name slog knows (debug, info, warn, error, in
// any case, with an optional offset such as warn+2).
type levelFlag struct{ value *string }

// newLevelFlag is a levelFlag setting *value, which starts as def.
func newLevelFlag(value *string, def string) *levelFlag {
	*value = def
	return &levelFlag{value: value}
}

func (l *levelFlag) String() string {
	if l == nil || l.value == nil {
		return ""
	}
	return *l.value
}

func (l *levelFlag) Set(v string) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(v)); err != nil {
		return errors.New("one of debug, info, warn, error")
	}
	*l.value = v
	return nil
}
