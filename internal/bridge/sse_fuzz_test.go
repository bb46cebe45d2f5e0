package bridge

import (
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// streamGrammar is the documented stream name grammar (docs/contract.md, docs/security.md),
// written as a regular expression to check ValidStreamName against.
var streamGrammar = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

func grammarStreamName(s string, maxName int) bool {
	if maxName <= 0 {
		maxName = MaxStreamName
	}
	return len(s) <= maxName && streamGrammar.MatchString(s)
}

// FuzzParseStreams: the stream parameters either are refused with an error
// and the reason to count, or come back de-duplicated, in order, every one
// matching the grammar within the length limit, and no more of them than
// the limit (none when it is zero); never a panic.
func FuzzParseStreams(f *testing.F) {
	for _, s := range []string{"orders", "a.b\x00c", "a..b", ".a", "a.", "a\rb", "a\nb", "user.42\x1euser.42", "", "é", strings.Repeat("a.", 64) + "b"} {
		f.Add(s, uint8(3), uint8(0))
	}
	f.Add("abcdef\x1eab", uint8(0), uint8(4))
	f.Fuzz(func(t *testing.T, joined string, limit, maxName uint8) {
		// \x1e separates names: a fuzzer's way to send several stream=.
		names := strings.Split(joined, "\x1e")
		got, reason, err := parseStreams(names, int(limit), int(maxName))
		var uniq []string
		allValid, tooLong := true, false
		for _, n := range names {
			if !grammarStreamName(n, int(maxName)) {
				allValid = false
				tooLong = tooLong || streamGrammar.MatchString(n)
			}
			if !slices.Contains(uniq, n) {
				uniq = append(uniq, n)
			}
		}
		overLimit := limit > 0 && len(uniq) > int(limit)
		if err != nil {
			if allValid && !overLimit {
				t.Fatalf("parseStreams(%q, %d, %d) = %v, want %q", names, limit, maxName, err, uniq)
			}
			if !slices.Contains([]string{rejectBadRequest, rejectStreamNameTooLong, rejectTooManyStreams}, reason) ||
				(reason == rejectStreamNameTooLong && !tooLong) || (reason == rejectTooManyStreams && !overLimit) {
				t.Fatalf("parseStreams(%q, %d, %d) reason %q for %v", names, limit, maxName, reason, err)
			}
			return
		}
		if !allValid || overLimit || !slices.Equal(got, uniq) {
			t.Fatalf("parseStreams(%q, %d, %d) = %q, want an error or %q", names, limit, maxName, got, uniq)
		}
	})
}

// FuzzParseEventID: a Last-Event-ID resumes only when it is ASCII digits,
// with spaces or tabs around them: the id they say, or MaxUint64 when that
// is above the uint64 range. Anything else is absent (id zero), never a
// panic.
func FuzzParseEventID(f *testing.F) {
	for _, s := range []string{"0", "42", "18446744073709551615", "18446744073709551616", strings.Repeat("9", 30), "-1", "+1", "1e3", " 1", "\t1 ", " ", "1\r", "1\x00", "٣", "00000000000000000001", ""} {
		f.Add(s)
	}
	digits := regexp.MustCompile(`^[ \t]*([0-9]+)[ \t]*$`)
	f.Fuzz(func(t *testing.T, s string) {
		id, resume := parseEventID(s)
		var want uint64
		m := digits.FindStringSubmatch(s)
		if m != nil {
			var err error
			if want, err = strconv.ParseUint(m[1], 10, 64); err != nil {
				want = math.MaxUint64
			}
		}
		if resume != (m != nil) || id != want {
			t.Fatalf("parseEventID(%q) = %d, %v; want %d, %v", s, id, resume, want, m != nil)
		}
	})
}

// FuzzParseFormat: only the three documented names (and none) are formats.
func FuzzParseFormat(f *testing.F) {
	for _, s := range []string{"", "data", "envelope", "cloudevents", "Data", "data\x00", "envelope\n", "json"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		format, ok := parseFormat(s)
		switch s {
		case "", "data":
			ok = ok && format == FormatData
		case "envelope":
			ok = ok && format == FormatEnvelope
		case "cloudevents":
			ok = ok && format == FormatCloudEvents
		default:
			ok = !ok
		}
		if !ok {
			t.Fatalf("parseFormat(%q) = %d, want the documented mapping", s, format)
		}
	})
}

// unauthorizedErrors are the only bodies of a 401.
var unauthorizedErrors = []error{errNoToken, errTwoTokens, errNotBearer, errTokenQuery, errQueryTokenOff, errTokenMalformed, errTokenExpired, errTokenNotYetValid,
	errTokenNoExpiry, errTokenBadSignature, errTokenWrongAudience, errTokenWrongIssuer, errTokenInvalid, errTokenNoGrants, errTokenUnknownKey}

// FuzzSubscribeRequest sends whatever a client controls (the query, the
// Last-Event-ID, Origin, Authorization and Cookie headers) to the /events
// handler, with auth on and a hub that is shutting down, so an accepted
// request ends at once. The answer is always one of the documented
// statuses, decided in the documented order, and never carries an event;
// nothing panics.
func FuzzSubscribeRequest(f *testing.F) {
	f.Add("stream=orders", "", "", "", "")
	f.Add("stream=orders&stream=user.42&format=envelope&lastEventId=5", "7", "https://app.example", "Bearer x.y.z", "__Secure-bridge_token=abc")
	f.Add("stream=a%0Db&format=data%00", "1\r\nid: 9", "https://app.example\r\n", "Bearer \x00", "a=b; __Secure-bridge_token=\x00")
	f.Add("stream=public.news&access_token=a%0Ab", "", "null", "", "")
	f.Add("stream=%zz", "", "", "", "")
	f.Add("stream=public.x&stream=public.x&stream=public.y&stream=public.z&stream=public.w&stream=public.v", "", "", "", "")
	f.Add(";stream=a&&=&stream", "٣", "http://bridge.test", "bearer  tok", "")
	h := newHub(NewMemoryEngine(10, time.Hour), 8, 10, slog.New(slog.DiscardHandler))
	h.close()
	f.Cleanup(h.lib.Close)
	cfg := Config{JWTKey: "unused", AuthQueryToken: true, PublicStreams: []string{"public.>"}, CORSOrigins: []string{"https://app.example"}}
	if err := cfg.Validate(); err != nil {
		f.Fatal(err)
	}
	auth := newAuthenticatorWithKey([]byte("fuzz secret of at least thirty-two bytes"), "HS256", &cfg)
	cfg.MaxStreamsPerConnection = 4
	handler := newSSEHandler(&cfg, h, auth, nil)
	f.Fuzz(func(t *testing.T, rawQuery, lastID, origin, authorization, cookie string) {
		r := &http.Request{
			Method:     http.MethodGet,
			URL:        &url.URL{Path: "/events", RawQuery: rawQuery},
			RequestURI: "/events?" + rawQuery,
			Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{},
			Host:   "bridge.test",
		}
		for k, v := range map[string]string{"Last-Event-Id": lastID, "Origin": origin, "Authorization": authorization, "Cookie": cookie} {
			if v != "" {
				r.Header[k] = []string{v}
			}
		}
		r = r.WithContext(t.Context())
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)

		// The documented order: origin (403), query and stream names and
		// format (400), then the token (401/403); a request that passes
		// them all meets the closed hub: 200 and the end of the stream.
		query, queryErr := url.ParseQuery(rawQuery)
		var want []int
		switch {
		case !handler.cors.allowed(origin, r.Host):
			want = []int{http.StatusForbidden}
		case queryErr != nil:
			want = []int{http.StatusBadRequest}
		default:
			_, _, streamsErr := parseStreams(query["stream"], handler.maxStreams, handler.maxStreamName)
			_, formatOK := parseFormat(query.Get("format"))
			if streamsErr != nil || !formatOK {
				want = []int{http.StatusBadRequest}
			} else {
				want = []int{http.StatusOK, http.StatusUnauthorized, http.StatusForbidden}
			}
		}
		if !slices.Contains(want, w.Code) {
			t.Fatalf("GET /events?%q (Last-Event-ID %q, Origin %q) = %d %q, want one of %v", rawQuery, lastID, origin, w.Code, w.Body, want)
		}
		body := w.Body.Bytes()
		if w.Code == http.StatusOK {
			for _, name := range query["stream"] {
				if !grammarStreamName(name, handler.maxStreamName) {
					t.Fatalf("stream %q accepted", name)
				}
			}
		}
		if s := parseSSE(body); len(s.Events) > 0 {
			t.Fatalf("answer %d carries events %+v", w.Code, s.Events)
		}
		// A 401 says what to do in fixed words: it never echoes the token.
		if w.Code == http.StatusUnauthorized {
			msg := strings.TrimSuffix(w.Body.String(), "\n")
			if msg != noTokenMessage(cfg.AuthCookie) && !slices.ContainsFunc(unauthorizedErrors, func(e error) bool { return e.Error() == msg }) {
				t.Fatalf("401 body %q is not one of the fixed messages", msg)
			}
		}
	})
}
