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
//
// The pattern entries are split over several automata so that a message is
// scanned only for literals of entries it could match: those bound to the
// finding's unit, and those bound to no unit and to the finding's OS or
// none. Most shipped pattern entries are Linux kernel lines; a Windows
// event is then not scanned at all, an sshd line only for the few entries
// of no unit.
type matcher struct {
	entries []*Entry // in result order; candidates are indexes into it
	byEvent map[uint32][]int32
	byCode  map[string][]int32
	byUnit  map[string][]int32 // by folded unit: patterns without a literal
	always  []int32            // no literal and no restriction; lint rejects these
	noUnit  [4]*automaton      // by osIndex of the finding
	unitAC  map[string]*automaton
	pool    sync.Pool // *scratch
}

// osIndex says which no-unit automaton serves a finding of this OS: a
// finding with no OS matches entries of every OS, one of another OS only
// entries bound to none.
func osIndex(os string) int {
	switch os {
	case "":
		return 0
	case "linux":
		return 1
	case "windows":
		return 2
	}
	return 3
}

// literalGroup collects the literals of the entries one automaton serves.
type literalGroup struct {
	lits [][]string
	ids  []int32
}

func (g *literalGroup) add(set []string, id int32) {
	g.lits = append(g.lits, set)
	g.ids = append(g.ids, id)
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
	var noUnit [4]literalGroup
	unitGroups := map[string]*literalGroup{}
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
			set := entryLiterals(e)
			switch {
			case set != nil && mt.Unit != "":
				u := foldString(mt.Unit)
				if unitGroups[u] == nil {
					unitGroups[u] = &literalGroup{}
				}
				unitGroups[u].add(set, id)
			case set != nil:
				for os := range noUnit {
					if os == 0 || mt.OS == "" || os == osIndex(mt.OS) {
						noUnit[os].add(set, id)
					}
				}
			case mt.Unit != "":
				u := foldString(mt.Unit)
				m.byUnit[u] = append(m.byUnit[u], id)
			default:
				m.always = append(m.always, id)
			}
		}
	}
	for os, g := range noUnit {
		m.noUnit[os] = newAutomaton(g.lits, g.ids)
	}
	m.unitAC = make(map[string]*automaton, len(unitGroups))
	for u, g := range unitGroups {
		m.unitAC[u] = newAutomaton(g.lits, g.ids)
	}
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
	var buf [64]byte
	unit := foldUnit(buf[:0], f.Unit)
	for _, list := range [...][]int32{m.byEvent[f.EventID], m.byCode[f.Code], m.byUnit[string(unit)], m.always} {
		for _, id := range list {
			if hits == nil {
				hits = m.get()
			}
			hits.set(id)
		}
	}
	m.noUnit[osIndex(f.OS)].scan(f.Message, m, &hits)
	if len(unit) > 0 {
		m.unitAC[string(unit)].scan(f.Message, m, &hits)
	}
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

// foldUnit folds unit into buf the way the unit keys were folded; for the
// usual short ASCII name that costs no allocation, and neither do the map
// lookups by string(key).
func foldUnit(buf []byte, unit string) []byte {
	for i := 0; i < len(unit); i++ {
		b := unit[i]
		if b >= utf8.RuneSelf {
			return append(buf[:0], foldString(unit)...)
		}
		buf = append(buf, lowerASCII[b])
	}
	return buf
}
