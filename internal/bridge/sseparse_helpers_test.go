package bridge

import (
	"bytes"
	"strconv"
	"testing"
)

// sseEvent is one event as a browser dispatches it.
type sseEvent struct {
	ID   string // the last event ID buffer when the event was dispatched
	Type string // "message" when the frame named none
	Data string
}

// sseStream is what a browser makes of a response body.
type sseStream struct {
	Events   []sseEvent
	Retries  []int64  // every valid retry field, in order
	Comments []string // the text of every comment line, without the colon
	// Unterminated is the trailing bytes after the last line break, which
	// a browser ignores until the line ends.
	Unterminated string
}

// parseSSE follows the WHATWG HTML "event stream interpretation" (§9.2.6),
// written apart from both SSE libraries so that it can judge them: lines
// end at CRLF, LF or CR; a line starting with a colon is a comment; the
// fields are event, data, id and retry (others are ignored); one space after
// the colon is dropped; data lines are joined with LF; a blank line
// dispatches; an id containing NUL is ignored; a retry that is not all
// ASCII digits is ignored; an event with empty data is not dispatched; the
// last event ID persists across events. A leading BOM is dropped.
func parseSSE(b []byte) sseStream {
	var (
		out               sseStream
		data, typ, lastID []byte
		hasData           bool
	)
	b = bytes.TrimPrefix(b, []byte("\xEF\xBB\xBF"))
	for len(b) > 0 {
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			out.Unterminated = string(b)
			break
		}
		line := b[:i]
		if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
			i++ // CRLF is one line break
		}
		b = b[i+1:]
		switch {
		case len(line) == 0:
			if hasData {
				out.Events = append(out.Events, sseEvent{
					ID:   string(lastID),
					Type: string(orDefault(typ, "message")),
					Data: string(bytes.TrimSuffix(data, []byte("\n"))),
				})
			}
			data, typ, hasData = nil, nil, false
		case line[0] == ':':
			out.Comments = append(out.Comments, string(line[1:]))
		default:
			field, value, found := bytes.Cut(line, []byte(":"))
			if found {
				value = bytes.TrimPrefix(value, []byte(" "))
			}
			switch string(field) {
			case "event":
				typ = append([]byte{}, value...)
			case "data":
				data = append(append(data, value...), '\n')
				hasData = true
			case "id":
				if bytes.IndexByte(value, 0) < 0 {
					lastID = append([]byte{}, value...)
				}
			case "retry":
				if n, err := strconv.ParseInt(string(value), 10, 64); err == nil && allDigits(value) {
					out.Retries = append(out.Retries, n)
				}
			}
		}
	}
	return out
}

func orDefault(b []byte, def string) []byte {
	if len(b) == 0 {
		return []byte(def)
	}
	return b
}

func allDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func TestParseSSEFollowsTheSpec(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		want []sseEvent
	}{
		{"fields", "id: 1\nevent: a\ndata: x\n\n", []sseEvent{{"1", "a", "x"}}},
		{"default type", "data: x\n\n", []sseEvent{{"", "message", "x"}}},
		{"CRLF", "id: 1\r\ndata: x\r\n\r\n", []sseEvent{{"1", "message", "x"}}},
		{"CR", "id: 1\rdata: x\r\r", []sseEvent{{"1", "message", "x"}}},
		{"CR then LF across lines", "data: a\r\ndata: b\n\n", []sseEvent{{"", "message", "a\nb"}}},
		{"one space dropped", "data:  x\n\n", []sseEvent{{"", "message", " x"}}},
		{"no space", "data:x\n\n", []sseEvent{{"", "message", "x"}}},
		{"field without colon", "data\n\n", []sseEvent{{"", "message", ""}}},
		{"data joined with LF", "data: a\ndata: b\n\n", []sseEvent{{"", "message", "a\nb"}}},
		{"comment", ": ping\n\ndata: x\n\n", []sseEvent{{"", "message", "x"}}},
		{"retry and unknown fields", "retry: 10\nfoo: bar\ndata: x\n\n", []sseEvent{{"", "message", "x"}}},
		{"id persists", "id: 5\ndata: a\n\ndata: b\n\n", []sseEvent{{"5", "message", "a"}, {"5", "message", "b"}}},
		{"empty id resets", "id: 5\ndata: a\n\nid\ndata: b\n\n", []sseEvent{{"5", "message", "a"}, {"", "message", "b"}}},
		{"id with NUL ignored", "id: 5\ndata: a\n\nid: 6\x007\ndata: b\n\n", []sseEvent{{"5", "message", "a"}, {"5", "message", "b"}}},
		{"empty data not dispatched", "event: a\n\ndata: x\n\n", []sseEvent{{"", "message", "x"}}},
		{"type reset after dispatch", "event: a\ndata: 1\n\ndata: 2\n\n", []sseEvent{{"", "a", "1"}, {"", "message", "2"}}},
		{"unterminated event dropped", "data: a\n\ndata: b\n", []sseEvent{{"", "message", "a"}}},
		{"BOM", "\xEF\xBB\xBFdata: x\n\n", []sseEvent{{"", "message", "x"}}},
		{"LF in data injects a field", "id: 1\ndata: {\nid: 666\n\n", []sseEvent{{"666", "message", "{"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := parseSSE([]byte(tc.in)).Events
			if len(got) != len(tc.want) {
				t.Fatalf("parseSSE(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("parseSSE(%q) event %d = %+v, want %+v", tc.in, i, got[i], tc.want[i])
				}
			}
		})
	}
	s := parseSSE([]byte("retry: 1500\nretry: 1x\nretry: -1\n: hello\n\n"))
	if len(s.Retries) != 1 || s.Retries[0] != 1500 || len(s.Comments) != 1 || s.Comments[0] != " hello" {
		t.Errorf("parseSSE retries %v comments %q, want [1500] and [\" hello\"]", s.Retries, s.Comments)
	}
}
