package kb

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func shippedKB(t testing.TB) *KB {
	t.Helper()
	k, err := Shipped()
	if err != nil {
		t.Fatalf("Shipped: %v", err)
	}
	return k
}

func ids(entries []*Entry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.ID
	}
	return out
}

func TestShippedEntriesLintClean(t *testing.T) {
	for _, err := range Lint("entries") {
		t.Error(err)
	}
}

func TestEveryShippedSampleMatchesItsEntry(t *testing.T) {
	k := shippedKB(t)
	if k.Len() == 0 {
		t.Fatal("no shipped entries")
	}
	for _, e := range k.Entries() {
		for i, s := range e.Samples {
			if got := k.Match(s); !slices.Contains(got, e) {
				t.Errorf("%s:%d: entry %q: sample %d %+v: Match gave %q, which lacks the entry", e.File, e.Line, e.ID, i, s, ids(got))
			}
		}
	}
}

// benignLine is one line of a benign corpus, with where it is.
type benignLine struct {
	where string
	f     Finding
}

func readBenign(t testing.TB) []benignLine {
	t.Helper()
	files, err := filepath.Glob("testdata/benign/*.jsonl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no benign corpus: %v", err)
	}
	var out []benignLine
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for n := 1; sc.Scan(); n++ {
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
			dec.DisallowUnknownFields()
			var f Finding
			if err := dec.Decode(&f); err != nil {
				t.Fatalf("%s:%d: %v", file, n, err)
			}
			out = append(out, benignLine{where: file + ":" + strconv.Itoa(n), f: f})
		}
	}
	return out
}

func TestNoEntryMatchesABenignLine(t *testing.T) {
	k := shippedKB(t)
	lines := readBenign(t)
	for _, l := range lines {
		for _, e := range k.Match(l.f) {
			t.Errorf("%s: entry %q (%s:%d) matches the benign %+v", l.where, e.ID, e.File, e.Line, l.f)
		}
	}
	t.Logf("%d benign lines, %d entries", len(lines), k.Len())
}

func TestLintNamesFileLineAndField(t *testing.T) {
	tests := []struct {
		name, file string
		want       []string // each error's text after the directory, in order
	}{
		{"a YAML syntax error gives the line yaml reports", "syntax.yaml",
			[]string{`syntax.yaml:2: yaml: did not find expected ',' or '}'`}},
		{"an unknown key is an error", "unknown_key.yaml",
			[]string{`unknown_key.yaml:1: entry "bad.unknown_key": resolution: missing: give at least one step`,
				`unknown_key.yaml:7: entry "bad.unknown_key": resolutions: unknown field`,
				`unknown_key.yaml:15: entry "bad.unknown_nested": match.port: unknown field`,
				`unknown_key.yaml:21: entry "bad.unknown_nested": samples[0].messge: unknown field`}},
		{"a pattern that does not compile names match.pattern", "pattern.yaml",
			[]string{`pattern.yaml:5: entry "bad.pattern": match.pattern: error parsing regexp: missing closing ): ` + "`" + `Out of memory: Killed process (\d+` + "`"}},
		{"a sample that does not match names the sample", "sample_mismatch.yaml",
			[]string{`sample_mismatch.yaml:13: entry "bad.sample_mismatch": samples[1]: does not match its entry: the pattern does not match the message "watchdog: BUG: hard LOCKUP on cpu 1"`}},
		{"an event id without a provider is an error", "event_no_provider.yaml",
			[]string{`event_no_provider.yaml:5: entry "bad.event_no_provider": match.event_id: needs a provider: event ids are only unique within one`}},
		{"bad ids, severities, references and event ids are named", "fields.yaml",
			[]string{`fields.yaml:1: entry "Bad_ID": id: "Bad_ID": want 1 to 64 of a-z 0-9 . _ -`,
				`fields.yaml:15: entry "bad.severity": severity: "error": want info, warn or crit`,
				`fields.yaml:30: entry "bad.reference": references[0]: "man 8 ip": want an http or https URL`,
				`fields.yaml:37: entry "bad.event_id_type": match.event_id[1]: want an event id (a whole number), got "seven"`}},
		{"a pattern without a literal asks for literals", "no_literal.yaml",
			[]string{`no_literal.yaml:5: entry "bad.no_literal": match.pattern: pattern has no literal every match contains; add literals: (strings every matching message contains) or restrict the entry by code, event_id or unit`}},
		{"literals a matching sample lacks are an error", "literals_wrong.yaml",
			[]string{`literals_wrong.yaml:6: entry "bad.literals_wrong": match.literals: sample 0 matches the pattern but contains none of the literals`}},
		{"an id used twice names the first place", "duplicate.yaml",
			[]string{`duplicate.yaml:11: entry "bad.duplicate": id: already defined at DIR/duplicate.yaml:1`}},
		{"a file that is not a list says so", "not_list.yaml",
			[]string{`not_list.yaml:1: want a list of entries, got a mapping`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			data, err := os.ReadFile(filepath.Join("testdata/bad", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, tt.file), data, 0o644); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, err := range Lint(dir) {
				var kerr *Error
				if !errors.As(err, &kerr) {
					t.Errorf("error %v is not a *kb.Error", err)
				}
				got = append(got, strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), ""))
			}
			for i := range tt.want {
				tt.want[i] = strings.ReplaceAll(tt.want[i], "DIR/", "")
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Lint gave\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestLoadSkipsABadOperatorFileAndKeepsTheRest(t *testing.T) {
	shipped := shippedKB(t)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	k, errs := Load(logger, "testdata/good", "testdata/bad")
	if len(errs) == 0 {
		t.Fatal("Load reported no errors for testdata/bad")
	}
	for _, id := range []string{"bad.pattern", "bad.sample_mismatch", "bad.duplicate", "bad.severity"} {
		if k.Get(id) != nil {
			t.Errorf("entry %q from a bad file was loaded", id)
		}
	}
	// fields.yaml has good entries too; one bad entry rejects its whole file.
	if k.Get("bad.reference") != nil {
		t.Error("a bad file was loaded in part")
	}
	for _, id := range []string{"ops.myapp.pool_exhausted", "ops.win.app_crash", "guestdiag.net.link_down"} {
		if k.Get(id) == nil {
			t.Errorf("entry %q is missing", id)
		}
	}
	if got, want := k.Len(), shipped.Len()+2; got != want {
		t.Errorf("Load has %d entries, want %d (shipped plus two operator entries, one replacing a shipped one)", got, want)
	}
	dns := k.Get("guestdiag.net.dns_failure")
	if got, want := dns.File, filepath.Join("testdata/good", "ops.yaml"); got != want {
		t.Errorf("guestdiag.net.dns_failure comes from %s, want the operator's %s", got, want)
	}
	if !strings.Contains(logs.String(), "kb_file_skipped") {
		t.Errorf("no kb_file_skipped in the log:\n%s", logs.String())
	}
	crash := k.Match(Finding{OS: "windows", Channel: "application", Provider: "windows error reporting", EventID: 1001, Code: "log.error", Message: "P1: billing.exe"})
	if got, want := ids(crash), []string{"ops.win.app_crash", "guestdiag.log.error"}; !slices.Equal(got, want) {
		t.Errorf("Match gave %q, want %q", got, want)
	}
}

func TestLoadSkipsTheLaterFileOfADuplicateOperatorID(t *testing.T) {
	good, err := os.ReadFile("testdata/good/ops.yaml")
	if err != nil {
		t.Fatal(err)
	}
	first, second := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(first, "a.yaml"), good, 0o644); err != nil {
		t.Fatal(err)
	}
	// The same entries again, with one changed title to tell them apart.
	again := strings.Replace(string(good), "myapp ran out of database connections", "second copy", 1)
	if err := os.WriteFile(filepath.Join(second, "b.yml"), []byte(again), 0o644); err != nil {
		t.Fatal(err)
	}
	k, errs := Load(slog.New(slog.NewTextHandler(io.Discard, nil)), first, second)
	if len(errs) == 0 || !strings.Contains(errs[0].Error(), "already defined in "+filepath.Join(first, "a.yaml")) {
		t.Errorf("Load gave errors %v, want the later file's ids named as already defined", errs)
	}
	if got := k.Get("ops.myapp.pool_exhausted").Title; got != "myapp ran out of database connections" {
		t.Errorf("title %q: the later, duplicate file was applied", got)
	}
}

func TestLoadReportsAMissingDirectory(t *testing.T) {
	k, errs := Load(slog.New(slog.NewTextHandler(io.Discard, nil)), filepath.Join(t.TempDir(), "nope"))
	if len(errs) != 1 || !errors.Is(errs[0], os.ErrNotExist) {
		t.Errorf("Load gave errors %v, want one that is os.ErrNotExist", errs)
	}
	if k.Len() != shippedKB(t).Len() {
		t.Errorf("Load has %d entries, want the shipped %d", k.Len(), shippedKB(t).Len())
	}
}

// codeRow is a row of a finding table in docs/checks.md, collectorCodeRow
// one of the table of codes the collector raises in docs/alerts.md.
var (
	codeRow          = regexp.MustCompile("(?m)^\\| `([a-z]+\\.[a-z_]+)` \\| (info|warn|crit)")
	collectorCodeRow = regexp.MustCompile("(?m)^\\| `([a-z]+\\.[a-z_]+)` \\|")
)

func TestEveryFindingCodeHasAnEntry(t *testing.T) {
	// The agent's codes are the rows of docs/checks.md's finding tables,
	// the collector's those of docs/alerts.md, plus check.status, which
	// alerts.md describes in its text.
	codes := []string{"check.status"}
	for _, doc := range []struct {
		path string
		row  *regexp.Regexp
		min  int
	}{{"../docs/checks.md", codeRow, 20}, {"../docs/alerts.md", collectorCodeRow, 3}} {
		b, err := os.ReadFile(doc.path)
		if err != nil {
			t.Fatal(err)
		}
		rows := doc.row.FindAllSubmatch(b, -1)
		if len(rows) < doc.min {
			t.Fatalf("found only %d codes in %s; has the table format changed?", len(rows), doc.path)
		}
		for _, m := range rows {
			codes = append(codes, string(m[1]))
		}
	}
	k := shippedKB(t)
	for _, code := range codes {
		found := false
		for _, e := range k.Entries() {
			found = found || e.Match.Code == code
		}
		if !found {
			t.Errorf("no shipped entry has match.code %s", code)
		}
	}
}

func TestMatchOrdersSpecificBeforeGeneric(t *testing.T) {
	k, errs := Load(slog.New(slog.NewTextHandler(io.Discard, nil)), "testdata/good")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	tests := []struct {
		name string
		f    Finding
		want []string
	}{
		{"a pattern entry ranks before the generic code entry", Finding{OS: "linux", Code: "log.critical", Unit: "MyApp", Message: "connection pool exhausted (size 20)"},
			[]string{"ops.myapp.pool_exhausted", "guestdiag.log.critical"}},
		{"a finding of another os matches no os-bound entry", Finding{OS: "windows", Unit: "myapp", Message: "connection pool exhausted (size 20)"}, nil},
		{"a finding with no os matches entries of any os", Finding{Unit: "myapp", Message: "connection pool exhausted (size 20)"},
			[]string{"ops.myapp.pool_exhausted"}},
		{"an event of an unlisted provider does not match", Finding{OS: "windows", Channel: "Application", Provider: "Application Hang", EventID: 1000, Message: "billing.exe"}, nil},
		{"an unknown code matches nothing", Finding{Code: "net.nope", Message: "x"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := k.Match(tt.f)
			if !slices.Equal(ids(got), tt.want) {
				t.Errorf("Match gave %q, want %q", ids(got), tt.want)
			}
			if naive := matchNaive(k.entries, &tt.f); !slices.Equal(naive, got) {
				t.Errorf("naive Match gave %q", ids(naive))
			}
		})
	}
}

func TestSearch(t *testing.T) {
	k := shippedKB(t)
	tests := []struct {
		name, query string
		wantFirst   string
	}{
		{"a title word ranks its entry first", "inodes", "guestdiag.res.inodes_full"},
		{"all terms must match, in any case", "STEAL hypervisor", "guestdiag.res.steal_high"},
		{"a command in a resolution is found", "df -i", "guestdiag.res.inodes_full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := k.Search(tt.query, 3)
			if len(got) == 0 || got[0].ID != tt.wantFirst {
				t.Errorf("Search(%q) gave %q, want %s first", tt.query, ids(got), tt.wantFirst)
			}
		})
	}
	if got := k.Search("nosuchwordanywhere", 0); len(got) != 0 {
		t.Errorf("Search for a missing word gave %q", ids(got))
	}
	if got := k.Search("the", 2); len(got) != 2 {
		t.Errorf("Search with limit 2 gave %d entries", len(got))
	}
}
