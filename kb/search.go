package kb

import (
	"slices"
	"strconv"
	"strings"
)

// Search returns the entries that contain every whitespace-separated term
// of query, case-insensitively, in their id, title, cause, resolution,
// references, provider or code, or that have a term as an event id. Entries
// with more terms in their id or title come first, then by id. A limit of
// zero or less returns them all.
func (k *KB) Search(query string, limit int) []*Entry {
	terms := strings.Fields(strings.ToLower(query))
	if len(terms) == 0 {
		return nil
	}
	type hit struct {
		e     *Entry
		title int
	}
	var hits []hit
	for i, e := range k.entries {
		head, body := k.text[i].head, k.text[i].body
		title := 0
		all := true
		for _, t := range terms {
			switch {
			case strings.Contains(head, t):
				title++
			case strings.Contains(body, t), isEventID(e, t):
			default:
				all = false
			}
			if !all {
				break
			}
		}
		if all {
			hits = append(hits, hit{e, title})
		}
	}
	slices.SortStableFunc(hits, func(a, b hit) int {
		if a.title != b.title {
			return b.title - a.title
		}
		return strings.Compare(a.e.ID, b.e.ID)
	})
	if limit > 0 && len(hits) > limit {
		hits = hits[:limit]
	}
	out := make([]*Entry, len(hits))
	for i, h := range hits {
		out[i] = h.e
	}
	return out
}

func isEventID(e *Entry, term string) bool {
	id, err := strconv.ParseUint(term, 10, 32)
	return err == nil && slices.Contains(e.Match.EventIDs, uint32(id))
}

// searchText is an entry's text as Search looks at it, lowered once.
type searchText struct{ head, body string }

func newSearchText(e *Entry) searchText {
	return searchText{
		head: strings.ToLower(e.ID + "\n" + e.Title),
		body: strings.ToLower(strings.Join(slices.Concat(
			[]string{e.Cause, e.Match.Code}, e.Resolution, e.References, e.Match.Provider), "\n")),
	}
}
