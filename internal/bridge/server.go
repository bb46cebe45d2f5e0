package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/reflect/protoregistry"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// Run listens on cfg.GRPCAddr and cfg.HTTPAddr and serves until ctx ends; see
// [Serve].
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	var lc net.ListenConfig
	grpcLis, err := lc.Listen(ctx, "tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen for gRPC: %w", err)
	}
	httpLis, err := lc.Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		_ = grpcLis.Close()
		return fmt.Errorf("listen for HTTP: %w", err)
	}
	return Serve(ctx, cfg, grpcLis, httpLis)
}

// Serve runs the bridge on the given listeners until ctx ends, then shuts down
// in order and returns nil once every goroutine it started has ended. It
// returns an error when cfg is invalid or a listener fails; the listeners are
// closed either way. cfg's listen addresses are not used.
//
// Shutdown order: health NOT_SERVING and Publish answers Unavailable; gRPC
// GracefulStop, forced after cfg.ShutdownTimeout; every SSE connection is
// cancelled (browsers reconnect); the HTTP server shuts down; the dispatcher
// and heartbeat stop; the r3labs server closes last, when it has no
// subscriber left (closing it earlier leaks a goroutine per client).
func Serve(ctx context.Context, cfg Config, grpcLis, httpLis net.Listener) error {
	if err := cfg.Validate(); err != nil {
		_ = grpcLis.Close()
		_ = httpLis.Close()
		return err
	}
	log := cfg.Logger
	engine := NewMemoryEngine(cfg.HistorySize, cfg.HistoryAge)
	h := newHub(engine, cfg.QueueSize, cfg.ReplayLimit, log)

	var closing atomic.Bool
	gs := grpc.NewServer(
		// Larger than MaxPayload, so an oversized event gets Publish's own
		// InvalidArgument (which says what to do) instead of a bare
		// ResourceExhausted from the transport.
		grpc.MaxRecvMsgSize(max(4<<20, 2*cfg.MaxPayload+64<<10)),
	)
	bridgev1.RegisterBridgeServiceServer(gs, &publishService{
		engine:     engine,
		types:      protoregistry.GlobalTypes,
		maxPayload: cfg.MaxPayload,
		log:        log,
		closing:    &closing,
	})
	healthSrv := health.NewServer()
	healthSrv.SetServingStatus(bridgev1.BridgeService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, healthSrv)
	reflection.Register(gs)

	mux := http.NewServeMux()
	mux.Handle("/events", &sseHandler{
		hub:          h,
		cors:         corsPolicy{origins: cfg.CORSOrigins},
		maxStreams:   cfg.MaxStreamsPerConn,
		writeTimeout: cfg.WriteTimeout,
		log:          log,
	})
	mux.Handle("/{$}", pageHandler())
	baseCtx, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	httpSrv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// No WriteTimeout: it would cut every stream at that age. Each write
		// has its own deadline instead (deadlineWriter).
		BaseContext: func(net.Listener) context.Context { return baseCtx },
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	var wg sync.WaitGroup
	errc := make(chan error, 2) // one per listener, so no sender ever blocks
	wg.Go(func() { _ = engine.Run(runCtx, h.deliver) })
	wg.Go(func() { h.heartbeat(runCtx, cfg.Heartbeat) })
	wg.Go(func() {
		if err := gs.Serve(grpcLis); err != nil {
			errc <- fmt.Errorf("serve gRPC: %w", err)
		}
	})
	wg.Go(func() {
		if err := httpSrv.Serve(httpLis); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve HTTP: %w", err)
		}
	})
	log.Info("bridge serving", "grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	log.Info("bridge shutting down")

	closing.Store(true)
	healthSrv.Shutdown()
	stopped := make(chan struct{})
	go func() { // ends when GracefulStop or the forced Stop below returns
		gs.GracefulStop()
		close(stopped)
	}()
	force := time.NewTimer(cfg.ShutdownTimeout)
	select {
	case <-stopped:
	case <-force.C:
		log.Warn("gRPC graceful stop timed out: forcing")
		gs.Stop()
		<-stopped
	}
	force.Stop()

	h.close()
	cancelBase()
	shutCtx, cancelShut := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	if err := httpSrv.Shutdown(shutCtx); err != nil {
		log.Warn("HTTP shutdown timed out: closing connections", "err", err)
		_ = httpSrv.Close()
	}
	cancelShut()
	stopRun()
	wg.Wait()
	h.lib.Close()
	log.Info("bridge stopped")
	return serveErr
}
