package software

import (
	"cmp"
	"strconv"
	"strings"
)

// compareVersions orders two versions of one package the way its
// package manager does: dpkg's rules for dpkg, rpmvercmp for rpm, and
// rpmvercmp as a fair approximation for apk and Windows, whose versions
// are dotted numbers with the odd letter suffix.
func compareVersions(src, a, b string) int {
	if src == SourceDpkg {
		return compareDeb(a, b)
	}
	ea, va := splitEpoch(a)
	eb, vb := splitEpoch(b)
	if c := cmp.Compare(ea, eb); c != 0 {
		return c
	}
	if src != SourceRPM {
		return rpmVerCmp(va, vb)
	}
	verA, relA, _ := cutLast(va, "-")
	verB, relB, _ := cutLast(vb, "-")
	return cmp.Or(rpmVerCmp(verA, verB), rpmVerCmp(relA, relB))
}

// splitEpoch splits "epoch:rest"; no epoch is 0.
func splitEpoch(v string) (int, string) {
	e, rest, ok := strings.Cut(v, ":")
	if !ok {
		return 0, v
	}
	n, err := strconv.Atoi(e)
	if err != nil {
		return 0, v
	}
	return n, rest
}

// compareDeb compares Debian versions [epoch:]upstream[-revision].
func compareDeb(a, b string) int {
	ea, va := splitEpoch(a)
	eb, vb := splitEpoch(b)
	if c := cmp.Compare(ea, eb); c != 0 {
		return c
	}
	ua, ra, _ := cutLast(va, "-")
	ub, rb, _ := cutLast(vb, "-")
	return cmp.Or(debVerRevCmp(ua, ub), debVerRevCmp(ra, rb))
}

// debOrder ranks one character of a non-digit run: ~ sorts before
// everything, even the end of the string; letters before other symbols.
func debOrder(s string, i int) int {
	if i >= len(s) {
		return 0
	}
	c := s[i]
	switch {
	case c >= '0' && c <= '9':
		return 0
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		return int(c)
	case c == '~':
		return -1
	}
	return int(c) + 256
}

func debVerRevCmp(a, b string) int {
	isDigit := func(s string, i int) bool { return i < len(s) && s[i] >= '0' && s[i] <= '9' }
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for (i < len(a) && !isDigit(a, i)) || (j < len(b) && !isDigit(b, j)) {
			if c := cmp.Compare(debOrder(a, i), debOrder(b, j)); c != 0 {
				return c
			}
			i, j = i+1, j+1
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		diff := 0
		for isDigit(a, i) && isDigit(b, j) {
			if diff == 0 {
				diff = cmp.Compare(a[i], b[j])
			}
			i, j = i+1, j+1
		}
		if isDigit(a, i) {
			return 1
		}
		if isDigit(b, j) {
			return -1
		}
		if diff != 0 {
			return diff
		}
	}
	return 0
}

// rpmVerCmp compares two version (or release) strings as rpm does:
// alternating runs of digits and letters, separators ignored, digits newer
// than letters, ~ older than anything and ^ newer than the end.
func rpmVerCmp(a, b string) int {
	if a == b {
		return 0
	}
	isAlnum := func(c byte) bool {
		return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	for len(a) > 0 || len(b) > 0 {
		for len(a) > 0 && !isAlnum(a[0]) && a[0] != '~' && a[0] != '^' {
			a = a[1:]
		}
		for len(b) > 0 && !isAlnum(b[0]) && b[0] != '~' && b[0] != '^' {
			b = b[1:]
		}
		switch {
		case strings.HasPrefix(a, "~") || strings.HasPrefix(b, "~"):
			if !strings.HasPrefix(a, "~") {
				return 1
			}
			if !strings.HasPrefix(b, "~") {
				return -1
			}
			a, b = a[1:], b[1:]
			continue
		case strings.HasPrefix(a, "^") || strings.HasPrefix(b, "^"):
			if len(a) == 0 {
				return -1
			}
			if len(b) == 0 {
				return 1
			}
			if !strings.HasPrefix(a, "^") {
				return 1
			}
			if !strings.HasPrefix(b, "^") {
				return -1
			}
			a, b = a[1:], b[1:]
			continue
		}
		if len(a) == 0 || len(b) == 0 {
			break
		}
		run := func(s string, digits bool) (string, string) {
			i := 0
			for i < len(s) && isAlnum(s[i]) && isDigit(s[i]) == digits {
				i++
			}
			return s[:i], s[i:]
		}
		digits := isDigit(a[0])
		var sa, sb string
		sa, a = run(a, digits)
		sb, b = run(b, digits)
		if sb == "" {
			if digits {
				return 1
			}
			return -1
		}
		if digits {
			sa, sb = strings.TrimLeft(sa, "0"), strings.TrimLeft(sb, "0")
			if c := cmp.Compare(len(sa), len(sb)); c != 0 {
				return c
			}
		}
		if c := strings.Compare(sa, sb); c != 0 {
			return c
		}
	}
	switch {
	case len(a) == 0 && len(b) == 0:
		return 0
	case len(a) == 0:
		return -1
	}
	return 1
}
