package kb

// matcher chooses which entries to check for a finding.
type matcher struct{ entries []*Entry }

func newMatcher(entries []*Entry) *matcher { return &matcher{entries: entries} }

func (m *matcher) match(f *Finding) []*Entry { return matchNaive(m.entries, f) }
