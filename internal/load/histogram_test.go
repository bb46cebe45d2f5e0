package load

import (
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	t.Parallel()
	prevHi := uint64(0)
	for i := range histBuckets {
		lo, hi := bucketRange(i)
		if i > 0 && lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, want %d (right after bucket %d)", i, lo, prevHi+1, i-1)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d = [%d, %d], but bucketOf gives %d and %d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
		if lo >= histLinear && float64(hi-lo+1)/float64(lo) > 1.0/64 {
			t.Fatalf("bucket %d = [%d, %d] is wider than 1/64 of its values", i, lo, hi)
		}
		prevHi = hi
	}
	if got := bucketOf(1 << 62); got != histBuckets-1 {
		t.Errorf("bucketOf(2^62) = %d, want the last bucket %d", got, histBuckets-1)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	values := make([]time.Duration, 100_000)
	for i := range values {
		// Log-uniform from 10 µs to 10 s, as latencies spread.
		values[i] = time.Duration(10e3 * math.Pow(10, rng.Float64()*6))
		h.Record(values[i])
	}
	sort.Slice(values, func(i, j int) bool { return values[i] < values[j] })
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := values[int(q*float64(len(values)))-1]
		got := h.Quantile(q)
		if rel := float64(got-want) / float64(want); rel > 1.0/64 || rel < -1.0/64 {
			t.Errorf("Quantile(%v) = %v, want %v within 1/64", q, got, want)
		}
	}
	if got, want := h.Max(), values[len(values)-1]; got != want {
		t.Errorf("Max() = %v, want exactly %v", got, want)
	}
	if h.Count() != uint64(len(values)) {
		t.Errorf("Count() = %d, want %d", h.Count(), len(values))
	}
}

func TestHistogramConcurrentAndMerge(t *testing.T) {
	t.Parallel()
	var a, b Histogram
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				h := &a
				if g%2 == 1 {
					h = &b
				}
				h.Record(time.Duration(i) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	a.Merge(&b)
	if a.Count() != 8000 {
		t.Errorf("Count() = %d, want 8000", a.Count())
	}
	if a.Max() != 999*time.Microsecond {
		t.Errorf("Max() = %v, want 999µs", a.Max())
	}
	if p50 := a.Quantile(0.5); p50 < 490*time.Microsecond || p50 > 510*time.Microsecond {
		t.Errorf("p50 = %v, want about 500µs", p50)
	}
	var empty Histogram
	if empty.Quantile(0.99) != 0 || empty.Summary().Count != 0 {
		t.Error("an empty histogram must report zeros")
	}
	empty.Record(-time.Second)
	if empty.Max() != 0 {
		t.Errorf("a negative duration counts as 0, got max %v", empty.Max())
	}
}

func TestBitset(t *testing.T) {
	t.Parallel()
	var got, want bitset
	for _, i := range []uint64{0, 1, 63, 64, 1000, 5000} {
		want.add(i)
	}
	for _, i := range []uint64{1, 64, 5000, 7000} {
		if !got.add(i) {
			t.Errorf("add(%d) the first time = false", i)
		}
	}
	if got.add(64) {
		t.Error("add(64) twice = true, want false: a duplicate")
	}
	if !got.has(5000) || got.has(0) || got.has(1<<40) {
		t.Error("has reports wrong members")
	}
	if n := got.missing(&want); n != 3 { // 0, 63, 1000
		t.Errorf("missing = %d, want 3", n)
	}
	if n := got.extra(&want); n != 1 { // 7000
		t.Errorf("extra = %d, want 1", n)
	}
	if got.count() != 4 {
		t.Errorf("count = %d, want 4", got.count())
	}
}
