package kb

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

var idRE = regexp.MustCompile(`^[a-z0-9._-]{1,64}$`)

const maxTitle = 120

// validate checks one decoded entry, compiles its pattern and fills its
// samples from its match. lines maps field paths to the line they are on.
func validate(e *Entry, lines map[string]int) []error {
	var errs []error
	fail := func(field, format string, args ...any) {
		line, ok := lines[field]
		if !ok {
			line = e.Line
		}
		errs = append(errs, &Error{File: e.File, Line: line, Entry: e.ID, Field: field, Msg: fmt.Sprintf(format, args...)})
	}

	switch {
	case e.ID == "":
		fail("id", "missing")
	case !idRE.MatchString(e.ID):
		fail("id", "%q: want 1 to 64 of a-z 0-9 . _ -", e.ID)
	}
	switch {
	case strings.TrimSpace(e.Title) == "":
		fail("title", "missing")
	case len(e.Title) > maxTitle:
		fail("title", "%d bytes long; at most %d", len(e.Title), maxTitle)
	case strings.ContainsAny(e.Title, "\r\n"):
		fail("title", "must be one line")
	}
	if _, ok := severityRank[e.Severity]; !ok {
		fail("severity", "%q: want info, warn or crit", e.Severity)
	}
	if strings.TrimSpace(e.Cause) == "" {
		fail("cause", "missing")
	}
	if len(e.Resolution) == 0 {
		fail("resolution", "missing: give at least one step")
	}
	for i, step := range e.Resolution {
		if strings.TrimSpace(step) == "" {
			fail(fmt.Sprintf("resolution[%d]", i), "empty step")
		}
	}
	for i, ref := range e.References {
		if u, err := url.Parse(ref); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			fail(fmt.Sprintf("references[%d]", i), "%q: want an http or https URL", ref)
		}
	}

	m := &e.Match
	if m.Code == "" && len(m.EventIDs) == 0 && m.Pattern == "" {
		fail("match", "give at least one of code, event_id or pattern")
	}
	if m.OS != "" && m.OS != "linux" && m.OS != "windows" {
		fail("match.os", "%q: want linux or windows", m.OS)
	}
	if len(m.EventIDs) > 0 && len(m.Provider) == 0 {
		fail("match.event_id", "needs a provider: event ids are only unique within one")
	}
	for i, p := range m.Provider {
		if strings.TrimSpace(p) == "" {
			fail(fmt.Sprintf("match.provider[%d]", i), "empty")
		}
	}
	patternOK := true
	if m.Pattern != "" {
		re, err := regexp.Compile(m.Pattern)
		if err != nil {
			patternOK = false
			fail("match.pattern", "%v", err)
		}
		e.re = re
	}
	for i, lit := range m.Literals {
		if lit == "" {
			fail(fmt.Sprintf("match.literals[%d]", i), "empty")
		}
	}
	if len(m.Literals) > 0 && m.Pattern == "" {
		fail("match.literals", "literals need a pattern")
	}
	if m.Pattern != "" && patternOK && len(m.Literals) == 0 && !e.restricted() {
		if lits := deriveLiterals(m.Pattern); len(lits) == 0 {
			fail("match.pattern", "pattern has no literal every match contains; add literals: (strings every matching message contains) or restrict the entry by code, event_id or unit")
		}
	}
	e.generic = len(m.EventIDs) == 0 && m.Pattern == ""

	if len(e.Samples) == 0 {
		fail("samples", "missing: give at least one finding this entry must match")
	}
	for i := range e.Samples {
		s := &e.Samples[i]
		fillSample(s, m)
		if !patternOK {
			continue
		}
		field := fmt.Sprintf("samples[%d]", i)
		if why := mismatch(e, s); why != "" {
			fail(field, "does not match its entry: %s", why)
			continue
		}
		if len(m.Literals) > 0 && !containsAnyFolded(s.Message, m.Literals) {
			fail("match.literals", "sample %d matches the pattern but contains none of the literals", i)
		}
	}
	return errs
}

// fillSample gives a sample's missing fields the entry's own match values,
// so that a Windows sample needs only its message.
func fillSample(s *Sample, m *Match) {
	if s.Code == "" {
		s.Code = m.Code
	}
	if s.OS == "" {
		s.OS = m.OS
	}
	if s.Channel == "" {
		s.Channel = m.Channel
	}
	if s.Provider == "" && len(m.Provider) > 0 {
		s.Provider = m.Provider[0]
	}
	if s.EventID == 0 && len(m.EventIDs) > 0 {
		s.EventID = m.EventIDs[0]
	}
	if s.Unit == "" {
		s.Unit = m.Unit
	}
}

// restricted says whether the entry is only ever tried for findings that an
// index lookup finds (by code, event id or unit), so that a pattern without
// a literal does not have to run on every message.
func (e *Entry) restricted() bool {
	m := &e.Match
	return m.Code != "" || len(m.EventIDs) > 0 || m.Unit != ""
}

func containsAnyFolded(msg string, lits []string) bool {
	folded := foldString(msg)
	for _, lit := range lits {
		if strings.Contains(folded, foldString(lit)) {
			return true
		}
	}
	return false
}
