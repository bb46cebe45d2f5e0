package bridge_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gosse "github.com/tmaxmax/go-sse"

	"github.com/sse-bridge/bridge/internal/bridge"
)

// TestOddLastEventIDs sends values no browser of this bridge would send as
// its Last-Event-ID, in the header and in the lastEventId parameter, and
// checks each subscription gets what the contract says (docs/contract.md,
// resume): no reset or one reset with the given reason, then the event
// published after it connected. Never silence, never an old event.
func TestOddLastEventIDs(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{})
	const fresh = "" // no reset: a fresh subscription
	for i, tc := range []struct {
		name, value string
		reset       string // the reason of the reset first, or fresh
	}{
		{"negative", "-1", fresh},
		{"2^63", "9223372036854775808", bridge.ResetUnknownID},
		{"2^64-1", "18446744073709551615", bridge.ResetUnknownID},
		{"2^64", "18446744073709551616", bridge.ResetUnknownID},
		{"twenty nines", strings.Repeat("9", 20), bridge.ResetUnknownID},
		{"exponent", "1e400", fresh},
		{"arabic-indic digits", "١٢٣", fresh},
		{"full-width digits", "１２３", fresh},
		// The bridge's ids count microseconds since 1970: small ones are
		// from before its history.
		{"zero", "0", bridge.ResetHistoryLost},
		{"10 KB of digits", strings.Repeat("7", 10<<10), bridge.ResetUnknownID},
		{"10 KB of letters", strings.Repeat("x", 10<<10), fresh},
		{"empty", "", fresh},
		{"space padded", " 123 ", bridge.ResetHistoryLost},
		{"plus sign", "+5", fresh},
		{"hex", "0x10", fresh},
	} {
		for _, via := range []string{"header", "query"} {
			t.Run(tc.name+"/"+via, func(t *testing.T) {
				t.Parallel()
				stream := fmt.Sprintf("odd.%d.%s", i, via)
				c := subscribeLastID(t, b, stream, via, tc.value)
				first, err := liveAfterConnect(t, b, c, stream, waitLimit)
				if err != nil {
					t.Fatalf("Last-Event-ID %.40q in the %s: %v", tc.value, via, err)
				}
				var data struct{ Reason, LastEventID string }
				if first.Type == bridge.ResetEvent {
					if err := json.Unmarshal([]byte(first.Data), &data); err != nil || data.LastEventID != first.LastEventID {
						t.Fatalf("reset %+v: data is not {reason, lastEventId} with the frame's id (%v)", first, err)
					}
				}
				if data.Reason != tc.reset {
					t.Fatalf("Last-Event-ID %.40q in the %s: first frame %+v, want the live event after a reset %q (none when empty)", tc.value, via, first, tc.reset)
				}
			})
		}
	}
}

// subscribeLastID subscribes to stream with lastID as its Last-Event-ID:
// in the header (sent as it is, even empty) or the lastEventId parameter.
// Once it returns, the bridge has registered the connection (subscribe).
func subscribeLastID(t *testing.T, b *testBridge, stream, via, lastID string) *sseClient {
	t.Helper()
	query := "stream=" + stream
	h := http.Header{}
	if via == "header" {
		h["Last-Event-Id"] = []string{lastID}
	} else {
		query += "&lastEventId=" + url.QueryEscape(lastID)
	}
	return subscribeWith(t, b.baseURL, query, h)
}

// liveAfterConnect publishes one event to stream, on which c was just
// registered, and checks it is c's next frame, or the one after a
// bridge.reset, each within limit. It returns c's first frame.
func liveAfterConnect(t *testing.T, b *testBridge, c *sseClient, stream string, limit time.Duration) (first gosse.Event, _ error) {
	t.Helper()
	live := id(b.publish(t, jsonReq(t, stream, "live")))
	first, err := nextWithin(c, limit)
	if err != nil {
		return first, err
	}
	ev := first
	if ev.Type == bridge.ResetEvent {
		if ev, err = nextWithin(c, limit); err != nil {
			return first, fmt.Errorf("after the reset: %w", err)
		}
	}
	if ev.Type != "" || ev.LastEventID != live {
		return first, fmt.Errorf("frame %+v, want the event published after connecting (id %s)", ev, live)
	}
	return first, nil
}

// nextWithin returns c's next event, or an error when the stream ends or
// stays silent for limit.
func nextWithin(c *sseClient, limit time.Duration) (gosse.Event, error) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case ev, ok := <-c.events:
		if !ok {
			return gosse.Event{}, fmt.Errorf("stream ended")
		}
		return ev, nil
	case <-timer.C:
		return gosse.Event{}, fmt.Errorf("no event within %v: a silent stream", limit)
	}
}

// idLike is what the bridge takes for an attempt at an id (docs/contract.md):
// decimal digits, with spaces or tabs around them.
var idLike = regexp.MustCompile(`^[ \t]*[0-9]+[ \t]*$`)

// sendableHeader reports whether Go's HTTP client sends v as a header value
// (RFC 9110 field-value: no control characters but tab).
func sendableHeader(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// fuzzStreams names each fuzz iteration's stream, so no iteration sees
// another's events.
var fuzzStreams atomic.Uint64

// FuzzLastEventIDSubscribe sends any value as the Last-Event-ID, through the
// whole subscribe path of a real bridge (HTTP, admission, the hub, the
// engine's history): whatever the value, the event published after the
// connect arrives, after at most one bridge.reset, and only a value that
// looks like an id gets a reset. A silent stream fails.
func FuzzLastEventIDSubscribe(f *testing.F) {
	for _, s := range []string{"", "42", "18446744073709551616", "-1", "١٢٣"} {
		f.Add(s, false)
	}
	f.Add("99999999999999999999", true)
	// The connect rate is off: a fuzzer connects faster than any browser.
	b := startBridge(f, bridge.Config{ConnectRate: -1})
	f.Fuzz(func(t *testing.T, lastID string, inQuery bool) {
		// The header must fit the bridge's header limit (32 KiB) and be one
		// Go's client sends; anything else goes in the query, escaped.
		via := "header"
		if inQuery || len(lastID) > 16<<10 || !sendableHeader(lastID) {
			via = "query"
		}
		if len(lastID) > 16<<10 {
			t.Skip("longer than a request may be")
		}
		stream := fmt.Sprintf("fuzz.%d", fuzzStreams.Add(1))
		c := subscribeLastID(t, b, stream, via, lastID)
		// Which reset an id gets depends on where it falls against history;
		// that it gets one, and only then, does not.
		ev, err := liveAfterConnect(t, b, c, stream, 5*time.Second)
		if err != nil {
			t.Fatalf("Last-Event-ID %q in the %s: %v", lastID, via, err)
		}
		if ev.Type == bridge.ResetEvent && !idLike.MatchString(lastID) {
			t.Fatalf("Last-Event-ID %q in the %s: got %+v, want no reset for a value that is not an id", lastID, via, ev)
		}
	})
}
