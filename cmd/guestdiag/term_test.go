package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// hostile are guest strings that try to reach the terminal: an OSC that
// retitles the window, a CSI that clears the screen, a bidi override, a
// lone invalid byte and a newline that would forge a line.
var hostile = []string{"\x1b]0;pwned\x07", "\x1b[2J", "\u202e", "\xff\xfe", "line\nforged", "\u009b31m", "tab\there"}

func TestCell(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		limit int
		want  string
	}{
		{"plain text is kept", "web-01.example", 48, "web-01.example"},
		{"letters of any script are kept", "wébserveur-東京", 48, "wébserveur-東京"},
		{"an escape sequence is shown escaped", "\x1b[2J", 48, `\x1b[2J`},
		{"a newline cannot start a row", "a\nb", 48, `a\nb`},
		{"a carriage return cannot overwrite the line", "a\rb", 48, `a\rb`},
		{"a tab cannot shift a column", "a\tb", 48, `a\tb`},
		{"DEL is escaped", "\x7f", 48, `\x7f`},
		{"the C1 control CSI is escaped", "\u009b31m", 48, `\u009b31m`},
		{"a bidi override is escaped", "abc\u202edef", 48, `abc\u202edef`},
		{"a zero-width space is escaped", "a\u200bb", 48, `a\u200bb`},
		{"invalid UTF-8 is escaped byte by byte", "a\xffb\xc3", 48, `a\xffb\xc3`},
		{"a backslash is doubled, so an escape is never ambiguous", `1\x1b`, 48, `1\\x1b`},
		{"a string at the limit is kept", strings.Repeat("x", 10), 10, strings.Repeat("x", 10)},
		{"a longer string is cut and marked", strings.Repeat("x", 60), 10, strings.Repeat("x", 9) + "…"},
		{"an escape is cut whole", "abcdefg\x1bh", 10, "abcdefg…"},
		{"an empty string stays empty", "", 10, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cell(tt.in, tt.limit)
			if got != tt.want {
				t.Errorf("cell(%q, %d): got %q, want %q", tt.in, tt.limit, got, tt.want)
			}
			if n := utf8.RuneCountInString(got); n > tt.limit {
				t.Errorf("cell(%q, %d): got %d runes, want at most %d", tt.in, tt.limit, n, tt.limit)
			}
		})
	}
}

func TestCutNeverSplitsAnEscape(t *testing.T) {
	safe := escape("ab\x1b[2J\u202ecd")
	for limit := 1; limit <= utf8.RuneCountInString(safe)+1; limit++ {
		got := cut(safe, limit)
		if n := utf8.RuneCountInString(got); n > limit {
			t.Errorf("cut at %d: got %q, %d runes", limit, got, n)
		}
		if !strings.HasPrefix(safe, strings.TrimSuffix(got, "…")) {
			t.Errorf("cut at %d: got %q, want a prefix of %q", limit, got, safe)
		}
		// What is kept must end on a whole escape: a prefix that ends
		// inside one is a prefix no token boundary gives.
		kept := strings.TrimSuffix(got, "…")
		if i := len(kept); i < len(safe) && !atBoundary(safe, i) {
			t.Errorf("cut at %d: got %q, which ends inside an escape", limit, got)
		}
	}
}

func atBoundary(safe string, i int) bool {
	for at := 0; at < len(safe); at += tokenLen(safe[at:]) {
		if at == i {
			return true
		}
	}
	return i == len(safe)
}

func TestWrap(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		first, rest int
		want        []string
	}{
		{"a short text is one line", "restart the unit", 40, 40, []string{"restart the unit"}},
		{"no width is no wrapping", strings.Repeat("word ", 30), 0, 0, []string{strings.Repeat("word ", 30)}},
		{"text wraps at spaces", "run systemctl status and read the log", 16, 16, []string{"run systemctl", "status and read", "the log"}},
		{"the lines after the first may be narrower", "one two three four", 9, 5, []string{"one two", "three", "four"}},
		{"a word longer than a line is cut between escapes", escape("ab\x1b[2Jcdef"), 6, 6, []string{`ab\x1b`, `[2Jcde`, `f`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := wrap(tt.in, tt.first, tt.rest)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("wrap(%q, %d, %d):\ngot  %q\nwant %q", tt.in, tt.first, tt.rest, got, tt.want)
			}
			for i, l := range got {
				limit := tt.rest
				if i == 0 {
					limit = tt.first
				}
				if limit > 0 && utf8.RuneCountInString(l) > limit {
					t.Errorf("line %d %q: wider than %d", i, l, limit)
				}
			}
		})
	}
}

func TestTableFitsTheTerminal(t *testing.T) {
	tb := &table{flex: 1}
	tb.add("ID", "SUMMARY", "KB")
	tb.add("a", cell(strings.Repeat("long summary ", 10), maxTextRunes), "kb.one")
	tb.add("b", "short", "-")
	tests := []struct {
		name  string
		width int
		want  string
	}{
		{"wide enough: nothing is cut", 200, "ID  SUMMARY" + strings.Repeat(" ", 125) + "KB\n"},
		{"narrow: the flex column gives way", 30, "ID  SUMMARY             KB\na   long summary long…  kb.one\nb   short               -\n"},
		{"very narrow: the flex column keeps its minimum", 10, "ID  SUMMARY       KB\na   long summar…  kb.one\nb   short         -\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tb.render(&b, tt.width); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(b.String(), tt.want) {
				t.Errorf("table:\ngot:\n%s\nwant it to start with:\n%s", b.String(), tt.want)
			}
		})
	}
}

func TestWriteJSONIsSafeAndTheSameValue(t *testing.T) {
	var in []string
	for _, h := range hostile {
		in = append(in, h, "ok é 東京 \U0001F600", "\u2028")
	}
	body, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	body = append(body, []byte("\xff")...) // outside the value; Indent must refuse it
	var out bytes.Buffer
	if err := writeJSON(&out, body); err == nil {
		t.Errorf("writeJSON of trailing garbage: got no error, want one")
	}
	out.Reset()
	body = bytes.Replace(body[:len(body)-1], []byte(`"\ufffd\ufffd"`), []byte("\"\xff\xfe\""), 1) // raw invalid bytes inside a string
	if err := writeJSON(&out, body); err != nil {
		t.Fatal(err)
	}
	onlyPrintable(t, out.String())
	var got []string
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	var want []string
	json.Unmarshal(body, &want)
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("value changed:\ngot  %q\nwant %q", got, want)
	}
	if !strings.Contains(out.String(), `\u202e`) || !strings.Contains(out.String(), "東京") || !strings.Contains(out.String(), `\u2028`) {
		t.Errorf("output: got\n%s\nwant the bidi override and line separator escaped, letters kept", out.String())
	}
}
