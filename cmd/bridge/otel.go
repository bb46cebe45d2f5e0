package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"runtime/debug"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// defaultServiceName is the service.name of the bridge's spans unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES name another.
const defaultServiceName = "sse-bridge"

// tracingShutdownTimeout bounds the flush of the spans still buffered when
// the bridge stopped.
const tracingShutdownTimeout = 5 * time.Second

// startTracing builds the tracer provider the standard OpenTelemetry
// environment asks for, and returns it with the function that flushes and
// shuts it down (call it after the bridge stopped). Tracing is on when
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT is set,
// unless OTEL_SDK_DISABLED is true or OTEL_TRACES_EXPORTER is none; off,
// tp is nil. Spans go to that endpoint over OTLP/gRPC, in batches.
//
// lookupEnv decides whether tracing is on (and what the log line says);
// everything else (headers, TLS, insecure, timeout, compression, the
// sampler, the batch processor, OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES) the OpenTelemetry SDK reads from the process's
// environment, as it documents: main passes os.LookupEnv, so both are the
// same. An error is a setting the bridge cannot honour (a protocol other
// than grpc, an exporter other than otlp).
func startTracing(ctx context.Context, lookupEnv func(string) (string, bool), log *slog.Logger) (tp trace.TracerProvider, shutdown func(), err error) {
	env := func(name string) string {
		v, _ := lookupEnv(name)
		return strings.TrimSpace(v)
	}
	off := func(why string) (trace.TracerProvider, func(), error) {
		log.Info("tracing off: " + why)
		return nil, func() {}, nil
	}
	if strings.EqualFold(env("OTEL_SDK_DISABLED"), "true") {
		return off("OTEL_SDK_DISABLED is true")
	}
	for e := range strings.SplitSeq(env("OTEL_TRACES_EXPORTER"), ",") {
		switch e = strings.TrimSpace(e); e {
		case "", "otlp":
		case "none":
			return off("OTEL_TRACES_EXPORTER is none")
		default:
			return nil, nil, &exitError{code: exitCommandLine, err: fmt.Errorf("OTEL_TRACES_EXPORTER=%q: the bridge exports traces with otlp only (or none)", env("OTEL_TRACES_EXPORTER"))}
		}
	}
	endpoint := env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" {
		endpoint = env("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if endpoint == "" {
		return off("set OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) to export spans over OTLP/gRPC")
	}
	if _, err := url.Parse(endpoint); err != nil {
		// The SDK would ignore it, and export to localhost.
		return nil, nil, &exitError{code: exitCommandLine, err: fmt.Errorf("OTLP endpoint %q: %w: write it as http://HOST:PORT (plaintext) or https://HOST:PORT (TLS)", endpoint, err)}
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := env(name); p != "" {
			if p != "grpc" {
				return nil, nil, &exitError{code: exitCommandLine, err: fmt.Errorf("%s=%q: the bridge exports traces over OTLP/gRPC only: set it to grpc (the port is usually 4317, not 4318)", name, p)}
			}
			break // the traces variable wins
		}
	}

	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	// The default service name first, the environment's over it: the SDK
	// puts the environment's resource under the one it is given.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithAttributes(semconv.ServiceName(defaultServiceName), semconv.ServiceVersion(serviceVersion())),
		resource.WithFromEnv())
	if err != nil {
		// A partial resource (a malformed OTEL_RESOURCE_ATTRIBUTES) is
		// still usable: say so and go on.
		log.Warn("tracing: resource", "err", err)
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing", "err", err)
	}))
	provider := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	service, _ := res.Set().Value(semconv.ServiceNameKey)
	log.Info("tracing on: exporting spans over OTLP/gRPC", "endpoint", redactEndpoint(endpoint),
		"service", service.AsString(), "sampler", sampler(env))
	return provider, func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tracingShutdownTimeout)
		defer cancel()
		if err := provider.Shutdown(ctx); err != nil {
			log.Warn("tracing: flush the last spans", "err", err)
		}
	}, nil
}

// sampler describes the sampler the SDK takes from the environment.
func sampler(env func(string) string) string {
	s := env("OTEL_TRACES_SAMPLER")
	if s == "" {
		return "parentbased_always_on"
	}
	if arg := env("OTEL_TRACES_SAMPLER_ARG"); arg != "" {
		s += " " + arg
	}
	return s
}

// serviceVersion is the bridge's module version, for service.version.
func serviceVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "(devel)"
}

// redactEndpoint is endpoint for the log, without the user info a URL may
// carry.
func redactEndpoint(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || u.User == nil {
		return endpoint
	}
	u.User = url.User("redacted")
	return u.String()
}
