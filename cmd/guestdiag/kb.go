package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/kb"
)

var kbSearchCmd = cli.Command{
	Name: "kb search", Args: "[flags] TEXT...",
	Summary: "search the knowledge base by words, code or event id",
}

var kbLintCmd = cli.Command{
	Name: "kb lint", Args: "DIR...",
	Summary: "validate knowledge-base directories",
}

// dirsFlag collects a repeatable directory flag.
type dirsFlag []string

func (d *dirsFlag) String() string { return strings.Join(*d, ",") }

func (d *dirsFlag) Set(s string) error {
	*d = append(*d, s)
	return nil
}

func (a app) kbSearch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("guestdiag kb search", kbSearchCmd.Usage("guestdiag"), stderr)
	var dirs dirsFlag
	fs.Var(&dirs, "kb-dir", "operator knowledge-base `dir`ectory searched with the shipped entries; repeatable")
	limit := fs.Int("n", 20, "show at most `n` entries; 0 for all")
	verbose := fs.Bool("v", false, "show each entry's cause, resolution steps and references")
	terms, err := cli.ParseArgs(fs, args)
	if err == nil && len(terms) == 0 {
		err = cli.ArgErrorf("missing the text to search for")
	}
	if err != nil {
		return cli.UsageExit(stderr, "guestdiag kb search", err)
	}
	var k *kb.KB
	if len(dirs) == 0 {
		if k, err = kb.Shipped(); err != nil {
			return failed(stderr, "kb search", err)
		}
	} else {
		// A bad operator file is skipped as the collector skips it; say so,
		// and search the rest.
		var errs []error
		k, errs = kb.Load(slog.New(slog.DiscardHandler), dirs...)
		for _, e := range errs {
			fmt.Fprintf(stderr, "guestdiag kb search: skipped: %s\n", cell(e.Error(), maxTextRunes))
		}
	}
	query := strings.Join(terms, " ")
	found := k.Search(query, *limit)
	if len(found) == 0 {
		fmt.Fprintf(stderr, "guestdiag kb search: no entry matches %s\n", cell(query, maxErrorRunes))
		return cli.ExitFailed
	}
	if err := writeEntries(stdout, found, *verbose, a.width(stdout)); err != nil {
		return failed(stderr, "kb search", err)
	}
	return cli.ExitOK
}

// writeEntries prints entries one block each: the id, severity and title,
// then what it matches; verbose adds cause, resolution and references.
// Operator files are text anyone with write access to the directory wrote,
// so they are escaped like the API's answers.
func writeEntries(w io.Writer, entries []*kb.Entry, verbose bool, width int) error {
	p := &page{width: width}
	for i, e := range entries {
		if verbose && i > 0 {
			p.blank()
		}
		p.line(0, 4, cell(e.ID, maxCellRunes)+"  "+cell(e.Severity, maxCellRunes)+"  "+prose(e.Title))
		p.line(2, 4, "match: "+matchSummary(e.Match))
		if !verbose {
			continue
		}
		p.line(2, 4, "cause: "+prose(e.Cause))
		p.line(2, 0, "resolution:")
		for j, step := range e.Resolution {
			num := strconv.Itoa(j+1) + ". "
			p.line(4, len(num), num+prose(step))
		}
		if len(e.References) > 0 {
			p.line(2, 0, "references:")
			for _, r := range e.References {
				p.line(4, 0, text(r))
			}
		}
	}
	_, err := io.WriteString(w, p.b.String())
	return err
}

// matchSummary says in one line what an entry matches:
// "os windows, channel System, provider Service Control Manager, event id 7000".
func matchSummary(m kb.Match) string {
	var parts []string
	add := func(name, value string) {
		if value != "" {
			parts = append(parts, name+" "+cell(value, maxTextRunes))
		}
	}
	add("code", m.Code)
	add("os", m.OS)
	add("channel", m.Channel)
	add("provider", strings.Join(m.Provider, " or "))
	if len(m.EventIDs) > 0 {
		ids := make([]string, len(m.EventIDs))
		for i, id := range m.EventIDs {
			ids[i] = strconv.FormatUint(uint64(id), 10)
		}
		parts = append(parts, "event id "+strings.Join(ids, " or "))
	}
	add("unit", m.Unit)
	add("pattern", m.Pattern)
	return strings.Join(parts, ", ")
}

// prose is text written to be read as one paragraph (a title, a cause, a
// resolution step): its line breaks, as YAML block scalars keep them, are
// spaces here, and the rest is escaped.
func prose(s string) string { return text(strings.Join(strings.Fields(s), " ")) }

func (a app) kbLint(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("guestdiag kb lint", kbLintCmd.Usage("guestdiag"), stderr)
	dirs, err := cli.ParseArgs(fs, args)
	if err == nil && len(dirs) == 0 {
		err = cli.ArgErrorf("missing the directory to lint")
	}
	if err != nil {
		return cli.UsageExit(stderr, "guestdiag kb lint", err)
	}
	var errs []error
	for _, dir := range dirs {
		errs = append(errs, kb.Lint(dir)...)
	}
	var k *kb.KB
	if len(errs) == 0 {
		// Each directory is clean on its own; loading them together, as the
		// collector will, finds an id defined in two of them.
		k, errs = kb.Load(slog.New(slog.DiscardHandler), dirs...)
	}
	for _, e := range errs {
		fmt.Fprintln(stdout, cell(e.Error(), maxTextRunes))
	}
	if len(errs) > 0 {
		fmt.Fprintf(stderr, "guestdiag kb lint: %s\n", plural(len(errs), "error"))
		return cli.ExitFailed
	}
	n := 0
	for _, e := range k.Entries() {
		for _, dir := range dirs {
			if filepath.Dir(e.File) == filepath.Clean(dir) {
				n++
				break
			}
		}
	}
	fmt.Fprintf(stdout, "%s OK\n", plural(n, "entry"))
	return cli.ExitOK
}
