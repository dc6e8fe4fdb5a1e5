package kb

import (
	"math/bits"
	"sync"
	"unicode/utf8"
)

// matcher chooses which entries to check for a finding, so that RE2 runs
// only on candidates: entries with event ids are found by the finding's
// event id, entries with a code by its code, pattern entries by their
// literals in the message (Aho-Corasick), and pattern entries without a
// literal by their unit. Every candidate is then checked in full by check,
// so the lookups may over-approximate, never miss.
type matcher struct {
	entries []*Entry // in result order; candidates are indexes into it
	byEvent map[uint32][]int32
	byCode  map[string][]int32
	byUnit  map[string][]int32 // by folded unit
	always  []int32            // no literal and no restriction; lint rejects these
	ac      *automaton
	pool    sync.Pool // *scratch
}

// scratch is a candidate set, one bit per entry.
type scratch struct{ words []uint64 }

func (s *scratch) set(i int32) { s.words[i>>6] |= 1 << (i & 63) }

func newMatcher(entries []*Entry) *matcher {
	m := &matcher{
		entries: entries,
		byEvent: map[uint32][]int32{},
		byCode:  map[string][]int32{},
		byUnit:  map[string][]int32{},
	}
	words := (len(entries) + 63) / 64
	m.pool.New = func() any { return &scratch{words: make([]uint64, words)} }
	var lits [][]string
	var litIDs []int32
	for i, e := range entries {
		id := int32(i)
		mt := &e.Match
		switch {
		case len(mt.EventIDs) > 0:
			for _, ev := range mt.EventIDs {
				m.byEvent[ev] = appendOnce(m.byEvent[ev], id)
			}
		case mt.Code != "":
			m.byCode[mt.Code] = append(m.byCode[mt.Code], id)
		default:
			if set := entryLiterals(e); set != nil {
				lits = append(lits, set)
				litIDs = append(litIDs, id)
			} else if mt.Unit != "" {
				u := foldString(mt.Unit)
				m.byUnit[u] = append(m.byUnit[u], id)
			} else {
				m.always = append(m.always, id)
			}
		}
	}
	m.ac = newAutomaton(lits, litIDs)
	return m
}

func appendOnce(list []int32, id int32) []int32 {
	if n := len(list); n > 0 && list[n-1] == id {
		return list
	}
	return append(list, id)
}

// entryLiterals is what the prefilter looks for: the entry's own literals,
// folded, or those derived from its pattern.
func entryLiterals(e *Entry) []string {
	if len(e.Match.Literals) == 0 {
		return deriveLiterals(e.Match.Pattern)
	}
	out := make([]string, 0, len(e.Match.Literals))
	for _, l := range e.Match.Literals {
		if l == "" {
			return nil // would have to match everywhere; lint rejects it
		}
		out = append(out, foldString(l))
	}
	return out
}

func (m *matcher) get() *scratch { return m.pool.Get().(*scratch) }

func (m *matcher) match(f *Finding) []*Entry {
	var hits *scratch
	for _, list := range [...][]int32{m.byEvent[f.EventID], m.byCode[f.Code], m.unitEntries(f.Unit), m.always} {
		for _, id := range list {
			if hits == nil {
				hits = m.get()
			}
			hits.set(id)
		}
	}
	m.ac.scan(f.Message, m, &hits)
	if hits == nil {
		return nil
	}
	var out []*Entry
	for w, word := range hits.words {
		if word == 0 {
			continue
		}
		hits.words[w] = 0
		for word != 0 {
			i := w<<6 + bits.TrailingZeros64(word)
			word &= word - 1
			if e := m.entries[i]; check(e, f) == none {
				out = append(out, e)
			}
		}
	}
	m.pool.Put(hits)
	return out
}

// unitEntries looks up the entries restricted to f's unit, folding it the
// way the keys were folded without allocating for the usual ASCII name.
func (m *matcher) unitEntries(unit string) []int32 {
	if len(m.byUnit) == 0 || unit == "" {
		return nil
	}
	var buf [64]byte
	if len(unit) > len(buf) {
		return m.byUnit[foldString(unit)]
	}
	for i := 0; i < len(unit); i++ {
		b := unit[i]
		if b >= utf8.RuneSelf {
			return m.byUnit[foldString(unit)]
		}
		buf[i] = lowerASCII[b]
	}
	return m.byUnit[string(buf[:len(unit)])]
}
