package bridge

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Publish results: the values of the result label of
// bridge_events_published_total.
const (
	publishOK          = "ok"
	publishInvalid     = "invalid"
	publishUnavailable = "unavailable"
	publishError       = "error"
	// publishDuplicate: the event's idempotency_key named one already
	// stored; nothing was stored.
	publishDuplicate = "duplicate"
)

// natsReporter is implemented by the nats engine: its delivery figures.
type natsReporter interface {
	Stats() NATSStats
}

// historyReporter is implemented by engines that can tell how much history
// they hold (the memory engine; JetStream reports its own).
type historyReporter interface {
	HistoryStats() HistoryStats
}

// metrics is the bridge's Prometheus registry: one per Server, so several
// bridges in one process (tests) do not collide. No label grows with the
// number of streams or clients: streams and connections are only counted.
type metrics struct {
	reg            *prometheus.Registry
	published      *prometheus.CounterVec
	publishSeconds prometheus.Histogram
	// batchSize is the events of each PublishBatch; publishStreams the
	// open PublishStream calls.
	batchSize      prometheus.Histogram
	publishStreams prometheus.Gauge
	grpcHandled    *prometheus.CounterVec
	grpcSeconds    *prometheus.HistogramVec
	// authFailures counts refused credentials by side (subscriber,
	// publisher) and reason (a fixed set per side: see authFailed).
	authFailures *prometheus.CounterVec
	// rejections counts requests refused or shed before they were served,
	// by reason (a fixed set: see rejected).
	rejections *prometheus.CounterVec

	// The children of published by result, and of the gRPC metrics by
	// method (see unaryInterceptor), looked up once: WithLabelValues
	// hashes its labels and takes a lock on every call.
	publishedOK, publishedDuplicate, publishedInvalid prometheus.Counter
	publishedUnavailable, publishedError              prometheus.Counter
	methods                                           sync.Map // full method name → *methodMetrics
}

// methodMetrics are the gRPC metrics of one method. The handled counter of
// a code is made at its first use, so /metrics lists only codes that
// occurred, as with WithLabelValues.
type methodMetrics struct {
	name    string
	seconds prometheus.Observer
	handled [codes.Unauthenticated + 1]atomic.Pointer[prometheus.Counter]
}

func newMetrics(h *hub, engine Engine) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_events_published_total",
			Help: "Events published (by Publish, PublishBatch and PublishStream), by result: ok, duplicate (its idempotency_key named an event already stored: nothing stored), invalid (the caller's fault), unavailable (shutting down or engine down), error. Events refused by publisher auth or rate are in bridge_auth_failures_total.",
		}, []string{"result"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bridge_publish_batch_size",
			Help:    "Events per PublishBatch call.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000},
		}),
		publishStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bridge_publish_streams",
			Help: "Open PublishStream calls (at most --max-publish-streams).",
		}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bridge_publish_duration_seconds",
			Help:    "Time from receiving a Publish to the event being in history.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16), // 50µs to about 1.6s
		}),
		grpcHandled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_grpc_server_handled_total",
			Help: "Unary gRPC calls completed on the server, by method and status code.",
		}, []string{"grpc_method", "grpc_code"}),
		grpcSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bridge_grpc_server_handling_seconds",
			Help:    "Time to handle unary gRPC calls, by method.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}, []string{"grpc_method"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_auth_failures_total",
			Help: "Refused credentials, by side (subscriber, publisher) and reason.",
		}, []string{"side", "reason"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_rejections_total",
			Help: "Requests refused or shed before being served, by reason.",
		}, []string{"reason"}),
	}
	// Every result is exported from the start.
	m.publishedOK = m.published.WithLabelValues(publishOK)
	m.publishedDuplicate = m.published.WithLabelValues(publishDuplicate)
	m.publishedInvalid = m.published.WithLabelValues(publishInvalid)
	m.publishedUnavailable = m.published.WithLabelValues(publishUnavailable)
	m.publishedError = m.published.WithLabelValues(publishError)
	m.reg.MustRegister(
		m.published, m.publishSeconds, m.batchSize, m.publishStreams, m.grpcHandled, m.grpcSeconds, m.authFailures, m.rejections,
		&hubCollector{hub: h, engine: engine},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Sides of bridge_auth_failures_total.
const (
	sideSubscriber = "subscriber"
	sidePublisher  = "publisher"
)

// authFailed counts one refused credential. reason must come from a fixed
// set (a constant), never from client input: labels must stay bounded. Safe
// on a nil *metrics (tests that build handlers without a Server).
func (m *metrics) authFailed(side, reason string) {
	if m != nil {
		m.authFailures.WithLabelValues(side, reason).Inc()
	}
}

// rejected counts one request refused or shed before it was served. reason
// must be a constant, as for authFailed. Safe on a nil *metrics.
func (m *metrics) rejected(reason string) {
	if m != nil {
		m.rejections.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// unaryInterceptor counts and times every unary RPC. Method names are a
// fixed set (the bridge's, health's), so the label stays bounded.
func (m *metrics) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	res, err := handler(ctx, req)
	mm := m.method(info.FullMethod)
	mm.seconds.Observe(time.Since(start).Seconds())
	m.handled(mm, status.Code(err)).Inc()
	return res, err
}

// method returns the metrics of a gRPC method, made at its first call.
// grpc-go runs interceptors only for registered methods, a fixed set, so
// the map stays small.
func (m *metrics) method(name string) *methodMetrics {
	if mm, ok := m.methods.Load(name); ok {
		return mm.(*methodMetrics) //nolint:forcetypeassert // only *methodMetrics are stored
	}
	mm, _ := m.methods.LoadOrStore(name, &methodMetrics{name: name, seconds: m.grpcSeconds.WithLabelValues(name)})
	return mm.(*methodMetrics) //nolint:forcetypeassert // only *methodMetrics are stored
}

// handled returns the counter of calls of mm that ended with code.
func (m *metrics) handled(mm *methodMetrics, code codes.Code) prometheus.Counter {
	if int(code) >= len(mm.handled) {
		return m.grpcHandled.WithLabelValues(mm.name, code.String())
	}
	if c := mm.handled[code].Load(); c != nil {
		return *c
	}
	c := m.grpcHandled.WithLabelValues(mm.name, code.String())
	mm.handled[code].Store(&c) // a race stores the same child twice
	return c
}

// countPublish counts one Publish by its result (a publish* constant).
func (m *metrics) countPublish(result string) {
	switch result {
	case publishOK:
		m.publishedOK.Inc()
	case publishDuplicate:
		m.publishedDuplicate.Inc()
	case publishInvalid:
		m.publishedInvalid.Inc()
	case publishUnavailable:
		m.publishedUnavailable.Inc()
	case publishError:
		m.publishedError.Inc()
	default:
		m.published.WithLabelValues(result).Inc()
	}
}

// hubCollector reads the hub's atomics at scrape time, so fan-out pays
// nothing for metrics.
type hubCollector struct {
	hub    *hub
	engine Engine
}

var (
	descConnections    = prometheus.NewDesc("bridge_sse_connections", "Open SSE connections.", nil, nil)
	descDozing         = prometheus.NewDesc("bridge_sse_dozing_connections", "Open SSE connections that have had no event yet and doze (one goroutine, no library stream; see --eager-streams).", nil, nil)
	descSubscriptions  = prometheus.NewDesc("bridge_sse_subscriptions", "Stream subscriptions of the open SSE connections (a connection to 3 streams counts 3).", nil, nil)
	descDelivered      = prometheus.NewDesc("bridge_frames_delivered_total", "Event frames handed to SSE connections (one per event per connection; replays not included).", nil, nil)
	descEvictions      = prometheus.NewDesc("bridge_sse_evictions_total", "SSE connections closed because they could not keep up, by reason: queue_full, write_deadline, heartbeat, replay_failed, engine_gap, token_expiry.", []string{"reason"}, nil)
	descReplays        = prometheus.NewDesc("bridge_replays_total", "Resumes (Last-Event-ID) that replayed events from history.", nil, nil)
	descReplayed       = prometheus.NewDesc("bridge_replayed_events_total", "Events sent by replays.", nil, nil)
	descResets         = prometheus.NewDesc("bridge_resets_total", "bridge.reset frames sent: resumes that history could not cover.", nil, nil)
	descReplaysCapped  = prometheus.NewDesc("bridge_replays_capped_total", "Resets (too_far_behind) because a (re)connect missed more events than --max-replay.", nil, nil)
	descHistoryEvents  = prometheus.NewDesc("bridge_history_events", "Events held in history, all streams.", nil, nil)
	descHistoryBytes   = prometheus.NewDesc("bridge_history_bytes", "Memory history takes, as counted against --history-memory: events, their data and frames, and each stream's bookkeeping.", nil, nil)
	descHistoryLimit   = prometheus.NewDesc("bridge_history_limit_bytes", "The memory history may take, --history-memory; over it the oldest events of all are evicted.", nil, nil)
	descHistoryStreams = prometheus.NewDesc("bridge_history_streams", "Streams history keeps an entry for: those with events, and those with subscribers but no events left.", nil, nil)
	descDedupeKeys     = prometheus.NewDesc("bridge_dedupe_keys", "Idempotency keys the memory engine remembers (at most --dedupe-keys).", nil, nil)
	descDedupeBytes    = prometheus.NewDesc("bridge_dedupe_bytes", "Memory the idempotency keys take (beside --history-memory, not in it).", nil, nil)
	descDedupeEvicted  = prometheus.NewDesc("bridge_dedupe_evicted_keys_total", "Idempotency keys forgotten before their --dedupe-window ended, because the table held --dedupe-keys keys.", nil, nil)
	descHistoryEvicted = prometheus.NewDesc("bridge_history_evicted_events_total", "Events that left history, by reason: size (--history-size on their stream), age (--history-age), memory (the oldest of all, over --history-memory).", []string{"reason"}, nil)

	descPresenceStreams  = prometheus.NewDesc("bridge_presence_streams", "Streams with at least one subscribed connection on this node (the entries of its presence counts).", nil, nil)
	descPresenceNodes    = prometheus.NewDesc("bridge_presence_nodes", "Other nodes whose presence reports this node holds (heard from within --presence-timeout).", nil, nil)
	descPresenceEntries  = prometheus.NewDesc("bridge_presence_remote_entries", "(node, stream) counts this node holds of the other nodes; at most --presence-max-entries.", nil, nil)
	descPresenceDropped  = prometheus.NewDesc("bridge_presence_dropped_entries_total", "Stream counts of other nodes left out because the table was full (--presence-max-entries) or too many nodes reported.", nil, nil)
	descPresenceSent     = prometheus.NewDesc("bridge_presence_reports_sent_total", "Presence reports this node sent to the others.", nil, nil)
	descPresenceReceived = prometheus.NewDesc("bridge_presence_reports_received_total", "Presence reports of other nodes received whole or in part.", nil, nil)
	descPresenceLost     = prometheus.NewDesc("bridge_presence_reports_lost_total", "Presence reports of other nodes ignored because a part of them was lost (the report before stays in force).", nil, nil)
	descPresenceEvents   = prometheus.NewDesc("bridge_presence_events_total", "bridge.presence events this node published, by result: ok, failed (sent again an interval later).", []string{"result"}, nil)

	descNATSLag      = prometheus.NewDesc("bridge_nats_delivery_lag_events", "The JetStream stream's last sequence minus the last one this node delivered, at the last look (every second).", nil, nil)
	descNATSStalled  = prometheus.NewDesc("bridge_nats_delivery_stalled", "1 while this node's delivery from JetStream is stalled (it then reports not ready), else 0.", nil, nil)
	descNATSStalls   = prometheus.NewDesc("bridge_nats_delivery_stalls_total", "Times this node's delivery from JetStream stalled.", nil, nil)
	descNATSRestarts = prometheus.NewDesc("bridge_nats_consumer_restarts_total", "JetStream consumers this node started again after a stall or an error.", nil, nil)
	descNATSLosses   = prometheus.NewDesc("bridge_nats_history_losses_total", "Times this node found the JetStream stream had lost its history, and fenced it so ids never repeat.", nil, nil)
	descNATSGaps     = prometheus.NewDesc("bridge_nats_delivery_gaps_total", "Runs of events removed from JetStream (by --history-size or --history-age) before this node delivered them: it fell further behind than history; its SSE connections resumed and got bridge.reset.", nil, nil)

	descNATSPending      = prometheus.NewDesc("bridge_nats_publish_pending_events", "Events this node published to JetStream and awaits the acks of.", nil, nil)
	descNATSPendingLimit = prometheus.NewDesc("bridge_nats_publish_pending_limit_events", "The most events this node may await JetStream's acks of, --nats-max-pending.", nil, nil)
	descNATSBackpressure = prometheus.NewDesc("bridge_nats_publish_backpressure_total", "Events whose publish found --nats-max-pending events awaiting their acks, by result: waited (then sent), refused (no room came before the publish's deadline or cancel, or within 5s: not sent).", []string{"result"}, nil)
)

func (c *hubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descDozing, descSubscriptions, descDelivered, descEvictions, descReplays, descReplayed, descResets, descReplaysCapped} {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{descPresenceStreams, descPresenceNodes, descPresenceEntries, descPresenceDropped, descPresenceSent, descPresenceReceived, descPresenceLost, descPresenceEvents} {
		ch <- d
	}
	if _, ok := c.engine.(historyReporter); ok {
		for _, d := range []*prometheus.Desc{descHistoryEvents, descHistoryBytes, descHistoryLimit, descHistoryStreams, descHistoryEvicted, descDedupeKeys, descDedupeBytes, descDedupeEvicted} {
			ch <- d
		}
	}
	if _, ok := c.engine.(natsReporter); ok {
		for _, d := range []*prometheus.Desc{descNATSLag, descNATSStalled, descNATSStalls, descNATSRestarts, descNATSLosses, descNATSGaps, descNATSPending, descNATSPendingLimit, descNATSBackpressure} {
			ch <- d
		}
	}
}

func (c *hubCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.hub
	ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, float64(h.connCount()))
	ch <- prometheus.MustNewConstMetric(descDozing, prometheus.GaugeValue, float64(h.stats.dozing.Load()))
	ch <- prometheus.MustNewConstMetric(descSubscriptions, prometheus.GaugeValue, float64(h.subscriptionCount()))
	ch <- prometheus.MustNewConstMetric(descDelivered, prometheus.CounterValue, float64(h.stats.delivered.Load()))
	for i, r := range evictReasons {
		ch <- prometheus.MustNewConstMetric(descEvictions, prometheus.CounterValue, float64(h.stats.evictions[i].Load()), r)
	}
	ch <- prometheus.MustNewConstMetric(descReplays, prometheus.CounterValue, float64(h.stats.replays.Load()))
	ch <- prometheus.MustNewConstMetric(descReplayed, prometheus.CounterValue, float64(h.stats.replayedEvents.Load()))
	ch <- prometheus.MustNewConstMetric(descResets, prometheus.CounterValue, float64(h.stats.resets.Load()))
	ch <- prometheus.MustNewConstMetric(descReplaysCapped, prometheus.CounterValue, float64(h.stats.replaysCapped.Load()))
	pt, ps := h.presence.table(), &h.presence.stats
	ch <- prometheus.MustNewConstMetric(descPresenceStreams, prometheus.GaugeValue, float64(pt.localStreams))
	ch <- prometheus.MustNewConstMetric(descPresenceNodes, prometheus.GaugeValue, float64(pt.peers))
	ch <- prometheus.MustNewConstMetric(descPresenceEntries, prometheus.GaugeValue, float64(pt.entries))
	ch <- prometheus.MustNewConstMetric(descPresenceDropped, prometheus.CounterValue, float64(ps.droppedEntries.Load()))
	ch <- prometheus.MustNewConstMetric(descPresenceSent, prometheus.CounterValue, float64(ps.reportsSent.Load()))
	ch <- prometheus.MustNewConstMetric(descPresenceReceived, prometheus.CounterValue, float64(ps.reportsReceived.Load()))
	ch <- prometheus.MustNewConstMetric(descPresenceLost, prometheus.CounterValue, float64(ps.reportsLost.Load()))
	ch <- prometheus.MustNewConstMetric(descPresenceEvents, prometheus.CounterValue, float64(ps.eventsPublished.Load()), "ok")
	ch <- prometheus.MustNewConstMetric(descPresenceEvents, prometheus.CounterValue, float64(ps.eventsFailed.Load()), "failed")
	if hr, ok := c.engine.(historyReporter); ok {
		s := hr.HistoryStats()
		ch <- prometheus.MustNewConstMetric(descHistoryEvents, prometheus.GaugeValue, float64(s.Events))
		ch <- prometheus.MustNewConstMetric(descHistoryBytes, prometheus.GaugeValue, float64(s.Bytes))
		ch <- prometheus.MustNewConstMetric(descHistoryLimit, prometheus.GaugeValue, float64(s.Limit))
		ch <- prometheus.MustNewConstMetric(descHistoryStreams, prometheus.GaugeValue, float64(s.Streams))
		ch <- prometheus.MustNewConstMetric(descDedupeKeys, prometheus.GaugeValue, float64(s.DedupeKeys))
		ch <- prometheus.MustNewConstMetric(descDedupeBytes, prometheus.GaugeValue, float64(s.DedupeBytes))
		ch <- prometheus.MustNewConstMetric(descDedupeEvicted, prometheus.CounterValue, float64(s.DedupeEvicted))
		for i, n := range [numTrimReasons]int64{trimSize: s.EvictedSize, trimAge: s.EvictedAge, trimMemory: s.EvictedMemory} {
			ch <- prometheus.MustNewConstMetric(descHistoryEvicted, prometheus.CounterValue, float64(n), trimReasons[i])
		}
	}
	if nr, ok := c.engine.(natsReporter); ok {
		s := nr.Stats()
		stalled := 0.0
		if s.Stalled {
			stalled = 1
		}
		ch <- prometheus.MustNewConstMetric(descNATSLag, prometheus.GaugeValue, float64(s.Lag))
		ch <- prometheus.MustNewConstMetric(descNATSStalled, prometheus.GaugeValue, stalled)
		ch <- prometheus.MustNewConstMetric(descNATSStalls, prometheus.CounterValue, float64(s.Stalls))
		ch <- prometheus.MustNewConstMetric(descNATSRestarts, prometheus.CounterValue, float64(s.ConsumerRestarts))
		ch <- prometheus.MustNewConstMetric(descNATSLosses, prometheus.CounterValue, float64(s.HistoryLosses))
		ch <- prometheus.MustNewConstMetric(descNATSGaps, prometheus.CounterValue, float64(s.Gaps))
		ch <- prometheus.MustNewConstMetric(descNATSPending, prometheus.GaugeValue, float64(s.PublishPending))
		ch <- prometheus.MustNewConstMetric(descNATSPendingLimit, prometheus.GaugeValue, float64(s.PublishPendingLimit))
		ch <- prometheus.MustNewConstMetric(descNATSBackpressure, prometheus.CounterValue, float64(s.PublishWaited), "waited")
		ch <- prometheus.MustNewConstMetric(descNATSBackpressure, prometheus.CounterValue, float64(s.PublishRefused), "refused")
	}
}
