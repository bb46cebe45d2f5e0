package bridge

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Config is everything [Run] and [Serve] need. The zero value of each field
// means its default; [Config.Validate] applies the defaults and checks the rest.
type Config struct {
	// GRPCAddr is where [Run] listens for gRPC. Zero means ":50051".
	GRPCAddr string
	// HTTPAddr is where [Run] listens for HTTP (SSE, the page). Zero means ":8080".
	HTTPAddr string

	// HistorySize is how many events each stream keeps for resume. Zero means 1000.
	HistorySize int
	// HistoryAge is how long an event stays in history. Zero means one hour.
	HistoryAge time.Duration
	// ReplayLimit is the most events one resume replays; past it the client
	// gets a bridge.reset frame instead. Zero means 10,000.
	ReplayLimit int

	// Heartbeat is the interval of `: ping` comments on every connection.
	// Zero means 15s.
	Heartbeat time.Duration
	// WriteTimeout bounds every write to a browser: a peer that stops reading
	// for this long is dropped. Zero means 10s.
	WriteTimeout time.Duration
	// QueueSize is how many frames may wait for one connection; a connection
	// whose queue is full is evicted. Zero means 256.
	QueueSize int
	// MaxStreamsPerConn is how many streams one SSE connection may subscribe
	// to. Zero means 64.
	MaxStreamsPerConn int
	// CORSOrigins lists the origins allowed to subscribe from another site
	// ("*" allows any). Empty means same-origin only.
	CORSOrigins []string

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

	// MaxPayload is the largest event data (the JSON, in bytes) accepted.
	// Zero means 64 KiB.
	MaxPayload int

	// DrainDelay is how long the bridge keeps serving, reporting not ready,
	// after it is told to stop and before it stops accepting: time for load
	// balancers to notice. Zero means none.
	DrainDelay time.Duration
	// ShutdownTimeout bounds gRPC's graceful stop and the HTTP server's
	// shutdown. Zero means 10s.
	ShutdownTimeout time.Duration

	// Logger receives the bridge's logs. Nil means discard.
	Logger *slog.Logger
}

// Validate applies defaults to zero fields and reports the first invalid one.
func (c *Config) Validate() error {
	setDefault(&c.GRPCAddr, ":50051")
	setDefault(&c.HTTPAddr, ":8080")
	setDefault(&c.HistorySize, defaultHistorySize)
	setDefault(&c.HistoryAge, defaultHistoryAge)
	setDefault(&c.ReplayLimit, 10_000)
	setDefault(&c.Heartbeat, 15*time.Second)
	setDefault(&c.WriteTimeout, 10*time.Second)
	setDefault(&c.QueueSize, 256)
	setDefault(&c.MaxStreamsPerConn, 64)
	setDefault(&c.MaxPayload, 64<<10)
	setDefault(&c.ShutdownTimeout, 10*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}

	var errs []error
	positive := func(name string, v int64) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %d", name, v))
		}
	}
	positive("history size", int64(c.HistorySize))
	positive("history age", int64(c.HistoryAge))
	positive("replay limit", int64(c.ReplayLimit))
	positive("heartbeat", int64(c.Heartbeat))
	positive("write timeout", int64(c.WriteTimeout))
	positive("queue size", int64(c.QueueSize))
	positive("max streams per connection", int64(c.MaxStreamsPerConn))
	positive("max payload", int64(c.MaxPayload))
	positive("shutdown timeout", int64(c.ShutdownTimeout))
	positive("drain delay", int64(c.DrainDelay))
	for _, o := range c.CORSOrigins {
		if o != "*" && !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
			errs = append(errs, fmt.Errorf("CORS origin %q must be \"*\" or start with http:// or https://", o))
		}
		if strings.HasSuffix(o, "/") {
			errs = append(errs, fmt.Errorf("CORS origin %q must not end with a slash: browsers send origins without a path", o))
		}
	}
	return errors.Join(errs...)
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}
