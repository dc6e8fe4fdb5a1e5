package kb

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// The prefilter compares folded text: every rune is replaced by one
// representative of its case-folding orbit, the same orbits (?i) uses, so a
// case-insensitive pattern's literal is found whatever case the message has.
// For ASCII the representative is the lower-case letter, which keeps the
// common path a table lookup; only messages with non-ASCII bytes need
// foldRune, which also catches the two non-ASCII runes that fold to ASCII
// letters (K KELVIN SIGN to k, ſ LONG S to s).

var lowerASCII = func() (t [128]byte) {
	for i := range t {
		t[i] = byte(i)
		if 'A' <= i && i <= 'Z' {
			t[i] = byte(i + 'a' - 'A')
		}
	}
	return t
}()

// foldRune returns the representative of r's case-folding orbit: its
// smallest member, lowered when that is an ASCII capital.
func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		return rune(lowerASCII[r])
	}
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	if 'A' <= least && least <= 'Z' {
		least += 'a' - 'A'
	}
	return least
}

// foldString folds s rune by rune. Invalid UTF-8 becomes U+FFFD, as the
// regexp package reads it.
func foldString(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		b.WriteRune(foldRune(r))
	}
	return b.String()
}
