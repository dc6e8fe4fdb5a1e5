package kb

import (
	"slices"
	"unicode/utf8"
)

// maxLiteralBytes caps each literal the automaton holds. A prefix of a
// literal is contained wherever the literal is, so cutting one only adds
// candidates, and it keeps the state table small enough to stay in cache:
// with the shipped entries, 24 bytes made a 660 KiB table and a slower scan
// than 12 bytes (310 KiB), which still leaves few false candidates.
const maxLiteralBytes = 12

// automaton is an Aho-Corasick machine over folded literals, compiled into
// a full transition table so that a scan is one table lookup per byte.
// Bytes that occur in no literal share class 0, and ASCII capitals share the
// class of their lower-case letter, which folds ASCII for free.
type automaton struct {
	class  [256]byte
	nclass int32
	// delta[base+class] is the next state's base (state number times
	// nclass), bitwise negated when that state ends a literal.
	delta []int32
	// outs[outAt[s]:outAt[s+1]] are the entries whose literals end at state s.
	outAt []int32
	outs  []int32
}

// newAutomaton builds the machine; lits[i] are the folded literals of
// entry ids[i].
func newAutomaton(lits [][]string, ids []int32) *automaton {
	if len(lits) == 0 {
		return nil // scans nothing
	}
	a := &automaton{}
	// Classes: one per byte value that occurs in a literal.
	used := [256]bool{}
	for _, set := range lits {
		for _, l := range set {
			for i := 0; i < len(l) && i < maxLiteralBytes; i++ {
				used[l[i]] = true
			}
		}
	}
	a.nclass = 1
	for b := range 256 {
		if used[b] {
			a.class[b] = byte(a.nclass)
			a.nclass++
		}
	}
	for b := 'A'; b <= 'Z'; b++ {
		a.class[b] = a.class[b+'a'-'A']
	}

	// The trie, as sparse child lists while it is built.
	type node struct {
		next map[byte]int32
		out  []int32
	}
	nodes := []node{{next: map[byte]int32{}}}
	for i, set := range lits {
		for _, l := range set {
			l = l[:min(len(l), maxLiteralBytes)]
			s := int32(0)
			for j := 0; j < len(l); j++ {
				c := a.class[l[j]]
				t, ok := nodes[s].next[c]
				if !ok {
					t = int32(len(nodes))
					nodes = append(nodes, node{next: map[byte]int32{}})
					nodes[s].next[c] = t
				}
				s = t
			}
			if !slices.Contains(nodes[s].out, ids[i]) {
				nodes[s].out = append(nodes[s].out, ids[i])
			}
		}
	}

	// Breadth first, each state's missing transitions are its failure
	// state's, and its outputs include its failure state's.
	n := int32(len(nodes))
	trans := make([]int32, n*a.nclass)
	fail := make([]int32, n)
	queue := make([]int32, 0, n)
	for c := range a.nclass {
		if t, ok := nodes[0].next[byte(c)]; ok {
			trans[c] = t
			queue = append(queue, t)
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, o := range nodes[fail[s]].out {
			if !slices.Contains(nodes[s].out, o) {
				nodes[s].out = append(nodes[s].out, o)
			}
		}
		for c := range a.nclass {
			if t, ok := nodes[s].next[byte(c)]; ok {
				fail[t] = trans[fail[s]*a.nclass+c]
				trans[s*a.nclass+c] = t
				queue = append(queue, t)
			} else {
				trans[s*a.nclass+c] = trans[fail[s]*a.nclass+c]
			}
		}
	}

	a.delta = make([]int32, len(trans))
	for i, t := range trans {
		a.delta[i] = t * a.nclass
		if len(nodes[t].out) > 0 {
			a.delta[i] = ^a.delta[i]
		}
	}
	a.outAt = make([]int32, n+1)
	for s := range n {
		slices.Sort(nodes[s].out)
		a.outs = append(a.outs, nodes[s].out...)
		a.outAt[s+1] = int32(len(a.outs))
	}
	return a
}

// scan feeds the folded msg through the machine and marks the entries of
// every literal found in hits, which it gets from get on the first find so
// that a message with none costs no scratch space.
func (a *automaton) scan(msg string, m *matcher, hits **scratch) {
	if a == nil {
		return
	}
	delta, class := a.delta, &a.class
	base := int32(0)
	for i := 0; i < len(msg); i++ {
		b := msg[i]
		if b >= utf8.RuneSelf {
			var size int
			base, size = a.rune(msg[i:], base, m, hits)
			i += size - 1
			continue
		}
		base = delta[base+int32(class[b])]
		if base < 0 {
			base = ^base
			a.mark(base, m, hits)
		}
	}
}

// rune feeds the folded form of the rune at the start of s, as foldString
// writes it.
func (a *automaton) rune(s string, base int32, m *matcher, hits **scratch) (int32, int) {
	r, size := utf8.DecodeRuneInString(s)
	var buf [utf8.UTFMax]byte
	n := utf8.EncodeRune(buf[:], foldRune(r))
	for _, b := range buf[:n] {
		base = a.delta[base+int32(a.class[b])]
		if base < 0 {
			base = ^base
			a.mark(base, m, hits)
		}
	}
	return base, size
}

func (a *automaton) mark(base int32, m *matcher, hits **scratch) {
	if *hits == nil {
		*hits = m.get()
	}
	s := base / a.nclass
	for _, e := range a.outs[a.outAt[s]:a.outAt[s+1]] {
		(*hits).set(e)
	}
}
