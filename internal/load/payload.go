package load

import (
	"bytes"
	"strconv"
	"strings"
)

// The payload of every published event is a JSON object carrying what a
// subscriber needs to account for it:
//
//	{"seq":"41","t":"1732406400000000000","x":"xxxx…"}
//
// seq numbers the events of one stream from 0 without gaps, so each
// subscriber keeps a bitmap of what it received; t is the publish time in
// Unix nanoseconds, for end-to-end latency; x pads the object to the payload
// size. Numbers travel as strings, as the bridge renders int64 values: a
// JSON number loses precision past 2^53. The bridge re-renders the object
// with protojson, which sorts keys and may add spaces, so [parsePayload]
// tolerates both; x sorts last, so the fields parsed come first.
//
// The fence that ends a run on each stream carries seq "fence".

const fenceSeq = ^uint64(0)

// payloadBase is the length of a payload without padding or digits.
const payloadBase = len(`{"seq":"","t":"","x":""}`)

// appendPayload appends the payload of event seq published at t (Unix
// nanoseconds), padded with x to size bytes when size is larger than the
// bare object.
func appendPayload(dst []byte, seq uint64, t int64, size int) []byte {
	start := len(dst)
	dst = append(dst, `{"seq":"`...)
	if seq == fenceSeq {
		dst = append(dst, "fence"...)
	} else {
		dst = strconv.AppendUint(dst, seq, 10)
	}
	dst = append(dst, `","t":"`...)
	dst = strconv.AppendInt(dst, t, 10)
	dst = append(dst, `","x":"`...)
	if pad := size - (len(dst) - start) - len(`"}`); pad > 0 {
		dst = append(dst, strings.Repeat("x", pad)...)
	}
	return append(dst, `"}`...)
}

// parsePayload extracts seq and t from a payload; ok is false for anything
// else (a reset frame, a foreign event).
func parsePayload(data []byte) (seq uint64, t int64, ok bool) {
	rest, ok := afterKey(data, `"seq"`)
	if !ok {
		return 0, 0, false
	}
	if bytes.HasPrefix(rest, []byte("fence")) {
		seq = fenceSeq
	} else if seq, rest, ok = leadingUint(rest); !ok {
		return 0, 0, false
	}
	rest, ok = afterKey(rest, `"t"`)
	if !ok {
		return 0, 0, false
	}
	ut, _, ok := leadingUint(rest)
	if !ok || ut > 1<<63-1 {
		return 0, 0, false
	}
	return seq, int64(ut), true
}

// afterKey finds key in b and returns what follows its colon and the
// opening quote of a string value, skipping JSON whitespace.
func afterKey(b []byte, key string) ([]byte, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return nil, false
	}
	b = skipSpace(b[i+len(key):])
	if len(b) == 0 || b[0] != ':' {
		return nil, false
	}
	b = skipSpace(b[1:])
	if len(b) > 0 && b[0] == '"' {
		b = b[1:]
	}
	return b, true
}

func skipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

// leadingUint parses the decimal digits at the start of b.
func leadingUint(b []byte) (v uint64, rest []byte, ok bool) {
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d := uint64(b[i] - '0')
		if v > (1<<64-1-d)/10 {
			return 0, nil, false
		}
		v = v*10 + d
	}
	return v, b[i:], i > 0
}

// parseID parses an SSE id as the decimal the bridge and the baseline send.
func parseID(b []byte) (uint64, bool) {
	v, rest, ok := leadingUint(b)
	return v, ok && len(rest) == 0
}
