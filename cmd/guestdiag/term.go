package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Everything the collector returns comes from hosts and guests, and a
// guest is untrusted: a newline in its text could forge a row, a tab shift
// the columns, an escape sequence drive the terminal (retitle it, clear
// it, hide text), a bidi override reorder the line. So every string from
// the API reaches the screen through escape, then cut: what comes out is
// printable characters and Go escapes only.

// escape writes every character of s that is not printable, every byte of
// invalid UTF-8 and the backslash itself as a Go escape (\x1b, \n, \u202e,
// \xff, \\), so that an escape in the output is never ambiguous.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case unicode.IsPrint(r):
			b.WriteString(s[i : i+size])
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

// cell makes s safe to print as one table cell, at most limit runes wide.
func cell(s string, limit int) string {
	return cut(escape(s), limit)
}

// cut shortens safe text (what escape returns, or pieces of it joined) to
// at most limit runes, ending it in "…" when it had to cut, and never
// inside an escape: half of "\x1b" would read as other text.
func cut(safe string, limit int) string {
	if utf8.RuneCountInString(safe) <= limit {
		return safe
	}
	end, width := 0, 0
	for end < len(safe) {
		n := tokenLen(safe[end:])
		w := utf8.RuneCountInString(safe[end : end+n])
		if width+w > limit-1 {
			break
		}
		end += n
		width += w
	}
	return safe[:end] + "…"
}

// tokenLen is the length in bytes of the first character of safe text: a
// whole escape, or one rune.
func tokenLen(safe string) int {
	if len(safe) < 2 || safe[0] != '\\' {
		_, n := utf8.DecodeRuneInString(safe)
		return n
	}
	n := 2 // \\, \n, \a and the other one-letter escapes
	switch safe[1] {
	case 'x':
		n = 4
	case 'u':
		n = 6
	case 'U':
		n = 10
	}
	return min(n, len(safe))
}

// wrap breaks safe text into lines, the first at most first runes wide and
// the others at most rest, at spaces where it can and between whole
// escapes where a word is longer than a line. A width of 0 means no limit.
func wrap(safe string, first, rest int) []string {
	if first <= 0 || utf8.RuneCountInString(safe) <= first {
		return []string{safe}
	}
	var lines []string
	limit := func() int {
		if len(lines) == 0 {
			return first
		}
		return rest
	}
	line, lineW := "", 0
	flush := func() {
		lines = append(lines, line)
		line, lineW = "", 0
	}
	for _, word := range strings.Fields(safe) {
		w := utf8.RuneCountInString(word)
		if lineW > 0 && lineW+1+w > limit() {
			flush()
		}
		for w > limit() {
			head := headOf(word, limit())
			line = head
			flush()
			word = word[len(head):]
			w = utf8.RuneCountInString(word)
		}
		if lineW > 0 {
			line += " "
			lineW++
		}
		line += word
		lineW += w
	}
	if lineW > 0 {
		flush()
	}
	return lines
}

// headOf is the longest run of whole characters of safe text that is at
// most width runes, and at least one character.
func headOf(safe string, width int) string {
	end, w := 0, 0
	for end < len(safe) {
		n := tokenLen(safe[end:])
		tw := utf8.RuneCountInString(safe[end : end+n])
		if w+tw > width && end > 0 {
			break
		}
		end += n
		w += tw
	}
	return safe[:end]
}

// table lays out rows of safe text in columns two spaces apart, as
// text/tabwriter would, and fits them to the terminal by cutting the
// column flex (the one whose text is the longest and least needed whole).
type table struct {
	rows [][]string
	flex int
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// minFlex is the narrowest a flex column is cut to, however narrow the
// terminal: a summary cut to nothing says nothing.
const minFlex = 12

// render writes the table; width is the terminal's, 0 when it is unknown
// (output to a file or a pipe), in which case nothing is cut to fit.
func (t *table) render(w io.Writer, width int) error {
	cols := 0
	for _, r := range t.rows {
		cols = max(cols, len(r))
	}
	widths := make([]int, cols)
	for _, r := range t.rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	if width > 0 && t.flex >= 0 && t.flex < cols {
		total := 0
		for i, cw := range widths {
			total += cw
			if i < cols-1 {
				total += 2
			}
		}
		if total > width {
			widths[t.flex] = max(minFlex, widths[t.flex]-(total-width))
		}
	}
	var b strings.Builder
	for _, r := range t.rows {
		b.Reset()
		for i, c := range r {
			if i == t.flex {
				c = cut(c, widths[i])
			}
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		b.WriteByte('\n')
		if _, err := io.WriteString(w, b.String()); err != nil {
			return err
		}
	}
	return nil
}

// terminalWidth is $COLUMNS when it is set, else the width of the terminal
// that w is, else 0: w is a file or a pipe, and lines are left whole for
// whatever reads them.
func terminalWidth(w io.Writer) int {
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		return n
	}
	if f, ok := w.(*os.File); ok {
		return fileWidth(f)
	}
	return 0
}
