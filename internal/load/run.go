package load

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// latencyShards spreads the subscribers' latency records over several
// histograms, so a thousand goroutines do not fight over one cache line.
const latencyShards = 16

// Run performs one load run as cfg describes (see [Config.Validate] for the
// defaults) and returns its figures. The phases: wait until the server
// accepts connections; connect every subscriber; publish (warm-up, then the
// measured window); publish one fence event per stream and wait, at most
// cfg.Drain, until every subscriber received its fence, so everything
// published before is either delivered or lost; close everything.
//
// It returns an error when the server cannot be reached or a subscriber
// cannot connect; a run cut short by ctx returns its figures so far and
// ctx's error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pub, err := newPublisher(&cfg)
	if err != nil {
		return nil, err
	}
	defer func() { _ = pub.close() }()
	return run(ctx, &cfg, pub)
}

// runner is the state of one run. Run owns it and every goroutine it starts.
type runner struct {
	cfg        *Config
	pub        publisher
	log        *slog.Logger
	host       string // of cfg.URL
	eventsPath string
	streams    []string // names
	published  []streamLog
	subs       []*subscriber

	next        atomic.Int64 // the next event number to publish
	pubOK       atomic.Int64
	pubErrors   atomic.Int64
	pubErrMsg   atomic.Pointer[string]
	pubLatency  Histogram
	latency     [latencyShards]Histogram
	measureFrom atomic.Int64 // events published before (Unix ns) are not in latency

	tl        *timeline     // nil without cfg.Timeline
	stallEnd  chan struct{} // closed when stalled subscribers start reading
	unfenced  atomic.Int64  // subscribers still waiting for their fence
	allFenced chan struct{}
}

// streamLog is what was published to one stream.
type streamLog struct {
	mu   sync.Mutex
	seqs bitset   // sequence numbers whose publish succeeded
	ids  []uint64 // by sequence number, the id the server returned (Config.CheckIDs)
}

func (l *streamLog) add(seq, id uint64, keepID bool) {
	l.mu.Lock()
	l.seqs.add(seq)
	if keepID {
		setID(&l.ids, seq, id)
	}
	l.mu.Unlock()
}

// setID sets (*ids)[seq] to id, growing the slice.
func setID(ids *[]uint64, seq, id uint64) {
	if seq >= uint64(len(*ids)) {
		*ids = append(*ids, make([]uint64, seq+1-uint64(len(*ids)))...)
	}
	(*ids)[seq] = id
}

func newRunner(cfg *Config, pub publisher) (*runner, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("URL: %w", err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	r := &runner{
		cfg:        cfg,
		pub:        pub,
		log:        cfg.Logger,
		host:       host,
		eventsPath: strings.TrimSuffix(u.Path, "/") + "/events",
		streams:    make([]string, cfg.Streams),
		published:  make([]streamLog, cfg.Streams),
		stallEnd:   make(chan struct{}),
		allFenced:  make(chan struct{}),
	}
	r.measureFrom.Store(math.MaxInt64)
	for i := range r.streams {
		r.streams[i] = fmt.Sprintf("%s-%d", cfg.StreamPrefix, i)
	}
	total := cfg.Subscribers + cfg.Stalled
	fenced := total // the subscribers that wait for their fence
	if cfg.StallForever {
		fenced = cfg.Subscribers
	}
	for i := range total {
		s := &subscriber{r: r, idx: i, stream: i % cfg.Streams, src: cfg.SourceIPs[i%len(cfg.SourceIPs)]}
		if i >= cfg.Subscribers {
			s.stalled = true
			s.stream = (i - cfg.Subscribers) % cfg.Streams
		}
		r.subs = append(r.subs, s)
	}
	r.unfenced.Store(int64(fenced))
	if fenced == 0 {
		close(r.allFenced)
	}
	return r, nil
}

func (r *runner) fenceReceived() {
	if r.unfenced.Add(-1) == 0 {
		close(r.allFenced)
	}
}

func run(ctx context.Context, cfg *Config, pub publisher) (*Result, error) {
	r, err := newRunner(cfg, pub)
	if err != nil {
		return nil, err
	}
	res := newResult(cfg)
	server := newProcTrack(cfg.PID, cfg.PID != 0, r.log)
	client := newProcTrack(0, true, r.log)

	if err := r.waitReady(ctx); err != nil {
		return nil, err
	}
	server.sample(&server.start)
	client.sample(&client.start)
	if server.enabled && server.failed {
		return nil, fmt.Errorf("cannot read the server's process %d in /proc: is it the server, and alive?", cfg.PID)
	}

	// Every subscriber goroutine lives until life ends.
	life, endLife := context.WithCancel(ctx)
	var subsWG sync.WaitGroup
	defer func() {
		endLife()
		subsWG.Wait()
	}()

	r.log.Info("connecting", "subscribers", cfg.Subscribers, "stalled", cfg.Stalled, "source_ips", len(cfg.SourceIPs))
	t0 := time.Now()
	if err := r.connectAll(ctx, life, &subsWG); err != nil {
		return nil, err
	}
	res.ConnectSeconds = time.Since(t0).Seconds()
	server.sample(&server.connected)
	client.sample(&client.connected)
	r.log.Info("connected", "seconds", res.ConnectSeconds)

	// Publish: warm-up, then the measured window.
	var pubWG sync.WaitGroup
	stop := make(chan struct{})
	start := time.Now()
	tlDone := make(chan struct{})
	if cfg.Timeline {
		r.tl = newTimeline(cfg, start)
		go func() { // ends with stop
			defer close(tlDone)
			r.tl.run(ctx, stop)
		}()
	} else {
		close(tlDone)
	}
	var win window
	warmed := cfg.Warmup == 0
	if warmed { // the window opens before the first publish
		r.measureFrom.Store(start.UnixNano())
		r.openWindow(&win, server, client)
	}
	bp, isBatch := pub.(batchPublisher)
	sp, isStream := pub.(streamPublisher)
	for range cfg.Publishers {
		switch {
		case cfg.Mode == ModeBatch && isBatch:
			pubWG.Go(func() { r.publishBatchLoop(ctx, stop, start, bp) })
		case cfg.Mode == ModeStream && isStream:
			pubWG.Go(func() { r.publishStreamLoop(ctx, stop, start, sp) })
		default:
			pubWG.Go(func() { r.publishLoop(ctx, stop, start) })
		}
	}
	pubDone := make(chan struct{})
	go func() { // ends once every publisher returned, which stop ensures
		pubWG.Wait()
		close(pubDone)
	}()
	warm := time.NewTimer(cfg.Warmup)
	end := time.NewTimer(cfg.Warmup + cfg.Duration)
	var stallTimer <-chan time.Time
	if cfg.StallFor > 0 {
		stallTimer = time.After(cfg.StallFor)
	}
	stallEnded, stopped := false, false
	endStall := func() {
		if !stallEnded {
			stallEnded = true
			close(r.stallEnd)
		}
	}
	r.log.Info("publishing", "rate", cfg.Rate, "publishers", cfg.Publishers, "events", cfg.Events, "warmup", cfg.Warmup, "duration", cfg.Duration)
	for !stopped {
		select {
		case <-warm.C:
			if !warmed {
				warmed = true
				r.measureFrom.Store(time.Now().UnixNano())
				r.openWindow(&win, server, client)
			}
		case <-end.C:
			stopped = true
		case <-pubDone:
			stopped = true
		case <-stallTimer:
			endStall()
		case <-ctx.Done():
			stopped = true
		}
	}
	close(stop)
	warm.Stop()
	end.Stop()
	// A run that ended within its warm-up has no window and no latency.
	countMode := cfg.Events > 0
	if warmed && !countMode {
		r.closeWindow(&win, server, client)
	}
	endStall()
	<-pubDone
	<-tlDone
	res.PublishSeconds = time.Since(start).Seconds()
	r.log.Info("published", "events", r.pubOK.Load(), "errors", r.pubErrors.Load())

	// Drain: a fence per stream, after everything else was published.
	drainStart := time.Now()
	r.publishFences(ctx)
	drain := time.NewTimer(cfg.Drain)
	select {
	case <-r.allFenced:
	case <-drain.C:
		r.log.Warn("drain timed out", "unfenced", r.unfenced.Load())
	case <-ctx.Done():
	}
	drain.Stop()
	res.DrainSeconds = time.Since(drainStart).Seconds()
	if warmed && countMode {
		r.closeWindow(&win, server, client)
	}
	res.Unfenced = int(r.unfenced.Load())
	server.sample(&server.end)
	client.sample(&client.end)

	endLife()
	subsWG.Wait()
	r.fill(res, &win, server, client)
	if r.tl != nil {
		res.Phases = r.tl.result(cfg.Warmup)
	}
	return res, ctx.Err()
}

// waitReady dials the server until it accepts connections.
func (r *runner) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ReadyTimeout)
	defer cancel()
	addrs := []string{r.host}
	if r.cfg.Target == TargetBridge {
		addrs = append(addrs, r.cfg.GRPCAddr)
	}
	var d net.Dialer
	for _, a := range addrs {
		for {
			c, err := d.DialContext(ctx, "tcp", a)
			if err == nil {
				_ = c.Close()
				break
			}
			t := time.NewTimer(20 * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("server at %s not ready within %v: %w", a, r.cfg.ReadyTimeout, err)
			}
		}
	}
	return nil
}

// connectAll connects every subscriber, cfg.ConnectConcurrency at a time,
// retrying failed attempts until cfg.ConnectTimeout, and starts each one's
// reader on wg; the readers end with life.
func (r *runner) connectAll(ctx, life context.Context, wg *sync.WaitGroup) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ConnectTimeout)
	defer cancel()
	var next atomic.Int64
	var workers sync.WaitGroup
	errc := make(chan error, 1)
	for range min(r.cfg.ConnectConcurrency, len(r.subs)) {
		workers.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(r.subs) || ctx.Err() != nil {
					return
				}
				s := r.subs[i]
				delay := 10 * time.Millisecond
				for {
					c, err := s.connect(ctx, life, nil)
					if err == nil {
						wg.Go(func() { s.run(life, c) })
						break
					}
					s.dialErrors.Add(1)
					t := time.NewTimer(delay)
					select {
					case <-t.C:
						delay = min(2*delay, time.Second)
						continue
					case <-ctx.Done():
						t.Stop()
						select {
						case errc <- fmt.Errorf("connect subscriber %d: %w", i, err):
						default:
						}
						return
					}
				}
			}
		})
	}
	workers.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return ctx.Err()
	}
}

// publishLoop publishes events until stop, or until cfg.Events were taken.
// Event k goes to stream k mod S as its sequence number k div S, at
// start + k/Rate when a rate is set.
func (r *runner) publishLoop(ctx context.Context, stop <-chan struct{}, start time.Time) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		k, stream, seq, ok := r.take()
		if !ok || !r.waitTurn(k, start, stop, timer) {
			return
		}
		t := time.Now()
		id, err := r.publishOne(ctx, stream, seq, t)
		took := time.Since(t)
		r.pubLatency.Record(took)
		if r.tl != nil {
			r.tl.call(t, took)
		}
		r.done(stream, seq, id, err)
	}
}

// waitTurn waits until event k is due at the configured rate (at once when
// flat out); false when stop came first.
func (r *runner) waitTurn(k int64, start time.Time, stop <-chan struct{}, timer *time.Timer) bool {
	if r.cfg.Rate > 0 {
		at := start.Add(time.Duration(float64(k) / r.cfg.Rate * float64(time.Second)))
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-stop:
				return false
			}
		}
	}
	select {
	case <-stop:
		return false
	default:
		return true
	}
}

// take returns the stream and sequence number of the next event to
// publish; false once cfg.Events were taken.
func (r *runner) take() (k int64, stream int, seq uint64, ok bool) {
	k = r.next.Add(1) - 1
	if r.cfg.Events > 0 && k >= int64(r.cfg.Events) {
		return k, 0, 0, false
	}
	return k, int(k % int64(r.cfg.Streams)), uint64(k / int64(r.cfg.Streams)), true //nolint:gosec // k >= 0
}

// done records the outcome of publishing seq to stream.
func (r *runner) done(stream int, seq, id uint64, err error) {
	if err != nil {
		r.pubErrors.Add(1)
		msg := err.Error()
		r.pubErrMsg.CompareAndSwap(nil, &msg)
		return
	}
	r.published[stream].add(seq, id, r.cfg.CheckIDs)
	r.pubOK.Add(1)
}

// publishBatchLoop is publishLoop for ModeBatch: cfg.BatchSize events a
// call (fewer in the last one of a run bounded by cfg.Events), each call
// due when its first event is. Its latency is the call's.
func (r *runner) publishBatchLoop(ctx context.Context, stop <-chan struct{}, start time.Time, bp batchPublisher) {
	cfg := r.cfg
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	evs := make([]outEvent, 0, cfg.BatchSize)
	idx := make([]int, 0, cfg.BatchSize)
	for {
		evs, idx = evs[:0], idx[:0]
		for range cfg.BatchSize {
			k, stream, seq, ok := r.take()
			if !ok {
				break
			}
			if len(evs) == 0 && !r.waitTurn(k, start, stop, timer) {
				return
			}
			evs = append(evs, outEvent{stream: r.streams[stream], seq: seq})
			idx = append(idx, stream)
		}
		if len(evs) == 0 {
			return
		}
		t := time.Now()
		for i := range evs {
			evs[i].t = t.UnixNano()
		}
		cctx, cancel := context.WithTimeout(ctx, cfg.PublishTimeout)
		res, err := bp.publishBatch(cctx, evs)
		cancel()
		took := time.Since(t)
		r.pubLatency.Record(took)
		if r.tl != nil {
			r.tl.call(t, took)
		}
		for i, ev := range evs {
			if err != nil {
				r.done(idx[i], ev.seq, 0, err)
				continue
			}
			r.done(idx[i], ev.seq, res[i].id, res[i].err)
		}
		if status.Code(err) == codes.Unimplemented {
			return // a bridge without PublishBatch: no call will do
		}
	}
}

// publishStreamLoop is publishLoop for ModeStream: one publish stream,
// events sent as fast as the server answers, up to cfg.StreamWindow of
// them unanswered. Each event's latency runs from its send to its result.
// A stream that fails ends the loop (its events unanswered count as
// errors); the others go on.
func (r *runner) publishStreamLoop(ctx context.Context, stop <-chan struct{}, start time.Time, sp streamPublisher) {
	cfg := r.cfg
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := sp.openStream(sctx)
	if err != nil {
		r.done(0, 0, 0, err)
		return
	}
	type sent struct {
		stream int
		seq    uint64
		t      time.Time
	}
	window := make(chan sent, cfg.StreamWindow)
	var broken atomic.Bool
	recvDone := make(chan struct{})
	go func() { // owned by this loop, which waits for it
		defer close(recvDone)
		var failed error
		for s := range window {
			if failed == nil {
				res, err := st.recv()
				took := time.Since(s.t)
				r.pubLatency.Record(took)
				if r.tl != nil {
					r.tl.call(s.t, took)
				}
				if err != nil {
					failed = err
					broken.Store(true)
				} else {
					r.done(s.stream, s.seq, res.id, res.err)
					continue
				}
			}
			r.done(s.stream, s.seq, 0, failed)
		}
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
sending:
	for !broken.Load() {
		k, stream, seq, ok := r.take()
		if !ok || !r.waitTurn(k, start, stop, timer) {
			break
		}
		s := sent{stream: stream, seq: seq, t: time.Now()}
		select {
		case window <- s: // a window place, then the send: recv expects it
		case <-stop:
			break sending
		}
		if err := st.send(outEvent{stream: r.streams[stream], seq: seq, t: s.t.UnixNano()}); err != nil {
			break // recv reports the stream's error for s and what follows
		}
	}
	_ = st.closeSend()
	close(window)
	// The server answers what it has within a publish timeout, or the
	// stream is cut and the rest count as errors.
	t := time.AfterFunc(cfg.PublishTimeout, cancel)
	defer t.Stop()
	<-recvDone
}

func (r *runner) publishOne(ctx context.Context, stream int, seq uint64, t time.Time) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	return r.pub.publish(ctx, r.streams[stream], seq, t.UnixNano())
}

// publishFences publishes the fence of every stream, cfg.Publishers at a
// time. A failed fence leaves its subscribers waiting until the drain ends.
func (r *runner) publishFences(ctx context.Context) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(r.cfg.Publishers, len(r.streams)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(r.streams) {
					return
				}
				if _, err := r.publishOne(ctx, i, fenceSeq, time.Now()); err != nil {
					r.log.Warn("publish fence", "stream", r.streams[i], "err", err)
				}
			}
		})
	}
	wg.Wait()
}

// window is the measured part of a run: healthy deliveries and publishes
// at its start and end (the processes are sampled with it).
type window struct {
	machine0, machine1 time.Duration // busy CPU of the whole machine
	start, end         time.Time
	framesStart        int64
	framesEnd          int64
	pubStart, pubEnd   int64
}

func (r *runner) healthyFrames() int64 {
	var n int64
	for _, s := range r.subs {
		if !s.stalled {
			n += s.frames.Load()
		}
	}
	return n
}

func (r *runner) openWindow(w *window, procs ...*procTrack) {
	w.machine0, _ = sampleMachine()
	w.start = time.Now()
	w.framesStart = r.healthyFrames()
	w.pubStart = r.pubOK.Load()
	for _, p := range procs {
		p.sample(&p.win0)
	}
}

func (r *runner) closeWindow(w *window, procs ...*procTrack) {
	w.machine1, _ = sampleMachine()
	w.end = time.Now()
	w.framesEnd = r.healthyFrames()
	w.pubEnd = r.pubOK.Load()
	for _, p := range procs {
		p.sample(&p.win1)
	}
}

// procTrack samples one process (pid 0: this one) at the phases of a run;
// a failed sample is logged and leaves the process's figures out.
type procTrack struct {
	pid     int
	log     *slog.Logger
	enabled bool
	failed  bool

	start, connected, win0, win1, end procSample
}

func newProcTrack(pid int, enabled bool, log *slog.Logger) *procTrack {
	return &procTrack{pid: pid, log: log, enabled: enabled}
}

func (p *procTrack) sample(into *procSample) {
	if !p.enabled || p.failed {
		return
	}
	s, err := sampleProc(p.pid)
	if err != nil {
		p.failed = true
		p.log.Warn("sample process: no RSS or CPU figures", "pid", p.pid, "err", err)
		return
	}
	*into = s
}

func (p *procTrack) ok() bool { return p.enabled && !p.failed }
