package h1stream

import (
	"net/http"
	"testing"
	"time"
)

// Not parallel: AllocsPerRun refuses to run beside other tests.
func TestAppendHTTPDate(t *testing.T) {
	start := time.Date(1999, 12, 31, 23, 59, 58, 0, time.FixedZone("X", 5*3600))
	for i := range 2000 {
		// Every weekday and month, both digits of every field, leap days.
		at := start.Add(time.Duration(i) * 37 * time.Hour).Add(time.Duration(i*7) * time.Second)
		if got, want := string(appendHTTPDate(nil, at)), at.UTC().Format(http.TimeFormat); got != want {
			t.Fatalf("appendHTTPDate(%v) = %q, want %q", at, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = appendHTTPDate(make([]byte, 0, 64)[:0], start) }); n > 1 {
		t.Errorf("appendHTTPDate allocates %v times, want only the test's buffer", n)
	}
}
