package load

import "math/bits"

// bitset is a growable set of small non-negative integers: one bit each.
// It is not safe for concurrent use.
type bitset struct{ words []uint64 }

// add inserts i and reports whether it was absent.
func (b *bitset) add(i uint64) bool {
	w := i / 64
	if w >= uint64(len(b.words)) {
		if w >= uint64(cap(b.words)) {
			nw := make([]uint64, w+1, max(2*cap(b.words), int(w)+1, 16)) //nolint:gosec // w < len of a slice we can allocate
			copy(nw, b.words)
			b.words = nw
		} else {
			b.words = b.words[:w+1]
		}
	}
	m := uint64(1) << (i % 64)
	if b.words[w]&m != 0 {
		return false
	}
	b.words[w] |= m
	return true
}

func (b *bitset) has(i uint64) bool {
	w := i / 64
	return w < uint64(len(b.words)) && b.words[w]&(1<<(i%64)) != 0
}

func (b *bitset) count() int {
	n := 0
	for _, w := range b.words {
		n += bits.OnesCount64(w)
	}
	return n
}

// missing returns how many members of want b lacks.
func (b *bitset) missing(want *bitset) int {
	n := 0
	for i, w := range want.words {
		if i < len(b.words) {
			w &^= b.words[i]
		}
		n += bits.OnesCount64(w)
	}
	return n
}

// extra returns how many members of b are not in of.
func (b *bitset) extra(of *bitset) int { return of.missing(b) }
