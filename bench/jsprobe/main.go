// Command jsprobe measures what JetStream's ingest costs nats-server, per
// event, for the ways a bridge could store events: the publishes the
// bridge sends (pipelined, one ack each) on a stream in the default
// (sync) persist mode or in async persist mode, and JetStream's atomic
// batches. Each mode gets a fresh nats-server (the binary -nats-server
// names, as bench/run.sh builds it) with a stream shaped like the bridge's
// (limits retention, a per-subject limit, file storage, one replica) and
// two ordered consumers reading everything, as two bridge nodes do; the
// figure is the server process's CPU time (user and system, from /proc)
// over the events stored and read.
//
//	go build -o bench/bin/nats-server github.com/nats-io/nats-server/v2
//	go run ./bench/jsprobe -nats-server bench/bin/nats-server
//
// It runs on Linux only (it reads /proc) and against loopback only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// clockTicks is Linux's USER_HZ, the unit of /proc/PID/stat's CPU times: 100
// on every architecture Go supports there.
const clockTicks = 100

// data is a typical event: some hundred bytes of JSON.
var data = []byte(`{"order":12345,"status":"shipped","items":[1,2,3],"note":"a realistic event of about a hundred bytes"}`)

type options struct {
	natsServer string
	events     int
	subjects   int
	history    int64
	batch      int
	window     int
	timeout    time.Duration
}

func main() {
	var o options
	modes := flag.String("modes", "sync,async,atomic", "comma-separated `modes`: sync, async (persist mode), atomic (batches)")
	flag.StringVar(&o.natsServer, "nats-server", "bench/bin/nats-server", "the nats-server `binary` to start")
	flag.IntVar(&o.events, "events", 300_000, "`events` to store in each mode")
	flag.IntVar(&o.subjects, "subjects", 100, "`subjects` (bridge streams) the events go round")
	flag.Int64Var(&o.history, "history", 1000, "per-subject limit (the bridge's --history-size)")
	flag.IntVar(&o.batch, "batch", 100, "events per atomic batch (at most the server's 1,000)")
	flag.IntVar(&o.window, "window", 4096, "publishes awaiting their acks (the bridge's --nats-max-pending); atomic: batches, at most 32")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Minute, "bound on each mode's run")
	flag.Parse()
	for _, m := range strings.Split(*modes, ",") {
		r, err := run(o, m)
		if err != nil {
			fmt.Fprintf(os.Stderr, "jsprobe: %s: %v\n", m, err)
			os.Exit(1)
		}
		fmt.Printf("%-6s %d events in %v (%.0f/s): nats-server CPU %.2f s, %.2f µs per event\n",
			m, o.events, r.elapsed.Round(time.Millisecond), float64(o.events)/r.elapsed.Seconds(), r.cpu.Seconds(), r.cpu.Seconds()/float64(o.events)*1e6)
	}
}

type result struct {
	elapsed, cpu time.Duration
}

// run starts a nats-server, stores and reads o.events in mode, and stops it.
func run(o options, mode string) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "jsprobe")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	port, err := freePort()
	if err != nil {
		return result{}, err
	}
	srv := exec.CommandContext(ctx, o.natsServer, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", dir) //nolint:gosec // the user names the binary to run
	if err := srv.Start(); err != nil {
		return result{}, err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()

	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	nc, err := connect(ctx, url)
	if err != nil {
		return result{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return result{}, err
	}
	cfg := jetstream.StreamConfig{
		Name: "PROBE", Subjects: []string{"probe.>"}, Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld,
		MaxMsgsPerSubject: o.history, MaxAge: time.Hour, Duplicates: 2 * time.Minute, Storage: jetstream.FileStorage, Replicas: 1,
	}
	switch mode {
	case "sync":
	case "async":
		cfg.PersistMode = jetstream.AsyncPersistMode
	case "atomic":
		cfg.AllowAtomicPublish = true
	default:
		return result{}, fmt.Errorf("unknown mode (use sync, async or atomic)")
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		return result{}, err
	}
	read, err := consume(ctx, js, 2, o.events)
	if err != nil {
		return result{}, err
	}

	cpu0, err := processCPU(srv.Process.Pid)
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	if mode == "atomic" {
		err = publishAtomic(ctx, nc, o)
	} else {
		err = publishPipelined(ctx, nc, o)
	}
	if err != nil {
		return result{}, err
	}
	select {
	case <-read:
	case <-ctx.Done():
		return result{}, errors.New("the consumers did not read every event in time")
	}
	elapsed := time.Since(start)
	cpu1, err := processCPU(srv.Process.Pid)
	if err != nil {
		return result{}, err
	}
	return result{elapsed: elapsed, cpu: cpu1 - cpu0}, nil
}

// consume starts n ordered consumers of everything; the channel closes when
// each has read total messages.
func consume(ctx context.Context, js jetstream.JetStream, n, total int) (<-chan struct{}, error) {
	var wg sync.WaitGroup
	for range n {
		c, err := js.OrderedConsumer(ctx, "PROBE", jetstream.OrderedConsumerConfig{})
		if err != nil {
			return nil, err
		}
		var got atomic.Int64
		wg.Add(1)
		cc, err := c.Consume(func(jetstream.Msg) {
			if got.Add(1) == int64(total) {
				wg.Done()
			}
		}, jetstream.PullMaxBytes(8<<20))
		if err != nil {
			return nil, err
		}
		context.AfterFunc(ctx, cc.Stop)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return done, nil
}

// acks takes the replies of the publishes on one subscription and frees a
// slot of the window for each; the first error reply is kept.
type acks struct {
	slots chan struct{}
	mu    sync.Mutex
	err   error
	sub   *nats.Subscription
	inbox string
}

func newAcks(nc *nats.Conn, window int) (*acks, error) {
	a := &acks{slots: make(chan struct{}, window), inbox: nc.NewInbox()}
	var err error
	a.sub, err = nc.Subscribe(a.inbox, func(m *nats.Msg) {
		if strings.Contains(string(m.Data), `"error"`) {
			a.mu.Lock()
			if a.err == nil {
				a.err = fmt.Errorf("JetStream refused a publish: %s", m.Data)
			}
			a.mu.Unlock()
		}
		<-a.slots
	})
	return a, err
}

// take waits for a slot of the window.
func (a *acks) take(ctx context.Context) error {
	select {
	case a.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drain waits until every publish has its reply, and returns the first
// error reply.
func (a *acks) drain(ctx context.Context) error {
	for i := 0; i < cap(a.slots); i++ {
		if err := a.take(ctx); err != nil {
			return err
		}
	}
	_ = a.sub.Unsubscribe()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// publishPipelined publishes o.events as the bridge does: each with a
// reply subject for its ack, at most o.window awaiting theirs.
func publishPipelined(ctx context.Context, nc *nats.Conn, o options) error {
	a, err := newAcks(nc, o.window)
	if err != nil {
		return err
	}
	for i := range o.events {
		if err := a.take(ctx); err != nil {
			return err
		}
		if err := nc.PublishRequest("probe."+strconv.Itoa(i%o.subjects), a.inbox, data); err != nil {
			return err
		}
	}
	return a.drain(ctx)
}

// publishAtomic publishes o.events in atomic batches of o.batch: the
// headers Nats-Batch-Id and Nats-Batch-Sequence on each, Nats-Batch-Commit
// and a reply subject on the last; at most o.window (32 at most: the
// server holds 50 batches of a stream in flight) awaiting their commit.
func publishAtomic(ctx context.Context, nc *nats.Conn, o options) error {
	a, err := newAcks(nc, min(o.window, 32))
	if err != nil {
		return err
	}
	for i, b := 0, 0; i < o.events; b++ {
		if err := a.take(ctx); err != nil {
			return err
		}
		id := "b" + strconv.Itoa(b)
		n := min(o.batch, o.events-i)
		for j := 1; j <= n; j++ {
			m := nats.NewMsg("probe." + strconv.Itoa((i+j)%o.subjects))
			m.Data = data
			m.Header.Set("Nats-Batch-Id", id)
			m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(j))
			if j == n {
				m.Header.Set("Nats-Batch-Commit", "1")
				m.Reply = a.inbox
			}
			if err := nc.PublishMsg(m); err != nil {
				return err
			}
		}
		i += n
	}
	return a.drain(ctx)
}

// connect connects to the server just started, trying until it listens.
func connect(ctx context.Context, url string) (*nats.Conn, error) {
	for {
		nc, err := nats.Connect(url)
		if err == nil {
			return nc, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("nats-server at %s: %w", url, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freePort returns a loopback port nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// processCPU reads the user and system CPU time of process pid.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is the first, utime the 12th, stime the 13th.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}
