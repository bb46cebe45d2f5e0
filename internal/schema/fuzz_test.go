package schema_test

import (
	"math/rand/v2"
	"testing"
)

// FuzzRenderedEventsMatchTheirSchema renders events of the example types
// (shop.v1 compiled in, acme from its descriptor set, test.mixed.v1.Mixed,
// and the fixtures with every field kind), built from the fuzz input, with
// every mapping option, and validates each rendering against the schema of
// its type with a real JSON Schema validator.
func FuzzRenderedEventsMatchTheirSchema(f *testing.F) {
	r := newRenderer(f)
	for typ := range len(fuzzTypes) {
		for opts := range byte(4) {
			for _, fill := range []byte{0x00, 0x01, 0x55, 0xff} {
				in := []byte{byte(typ), opts}
				for i := range 256 {
					in = append(in, fill^byte(i*7))
				}
				f.Add(in)
			}
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r.check(t, in)
	})
}

// TestRandomEventsMatchTheirSchema is the fuzz target's check over many
// pseudo-random inputs, so that every go test run covers more than the seed
// corpus. It fails when too few events render (the generator would test
// little).
func TestRandomEventsMatchTheirSchema(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	n := 3000
	if testing.Short() {
		n = 300
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rendered := 0
	for range n {
		in := make([]byte, 16+rng.IntN(600))
		for j := range in {
			in[j] = byte(rng.Uint32())
		}
		if r.check(t, in) {
			rendered++
		}
	}
	t.Logf("%d of %d random events rendered and validated", rendered, n)
	if rendered < n/2 {
		t.Errorf("only %d of %d random events rendered: the generator builds too many events the bridge refuses", rendered, n)
	}
}
