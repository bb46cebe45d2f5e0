package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

// natsAdmin connects to url as an operator would with the nats CLI, to look
// at and change JetStream behind the engine's back.
func natsAdmin(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("admin connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("admin jetstream: %v", err)
	}
	return js
}

func streamInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	s, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatalf("Stream(%q): %v", name, err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatalf("Stream(%q).Info: %v", name, err)
	}
	return info
}

// recv receives from ch, failing the test after suiteWait.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(suiteWait):
		t.Fatalf("nothing received within %v", suiteWait)
	}
	var zero T
	return zero
}

// awaitReady waits until e.Ready() reports ready (or not), failing the test
// after suiteWait.
func awaitReady(t *testing.T, e *NATSEngine, ready bool) {
	t.Helper()
	for {
		changed := e.ReadyChanged()
		if (e.Ready() == nil) == ready {
			return
		}
		select {
		case <-changed:
		case <-time.After(suiteWait):
			t.Fatalf("Ready() = %v for %v, want ready %t", e.Ready(), suiteWait, ready)
		}
	}
}

func pub(t *testing.T, e Engine, stream string) uint64 {
	t.Helper()
	return suitePublish(t, e, &Event{Stream: stream, Data: []byte(`{}`)})
}

func TestNATSEngineStartErrors(t *testing.T) {
	t.Parallel()
	// A port nobody listens on: not one closed after use, which the
	// servers these tests start may be given again, but port 1, which no
	// listener on an ephemeral port takes.
	closedURL := "nats://127.0.0.1:1"
	// A port that takes connections and never greets them as NATS would
	// (another service there, say).
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	go func() { // ends when the listener closes; the connections stay open until then
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	silentURL := "nats://" + silent.Addr().String()

	noJS := startNATS(t, func(o *server.Options) { o.JetStream = false })
	restricted := startNATS(t, func(o *server.Options) {
		o.Users = []*server.User{
			{Username: "app", Password: "secret", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: []string{"bridge.>"}},
			}},
			{Username: "admin", Password: "admin"},
		}
	})
	ok := startNATS(t)
	admin := natsAdmin(t, ok.URL)
	if _, err := admin.CreateStream(t.Context(), jetstream.StreamConfig{Name: "WORK", Subjects: []string{"work.>"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateStream(t.Context(), jetstream.StreamConfig{Name: "INMEM", Subjects: []string{"inmem.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateStream(t.Context(), jetstream.StreamConfig{Name: "ASYNC", Subjects: []string{"async.>"}, PersistMode: jetstream.AsyncPersistMode}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		cfg     NATSConfig
		want    []string // in the error
		notWant string   // never in the error
	}{
		{name: "unreachable server", cfg: NATSConfig{URLs: []string{closedURL}}, want: []string{"connect to NATS at " + closedURL, "reachable", "--nats-url"}},
		{name: "not a NATS server", cfg: NATSConfig{URLs: []string{silentURL}}, want: []string{"connect to NATS at " + silentURL, "NATS server running there", "--nats-url"}},
		{name: "no JetStream", cfg: NATSConfig{URLs: []string{noJS.URL}}, want: []string{"no JetStream", "-js"}},
		{name: "no permission", cfg: NATSConfig{URLs: []string{restricted.URL}, User: "app", Password: "secret", ConnectTimeout: 3 * time.Second}, want: []string{"permission", "$JS.API.>"}},
		{name: "wrong password", cfg: NATSConfig{URLs: []string{restricted.URL}, User: "app", Password: "wrong"}, want: []string{"connect to NATS", "uthorization", "--nats-password"}},
		{name: "credentials in the URL stay secret", cfg: NATSConfig{URLs: []string{strings.Replace(restricted.URL, "nats://", "nats://app:hunter2@", 1)}}, want: []string{"nats://redacted@"}, notWant: "hunter2"},
		{name: "work queue stream", cfg: NATSConfig{URLs: []string{ok.URL}, Stream: "WORK", SubjectPrefix: "work"}, want: []string{`"WORK"`, "limits retention"}},
		{name: "storage differs", cfg: NATSConfig{URLs: []string{ok.URL}, Stream: "INMEM", SubjectPrefix: "inmem"}, want: []string{`"INMEM"`, "--nats-storage memory"}},
		{name: "persist mode differs", cfg: NATSConfig{URLs: []string{ok.URL}, Stream: "ASYNC", SubjectPrefix: "async"}, want: []string{`"ASYNC"`, "persist mode async", "--nats-persist async"}},
		{name: "async persist on memory", cfg: NATSConfig{URLs: []string{ok.URL}, Persist: natsPersistAsync, Storage: natsStorageMemory}, want: []string{"needs file storage"}},
		{name: "async persist replicated", cfg: NATSConfig{URLs: []string{ok.URL}, Persist: natsPersistAsync, Replicas: 3}, want: []string{"needs one replica"}},
		{name: "unknown persist mode", cfg: NATSConfig{URLs: []string{ok.URL}, Persist: "fast"}, want: []string{`persist mode "fast" is unknown`}},
		{name: "subjects taken by another stream", cfg: NATSConfig{URLs: []string{ok.URL}, Stream: "OTHER", SubjectPrefix: "work"}, want: []string{`"OTHER"`, "overlap", "--nats-subject-prefix"}},
		{name: "invalid config", cfg: NATSConfig{URLs: []string{ok.URL}, Stream: "a.b", Storage: "disk"}, want: []string{"stream name", "storage"}},
		{name: "two credentials", cfg: NATSConfig{URLs: []string{ok.URL}, Token: "t", User: "u"}, want: []string{"one NATS credential"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), suiteWait)
			defer cancel()
			start := time.Now()
			e, err := NewNATSEngine(ctx, tc.cfg, 10, time.Hour, 0, nil)
			if err == nil {
				e.Close()
				t.Fatalf("NewNATSEngine(%+v) = nil error, want one saying %q", tc.cfg, tc.want)
			}
			t.Logf("NewNATSEngine error: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("NewNATSEngine error %q does not say %q", err, w)
				}
			}
			if tc.notWant != "" && strings.Contains(err.Error(), tc.notWant) {
				t.Errorf("NewNATSEngine error %q shows %q", err, tc.notWant)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("NewNATSEngine failed after %v: want the connect timeout to bound it", d)
			}
		})
	}
}

func TestNATSEngineCreatesAndUpdatesStream(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	admin := natsAdmin(t, ns.URL)
	cfg := NATSConfig{URLs: []string{ns.URL}, Stream: "EVENTS", SubjectPrefix: "acme.sse"}

	before := uint64(time.Now().UnixMicro())
	e := newTestNATSEngine(t, cfg, 5, time.Hour)
	info := streamInfo(t, admin, "EVENTS")
	c := info.Config
	if !slices.Equal(c.Subjects, []string{"acme.sse.>"}) || c.MaxMsgsPerSubject != 5 || c.MaxAge != time.Hour ||
		c.Storage != jetstream.FileStorage || c.Retention != jetstream.LimitsPolicy || c.Discard != jetstream.DiscardOld || c.Replicas != 1 {
		t.Errorf("created stream config = %+v, want subjects acme.sse.>, 5 per subject, 1h, file, limits, discard old, 1 replica", c)
	}
	// Ids start at the creation time in microseconds.
	id := pub(t, e, "orders")
	if id < before || id > uint64(time.Now().UnixMicro()) {
		t.Errorf("first id %d, want the creation time in Unix microseconds (from %d)", id, before)
	}
	msg, err := admin.Conn().Request("$JS.API.STREAM.MSG.GET.EVENTS", []byte(`{"seq":`+strconv.FormatUint(id, 10)+`}`), 5*time.Second)
	if err != nil || !strings.Contains(string(msg.Data), `"subject":"acme.sse.orders"`) {
		t.Errorf("message %d: %v %s, want it on subject acme.sse.orders", id, err, msg.Data)
	}

	// An operator's own settings survive a bridge start that changes the
	// bridge's.
	s, err := admin.Stream(t.Context(), "EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	c = s.CachedInfo().Config
	c.MaxBytes = 1 << 30
	if _, err := admin.UpdateStream(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	newTestNATSEngine(t, cfg, 3, 30*time.Minute) // a smaller limit: no floor needed
	c = streamInfo(t, admin, "EVENTS").Config
	if c.MaxMsgsPerSubject != 3 || c.MaxAge != 30*time.Minute || c.MaxBytes != 1<<30 || c.Metadata[metaHistoryFloor] != "" {
		t.Errorf("after a restart with size 3, age 30m: config %+v, want 3, 30m, MaxBytes kept, no floor", c)
	}
	newTestNATSEngine(t, cfg, 50, time.Hour) // a raise records the floor
	info = streamInfo(t, admin, "EVENTS")
	c = info.Config
	if c.MaxMsgsPerSubject != 50 || c.Metadata[metaHistoryFloor] != "3" || c.Metadata[metaHistoryFloorUntil] != strconv.FormatUint(info.State.LastSeq, 10) {
		t.Errorf("after a raise to 50: config %+v, want 50 with floor 3 until %d", c, info.State.LastSeq)
	}
}

// TestNATSEngineAsyncPersist: --nats-persist async creates the stream in
// JetStream's async persist mode; events are stored, acknowledged and
// delivered in order as with sync, and a second node with the same setting
// uses the stream as it is.
func TestNATSEngineAsyncPersist(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	admin := natsAdmin(t, ns.URL)
	cfg := NATSConfig{URLs: []string{ns.URL}, Persist: natsPersistAsync}
	e := newTestNATSEngine(t, cfg, 100, time.Hour)
	if c := streamInfo(t, admin, defaultNATSStream).Config; c.PersistMode != jetstream.AsyncPersistMode || c.Storage != jetstream.FileStorage {
		t.Fatalf("stream config = %+v, want async persist mode on file storage", c)
	}
	d := newDeliveries("async")
	suiteRun(t, e, d.deliver)
	res := publishBatch(t, newTestNATSEngine(t, cfg, 100, time.Hour), numbered(50, "", "a", "b"))
	var ids []uint64
	for i, r := range res {
		if r.Err != nil || r.ID == 0 {
			t.Fatalf("event %d: %+v, want an id", i, r)
		}
		ids = append(ids, r.ID)
	}
	if _, ok := d.waitFor(t, ids[len(ids)-1], suiteWait); !ok {
		t.Fatal("the batch was not delivered")
	}
	d.check(t, ids)
}

// TestNATSEngineRaisedLimitKeepsResetsSound raises --history-size: a subject
// trimmed under the old limit holds fewer events than the new one, and only
// the recorded floor shows that some are missing.
func TestNATSEngineRaisedLimitKeepsResetsSound(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	cfg := NATSConfig{URLs: []string{ns.URL}}
	small := newTestNATSEngine(t, cfg, 2, time.Hour)
	b0 := pub(t, small, "b") // keeps the stream's first sequence low
	var a []uint64
	for range 5 {
		a = append(a, pub(t, small, "a")) // a0..a2 trimmed, a3 and a4 kept
	}

	big := newTestNATSEngine(t, cfg, 10, time.Hour)
	for _, e := range []Engine{small, big} {
		r := suiteReplay(t, e, []string{"a"}, a[1], 100)
		if r.Reset == "" {
			t.Errorf("Replay(a, a1) after a raise of the limit = %v, want a reset: a2 was trimmed", idsOf(r.Events))
		}
		r = suiteReplay(t, e, []string{"a", "b"}, b0-1, 100)
		if r.Reset == "" {
			t.Errorf("Replay(a+b, before b0) = %v, want a reset", idsOf(r.Events))
		}
		r = suiteReplay(t, e, []string{"a"}, a[3], 100)
		if r.Reset != "" || !slices.Equal(idsOf(r.Events), a[4:]) {
			t.Errorf("Replay(a, a3) = %v, reset %q; want %v", idsOf(r.Events), r.Reset, a[4:])
		}
	}
	// Events stored after the raise are judged by the new limit: c holds 3
	// events, more than the old limit, and none was trimmed.
	mark := pub(t, big, "b")
	c := []uint64{pub(t, big, "c"), pub(t, big, "c"), pub(t, big, "c")}
	r := suiteReplay(t, big, []string{"c"}, mark, 100)
	if r.Reset != "" || !slices.Equal(idsOf(r.Events), c) {
		t.Errorf("Replay(c, %d) = %v, reset %q; want %v", mark, idsOf(r.Events), r.Reset, c)
	}
}

func TestNATSEngineStaleIDsReset(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	admin := natsAdmin(t, ns.URL)
	e := newTestNATSEngine(t, NATSConfig{URLs: []string{ns.URL}}, 100, time.Hour)
	var ids []uint64
	for range 4 {
		ids = append(ids, pub(t, e, "a"))
	}
	head := ids[len(ids)-1]

	for _, tc := range []struct {
		name  string
		after uint64
		want  string
	}{
		{name: "memory engine id from before the stream", after: ids[0] - 1_000_000, want: ResetHistoryLost},
		{name: "id zero", after: 0, want: ResetHistoryLost},
		{name: "id from the future", after: head + 1, want: ResetUnknownID},
	} {
		r := suiteReplay(t, e, []string{"a"}, tc.after, 100)
		if r.Reset != tc.want || r.Head != head {
			t.Errorf("%s: Replay(a, %d) = reset %q, head %d; want reset %q, head %d", tc.name, tc.after, r.Reset, r.Head, tc.want, head)
		}
	}

	// An operator purges the stream: every id from before resets.
	s, err := admin.Stream(t.Context(), defaultNATSStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, after := range ids[:3] {
		r := suiteReplay(t, e, []string{"a"}, after, 100)
		if r.Reset != ResetTrimmed {
			t.Errorf("Replay(a, %d) after a purge = %v, reset %q; want a reset", after, idsOf(r.Events), r.Reset)
		}
	}
	r := suiteReplay(t, e, []string{"a"}, head, 100)
	if r.Reset != "" || len(r.Events) != 0 {
		t.Errorf("Replay(a, head) after a purge = %v, reset %q; want nothing", idsOf(r.Events), r.Reset)
	}
	next := pub(t, e, "a")
	if r := suiteReplay(t, e, []string{"a"}, head, 100); r.Reset != "" || !slices.Equal(idsOf(r.Events), []uint64{next}) {
		t.Errorf("Replay(a, head) after a purge and a publish = %v, reset %q; want [%d]", idsOf(r.Events), r.Reset, next)
	}
}

// TestNATSEngineRunGapEvicts: events removed from JetStream before Run
// delivered them (here: a burst over the per-subject limit before Run
// started) make Run call the gap handler before it delivers anything newer.
func TestNATSEngineRunGapEvicts(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	e := newTestNATSEngine(t, NATSConfig{URLs: []string{ns.URL}}, 1, time.Hour)
	var ids []uint64
	for range 3 {
		ids = append(ids, pub(t, e, "a"))
	}
	var gaps atomic.Int32
	e.setGapHandler(func() { gaps.Add(1) })
	got := make(chan *Event, 10)
	stop := suiteRun(t, e, func(ev *Event) {
		got <- ev
	})
	ev := recv(t, got)
	if ev.ID != ids[2] || gaps.Load() != 1 {
		t.Errorf("first delivery %d after %d gap calls; want %d after one", ev.ID, gaps.Load(), ids[2])
	}
	next := pub(t, e, "b")
	if ev := recv(t, got); ev.ID != next || gaps.Load() != 1 {
		t.Errorf("next delivery %d after %d gap calls; want %d, no new gap", ev.ID, gaps.Load(), next)
	}
	if n := e.Stats().Gaps; n != 1 {
		t.Errorf("Stats().Gaps = %d, want 1 (bridge_nats_delivery_gaps_total)", n)
	}
	if err := stop(); err != nil {
		t.Errorf("Run() = %v", err)
	}
}

// TestNATSEngineRunBatchesABacklog: a backlog waiting in JetStream (here:
// stored before Run started) is delivered in order, every event once, in
// batches of at most natsBatch events, each batch a copy the engine does not
// touch again once deliver returned.
func TestNATSEngineRunBatchesABacklog(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	e := newTestNATSEngine(t, NATSConfig{URLs: []string{ns.URL}}, 1000, time.Hour)
	const n = 300
	var want []uint64
	for i := range n {
		want = append(want, pub(t, e, []string{"a", "b"}[i/100%2])) // runs of 100 per stream
	}
	type delivery struct{ ids []uint64 }
	got := make(chan delivery, n)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- e.Run(ctx, func(batch []*Event) {
			got <- delivery{ids: idsOf(batch)}
		})
	}()
	var ids []uint64
	batches := 0
	for len(ids) < n {
		d := recv(t, got)
		batches++
		if len(d.ids) == 0 || len(d.ids) > natsBatch {
			t.Errorf("a batch of %d events, want 1 to %d", len(d.ids), natsBatch)
		}
		ids = append(ids, d.ids...)
	}
	if !slices.Equal(ids, want) {
		t.Errorf("delivered %v, want the %d published ids in order", ids, n)
	}
	t.Logf("%d events in %d batches", n, batches)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v", err)
	}
}

// TestNATSEngineReadsStoredMessages: Run and Replay read a message on a
// bridge subject as an event, with the time JetStream stored it (or, from
// an earlier version, the time of its Bridge-Time header) and its type;
// they skip what cannot be sent as one (no data, data of several lines),
// and a skipped message is no gap.
func TestNATSEngineReadsStoredMessages(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	admin := natsAdmin(t, ns.URL)
	e := newTestNATSEngine(t, NATSConfig{URLs: []string{ns.URL}}, 100, time.Hour)
	var gaps atomic.Int32
	e.setGapHandler(func() { gaps.Add(1) })
	got := make(chan *Event, 10)
	suiteRun(t, e, func(ev *Event) { got <- ev })

	before := time.Now()
	first := suitePublish(t, e, &Event{Stream: "a", Data: []byte(`{"n":1}`)})
	for _, data := range []string{"", "{\"a\":\n1}", "{\"a\":\r1}"} {
		if _, err := admin.Publish(t.Context(), "bridge.a", []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	old := nats.NewMsg("bridge.a") // as an earlier version stored events
	old.Data = []byte(`{"n":2}`)
	old.Header.Set(natsHeaderTime, "2026-11-25T10:00:00.123456Z")
	old.Header.Set(natsHeaderType, "order")
	if _, err := admin.PublishMsg(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	last := suitePublish(t, e, &Event{Stream: "a", Type: "order", Data: []byte(`{"n":3}`)})
	after := time.Now()

	check := func(how string, evs []*Event) {
		t.Helper()
		if len(evs) != 3 || evs[0].ID != first || evs[2].ID != last {
			t.Fatalf("%s: %v, want %d, the earlier version's event and %d", how, idsOf(evs), first, last)
		}
		for i, ev := range evs {
			want := fmt.Sprintf(`{"n":%d}`, i+1)
			if string(ev.Data) != want || (i > 0) != (ev.Type == "order") {
				t.Errorf("%s: event %d is %s of type %q, want %s", how, ev.ID, ev.Data, ev.Type, want)
			}
		}
		for _, ev := range []*Event{evs[0], evs[2]} {
			if ev.Time.Before(before.Add(-time.Second)) || ev.Time.After(after.Add(time.Second)) {
				t.Errorf("%s: event %d has time %v, want when it was stored (%v to %v)", how, ev.ID, ev.Time, before, after)
			}
		}
		if want := time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC); !evs[1].Time.Equal(want) {
			t.Errorf("%s: the earlier version's event has time %v, want its Bridge-Time %v", how, evs[1].Time, want)
		}
	}
	run := []*Event{recv(t, got), recv(t, got), recv(t, got)}
	check("Run", run)
	replay := suiteReplay(t, e, []string{"a"}, first-1, 100).Events
	check("Replay", replay)
	for i, ev := range replay {
		if !ev.Time.Equal(run[i].Time) {
			t.Errorf("event %d: Run gave time %v, Replay %v: want the same", ev.ID, run[i].Time, ev.Time)
		}
	}
	if n := gaps.Load(); n != 0 {
		t.Errorf("gap handler called %d times for skipped messages, want 0", n)
	}
}

// TestNATSEngineOutage stops the NATS server under a running engine: Publish
// answers Unavailable at once, readiness follows the connection, Replay
// waits, and after the restart Run goes on with no loss and no repeat.
func TestNATSEngineOutage(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	e := newTestNATSEngine(t, NATSConfig{URLs: []string{ns.URL}}, 100, time.Hour)
	got := make(chan *Event, 100)
	stop := suiteRun(t, e, func(ev *Event) { got <- ev })
	var want []uint64
	for range 3 {
		want = append(want, pub(t, e, "a"))
	}
	for _, id := range want {
		if ev := recv(t, got); ev.ID != id {
			t.Fatalf("delivered %d, want %d", ev.ID, id)
		}
	}

	ns.Stop()
	awaitReady(t, e, false)
	if err := e.Ready(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ready() while NATS is down = %v, want ErrUnavailable", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	start := time.Now()
	_, err := e.Publish(ctx, &Event{Stream: "a", Data: []byte(`{}`)})
	cancel()
	if !errors.Is(err, ErrUnavailable) || time.Since(start) > 5*time.Second {
		t.Errorf("Publish while NATS is down = %v after %v, want ErrUnavailable at once", err, time.Since(start))
	}
	ctx, cancel = context.WithTimeout(t.Context(), 100*time.Millisecond)
	_, err = e.Replay(ctx, []string{"a"}, want[0], 100)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Replay while NATS is down = %v, want it to wait for NATS until its context ends", err)
	}

	ns.Start(t)
	awaitReady(t, e, true)
	more := []uint64{pub(t, e, "a"), pub(t, e, "b")}
	for _, id := range more {
		if ev := recv(t, got); ev.ID != id {
			t.Fatalf("after the restart delivered %d, want %d", ev.ID, id)
		}
	}
	if r := suiteReplay(t, e, []string{"a", "b"}, want[0], 100); !slices.Equal(idsOf(r.Events), append(want[1:], more...)) {
		t.Errorf("Replay after the restart = %v, reset %q; want %v", idsOf(r.Events), r.Reset, append(want[1:], more...))
	}
	if err := stop(); err != nil {
		t.Errorf("Run() = %v", err)
	}
	select {
	case ev := <-got:
		t.Errorf("extra delivery %d: want each event once", ev.ID)
	default:
	}
}

// TestNATSEngineMemoryStorageRestart: a NATS server that keeps the stream in
// memory loses it in a restart. The engine creates it again, above every
// old id, so resumes from before reset and Run reports the gap.
func TestNATSEngineMemoryStorageRestart(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	e := newTestNATSEngine(t, NATSConfig{URLs: []string{ns.URL}, Storage: natsStorageMemory}, 100, time.Hour)
	gap := make(chan struct{}, 10)
	e.setGapHandler(func() { gap <- struct{}{} })
	got := make(chan *Event, 100)
	suiteRun(t, e, func(ev *Event) { got <- ev })
	old := pub(t, e, "a")
	recv(t, got)

	ns.Stop()
	ns.Start(t)
	var next uint64
	for next == 0 { // publish until the stream is back (each try fails at once)
		awaitReady(t, e, true)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		id, err := e.Publish(ctx, &Event{Stream: "a", Data: []byte(`{}`)})
		cancel()
		if err != nil && !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Publish after the restart = %v, want success or ErrUnavailable", err)
		}
		next = id
	}
	if next <= old {
		t.Errorf("first id of the re-created stream %d, want above the old %d", next, old)
	}
	recv(t, gap)
	if ev := recv(t, got); ev.ID != next {
		t.Errorf("delivered %d after the restart, want %d", ev.ID, next)
	}
	if r := suiteReplay(t, e, []string{"a"}, old, 100); r.Reset != ResetHistoryLost {
		t.Errorf("Replay(a, old id) = %v, reset %q; want a reset: the history was lost", idsOf(r.Events), r.Reset)
	}
}

// TestNATSEngineLeaksNothing is not parallel: goleak sees every goroutine.
func TestNATSEngineLeaksNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	ns := startNATS(t)
	ctx, cancel := context.WithTimeout(t.Context(), suiteWait)
	defer cancel()
	e, err := NewNATSEngine(ctx, NATSConfig{URLs: []string{ns.URL}}, 100, time.Hour, 64<<10, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Event, 10)
	runCtx, stopRun := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- e.Run(runCtx, func(batch []*Event) {
			for _, ev := range batch {
				got <- ev
			}
		})
	}()
	id := pub(t, e, "a")
	if ev := recv(t, got); ev.ID != id {
		t.Errorf("delivered %d, want %d", ev.ID, id)
	}
	if r := suiteReplay(t, e, []string{"a"}, id-1, 10); len(r.Events) != 1 {
		t.Errorf("Replay = %v, want [%d]", idsOf(r.Events), id)
	}
	stopRun()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v", err)
	}
	e.Close()
	ns.Stop()
}

// TestNATSEngineCluster runs two engines against a three-server NATS
// cluster with a stream of three replicas: the suite's basics hold, and
// replays pass the check that their consumer's replica did not lag.
func TestNATSEngineCluster(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a NATS cluster")
	}
	urls := urlsOf(startNATSCluster(t, 3)...)
	// Each engine talks to another server; the start waits for the cluster.
	cfg := NATSConfig{URLs: urls[:1], Replicas: 3, ConnectTimeout: suiteWait}
	a := newTestNATSEngine(t, cfg, 100, time.Hour)
	cfg.URLs = urls[2:]
	b := newTestNATSEngine(t, cfg, 100, time.Hour)
	got := make(chan *Event, 100)
	suiteRun(t, b, func(ev *Event) { got <- ev })

	var ids []uint64
	for i := range 20 {
		ids = append(ids, pub(t, a, []string{"a", "b"}[i%2]))
	}
	for _, id := range ids {
		if ev := recv(t, got); ev.ID != id {
			t.Fatalf("engine B delivered %d, want %d", ev.ID, id)
		}
	}
	for _, e := range []Engine{a, b} {
		r := suiteReplay(t, e, []string{"a", "b"}, ids[4], 100)
		if r.Reset != "" || !slices.Equal(idsOf(r.Events), ids[5:]) {
			t.Errorf("Replay(a+b, %d) = %v, reset %q; want %v", ids[4], idsOf(r.Events), r.Reset, ids[5:])
		}
	}
}

// TestEvictAllClosesEveryConnection: the gap handler the nats engine gets
// in Serve closes every SSE connection, so each browser resumes from its
// Last-Event-ID.
func TestEvictAllClosesEveryConnection(t *testing.T) {
	t.Parallel()
	f := newHubFixture(t, 8, 10*time.Second, 0)
	var bodies []io.Reader
	for _, q := range []string{"stream=a", "stream=a&stream=b", "stream=c"} {
		bodies = append(bodies, getEvents(t, f.srv.URL+"/events?"+q, nil))
	}
	f.publish(t, "a", `"before"`)
	f.hub.evictAll(evictEngineGap)
	for _, body := range bodies {
		// The stream ends (cut short: the write deadline is set to now),
		// which is what makes EventSource reconnect.
		ended := make(chan error, 1)
		go func() { _, err := io.ReadAll(body); ended <- err }()
		_ = recv(t, ended)
	}
	if n := f.hub.evictionCount(evictEngineGap); n != int64(len(bodies)) {
		t.Errorf("evictions for %s = %d, want %d", evictEngineGap, n, len(bodies))
	}
}

// TestNATSEngineCreatedAsAsked: a NATS server older than 2.12 creates the
// stream in sync mode whatever --nats-persist async asked for (no such
// server is at hand: the check is fed what one answers); the start then
// fails, naming the version and the two ways out.
func TestNATSEngineCreatedAsAsked(t *testing.T) {
	t.Parallel()
	async := jetstream.StreamConfig{Name: "BRIDGE", PersistMode: jetstream.AsyncPersistMode}
	sync := jetstream.StreamConfig{Name: "BRIDGE"}
	if err := createdAsAsked(async, async); err != nil {
		t.Errorf("async asked, async created: %v", err)
	}
	if err := createdAsAsked(sync, sync); err != nil {
		t.Errorf("sync asked, sync created: %v", err)
	}
	err := createdAsAsked(async, sync)
	for _, want := range []string{`stream "BRIDGE"`, "persist mode sync, not async", "nats-server 2.12 or later", "--nats-persist sync"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("async asked, sync created: %v, want an error saying %q", err, want)
		}
	}
}
