package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestParsePubAck: the reader of JetStream's acks without reflection reads
// what the server sends (PubAcks with and without duplicate, domain, batch
// or counter members, in any spacing) as encoding/json does, and leaves
// everything else (errors, escapes, nested values, bad syntax) to it.
func TestParsePubAck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ack     string
		seq     uint64
		dup, ok bool
	}{
		{ack: `{"stream":"BRIDGE","seq":12}`, seq: 12, ok: true},
		{ack: `{"stream":"BRIDGE","seq":1795633221073630,"duplicate":true}`, seq: 1795633221073630, dup: true, ok: true},
		{ack: `{"stream":"BRIDGE", "domain":"hub", "seq":7, "duplicate": false}`, seq: 7, ok: true},
		{ack: " {\n\"stream\" : \"BRIDGE\" ,\t\"seq\" : 0 } ", seq: 0, ok: true},
		{ack: `{"stream":"BRIDGE","seq":9,"batch":"b1","count":3,"val":"5","x":null,"y":1.5e3}`, seq: 9, ok: true},
		{ack: `{"seq":3,"stream":"BRIDGE"}`, seq: 3, ok: true},
		{ack: `{"error":{"code":503,"err_code":10077,"description":"resource limits exceeded"}}`},
		{ack: `{"stream":"BRIDGE","seq":4,"error":{"code":400}}`},
		{ack: `{"stream":"BRI\"DGE","seq":4}`},
		{ack: `{"stream":"BRIDGE","seq":4,"domain":"a\\b"}`},
		{ack: `{"stream":"BRIDGE"}`},
		{ack: `{"seq":4}`},
		{ack: `{"stream":"","seq":4}`},
		{ack: `{"stream":"BRIDGE","seq":-4}`},
		{ack: `{"stream":"BRIDGE","seq":04}`},
		{ack: `{"stream":"BRIDGE","seq":4.0}`},
		{ack: `{"stream":"BRIDGE","seq":99999999999999999999}`},
		{ack: `{"stream":"BRIDGE","seq":4,"duplicate":1}`},
		{ack: `{"stream":"BRIDGE","seq":4,"x":[1]}`},
		{ack: `{"stream":"BRIDGE","seq":4,"x":{}}`},
		{ack: `{"stream":"BRIDGE","seq":4} x`},
		{ack: `{"stream":"BRIDGE","seq":4,}`},
		{ack: `{"stream":"BRIDGE","seq":4`},
		{ack: `{"stream":"BRIDGE" "seq":4}`},
		{ack: `{}`},
		{ack: `[]`},
		{ack: ``},
	} {
		seq, dup, ok := parsePubAck([]byte(tc.ack))
		if seq != tc.seq || dup != tc.dup || ok != tc.ok {
			t.Errorf("parsePubAck(%s) = %d, %t, %t, want %d, %t, %t", tc.ack, seq, dup, ok, tc.seq, tc.dup, tc.ok)
		}
		if !ok {
			continue
		}
		var pa struct {
			Stream    string `json:"stream"`
			Sequence  uint64 `json:"seq"`
			Duplicate bool   `json:"duplicate"`
		}
		if err := json.Unmarshal([]byte(tc.ack), &pa); err != nil || pa.Sequence != seq || pa.Duplicate != dup || pa.Stream == "" {
			t.Errorf("encoding/json reads %s as %+v (%v), parsePubAck as %d, %t", tc.ack, pa, err, seq, dup)
		}
	}
}

// TestReadPubAck: what encoding/json reads when the fast reader does not,
// and the replies that are no PubAck.
func TestReadPubAck(t *testing.T) {
	t.Parallel()
	ack := readPubAck(&nats.Msg{Data: []byte(`{"stream":"BRIDGE","seq":5,"duplicate":true}`)})
	if ack.err != nil || ack.seq != 5 || !ack.duplicate {
		t.Errorf("a duplicate's PubAck read as %+v", ack)
	}
	ack = readPubAck(&nats.Msg{Data: []byte(`{"stream":"BRI\u0044GE","seq":6}`)})
	if ack.err != nil || ack.seq != 6 || ack.duplicate {
		t.Errorf("a PubAck with an escape read as %+v", ack)
	}
	ack = readPubAck(&nats.Msg{Data: []byte(`{"error":{"code":409,"err_code":10158,"description":"duplicate message id is in process"}}`)})
	if !isDuplicateInProcess(ack.err) {
		t.Errorf("an error reply read as %+v, want the API error", ack)
	}
	ack = readPubAck(&nats.Msg{Header: nats.Header{"Status": {"503"}}})
	if !errors.Is(ack.err, jetstream.ErrNoStreamResponse) || !unavailable(ack.err) {
		t.Errorf("a no-responders reply read as %+v, want ErrNoStreamResponse", ack)
	}
	for _, data := range []string{``, `{"seq":6}`, `not json`} {
		if ack := readPubAck(&nats.Msg{Data: []byte(data)}); !errors.Is(ack.err, jetstream.ErrInvalidJSAck) {
			t.Errorf("reply %q read as %+v, want ErrInvalidJSAck", data, ack)
		}
	}
}

// TestAckMetadata reads the stream sequence and time from both forms of a
// delivered message's reply subject, as nats.go's Metadata does.
func TestAckMetadata(t *testing.T) {
	t.Parallel()
	const ts = 1795633221073630123
	for _, tc := range []struct {
		reply string
		seq   uint64
		ok    bool
	}{
		{reply: "$JS.ACK.BRIDGE.cons.1.42.40.1795633221073630123.0", seq: 42, ok: true},
		{reply: "$JS.ACK._.ACCHASH.BRIDGE.cons.1.42.40.1795633221073630123.7.rnd", seq: 42, ok: true},
		{reply: "$JS.ACK.hub.ACCHASH.BRIDGE.cons.1.42.40.1795633221073630123.7", seq: 42, ok: true},
		{reply: "$JS.ACK.BRIDGE.cons.1.42.40.1795633221073630123", ok: false},
		{reply: "$JS.ACK.x.BRIDGE.cons.1.42.40.1795633221073630123.0", ok: false},
		{reply: "$JS.ACK.BRIDGE.cons.1.x.40.1795633221073630123.0", ok: false},
		{reply: "$JS.ACK.BRIDGE.cons.1.0.40.1795633221073630123.0", ok: false},
		{reply: "$JS.ACK.BRIDGE.cons.1.42.40.99999999999999999999.0", ok: false},
		{reply: "_INBOX.BRIDGE.cons.1.42.40.1795633221073630123.0", ok: false},
		{reply: "", ok: false},
	} {
		seq, stored, ok := ackMetadata(tc.reply)
		if ok != tc.ok || ok && (seq != tc.seq || !stored.Equal(time.Unix(0, ts))) {
			t.Errorf("ackMetadata(%q) = %d, %v, %t, want %d, %v, %t", tc.reply, seq, stored, ok, tc.seq, time.Unix(0, ts), tc.ok)
		}
	}
}

// TestNATSAcksBackpressure: with every slot taken, a publish waits for one:
// it gets it once an ack frees one, or gives up when its wait ends
// (UNAVAILABLE, naming the limit) or its context does (counted as refused
// either way).
func TestNATSAcksBackpressure(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	nc, err := nats.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	a, err := newNATSAcks(nc, 1)
	if err != nil {
		t.Fatal(err)
	}
	forever := func() time.Duration { return suiteWait }
	if err := a.acquire(t.Context(), forever); err != nil {
		t.Fatalf("first slot: %v", err)
	}
	err = a.acquire(t.Context(), func() time.Duration { return time.Millisecond })
	if !errors.Is(err, errTooManyPending) || !unavailable(err) || !strings.Contains(err.Error(), "1 events") {
		t.Errorf("acquire with every slot taken = %v, want errTooManyPending (unavailable) naming the limit of 1", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := a.acquire(ctx, forever); !errors.Is(err, context.Canceled) {
		t.Errorf("acquire with a cancelled context = %v, want context.Canceled", err)
	}
	// Whether the next one waits depends on when its goroutine runs; that
	// it gets the freed slot does not (TestNATSEngineMaxPending sees
	// publishes wait).
	got := make(chan error, 1)
	go func() { got <- a.acquire(t.Context(), forever) }()
	a.release(1) // as an ack does
	if err := <-got; err != nil {
		t.Fatalf("acquire once a slot was freed = %v", err)
	}
	if n, limit := a.pending(); n != 1 || limit != 1 || a.waited.Load() > 1 || a.refused.Load() != 2 {
		t.Errorf("pending %d of %d, waited %d, refused %d; want 1 of 1, at most 1, 2", n, limit, a.waited.Load(), a.refused.Load())
	}
}
