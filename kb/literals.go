package kb

import (
	"regexp/syntax"
	"slices"
)

// minLiteral is the shortest literal worth prefiltering on: a one- or
// two-byte string is in almost every line and would make its entry a
// candidate for all of them.
const minLiteral = 3

// maxAlternatives bounds the literals one pattern contributes; an
// alternation wider than this is treated as having none.
const maxAlternatives = 64

// deriveLiterals returns folded strings such that every message the pattern
// matches contains at least one of them, or nil when it finds no such set.
// It may miss a set that exists; it must never return one that a match can
// avoid, since the prefilter would then lose matches.
func deriveLiterals(pattern string) []string {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil
	}
	set := literalSet(re.Simplify())
	if shortest(set) < minLiteral {
		return nil
	}
	return set
}

// literalSet is the recursion behind deriveLiterals: nil means "no
// literal", which any enclosing alternation inherits and any enclosing
// concatenation routes around by using another factor.
func literalSet(re *syntax.Regexp) []string {
	switch re.Op {
	case syntax.OpLiteral:
		return []string{foldString(string(re.Rune))}
	case syntax.OpCapture, syntax.OpPlus:
		return literalSet(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return literalSet(re.Sub[0])
		}
	case syntax.OpConcat:
		// Every match contains a match of each factor, so any factor's set
		// will do: take the one with the longest shortest string.
		var best []string
		for _, sub := range re.Sub {
			if s := literalSet(sub); better(s, best) {
				best = s
			}
		}
		return best
	case syntax.OpAlternate:
		var union []string
		for _, sub := range re.Sub {
			s := literalSet(sub)
			if s == nil {
				return nil
			}
			for _, lit := range s {
				if !slices.Contains(union, lit) {
					union = append(union, lit)
				}
			}
			if len(union) > maxAlternatives {
				return nil
			}
		}
		return union
	}
	return nil
}

func better(a, b []string) bool {
	if a == nil {
		return false
	}
	if b == nil {
		return true
	}
	if sa, sb := shortest(a), shortest(b); sa != sb {
		return sa > sb
	}
	return len(a) < len(b)
}

func shortest(set []string) int {
	if len(set) == 0 {
		return 0
	}
	n := len(set[0])
	for _, s := range set[1:] {
		n = min(n, len(s))
	}
	return n
}
