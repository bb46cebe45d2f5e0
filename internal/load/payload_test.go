package load

import (
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestPayloadRoundTrip(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, 10, 60, 128, 2048} {
		for _, seq := range []uint64{0, 41, fenceSeq} {
			const ts = int64(1795633221073629123)
			b := appendPayload(nil, seq, ts, size)
			if size >= 60 && len(b) != size {
				t.Errorf("size %d: payload is %d bytes", size, len(b))
			}
			var obj map[string]string
			if err := json.Unmarshal(b, &obj); err != nil {
				t.Fatalf("payload %s is not JSON: %v", b, err)
			}
			gotSeq, gotT, ok := parsePayload(b)
			if !ok || gotSeq != seq || gotT != ts {
				t.Errorf("parsePayload(%s) = %d, %d, %v; want %d, %d", b, gotSeq, gotT, ok, seq, ts)
			}
		}
	}
}

// TestPayloadAsTheBridgeRendersIt parses what protojson makes of the json
// payload the gRPC publisher sends: keys sorted, spaces where it likes.
func TestPayloadAsTheBridgeRendersIt(t *testing.T) {
	t.Parallel()
	v := structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
		"x":   structpb.NewStringValue("xxxx"),
		"t":   structpb.NewStringValue("1795633221073629123"),
		"seq": structpb.NewStringValue("7"),
	}})
	for range 20 { // protojson varies its whitespace between runs
		b, err := protojson.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if seq, ts, ok := parsePayload(b); !ok || seq != 7 || ts != 1795633221073629123 {
			t.Fatalf("parsePayload(%s) = %d, %d, %v", b, seq, ts, ok)
		}
	}
	for _, bad := range []string{``, `{}`, `{"seq":"x","t":"1"}`, `{"seq":"1"}`, `{"seq":"1","t":"99999999999999999999"}`, `{"reason":"gone"}`} {
		if _, _, ok := parsePayload([]byte(bad)); ok {
			t.Errorf("parsePayload(%s) = ok, want not a load event", bad)
		}
	}
	if id, ok := parseID([]byte("1795633221073629")); !ok || id != 1795633221073629 {
		t.Errorf("parseID = %d, %v", id, ok)
	}
	for _, bad := range []string{"", "12a", "-1", "184467440737095516160"} {
		if _, ok := parseID([]byte(bad)); ok {
			t.Errorf("parseID(%q) = ok", bad)
		}
	}
}
