package kb

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp/syntax"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// These two tests are the Go half of test/bench/kbgrep.sh, which compares
// the matcher with grep -E over the same patterns and corpus; without their
// flags they skip.
var (
	kbgrepOut   = flag.String("kbgrep.out", "", "write grep pattern files and the benchmark corpus to this directory")
	kbgrepLines = flag.Int("kbgrep.lines", 200_000, "lines of corpus to write")
	kbgrepMatch = flag.String("kbgrep.match", "", "time Match over the corpus this directory holds")
)

func TestKBGrepWriteFiles(t *testing.T) {
	if *kbgrepOut == "" {
		t.Skip("run by test/bench/kbgrep.sh (-kbgrep.out DIR)")
	}
	k := shippedKB(t)
	var plain, folded []string
	dropped := map[string]string{}
	patterns := 0
	for _, e := range k.entries {
		if e.Match.Pattern == "" {
			continue
		}
		patterns++
		ere, fold, err := toERE(e.Match.Pattern)
		if err != nil {
			dropped[e.ID] = err.Error()
			continue
		}
		if fold {
			folded = append(folded, ere)
		} else {
			plain = append(plain, ere)
		}
	}
	write := func(name string, lines []string) {
		t.Helper()
		data := strings.Join(lines, "\n")
		if len(lines) > 0 {
			data += "\n"
		}
		if err := os.WriteFile(filepath.Join(*kbgrepOut, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("patterns.txt", plain)
	write("patterns-i.txt", folded)
	var corpus, findings []string
	for _, f := range mixedCorpus(t, k, *kbgrepLines) {
		f.Message = strings.ReplaceAll(f.Message, "\n", " ")
		corpus = append(corpus, f.Message)
		line, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		findings = append(findings, string(line))
	}
	write("corpus.txt", corpus)
	write("corpus.jsonl", findings)
	fmt.Printf("entries: %d, with a pattern: %d; grep patterns: %d case-sensitive, %d case-insensitive (grep -i); %d not convertible to ERE\n",
		k.Len(), patterns, len(plain), len(folded), len(dropped))
	for id, why := range dropped {
		fmt.Printf("  not converted: %s: %s\n", id, why)
	}
}

func TestKBGrepMatch(t *testing.T) {
	if *kbgrepMatch == "" {
		t.Skip("run by test/bench/kbgrep.sh (-kbgrep.match FILE)")
	}
	k := shippedKB(t)
	var messages, full []Finding
	for l := range strings.Lines(readString(t, filepath.Join(*kbgrepMatch, "corpus.txt"))) {
		messages = append(messages, Finding{Message: strings.TrimSuffix(l, "\n")})
	}
	for l := range strings.Lines(readString(t, filepath.Join(*kbgrepMatch, "corpus.jsonl"))) {
		var f Finding
		if err := json.Unmarshal([]byte(l), &f); err != nil {
			t.Fatal(err)
		}
		full = append(full, f)
	}
	timeMatch(k, "message only, as grep sees it", messages)
	timeMatch(k, "whole findings (os, unit, code, event id)", full)
}

func readString(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// timeMatch matches every finding and counts those that matched, like
// grep -c, repeating until the figure is stable.
func timeMatch(k *KB, what string, corpus []Finding) {
	matched, n := 0, 0
	cpu0, wall0 := cpuTime(), time.Now()
	for pass := 0; pass == 0 || time.Since(wall0) < 2*time.Second; pass++ {
		matched = 0
		for _, f := range corpus {
			if k.Match(f) != nil {
				matched++
			}
		}
		n += len(corpus)
	}
	wall, cpu := time.Since(wall0), cpuTime()-cpu0
	fmt.Printf("kb.Match, %s: %d lines, %d matched, %.0f lines/s wall, %.0f lines/s per CPU second\n",
		what, len(corpus), matched, float64(n)/wall.Seconds(), float64(n)/cpu.Seconds())
}

var errNoERE = errors.New("no POSIX ERE equivalent")

// toERE rewrites an RE2 pattern as a POSIX extended regular expression for
// GNU grep in the C locale, from its parse tree: \d, \s, \w and other
// classes become bracket expressions, (?:…) a group. fold says the pattern
// is case-insensitive anywhere; grep -i then applies to all of it, which may
// match a little more than RE2 would.
func toERE(pattern string) (ere string, fold bool, err error) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return "", false, err
	}
	var b strings.Builder
	if err := writeERE(&b, re, &fold); err != nil {
		return "", false, err
	}
	return b.String(), fold, nil
}

func writeERE(b *strings.Builder, re *syntax.Regexp, fold *bool) error {
	if re.Flags&syntax.FoldCase != 0 && (re.Op == syntax.OpLiteral || re.Op == syntax.OpCharClass) {
		*fold = true
	}
	switch re.Op {
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			if r == '\n' || r == 0 {
				return fmt.Errorf("%w for a newline or NUL", errNoERE)
			}
			if strings.ContainsRune(`.[]()*+?{}|^$\`, r) {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		}
	case syntax.OpCharClass:
		return writeClass(b, re.Rune)
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		b.WriteByte('.')
	case syntax.OpBeginLine, syntax.OpBeginText:
		b.WriteByte('^')
	case syntax.OpEndLine, syntax.OpEndText:
		b.WriteByte('$')
	case syntax.OpWordBoundary:
		b.WriteString(`\b`)
	case syntax.OpNoWordBoundary:
		b.WriteString(`\B`)
	case syntax.OpEmptyMatch:
		b.WriteString("()")
	case syntax.OpCapture:
		b.WriteByte('(')
		if err := writeERE(b, re.Sub[0], fold); err != nil {
			return err
		}
		b.WriteByte(')')
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		sub := re.Sub[0]
		group := sub.Op == syntax.OpConcat || sub.Op == syntax.OpAlternate || (sub.Op == syntax.OpLiteral && len(sub.Rune) > 1)
		if group {
			b.WriteByte('(')
		}
		if err := writeERE(b, sub, fold); err != nil {
			return err
		}
		if group {
			b.WriteByte(')')
		}
		switch re.Op {
		case syntax.OpStar:
			b.WriteByte('*')
		case syntax.OpPlus:
			b.WriteByte('+')
		case syntax.OpQuest:
			b.WriteByte('?')
		default:
			if re.Max < 0 {
				fmt.Fprintf(b, "{%d,}", re.Min)
			} else {
				fmt.Fprintf(b, "{%d,%d}", re.Min, re.Max)
			}
		}
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			group := sub.Op == syntax.OpAlternate
			if group {
				b.WriteByte('(')
			}
			if err := writeERE(b, sub, fold); err != nil {
				return err
			}
			if group {
				b.WriteByte(')')
			}
		}
	case syntax.OpAlternate:
		for i, sub := range re.Sub {
			if i > 0 {
				b.WriteByte('|')
			}
			if err := writeERE(b, sub, fold); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%w for %s", errNoERE, re)
	}
	return nil
}

// writeClass writes a bracket expression for rune ranges; grep in the C
// locale matches bytes, so only ASCII classes (and negated ones, whose
// non-ASCII part any byte above 0x7f stands for) are written.
func writeClass(b *strings.Builder, ranges []rune) error {
	var in [128]bool
	above := false // the class holds every rune above ASCII
	for i := 0; i+1 < len(ranges); i += 2 {
		lo, hi := ranges[i], ranges[i+1]
		for r := lo; r <= hi && r < utf8.RuneSelf; r++ {
			in[r] = true
		}
		if hi >= utf8.RuneSelf {
			if lo > utf8.RuneSelf || hi < utf8.MaxRune {
				return fmt.Errorf("%w for a class with part of the non-ASCII runes", errNoERE)
			}
			above = true
		}
	}
	if above {
		// Negate: list what is not in the class.
		for r := range in {
			in[r] = !in[r]
		}
	}
	// A line holds no newline, and a pattern file cannot.
	in['\n'] = false
	members := 0
	for _, ok := range in {
		if ok {
			members++
		}
	}
	switch {
	case in[0]:
		return fmt.Errorf("%w for a class with NUL", errNoERE)
	case members == 0 && above:
		b.WriteByte('.')
		return nil
	case members == 0:
		return fmt.Errorf("%w for a class of newlines", errNoERE)
	case members == 1 && in['^'] && !above:
		b.WriteString(`\^`)
		return nil
	case above:
		b.WriteString("[^")
	default:
		b.WriteByte('[')
	}
	// ']' must come first and '-' last; '^' must not come first.
	if in[']'] {
		b.WriteByte(']')
	}
	for r := 0; r < utf8.RuneSelf; r++ {
		if !in[r] || r == ']' || r == '-' || r == '^' {
			continue
		}
		end := r
		for end+1 < utf8.RuneSelf && in[end+1] && end+1 != ']' && end+1 != '-' && end+1 != '^' {
			end++
		}
		b.WriteRune(rune(r))
		if end > r+1 {
			b.WriteByte('-')
		}
		if end > r {
			b.WriteRune(rune(end))
		}
		r = end
	}
	if in['^'] {
		b.WriteByte('^')
	}
	if in['-'] {
		b.WriteByte('-')
	}
	b.WriteByte(']')
	return nil
}
