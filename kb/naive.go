package kb

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

var severityRank = map[string]int{"crit": 0, "warn": 1, "info": 2}

// failed names the first match field a finding does not satisfy.
type failed int

const (
	none failed = iota
	byCode
	byOS
	byChannel
	byProvider
	byEventID
	byUnit
	byPattern
)

// check tests every set match field of e against f. It is the one
// definition of what matching means; the fast matcher only chooses which
// entries to check.
func check(e *Entry, f *Finding) failed {
	m := &e.Match
	switch {
	case m.Code != "" && f.Code != m.Code:
		return byCode
	case m.OS != "" && f.OS != "" && f.OS != m.OS:
		return byOS
	case m.Channel != "" && !strings.EqualFold(f.Channel, m.Channel):
		return byChannel
	case len(m.Provider) > 0 && !anyEqualFold(m.Provider, f.Provider):
		return byProvider
	case len(m.EventIDs) > 0 && !slices.Contains(m.EventIDs, f.EventID):
		return byEventID
	case m.Unit != "" && !strings.EqualFold(f.Unit, m.Unit):
		return byUnit
	case e.re != nil && !e.re.MatchString(f.Message):
		return byPattern
	}
	return none
}

func anyEqualFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// mismatch says in words why f does not match e, or "" when it does.
func mismatch(e *Entry, f *Finding) string {
	m := &e.Match
	switch check(e, f) {
	case byCode:
		return fmt.Sprintf("code %q is not %q", f.Code, m.Code)
	case byOS:
		return fmt.Sprintf("os %q is not %q", f.OS, m.OS)
	case byChannel:
		return fmt.Sprintf("channel %q is not %q", f.Channel, m.Channel)
	case byProvider:
		return fmt.Sprintf("provider %q is none of %q", f.Provider, m.Provider)
	case byEventID:
		return fmt.Sprintf("event id %d is none of %v", f.EventID, m.EventIDs)
	case byUnit:
		return fmt.Sprintf("unit %q is not %q", f.Unit, m.Unit)
	case byPattern:
		return fmt.Sprintf("the pattern does not match the message %q", f.Message)
	}
	return ""
}

// compareEntries is the order of Match's results: entries that match by
// event id or pattern before those that match a code alone, then crit, warn,
// info, then by id.
func compareEntries(a, b *Entry) int {
	if a.generic != b.generic {
		if a.generic {
			return 1
		}
		return -1
	}
	if c := cmp.Compare(severityRank[a.Severity], severityRank[b.Severity]); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// matchNaive checks every entry. It is the reference the fast matcher is
// tested against; entries are kept in result order, so no sort is needed.
func matchNaive(entries []*Entry, f *Finding) []*Entry {
	var out []*Entry
	for _, e := range entries {
		if check(e, f) == none {
			out = append(out, e)
		}
	}
	return out
}
