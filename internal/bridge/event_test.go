package bridge

import (
	"bytes"
	"encoding/json"
	"flag"
	"path/filepath"
	"testing"
	"time"

	"github.com/sse-bridge/bridge/internal/payload/payloadtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestGoldenFormats pins the three frame formats for a typed and a json event.
func TestGoldenFormats(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC)
	events := map[string]*Event{
		"typed": {ID: 1795633221073629, Stream: "orders", Type: "shop.v1.OrderCreated", Data: []byte(`{"orderId":"o-1", "total":{"amountMinor":"1250"}}`), Time: at},
		"json":  {ID: 1795633221073630, Stream: "user.42", Data: []byte(`{"hello":"world"}`), Time: at},
	}
	for name, ev := range events {
		for _, f := range []struct {
			name   string
			format Format
		}{{"data", FormatData}, {"envelope", FormatEnvelope}, {"cloudevents", FormatCloudEvents}} {
			t.Run(name+"_"+f.name, func(t *testing.T) {
				t.Parallel()
				fr := ev.frame(f.format, defaultCloudEvents)
				if ev.frame(f.format, defaultCloudEvents) != fr {
					t.Errorf("frame(%s) built twice: want one frame per event and format", f.name)
				}
				if bytes.ContainsAny(fr.Data, "\r\n") || bytes.ContainsAny(fr.Event, "\r\n") {
					t.Errorf("frame spans lines: %q", fr.Data)
				}
				payloadtest.CheckGolden(t, filepath.Join("testdata", "golden", "format_"+name+"_"+f.name+".json"), map[string]any{"id": string(fr.ID), "event": string(fr.Event), "data": json.RawMessage(fr.Data)}, *update)
			})
		}
	}
}
