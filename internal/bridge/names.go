package bridge

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// MaxStreamName is the default of [Config.MaxStreamName]: the longest stream
// name accepted, in bytes.
const MaxStreamName = 128

// maxStreamNameLimit is the most [Config.MaxStreamName] may be raised to: a
// name becomes a NATS subject, and NATS keeps subjects well under its
// control line (4 KiB by default).
const maxStreamNameLimit = 1024

// MaxTypeName is the longest SSE event name accepted, in bytes.
const MaxTypeName = 256

// ResetEvent is the SSE event name of the frame sent when history cannot cover
// the gap between a client's Last-Event-ID and now. Publishers may not use it.
const ResetEvent = "bridge.reset"

// ValidStreamName reports whether name is a valid stream name:
// ^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$ and at most [MaxStreamName] bytes, so a
// name maps one to one onto a NATS subject.
func ValidStreamName(name string) bool {
	return len(name) <= MaxStreamName && validStreamSyntax(name)
}

// validStreamName reports whether name is a valid stream name of at most
// limit bytes ([MaxStreamName] when limit is zero).
func validStreamName(name string, limit int) bool {
	if limit <= 0 {
		limit = MaxStreamName
	}
	return len(name) <= limit && validStreamSyntax(name)
}

// validStreamSyntax reports whether name follows the stream name pattern,
// whatever its length: the length limit is checked where names come in
// (Publish, /events), so that nodes with different limits still agree on
// the events they share.
func validStreamSyntax(name string) bool {
	if name == "" {
		return false
	}
	prevDot := true // a name may not start with a dot
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			if prevDot {
				return false
			}
			prevDot = true
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
			prevDot = false
		default:
			return false
		}
	}
	return !prevDot
}

// streamNameError says what is wrong with a stream name checked against a
// limit of limit bytes ([MaxStreamName] when zero), for a gRPC status or an
// HTTP 400 body.
func streamNameError(name string, limit int) error {
	if limit <= 0 {
		limit = MaxStreamName
	}
	if name == "" {
		return fmt.Errorf(`stream name is empty: give a name like "orders" or "user.42"`)
	}
	if len(name) > limit {
		return fmt.Errorf("stream name is %d bytes: the limit is %d (--max-stream-name)", len(name), limit)
	}
	return fmt.Errorf("stream name %q is invalid: use letters, digits, '_' and '-', with single dots between tokens (like \"orders\" or \"user.42\")", name)
}

// typeNameError reports whether t can be an SSE event name, and why not.
// CR and LF would inject SSE fields; NUL is refused because browsers replace it
// and the name would no longer match addEventListener.
func typeNameError(t string) error {
	if len(t) > MaxTypeName {
		return fmt.Errorf("type is %d bytes: the limit is %d", len(t), MaxTypeName)
	}
	if i := strings.IndexAny(t, "\r\n\x00"); i >= 0 {
		return fmt.Errorf("type %q contains a CR, LF or NUL at byte %d: an SSE event name must be one line", t, i)
	}
	if t == ResetEvent || t == PresenceEvent {
		return fmt.Errorf("type %q is reserved for the bridge's own frames: choose another name", t)
	}
	return nil
}

// parseEventID parses a Last-Event-ID value, from the header or the
// lastEventId parameter. Spaces and tabs around it are ignored, as HTTP
// ignores them around a header's value (net/http already trimmed the
// header; this treats the parameter the same).
//
// resume is false, and id zero, when s is not an id at all: empty, or
// anything but ASCII decimal digits (a sign, an exponent, hex, other
// scripts' digits). The client then starts afresh, with live events.
//
// Any all-digit value is an attempt at an id, and resumes: one that fits a
// uint64 is that id; one above the largest uint64 comes back as
// [math.MaxUint64]. No engine assigns that id (they count microseconds or
// sequence numbers from one), and every engine answers a resume after an id
// above its head with a reset (unknown_id), so the client learns its id
// means nothing here and then gets live events.
func parseEventID(s string) (id uint64, resume bool) {
	s = strings.Trim(s, " \t")
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		// Only ErrRange is left for ASCII digits: the value is above
		// MaxUint64, and ParseUint returned MaxUint64 itself.
		return math.MaxUint64, true
	}
	return id, true
}
