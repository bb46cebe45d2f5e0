package bridge

import (
	"fmt"
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
	if t == ResetEvent {
		return fmt.Errorf("type %q is reserved for the bridge's own reset frames: choose another name", t)
	}
	return nil
}

// parseEventID parses a Last-Event-ID value. ok is false for anything that is
// not a decimal id this bridge could have sent; callers treat that as absent.
func parseEventID(s string) (id uint64, ok bool) {
	if s == "" || len(s) > 20 || s[0] < '0' || s[0] > '9' {
		return 0, false
	}
	id, err := strconv.ParseUint(s, 10, 64)
	return id, err == nil
}
