package load

import (
	"maps"
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	const text = `# HELP bridge_sse_evictions_total SSE connections closed.
# TYPE bridge_sse_evictions_total counter
bridge_sse_evictions_total{reason="queue_full"} 1998
bridge_sse_evictions_total{reason="write_deadline"} 2
go_goroutines 19
go_memstats_heap_inuse_bytes 2.310144e+06
process_start_time_seconds 1.7e+09 1700000000000
garbage line
x{a="}"} 5
`
	m, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Sum("bridge_sse_evictions_total"); got != 2000 {
		t.Errorf("Sum(evictions) = %v, want 2000", got)
	}
	if got, want := m.Label("bridge_sse_evictions_total"), map[string]float64{"queue_full": 1998, "write_deadline": 2}; !maps.Equal(got, want) {
		t.Errorf("Label(evictions) = %v, want %v", got, want)
	}
	if m["go_goroutines"] != 19 || m["go_memstats_heap_inuse_bytes"] != 2310144 || m["process_start_time_seconds"] != 1.7e9 {
		t.Errorf("metrics = %v", m)
	}
	if m.Sum("go_gor") != 0 {
		t.Error("Sum of a prefix of a name counts it")
	}
	if m[`x{a="}"}`] != 5 {
		t.Errorf("a label value with a brace: %v", m)
	}
}
