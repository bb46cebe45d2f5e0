package load

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram counts durations in log-linear buckets, the HdrHistogram way:
// exact below 128 ns, then 64 buckets per power of two, so a quantile is
// within 1/64 (1.6 %) of the true value. Memory is fixed (about 18 KiB)
// whatever the count. The maximum is kept exactly.
//
// A Histogram is safe for concurrent use: Record is a few atomic
// operations, so many goroutines may share one (spread them over several
// to keep cache lines quiet).
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	total  atomic.Uint64
	max    atomic.Int64
}

const (
	histSubBits = 6 // 64 buckets per octave
	histSub     = 1 << histSubBits
	// histLinear values are counted exactly: below 2*histSub.
	histLinear = 2 * histSub
	// Values up to 2^histMaxBits ns (about 18 minutes) are bucketed; larger
	// ones land in the last bucket (and in max).
	histMaxBits = 40
	histBuckets = histLinear + (histMaxBits-histSubBits-1)*histSub
)

// bucketOf returns the bucket index of v (nanoseconds, v >= 0).
func bucketOf(v uint64) int {
	if v < histLinear {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1                      // v>>shift is in [64, 128)
	i := histLinear + (shift-1)*histSub + int(v>>shift) - histSub //nolint:gosec // v>>shift < 128
	return min(i, histBuckets-1)
}

// bucketRange returns the smallest and largest value of bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < histLinear {
		return uint64(i), uint64(i) //nolint:gosec // 0 <= i < histLinear
	}
	shift := (i-histLinear)/histSub + 1
	m := uint64((i-histLinear)%histSub + histSub)
	return m << shift, (m+1)<<shift - 1
}

// Record counts one duration; negative ones count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(uint64(v))].Add(1)
	h.total.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Merge adds the counts of o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c > 0 {
			h.counts[i].Add(c)
		}
	}
	h.total.Add(o.total.Load())
	for {
		m, om := h.max.Load(), o.max.Load()
		if om <= m || h.max.CompareAndSwap(m, om) {
			return
		}
	}
}

// Count returns how many durations were recorded.
func (h *Histogram) Count() uint64 { return h.total.Load() }

// Max returns the largest duration recorded, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Quantile returns the duration below which a fraction q of the recorded ones
// fall (the middle of its bucket, never above Max), or 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := bucketRange(i)
			return min(time.Duration(lo+(hi-lo)/2), h.Max()) //nolint:gosec // lo, hi < 2^41
		}
	}
	return h.Max()
}

// Quantiles is a histogram's summary in milliseconds, as reported.
type Quantiles struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Summary returns h's quantiles.
func (h *Histogram) Summary() Quantiles {
	return Quantiles{
		Count: h.Count(),
		P50:   ms(h.Quantile(0.50)),
		P90:   ms(h.Quantile(0.90)),
		P99:   ms(h.Quantile(0.99)),
		P999:  ms(h.Quantile(0.999)),
		Max:   ms(h.Max()),
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
