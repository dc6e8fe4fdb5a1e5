package dashboard

import (
	"fmt"
	"html/template"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

var funcs = template.FuncMap{
	"list": func(s ...string) []string { return s },
}

// clean makes guest text fit to show as text: invalid UTF-8 becomes U+FFFD,
// and control characters other than tab and newline, and the bidirectional
// controls that could make a name read backwards, become visible escapes
// such as \x1b or \u202e. html/template then escapes it for its context.
func clean(s string) string {
	if plain(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteRune(utf8.RuneError)
		case r < 0x20 && r != '\t' && r != '\n', r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r >= 0x80 && r < 0xa0, bidiControl(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// plain reports whether s needs no cleaning: valid UTF-8 without control
// characters (tab and newline allowed) or bidirectional controls. ASCII is
// checked a byte at a time, the fast path for the fleet page's tens of
// thousands of strings.
func plain(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || r < 0xa0 || bidiControl(r) {
			return false
		}
		i += n
	}
	return true
}

func bidiControl(r rune) bool {
	return r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 || r == 0x200e || r == 0x200f || r == 0x061c
}

// clip cleans s and shortens it to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	s = clean(s)
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// vmHref is the dashboard address of a VM, each name path-escaped so that
// a name with "/", "?", "#" or ".." stays one path segment.
func vmHref(host, name string) string {
	return "/vm/" + url.PathEscape(host) + "/" + url.PathEscape(name)
}

// vmJSON is the API address of a VM.
func vmJSON(host, name string) string {
	return "/api/vms/" + url.PathEscape(name) + "?host=" + url.QueryEscape(host)
}

// ago says how long before now t was, in the largest whole unit.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "in the future"
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h ago"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d ago"
}

// stamp is an absolute time as the pages show it, in UTC.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// Status and severity ranks: lower is worse, so sorting ascending puts
// problems first.
func statusRank(s string) int {
	switch s {
	case "crit":
		return 0
	case "warn":
		return 1
	case "unknown":
		return 2
	case "ok":
		return 3
	case "info":
		return 3
	}
	return 4
}

// statusClass is the CSS class of a status or severity; anything a guest
// may have invented maps to unknown.
func statusClass(s string) string {
	switch s {
	case "ok", "warn", "crit", "info":
		return "st-" + s
	case "":
		return "st-none"
	}
	return "st-unknown"
}
