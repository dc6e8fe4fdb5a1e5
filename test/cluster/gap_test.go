package cluster

import "testing"

func TestGapAtFindsTheFirstMissingOrDoubledSeq(t *testing.T) {
	for _, tc := range []struct {
		name string
		seqs []uint64
		want int
	}{
		{"none stored is no gap", nil, -1},
		{"1…3 out of order is no gap", []uint64{3, 1, 2}, -1},
		{"a missing 2 is a gap at place 1", []uint64{1, 3}, 1},
		{"a doubled 2 is a gap at place 2", []uint64{1, 2, 2, 3}, 2},
		{"a run starting at 2 is a gap at place 0", []uint64{2, 3}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := gapAt(tc.seqs); got != tc.want {
				t.Errorf("gapAt(%v): got %d, want %d", tc.seqs, got, tc.want)
			}
		})
	}
}
