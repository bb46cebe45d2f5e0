package main

import (
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sse-bridge/bridge/internal/bridge"
)

func TestParseFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, got bridge.Config)
		wantErr string
	}{
		{
			name: "defaults",
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				if got.GRPCAddr != ":50051" || got.HTTPAddr != ":8080" || got.HistorySize != 1000 || got.Heartbeat != 15*time.Second || got.WriteTimeout != 10*time.Second || got.QueueSize != 64 || got.MaxPayload != 64<<10 {
					t.Errorf("defaults = %+v", got)
				}
			},
		},
		{
			name: "environment fallback",
			env:  map[string]string{"BRIDGE_HTTP_ADDR": "127.0.0.1:9000", "BRIDGE_HISTORY_AGE": "5m", "BRIDGE_CORS_ORIGINS": "https://a.example, https://b.example"},
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				if got.HTTPAddr != "127.0.0.1:9000" || got.HistoryAge != 5*time.Minute || strings.Join(got.CORSOrigins, " ") != "https://a.example https://b.example" {
					t.Errorf("from environment = %+v", got)
				}
			},
		},
		{
			name: "subscriber auth from flags and environment",
			args: []string{"--jwt-key", "key.pem", "--public-streams", "public.>", "--public-streams", "status", "--auth-query-token"},
			env:  map[string]string{"BRIDGE_JWT_ISSUER": "https://auth.example", "BRIDGE_JWT_LEEWAY": "30s", "BRIDGE_CORS_ORIGINS": "https://app.example"},
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				if got.JWTKey != "key.pem" || got.JWTIssuer != "https://auth.example" || got.JWTLeeway != 30*time.Second || !got.AuthQueryToken ||
					strings.Join(got.PublicStreams, " ") != "public.> status" || got.AuthCookie != "__Secure-bridge_token" || got.JWTClaim != "bridge" {
					t.Errorf("auth config = %+v", got)
				}
			},
		},
		{
			name: "JWKS URL from the environment",
			env:  map[string]string{"BRIDGE_JWKS": "https://idp.example/.well-known/jwks.json", "BRIDGE_JWT_AUDIENCE": "bridge", "BRIDGE_JWKS_CA": "ca.pem"},
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				if got.JWKS != "https://idp.example/.well-known/jwks.json" || got.JWKSCA != "ca.pem" || got.JWTAudience != "bridge" || !got.AuthEnabled() {
					t.Errorf("JWKS config = %+v", got)
				}
			},
		},
		{
			name: "history memory",
			args: []string{"--history-memory", "1073741824"},
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				if got.HistoryMemory != 1<<30 {
					t.Errorf("HistoryMemory = %d, want 1 GiB", got.HistoryMemory)
				}
			},
		},
		{
			name: "history memory from the environment, and its default",
			env:  map[string]string{"BRIDGE_HISTORY_MEMORY": "2097152"},
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				if got.HistoryMemory != 2<<20 || bridge.DefaultConfig().HistoryMemory != 256<<20 {
					t.Errorf("HistoryMemory = %d (default %d), want 2 MiB (default 256 MiB)", got.HistoryMemory, bridge.DefaultConfig().HistoryMemory)
				}
			},
		},
		{
			name:    "history memory under the floor",
			args:    []string{"--history-memory", "65536"},
			wantErr: "history memory (--history-memory) must be at least 1048576 bytes (1 MiB), got 65536",
		},
		{
			name:    "history memory with a unit",
			args:    []string{"--history-memory", "256MiB"},
			wantErr: "a number of bytes such as 65536",
		},
		{
			name:    "JWKS without audience",
			args:    []string{"--jwks", "keys.json"},
			wantErr: "--jwt-audience",
		},
		{
			name:    "JWKS and JWT key",
			args:    []string{"--jwks", "keys.json", "--jwt-key", "key.pem", "--jwt-audience", "bridge"},
			wantErr: "not both",
		},
		{
			name:    "star origin with auth",
			args:    []string{"--jwt-key", "key.pem", "--cors-origins", "*"},
			wantErr: `CORS origin "*" cannot be used with subscriber auth`,
		},
		{
			name: "flag wins over environment",
			args: []string{"--queue-size", "16"},
			env:  map[string]string{"BRIDGE_QUEUE_SIZE": "99"},
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				if got.QueueSize != 16 {
					t.Errorf("QueueSize = %d, want 16", got.QueueSize)
				}
			},
		},
		{
			name: "eager streams from the environment",
			env:  map[string]string{"BRIDGE_EAGER_STREAMS": "true"},
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				if !got.EagerStreams {
					t.Error("EagerStreams = false, want true")
				}
			},
		},
		{
			name: "memory engine by default",
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				if got.Engine != "memory" || got.NATS.Stream != "BRIDGE" || got.NATS.SubjectPrefix != "bridge" || got.NATS.Storage != "file" || got.NATS.Replicas != 1 || strings.Join(got.NATS.URLs, ",") != "nats://127.0.0.1:4222" {
					t.Errorf("engine defaults = %q %+v", got.Engine, got.NATS)
				}
			},
		},
		{
			name: "nats engine from flags",
			args: []string{"--engine", "nats", "--nats-url", "nats://a:4222, nats://b:4222", "--nats-user", "bridge", "--nats-password", "pw",
				"--nats-stream", "EVENTS", "--nats-subject-prefix", "acme.sse", "--nats-replicas", "3", "--nats-storage", "memory",
				"--nats-tls-ca", "ca.pem", "--nats-tls-cert", "c.pem", "--nats-tls-key", "k.pem", "--nats-connect-timeout", "2s", "--nats-max-pending", "64",
				"--history-size", "50", "--history-age", "10m"},
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				n := got.NATS
				if got.Engine != "nats" || strings.Join(n.URLs, " ") != "nats://a:4222 nats://b:4222" || n.User != "bridge" || n.Password != "pw" ||
					n.Stream != "EVENTS" || n.SubjectPrefix != "acme.sse" || n.Replicas != 3 || n.Storage != "memory" ||
					n.TLSCA != "ca.pem" || n.TLSCert != "c.pem" || n.TLSKey != "k.pem" || n.ConnectTimeout != 2*time.Second || n.MaxPending != 64 ||
					got.HistorySize != 50 || got.HistoryAge != 10*time.Minute {
					t.Errorf("nats config = %q %+v", got.Engine, n)
				}
			},
		},
		{
			name: "nats engine from environment",
			env:  map[string]string{"BRIDGE_ENGINE": "nats", "BRIDGE_NATS_URL": "nats://n1:4222,nats://n2:4222", "BRIDGE_NATS_TOKEN": "s3cret", "BRIDGE_NATS_STORAGE": "memory"},
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				if got.Engine != "nats" || len(got.NATS.URLs) != 2 || got.NATS.Token != "s3cret" || got.NATS.Storage != "memory" {
					t.Errorf("nats config from environment = %q %+v", got.Engine, got.NATS)
				}
			},
		},
		{
			name: "limit defaults",
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				if got.MaxConnections != 10000 || got.MaxConnectionsPerIP != 0 || got.MaxConnectionsPerSubject != 0 || got.ConnectRate != 1000 ||
					got.ConnectRatePerIP != 0 || got.MaxStreamsPerConnection != 32 || got.MaxStreamName != 128 || got.MaxReplay != 1000 ||
					got.MaxHeaderBytes != 32<<10 || got.ReadHeaderTimeout != 10*time.Second || got.Retry != 2*time.Second || len(got.TrustedProxies) != 0 {
					t.Errorf("limit defaults = %+v", got)
				}
			},
		},
		{
			name: "limits from flags and environment",
			args: []string{"--max-connections", "500", "--max-connections-per-ip", "20", "--connect-rate", "50.5", "--trusted-proxies", "10.0.0.0/8", "--trusted-proxies", "fd00::/8,192.0.2.1",
				"--max-streams-per-connection", "4", "--max-stream-name", "64", "--max-replay", "200", "--retry", "3s"},
			env: map[string]string{"BRIDGE_CONNECT_RATE_PER_IP": "2", "BRIDGE_MAX_HEADER_BYTES": "8192", "BRIDGE_READ_HEADER_TIMEOUT": "5s", "BRIDGE_MAX_CONNECTIONS": "7"},
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				if got.MaxConnections != 500 || got.MaxConnectionsPerIP != 20 || got.ConnectRate != 50.5 || got.ConnectRatePerIP != 2 ||
					strings.Join(got.TrustedProxies, " ") != "10.0.0.0/8 fd00::/8 192.0.2.1" || got.MaxStreamsPerConnection != 4 || got.MaxStreamName != 64 ||
					got.MaxReplay != 200 || got.Retry != 3*time.Second || got.MaxHeaderBytes != 8192 || got.ReadHeaderTimeout != 5*time.Second {
					t.Errorf("limits = %+v", got)
				}
			},
		},
		{
			name: "limits turned off",
			args: []string{"--max-connections", "-1", "--connect-rate", "-1", "--max-replay", "-1"},
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				if got.MaxConnections != -1 || got.ConnectRate != -1 || got.MaxReplay != -1 {
					t.Errorf("limits turned off = %+v", got)
				}
			},
		},
		{
			name: "deprecated names still work",
			args: []string{"--max-streams", "5"},
			env:  map[string]string{"BRIDGE_REPLAY_LIMIT": "300"},
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				if got.MaxStreamsPerConnection != 5 || got.MaxReplay != 300 {
					t.Errorf("from deprecated names: streams %d, replay %d; want 5, 300", got.MaxStreamsPerConnection, got.MaxReplay)
				}
			},
		},
		{
			name: "new name wins over the deprecated one",
			args: []string{"--max-replay", "40"},
			env:  map[string]string{"BRIDGE_REPLAY_LIMIT": "300", "BRIDGE_MAX_STREAMS": "9", "BRIDGE_MAX_STREAMS_PER_CONNECTION": "6"},
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				if got.MaxReplay != 40 || got.MaxStreamsPerConnection != 6 {
					t.Errorf("replay %d, streams %d; want 40 (flag over any variable), 6 (new variable over old)", got.MaxReplay, got.MaxStreamsPerConnection)
				}
			},
		},
		{name: "per subject without auth", args: []string{"--max-connections-per-subject", "3"}, wantErr: "subscriber auth is off"},
		{name: "bad trusted proxy", args: []string{"--trusted-proxies", "lb.example"}, wantErr: "trusted proxy"},
		{name: "stream name limit too high", args: []string{"--max-stream-name", "5000"}, wantErr: "max stream name"},
		{
			name: "TLS from flags and environment",
			args: []string{"--tls-cert", "http.pem", "--tls-key", "http-key.pem", "--grpc-tls-cert", "grpc.pem", "--grpc-tls-key", "grpc-key.pem"},
			env:  map[string]string{"BRIDGE_GRPC_CLIENT_CA": "clients.pem", "BRIDGE_TLS_RELOAD_INTERVAL": "30s"},
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				if got.TLSCert != "http.pem" || got.TLSKey != "http-key.pem" || got.GRPCTLSCert != "grpc.pem" || got.GRPCTLSKey != "grpc-key.pem" ||
					got.GRPCClientCA != "clients.pem" || got.TLSReloadInterval != 30*time.Second {
					t.Errorf("TLS config = cert %q key %q, gRPC cert %q key %q CA %q, reload every %v",
						got.TLSCert, got.TLSKey, got.GRPCTLSCert, got.GRPCTLSKey, got.GRPCClientCA, got.TLSReloadInterval)
				}
			},
		},
		{
			name: "TLS reload every 5s by default",
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				if got.TLSReloadInterval != 5*time.Second || got.TLSCert != "" || got.GRPCTLSCert != "" {
					t.Errorf("TLS defaults: reload every %v, cert %q, gRPC cert %q", got.TLSReloadInterval, got.TLSCert, got.GRPCTLSCert)
				}
			},
		},
		{name: "TLS certificate without key", args: []string{"--tls-cert", "http.pem"}, wantErr: "--tls-key"},
		{name: "client CA without gRPC TLS", args: []string{"--grpc-client-ca", "clients.pem"}, wantErr: "--grpc-client-ca"},
		{name: "unknown engine", args: []string{"--engine", "redis"}, wantErr: "engine \"redis\" is unknown"},
		{name: "bad nats storage", args: []string{"--engine", "nats", "--nats-storage", "disk"}, wantErr: "NATS storage"},
		{name: "bad nats replicas", args: []string{"--engine", "nats", "--nats-replicas", "7"}, wantErr: "NATS replicas"},
		{name: "async persist on memory storage", args: []string{"--engine", "nats", "--nats-persist", "async", "--nats-storage", "memory"}, wantErr: "needs file storage"},
		{name: "bad nats max pending", args: []string{"--engine", "nats", "--nats-max-pending", "-1"}, wantErr: "NATS max pending must be 1 to"},
		{name: "bad subject prefix", args: []string{"--engine", "nats", "--nats-subject-prefix", "bridge.>"}, wantErr: "subject prefix"},
		{name: "password without user", args: []string{"--engine", "nats", "--nats-password", "pw"}, wantErr: "needs a NATS user"},
		{name: "two credentials", args: []string{"--engine", "nats", "--nats-token", "t", "--nats-creds", "x.creds"}, wantErr: "one NATS credential"},
		{name: "nats URL without the nats engine", args: []string{"--nats-url", "nats://n1:4222"}, wantErr: "--nats-url set (as a flag or a BRIDGE_NATS_* variable), but the engine is memory"},
		{name: "nats URL from the environment without the nats engine", env: map[string]string{"BRIDGE_NATS_URL": "nats://n1:4222", "BRIDGE_NATS_REPLICAS": "3"}, wantErr: "--nats-replicas, --nats-url set"},
		{name: "nats URL of another protocol", args: []string{"--engine", "nats", "--nats-url", "http://n1:4222"}, wantErr: "scheme http, which NATS does not speak"},
		{name: "bad environment value", env: map[string]string{"BRIDGE_HEARTBEAT": "often"}, wantErr: "BRIDGE_HEARTBEAT"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, wantErr: "--log-level"},
		{name: "bad log format", args: []string{"--log-format", "xml"}, wantErr: "--log-format"},
		{name: "bad origin", args: []string{"--cors-origins", "app.example"}, wantErr: "CORS origin"},
		{name: "negative size", args: []string{"--queue-size", "-1"}, wantErr: "queue size"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected argument"},
		{
			name: "nats settings with the nats engine",
			args: []string{"--engine", "nats", "--nats-url", "nats://n1:4222,tls://n2:4222, n3:4222"},
			check: func(t *testing.T, got bridge.Config) {
				t.Helper()
				if want := []string{"nats://n1:4222", "tls://n2:4222", "n3:4222"}; !slices.Equal(got.NATS.URLs, want) {
					t.Errorf("NATS URLs = %q, want %q", got.NATS.URLs, want)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			cfg, err := parseFlags(tc.args, lookup, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseFlags(%q) error = %v, want one naming %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags(%q) = %v", tc.args, err)
			}
			tc.check(t, cfg)
		})
	}
}

func TestDeprecatedFlagsWarn(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	env := map[string]string{"BRIDGE_REPLAY_LIMIT": "300"}
	if _, err := parseFlags([]string{"--max-streams", "5"}, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--max-streams is deprecated: use --max-streams-per-connection", "BRIDGE_REPLAY_LIMIT is deprecated: use BRIDGE_MAX_REPLAY"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("warnings %q, want %q", out.String(), want)
		}
	}
	if help := serveHelpText(); strings.Contains(help, "--max-streams ") || strings.Contains(help, "--replay-limit") {
		t.Errorf("help lists deprecated flags:\n%s", help)
	}
}

// serveHelpText is the --help of `bridge`.
func serveHelpText() string {
	var b strings.Builder
	serveHelp(&b)
	return b.String()
}

func TestHelpListsEnvironmentAndDefaults(t *testing.T) {
	t.Parallel()
	help := serveHelpText()
	for _, want := range []string{"--grpc-addr", "BRIDGE_GRPC_ADDR", "default :50051", "--write-timeout", "default 10s", "BRIDGE_CORS_ORIGINS", "--engine", "default memory", "--nats-url", "BRIDGE_NATS_URL", "default nats://127.0.0.1:4222", "--nats-stream", "default BRIDGE", "--nats-storage", "default file", "MaxMsgsPerSubject", "MaxAge",
		"--max-connections", "BRIDGE_MAX_CONNECTIONS", "default 10000", "--connect-rate", "--max-streams-per-connection", "default 32", "--max-replay", "--trusted-proxies", "--retry", "default 2s", "--history-age DURATION", "default 1h\n"} {
		if !strings.Contains(help, want) {
			t.Errorf("help does not mention %q:\n%s", want, help)
		}
	}
}

// TestDefaultsAreDefaultConfig: with no flag and no variable, the command
// line makes the configuration bridge.DefaultConfig describes: every flag's
// default comes from it.
func TestDefaultsAreDefaultConfig(t *testing.T) {
	t.Parallel()
	got, err := parseFlags(nil, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got.Logger = nil
	if want := bridge.DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("parseFlags() = %+v\nwant bridge.DefaultConfig() = %+v", got, want)
	}
}
