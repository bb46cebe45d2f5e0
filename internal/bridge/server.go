package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/reflect/protoreflect"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/payload"
	"github.com/sse-bridge/bridge/internal/tlsreload"
)

// Server is one bridge: its configuration and its event types. Create it
// with [New], then call [Server.Serve] or [Server.Run] once.
type Server struct {
	cfg   Config
	types *payload.Registry
	auth  *authenticator      // nil: subscriber auth off
	tls   *tlsreload.Reloader // nil: TLS off on both listeners
	pubs  *publishers         // nil: no publishers file
}

// New validates cfg (applying defaults) and loads its descriptor sets.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	types, err := payload.NewRegistry(cfg.DescriptorSets)
	if err != nil {
		return nil, err
	}
	auth, err := newAuthenticator(&cfg)
	if err != nil {
		return nil, err
	}
	tlsr, err := tlsreload.New(tlsreload.Files{
		HTTPCert: cfg.TLSCert, HTTPKey: cfg.TLSKey,
		GRPCCert: cfg.GRPCTLSCert, GRPCKey: cfg.GRPCTLSKey, GRPCClientCA: cfg.GRPCClientCA,
	}, cfg.Logger)
	if err != nil {
		return nil, err
	}
	pubs, err := loadPublishers(cfg.Publishers)
	if err != nil {
		return nil, err
	}
	if len(cfg.DescriptorSets) > 0 {
		cfg.Logger.Info("loaded descriptor sets", "sets", cfg.DescriptorSets, "types", types.Count(), "names", namesAttr(types.Names()))
	}
	return &Server{cfg: cfg, types: types, auth: auth, tls: tlsr, pubs: pubs}, nil
}

// ReloadTypes reads the descriptor sets again. On error the types loaded
// before stay in force; live connections are never affected. Safe to call at
// any time, from any goroutine.
func (s *Server) ReloadTypes() error {
	if len(s.cfg.DescriptorSets) == 0 {
		return nil // nothing to reload, and nothing to say
	}
	before := s.types.Names()
	if err := s.types.Reload(); err != nil {
		s.cfg.Logger.Error("reload descriptor sets: keeping the types loaded before", "err", err)
		return err
	}
	after := s.types.Names()
	added, removed := namesDiff(before, after)
	if len(added) == 0 && len(removed) == 0 {
		s.cfg.Logger.Info("reloaded descriptor sets: no type added or removed", "sets", s.cfg.DescriptorSets, "types", len(after))
		return nil
	}
	s.cfg.Logger.Info("reloaded descriptor sets", "sets", s.cfg.DescriptorSets, "types", len(after),
		"added", namesAttr(added), "removed", namesAttr(removed))
	return nil
}

// namesDiff returns the names of after not in before, and those of before
// not in after; both inputs sorted.
func namesDiff(before, after []protoreflect.FullName) (added, removed []protoreflect.FullName) {
	for _, n := range after {
		if _, found := slices.BinarySearch(before, n); !found {
			added = append(added, n)
		}
	}
	for _, n := range before {
		if _, found := slices.BinarySearch(after, n); !found {
			removed = append(removed, n)
		}
	}
	return added, removed
}

// grpcStreamWorkers is the number of goroutines that run gRPC calls (see
// grpc.NumStreamWorkers in start). Enough for the calls of a few dozen
// publishers in flight at once, a publish waiting on NATS included; past
// it calls get a goroutine of their own, as without workers. An idle one
// holds its stack, a few KiB.
const grpcStreamWorkers = 32

// maxLoggedNames bounds the type names one log line lists.
const maxLoggedNames = 20

// namesAttr lists names for a log line, at most maxLoggedNames of them and
// how many more.
func namesAttr(names []protoreflect.FullName) string {
	var b strings.Builder
	for i, n := range names {
		if i == maxLoggedNames {
			fmt.Fprintf(&b, " and %d more", len(names)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(n))
	}
	return b.String()
}

// Run listens on cfg.GRPCAddr and cfg.HTTPAddr and serves until ctx ends; see
// [Server.Serve].
func Run(ctx context.Context, cfg Config) error {
	s, err := New(cfg)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Serve is [New] then [Server.Serve].
func Serve(ctx context.Context, cfg Config, grpcLis, httpLis net.Listener) error {
	s, err := New(cfg)
	if err != nil {
		_ = grpcLis.Close()
		_ = httpLis.Close()
		return err
	}
	return s.Serve(ctx, grpcLis, httpLis)
}

// Run listens on the configured addresses and serves until ctx ends; see
// [Server.Serve].
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	grpcLis, err := lc.Listen(ctx, "tcp", s.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen for gRPC: %w", err)
	}
	httpLis, err := lc.Listen(ctx, "tcp", s.cfg.HTTPAddr)
	if err != nil {
		_ = grpcLis.Close()
		return fmt.Errorf("listen for HTTP: %w", err)
	}
	var adminLis net.Listener
	if s.cfg.AdminAddr != "" {
		if adminLis, err = lc.Listen(ctx, "tcp", s.cfg.AdminAddr); err != nil {
			_ = grpcLis.Close()
			_ = httpLis.Close()
			return fmt.Errorf("listen for the admin endpoints (--admin-addr): %w", err)
		}
	}
	return s.ServeListeners(ctx, Listeners{GRPC: grpcLis, HTTP: httpLis, Admin: adminLis})
}

// Listeners are the listeners [Server.ServeListeners] serves on.
type Listeners struct {
	GRPC, HTTP net.Listener
	// Admin, when not nil, serves /metrics, /healthz, /readyz and Go's
	// pprof, which the HTTP listener then does not serve (see
	// Config.AdminAddr).
	Admin net.Listener
}

func (l Listeners) close() {
	for _, x := range []net.Listener{l.GRPC, l.HTTP, l.Admin} {
		if x != nil {
			_ = x.Close()
		}
	}
}

// Serve runs the bridge on the given listeners until ctx ends, then shuts down
// in order and returns nil once every goroutine it started has ended. It
// returns an error when a listener fails; the listeners are closed either
// way. The configured listen addresses are not used.
//
// Shutdown order: health NOT_SERVING and Publish answers Unavailable; gRPC
// GracefulStop, forced after cfg.ShutdownTimeout; every SSE connection is
// sent a spread retry: and cancelled (browsers reconnect, not all at once);
// the HTTP server shuts down, and the streams on connections taken over from
// it (HTTP/1.1, see internal/h1stream) end, their writes cut at
// cfg.ShutdownTimeout at the latest; the dispatcher and heartbeat stop; the r3labs
// server closes when it has no subscriber left (closing it earlier leaks a
// goroutine per client); the engine is released last (the nats engine
// drains its NATS connection).
//
// With cfg.Engine "nats", Serve first connects to NATS and creates or
// updates the JetStream stream, and returns an error (closing the
// listeners) when it cannot. While it serves, the health status of
// bridge.v1.BridgeService follows the engine's readiness.
//
// With TLS configured, the HTTP listener serves HTTPS (HTTP/2 and HTTP/1.1)
// and the gRPC listener gRPC over TLS; while it serves, Serve checks the TLS
// files every cfg.TLSReloadInterval and loads those that changed (see
// [Server.ReloadTLS]).
func (s *Server) Serve(ctx context.Context, grpcLis, httpLis net.Listener) error {
	return s.ServeListeners(ctx, Listeners{GRPC: grpcLis, HTTP: httpLis})
}

// ServeListeners is [Server.Serve] with an admin listener too (when
// l.Admin is not nil); it closes every listener of l.
func (s *Server) ServeListeners(ctx context.Context, l Listeners) error {
	r, err := s.start(ctx, l)
	if err != nil {
		l.close()
		return err
	}
	serveErr := r.drain(ctx)
	r.shutdown(ctx)
	return serveErr
}

// running is one Serve's bridge: what start built and shutdown takes down,
// in order. Its goroutines belong to wg; shutdown waits for them.
type running struct {
	cfg    Config
	log    *slog.Logger
	hub    *hub
	events *sseHandler
	gs     *grpc.Server
	health *health.Server
	http   *http.Server
	admin  *http.Server // nil without an admin listener

	// closing makes Publish answer Unavailable; draining makes /readyz
	// report not ready.
	closing, draining atomic.Bool
	// stopping is closed with closing set: publish streams answer what
	// they stored and end (publish_stream.go).
	stopping chan struct{}
	publish  *publishService

	wg   sync.WaitGroup
	errc chan error // a listener's failure: one slot per listener, so no sender blocks (three)

	cancelBase  context.CancelFunc // ends every SSE request's context
	stopReads   context.CancelFunc // ends every gRPC Subscribe
	reads       *readService
	stopRun     context.CancelFunc // ends the dispatcher, heartbeat, TLS poll, readiness
	closeEngine func()
	stopJWKS    func()
}

// start builds the engine, the hub and both servers, and starts every
// goroutine of the running bridge. On error it has started nothing and the
// caller closes the listeners.
func (s *Server) start(ctx context.Context, l Listeners) (*running, error) {
	grpcLis, httpLis := l.GRPC, l.HTTP
	cfg := s.cfg
	log := cfg.Logger
	stopJWKS, err := s.startJWKS(ctx)
	if err != nil {
		return nil, err
	}
	engine, closeEngine, err := s.openEngine(ctx)
	if err != nil {
		stopJWKS()
		return nil, err
	}
	r := &running{cfg: cfg, log: log, errc: make(chan error, 3), closeEngine: closeEngine, stopJWKS: stopJWKS}
	h := newHub(engine, cfg.QueueSize, max(cfg.MaxReplay, 0), log)
	h.retry, h.connectRate, h.ce = cfg.Retry, cfg.ConnectRate, newCloudEventsAttrs(cfg, s.types)
	tr := newTracing(cfg.TracerProvider, cfg.Engine)
	h.tracer = tr.delivery()
	switch e := engine.(type) {
	case *NATSEngine:
		e.setGapHandler(func() { h.evictAll(evictEngineGap) })
	case *MemoryEngine:
		e.watch(h.watched) // keeps the entries of quiet streams with subscribers
	}
	r.hub = h
	pr := h.presence
	pr.interval, pr.timeout, pr.eventEvery = cfg.PresenceInterval, cfg.PresenceTimeout, cfg.PresenceEventInterval
	pr.maxEntries, pr.events = cfg.PresenceMaxEntries, grantSet(cfg.PresenceEvents)

	m := newMetrics(h, engine)
	gauth := s.grpcAuth(m)
	r.gs = grpc.NewServer(
		s.tls.GRPCServerOption(), // TLS when configured, else plaintext
		// MaxPayload and room for the rest of the request, or, when
		// larger, --max-batch-bytes (a PublishBatch carries many events):
		// an event over MaxPayload within it gets Publish's
		// InvalidArgument, which says what to do; a request over it is
		// refused unread (ResourceExhausted).
		grpc.MaxRecvMsgSize(max(maxGRPCMessage(cfg.MaxPayload), cfg.MaxBatchBytes)),
		// Each Subscribe takes a place of the connection limits, which it
		// gives back when its connection ends; a reader that stopped
		// reading keeps its HTTP/2 stream (and up to 64 KiB queued for it)
		// until it reads or goes. This bounds those per connection.
		grpc.MaxConcurrentStreams(uint32(min(cfg.MaxGRPCStreams, math.MaxUint32))), //nolint:gosec // bounded just before
		// A request that does not decode gets INVALID_ARGUMENT, not
		// grpc-go's INTERNAL: the codec marks it, the interceptors after
		// metrics answer it (codec.go). Before auth, as a decode failure
		// always was: auth reads the request. A Publish refused so counts
		// as an invalid publish, as the handler counts its own refusals.
		grpc.ForceServerCodecV2(newRequestCodec()),
		// Calls run on long-lived workers instead of a new goroutine each:
		// a fresh goroutine's stack grows (runtime.morestack, copying) to
		// what a publish needs on every call, about a tenth of Publish's
		// CPU under load. When every worker is busy grpc-go starts a
		// goroutine as before; a publish stream holds its worker while
		// it lasts. Workers end with the server.
		grpc.NumStreamWorkers(grpcStreamWorkers),
		// Metrics first, so refused calls are counted by their code too.
		// Tracing (when on) before all: its span covers refused calls too.
		grpc.ChainUnaryInterceptor(append(tr.unaryInterceptors(), m.unaryInterceptor, rejectUndecodable(gauth.unary, func(method string) {
			if method == bridgev1.BridgeService_Publish_FullMethodName {
				m.countPublish(publishInvalid)
			}
		}))...),
		grpc.ChainStreamInterceptor(rejectUndecodableStream, gauth.stream),
	)
	r.events = newSSEHandler(&cfg, h, s.auth, m)
	var readStop context.Context
	readStop, r.stopReads = context.WithCancel(context.WithoutCancel(ctx))
	reads := &readService{
		hub: h, auth: s.auth, pubs: s.pubs, limits: r.events.limits,
		maxStreams: cfg.MaxStreamsPerConnection, maxName: cfg.MaxStreamName,
		writeTimeout: cfg.WriteTimeout,
		stop:         readStop, metrics: m, log: log,
	}
	r.reads = reads
	r.stopping = make(chan struct{})
	r.publish = &publishService{
		engine:     engine,
		enc:        payload.NewEncoder(s.types, cfg.JSONProtoNames, cfg.JSONEmitDefaults),
		maxPayload: cfg.MaxPayload,
		maxName:    cfg.MaxStreamName,
		log:        log,
		closing:    &r.closing,
		metrics:    m,
		tracing:    tr,
		presence:   h.presence,
		auth:       gauth,
		maxBatch:   cfg.MaxBatch,
		dedupe:     cfg.DedupeWindow >= 0,
		streams:    publishStreams{max: cfg.MaxPublishStreams, inflight: cfg.MaxStreamInflight, stopping: r.stopping},
	}
	bridgev1.RegisterBridgeServiceServer(r.gs, bridgeService{r.publish, reads})
	r.health = health.NewServer()
	r.health.SetServingStatus(bridgev1.BridgeService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(r.gs, r.health)
	// Reflection serves the compiled-in files and the loaded descriptor sets,
	// so grpcurl can build events of any known type.
	reflectOpts := reflection.ServerOptions{Services: r.gs, DescriptorResolver: s.types, ExtensionResolver: s.types}
	reflectionv1.RegisterServerReflectionServer(r.gs, reflection.NewServerV1(reflectOpts))
	reflectionv1alpha.RegisterServerReflectionServer(r.gs, reflection.NewServer(reflectOpts))

	mux := http.NewServeMux()
	mux.Handle("/events", r.events)
	mux.Handle("/history", &historyHandler{rs: reads, events: r.events})
	registerPage(mux)
	s.registerTypes(mux, &cfg, m, gauth)
	// Presence: on the public listener for publisher tokens only; open on
	// the admin listener, which only operators reach.
	mux.Handle("GET /presence", &presenceHandler{presence: h.presence, maxName: cfg.MaxStreamName, auth: gauth})
	adminMux := mux // without an admin listener, the public one serves all
	if l.Admin != nil {
		adminMux = http.NewServeMux()
		registerPprof(adminMux) // only ever on the admin listener
		adminMux.Handle("GET /presence", &presenceHandler{presence: h.presence, maxName: cfg.MaxStreamName})
	}
	adminMux.Handle("GET /metrics", m.handler())
	adminMux.Handle("GET /healthz", healthzHandler())
	adminMux.Handle("GET /readyz", readyzHandler(&r.draining, engine))
	var baseCtx context.Context
	baseCtx, r.cancelBase = context.WithCancel(context.WithoutCancel(ctx))
	r.http = &http.Server{
		Handler:           nosniff(mux),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		// No WriteTimeout: it would cut every stream at that age. Each write
		// has its own deadline instead (deadlineWriter).
		BaseContext: func(net.Listener) context.Context { return baseCtx },
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	s.tls.ConfigureHTTP(r.http, cfg.WriteTimeout)
	if l.Admin != nil {
		r.admin = &http.Server{
			Handler:           nosniff(adminMux),
			ReadHeaderTimeout: cfg.ReadHeaderTimeout,
			MaxHeaderBytes:    cfg.MaxHeaderBytes,
			// Plain HTTP, no write timeout: a pprof profile streams for its
			// duration. Keep the admin address off the public network.
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
	}

	var runCtx context.Context
	runCtx, r.stopRun = context.WithCancel(context.WithoutCancel(ctx))
	r.wg.Go(func() { _ = engine.Run(runCtx, h.deliver) })
	r.wg.Go(func() { h.heartbeat(runCtx, cfg.Heartbeat) })
	r.wg.Go(func() { s.tls.Watch(runCtx, cfg.TLSReloadInterval) })
	if e, ok := engine.(*NATSEngine); ok {
		// Ends with runCtx, saying goodbye, before the engine closes.
		r.wg.Go(func() { pr.run(runCtx, e.presenceLink()) })
	}
	if len(cfg.PresenceEvents) > 0 {
		r.wg.Go(func() { pr.runEvents(runCtx, engine.PublishBatch) })
	}
	if me, ok := engine.(*MemoryEngine); ok && cfg.TuneMemoryLimit {
		r.wg.Go(func() { tuneMemoryLimit(runCtx, func() int64 { return me.HistoryStats().Bytes }) })
	}
	if rd, ok := engine.(readiness); ok {
		r.wg.Go(func() { reportReadiness(runCtx, rd, r.health, log) })
	}
	r.wg.Go(func() {
		if err := r.gs.Serve(grpcLis); err != nil {
			r.errc <- fmt.Errorf("serve gRPC: %w", err)
		}
	})
	r.wg.Go(func() {
		if err := tlsreload.Serve(r.http, httpLis); !errors.Is(err, http.ErrServerClosed) {
			r.errc <- fmt.Errorf("serve HTTP: %w", err)
		}
	})
	if r.admin != nil {
		r.wg.Go(func() {
			if err := r.admin.Serve(l.Admin); !errors.Is(err, http.ErrServerClosed) {
				r.errc <- fmt.Errorf("serve the admin endpoints: %w", err)
			}
		})
	}
	if s.auth == nil {
		log.Warn("subscriber auth is off: any client can read any stream; set --jwt-key or --jwks to require tokens")
	} else if s.auth.keys != nil {
		log.Info("subscriber auth on", "jwks", s.auth.keys.source, "keys", s.auth.keys.count(), "public_streams", cfg.PublicStreams)
	} else {
		log.Info("subscriber auth on", "alg", s.auth.alg, "public_streams", cfg.PublicStreams)
	}
	gauth.logMode()
	admin := "none (/metrics, /healthz, /readyz on the HTTP listener)"
	if r.admin != nil {
		admin = l.Admin.Addr().String()
	}
	subscriberAuth := "off"
	switch {
	case s.auth != nil && s.auth.keys != nil:
		subscriberAuth = "JWT, key set " + s.auth.keys.source
	case s.auth != nil:
		subscriberAuth = "JWT, " + s.auth.alg
	}
	log.Info("bridge serving", "version", buildVersion(),
		"grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String(), "admin", admin,
		"tls_http", cfg.TLSCert != "", "tls_grpc", cfg.GRPCTLSCert != "",
		"engine", cfg.Engine, "history_size", cfg.HistorySize, "history_age", cfg.HistoryAge,
		"subscriber_auth", subscriberAuth, "publisher_auth", gauth.mode(),
		"max_connections", cfg.MaxConnections, "connect_rate", cfg.ConnectRate,
		"max_streams_per_connection", cfg.MaxStreamsPerConnection, "max_replay", cfg.MaxReplay,
		"queue_size", cfg.QueueSize, "max_payload", cfg.MaxPayload, "heartbeat", cfg.Heartbeat,
		"tracing", tr != nil)
	if r.admin == nil {
		log.Info("/metrics, /healthz and /readyz are on the public HTTP listener: set --admin-addr (such as 127.0.0.1:9090) to serve them, and pprof, on a listener of their own")
	}
	return r, nil
}

// drain serves until ctx ends or a listener fails, then reports not ready
// (HTTP and gRPC health) and, unless a listener failed, keeps serving for
// cfg.DrainDelay so load balancers move traffic elsewhere. It returns the
// listener's error, if one failed.
func (r *running) drain(ctx context.Context) error {
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-r.errc:
	}
	r.draining.Store(true)
	r.health.Shutdown()
	if r.cfg.DrainDelay > 0 && serveErr == nil {
		r.log.Info("bridge draining: not ready, still serving", "for", r.cfg.DrainDelay)
		t := time.NewTimer(r.cfg.DrainDelay)
		select {
		case <-t.C:
		case serveErr = <-r.errc:
			t.Stop()
		}
	}
	return serveErr
}

// shutdown stops the running bridge in the order [Server.Serve] documents
// and returns once every goroutine start started has ended.
func (r *running) shutdown(ctx context.Context) {
	cfg, log := r.cfg, r.log
	log.Info("bridge shutting down")
	began := time.Now()
	r.closing.Store(true)
	// Subscribe and PublishStream calls end first: the graceful stop
	// waits for them.
	r.stopReads()
	close(r.stopping)
	stopped := make(chan struct{})
	go func() { // ends when GracefulStop or the forced Stop below returns
		r.gs.GracefulStop()
		close(stopped)
	}()
	force := time.NewTimer(cfg.ShutdownTimeout)
	select {
	case <-stopped:
	case <-force.C:
		log.Warn("gRPC graceful stop timed out: forcing")
		r.gs.Stop()
		<-stopped
	}
	force.Stop()
	r.publish.streams.wait() // the streams' readers, which end with their streams
	// Every connection is closed now, so no Send blocks: Subscribe's
	// senders end at once.
	r.reads.senders.Wait()

	closed := r.hub.close()
	r.cancelBase()
	shutCtx, cancelShut := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancelShut()
	if err := r.http.Shutdown(shutCtx); err != nil {
		log.Warn("HTTP shutdown timed out: closing connections", "err", err)
		_ = r.http.Close()
	}
	if r.admin != nil {
		// Last of the listeners: readiness stays visible while the rest stops.
		if err := r.admin.Shutdown(shutCtx); err != nil {
			_ = r.admin.Close()
		}
	}
	// The streams on connections taken over from net/http (HTTP/1.1) were
	// cancelled with the hub; Shutdown does not wait for them.
	r.events.wait(shutCtx, func() {
		log.Warn("SSE streams still writing at the shutdown timeout: cutting their writes")
		r.hub.cutWrites()
	})
	r.stopRun()
	r.wg.Wait()
	r.hub.lib.Close()
	r.closeEngine() // after every user of the engine stopped
	r.stopJWKS()
	log.Info("bridge stopped", "sse_connections_closed", closed, "took", time.Since(began).Round(time.Millisecond))
}

// bridgeService is the BridgeService the gRPC server serves: the
// publishing RPCs (publish.go) and the reading ones (subscribe.go,
// history.go).
type bridgeService struct {
	*publishService
	*readService
}

var _ bridgev1.BridgeServiceServer = bridgeService{}

// buildVersion is the bridge's module version and VCS revision, from the
// build information Go embeds: "(devel)" for a build from a checkout
// without VCS stamping.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}

// newCloudEventsAttrs returns the CloudEvents attributes of cfg: its source,
// and with --public-url the dataschema of the types the registry renders
// (looked up when a cloudevents frame is first built, so a type loaded by a
// reload gets one from then on).
func newCloudEventsAttrs(cfg Config, types *payload.Registry) *cloudEventsAttrs {
	a := &cloudEventsAttrs{source: cfg.CloudEventsSource}
	if cfg.PublicURL != "" {
		a.schemaBase = strings.TrimSuffix(cfg.PublicURL, "/") + "/types/"
		a.known = func(typ string) bool {
			_, err := types.FindMessageByName(protoreflect.FullName(typ))
			return err == nil
		}
	}
	return a
}

// openEngine builds the configured engine; the nats engine connects and sets
// up its JetStream stream here, so a bridge that cannot reach it fails to
// start. closeEngine releases the engine once nothing uses it any more.
func (s *Server) openEngine(ctx context.Context) (engine Engine, closeEngine func(), err error) {
	cfg := s.cfg
	if cfg.Engine != EngineNATS {
		return NewMemoryEngineConfig(MemoryConfig{
			HistorySize: cfg.HistorySize, HistoryAge: cfg.HistoryAge, HistoryMemory: cfg.HistoryMemory,
			DedupeWindow: cfg.DedupeWindow, DedupeKeys: cfg.DedupeKeys, dedupeClock: cfg.dedupeClock,
		}), func() {}, nil
	}
	// JetStream's duplicate window is --dedupe-window: the same keys, the
	// same window, on every node. With dedupe off the service drops keys,
	// and the stream keeps its default window, unused.
	natsCfg := cfg.NATS
	if cfg.DedupeWindow > 0 {
		natsCfg.DedupeWindow = cfg.DedupeWindow
	}
	n, err := NewNATSEngine(ctx, natsCfg, cfg.HistorySize, cfg.HistoryAge, cfg.MaxPayload, cfg.Logger)
	if err != nil {
		return nil, nil, fmt.Errorf("nats engine: %w", err)
	}
	return n, n.Close, nil
}

// readiness is implemented by engines that can be unable to serve for a
// while (the nats engine, while NATS is unreachable).
type readiness interface {
	// Ready returns nil when the engine can serve, else why not.
	Ready() error
	// ReadyChanged returns a channel closed at the next change of Ready.
	ReadyChanged() <-chan struct{}
}

// reportReadiness sets the health status of bridge.v1.BridgeService to
// NOT_SERVING while the engine is not ready and back to SERVING when it is,
// until ctx ends. The overall status ("") stays SERVING: the process is
// alive, and SSE connections stay open. After the health server's Shutdown
// (the start of shutdown) its updates are ignored.
func reportReadiness(ctx context.Context, r readiness, hs *health.Server, log *slog.Logger) {
	service := bridgev1.BridgeService_ServiceDesc.ServiceName
	ready := true // as Serve registered it
	for {
		changed := r.ReadyChanged()
		err := r.Ready()
		switch {
		case err != nil && ready:
			log.Warn("engine not ready: health NOT_SERVING", "service", service, "err", err)
			hs.SetServingStatus(service, healthpb.HealthCheckResponse_NOT_SERVING)
		case err == nil && !ready:
			log.Info("engine ready again: health SERVING", "service", service)
			hs.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
		}
		ready = err == nil
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// ReloadJWKS reads the key set file (--jwks FILE) again; tokens are then
// verified with its keys only. On error the keys loaded before stay in
// force. With a key set URL (fetched in the background) or no key set it
// does nothing. Safe to call at any time, from any goroutine.
func (s *Server) ReloadJWKS() error {
	if s.auth == nil || s.auth.keys == nil || s.auth.keys.remote {
		return nil
	}
	k := s.auth.keys
	if err := k.reload(); err != nil {
		s.cfg.Logger.Error("reload JWKS: keeping the keys loaded before", "err", err)
		return err
	}
	s.cfg.Logger.Info("reloaded JWKS", "file", k.source, "keys", k.count())
	return nil
}

// startJWKS fetches the key set URL, if one is configured, and keeps it
// refreshed until the returned stop is called: Serve calls it last, so the
// library's refresh goroutine ends with Serve.
func (s *Server) startJWKS(ctx context.Context) (stop func(), err error) {
	if s.auth == nil || s.auth.keys == nil {
		return func() {}, nil
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if err := s.auth.keys.start(ctx); err != nil {
		cancel()
		return nil, err
	}
	return func() {
		cancel()
		s.auth.keys.stop()
	}, nil
}

// grpcAuth builds the gRPC side's gatekeeper for one Serve.
func (s *Server) grpcAuth(m *metrics) *grpcAuth {
	a := &grpcAuth{pubs: s.pubs, insecure: s.cfg.GRPCInsecure, metrics: m, log: s.cfg.Logger}
	if s.cfg.PublisherJWT {
		a.jwt = s.auth
	}
	return a
}

// ReloadPublishers reads the publishers file (Config.Publishers) again. On
// error the list loaded before stays in force; the error is logged and
// returned. Unary calls already authorized are not affected; an open
// PublishStream, and a Subscribe authorized by an entry of the file, are
// checked again, and end when their entry or grant is gone. A publisher
// whose rate is unchanged keeps its bucket. It returns nil, doing nothing, when no
// file is configured. Safe to call at any time, from any goroutine.
func (s *Server) ReloadPublishers() error {
	if s.pubs == nil {
		return nil
	}
	set, err := s.pubs.reload()
	if err != nil {
		s.cfg.Logger.Error("reload publishers: keeping the list loaded before", "err", err)
		return err
	}
	s.cfg.Logger.Info("reloaded publishers", "file", s.pubs.file, "publishers", len(set.list))
	return nil
}

// ReloadTLS reads the TLS certificate, key and client CA files again and puts
// each that loads in force for new handshakes; open connections (and their
// SSE streams) keep the certificate they were made with. A file that does not
// load — unreadable, not PEM, a key that does not match its certificate —
// leaves the one loaded before in force, and the error names it. Each outcome
// is logged, without key material. It returns nil when TLS is off. Safe to
// call at any time, from any goroutine.
func (s *Server) ReloadTLS() error { return s.tls.Reload() }

// Reload is [Server.ReloadTypes], [Server.ReloadTLS],
// [Server.ReloadPublishers] and [Server.ReloadJWKS], what SIGHUP does; the
// error joins theirs.
func (s *Server) Reload() error {
	return errors.Join(s.ReloadTypes(), s.ReloadTLS(), s.ReloadPublishers(), s.ReloadJWKS())
}
