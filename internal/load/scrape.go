package load

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// scrapeTimeout bounds one read of a server's /metrics.
const scrapeTimeout = 2 * time.Second

// Metrics is one scrape of a Prometheus text exposition: every sample's
// value by its series as written ("name" or `name{label="v"}`).
type Metrics map[string]float64

// Sum returns the sum of the series of metric name, whatever their labels
// (0 when it has none).
func (m Metrics) Sum(name string) float64 {
	var sum float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			sum += v
		}
	}
	return sum
}

// Label returns the values of metric name by its one label's value: for
// `x{reason="a"} 3`, {"a": 3}.
func (m Metrics) Label(name string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		rest, ok := strings.CutPrefix(k, name+"{")
		if !ok {
			continue
		}
		_, val, ok := strings.Cut(strings.TrimSuffix(rest, "}"), `="`)
		if ok {
			out[strings.TrimSuffix(val, `"`)] = v
		}
	}
	return out
}

// ParseMetrics reads a Prometheus text exposition: comments are skipped,
// and so is anything it cannot read (a histogram's series are read as
// any other).
func ParseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		// The series is the name and its labels, if any; the value
		// follows (then, maybe, a timestamp).
		var series, rest []byte
		if i := bytes.IndexByte(line, '{'); i >= 0 {
			end := bytes.LastIndexByte(line, '}')
			if end < i {
				continue
			}
			series, rest = line[:end+1], line[end+1:]
		} else {
			var ok bool
			if series, rest, ok = bytes.Cut(line, []byte(" ")); !ok {
				continue
			}
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(string(f[0]), 64)
		if err != nil {
			continue
		}
		m[string(series)] = v
	}
	return m, sc.Err()
}

// ScrapeMetrics reads url (a server's /metrics) with client.
func ScrapeMetrics(ctx context.Context, client *http.Client, url string) (Metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return ParseMetrics(resp.Body)
}
