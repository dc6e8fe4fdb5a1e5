package logs

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/guestdiag/guestdiag/protocol"
)

// group is a set of identical entries: same source, unit, provider,
// event id and normalized message.
type group struct {
	key         string
	entry       entry  // the latest
	count       uint64 // not yet reported
	first, last time.Time
	reportedAt  time.Time // zero if never reported
}

func (g *group) finding(maxLen int) protocol.Finding {
	code, sev := codeOf(g.entry.Priority)
	first, last := g.first.UTC(), g.last.UTC()
	msg := oneLine(g.entry.Message)
	if msg == "" {
		msg = "(empty message)"
	}
	return protocol.Finding{
		Code:     code,
		Severity: sev,
		Message:  protocol.Clip(msg, maxLen),
		Source:   label(g.entry.Source),
		Provider: label(g.entry.Provider),
		EventID:  g.entry.EventID,
		Unit:     label(g.entry.Unit),
		Count:    g.count,
		First:    &first,
		Last:     &last,
	}
}

// codeOf maps a priority: emerg, alert and crit are critical; err is an
// error worth a warning; anything milder (only with min_priority above 3)
// is an error code at info severity.
func codeOf(pri int) (string, protocol.Severity) {
	switch {
	case pri <= priCrit:
		return CodeLogCritical, protocol.SeverityCrit
	case pri == priErr:
		return CodeLogError, protocol.SeverityWarn
	}
	return CodeLogError, protocol.SeverityInfo
}

// label makes guest text a valid one-line finding label.
func label(s string) string {
	if s == "" {
		return ""
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	return protocol.Clip(s, protocol.MaxSourceLen)
}

// oneLine trims a message and makes it valid UTF-8; a multi-line
// message keeps its lines.
func oneLine(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return strings.TrimSpace(s)
}

// sourceStats counts what one source read between two drains.
type sourceStats struct {
	kind, start               string
	read, matched, suppressed uint64
	err                       error
	tokens                    float64 // rate cap bucket
	refilled                  time.Time
	groups                    map[string]*group
}

// batch is what one run drained.
type batch struct {
	groups         []*group
	sources        map[string]*sourceStats
	positions      map[string]Position
	entries        []EntryData
	entriesLeftOut uint64
	maxEntries     int
}

// merge adds a newer batch to b, which was never committed.
func (b *batch) merge(n *batch) *batch {
	byKey := map[string]*group{}
	for _, g := range b.groups {
		byKey[g.key] = g
	}
	for _, g := range n.groups {
		if o, ok := byKey[g.key]; ok {
			o.count += g.count
			o.entry = g.entry
			o.last = g.last
			continue
		}
		b.groups = append(b.groups, g)
	}
	for name, s := range n.sources {
		o, ok := b.sources[name]
		if !ok {
			b.sources[name] = s
			continue
		}
		o.read += s.read
		o.matched += s.matched
		o.suppressed += s.suppressed
		o.err = s.err
		if s.start != "" && o.start == "" {
			o.start = s.start
		}
	}
	for name, p := range n.positions {
		b.positions[name] = p
	}
	b.entries = append(b.entries, n.entries...)
	b.entriesLeftOut += n.entriesLeftOut
	if over := len(b.entries) - b.maxEntries; over > 0 {
		b.entries = slices.Delete(b.entries, 0, over)
		b.entriesLeftOut += uint64(over)
	}
	return b
}

// aggregator gathers the error entries of every source between runs,
// in bounded memory: at most MaxPerSource distinct entries per source, at
// most MaxRate entries per second per source.
type aggregator struct {
	cfg Config

	mu        sync.Mutex
	trigger   func()
	sources   map[string]*sourceStats
	current   map[string]Position // where reading has got to
	saved     map[string]Position // committed
	recent    []EntryData         // ring of the latest entries
	recentAt  int
	recentOut uint64
}

func newAggregator(cfg Config) *aggregator {
	return &aggregator{cfg: cfg, sources: map[string]*sourceStats{}, current: map[string]Position{}, saved: map[string]Position{}}
}

func (a *aggregator) setTrigger(f func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.trigger = f
}

func (a *aggregator) committed(p map[string]Position) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range p {
		a.saved[k] = v
		a.current[k] = v
	}
}

// commit records ps as saved and returns every saved position.
func (a *aggregator) commit(ps map[string]Position) map[string]Position {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range ps {
		a.saved[k] = v
	}
	return maps.Clone(a.saved)
}

func (a *aggregator) position(source string) (Position, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.current[source]
	return p, ok
}

func (a *aggregator) stats(source string) *sourceStats {
	s := a.sources[source]
	if s == nil {
		s = &sourceStats{tokens: float64(a.cfg.MaxRate), groups: map[string]*group{}}
		a.sources[source] = s
	}
	return s
}

func (a *aggregator) started(source, kind, how string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.stats(source)
	s.kind, s.start, s.err = kind, how, nil
}

func (a *aggregator) failed(source string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stats(source).err = err
}

func (a *aggregator) push(source string, pos Position, read uint64, entries []entry) {
	now := time.Now()
	a.mu.Lock()
	s := a.stats(source)
	s.err = nil
	s.read += read
	a.current[source] = pos
	fire := false
	for _, e := range entries {
		s.matched++
		if !s.take(now, a.cfg.MaxRate) {
			s.suppressed++
			continue
		}
		key := groupKey(e)
		g := s.groups[key]
		if g == nil {
			if len(s.groups) >= a.cfg.MaxPerSource {
				s.evict(now, a.cfg.AggregateWindow.Duration)
			}
			if len(s.groups) >= a.cfg.MaxPerSource {
				s.suppressed++
				continue
			}
			g = &group{key: key, first: e.Time}
			s.groups[key] = g
		}
		if g.count == 0 {
			g.first = e.Time
			if g.reportedAt.IsZero() || now.Sub(g.reportedAt) >= a.cfg.AggregateWindow.Duration {
				fire = true
			}
		}
		g.count++
		g.entry = e
		if e.Time.After(g.last) {
			g.last = e.Time
		}
		if e.Time.Before(g.first) {
			g.first = e.Time
		}
		a.remember(e)
	}
	trigger := a.trigger
	a.mu.Unlock()
	if fire && trigger != nil {
		trigger()
	}
}

// take spends a token of the source's rate bucket.
func (s *sourceStats) take(now time.Time, rate int) bool {
	if !s.refilled.IsZero() {
		s.tokens = min(float64(rate), s.tokens+now.Sub(s.refilled).Seconds()*float64(rate))
	}
	s.refilled = now
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

// evict forgets groups that have nothing to report and whose window is
// over.
func (s *sourceStats) evict(now time.Time, window time.Duration) {
	for k, g := range s.groups {
		if g.count == 0 && now.Sub(g.reportedAt) >= window {
			delete(s.groups, k)
		}
	}
}

func (a *aggregator) remember(e entry) {
	d := EntryData{Time: e.Time.UTC(), Source: label(e.Source), Priority: e.Priority, Unit: label(e.Unit), PID: e.PID,
		Provider: label(e.Provider), EventID: e.EventID, RecordID: e.RecordID, Message: protocol.Clip(oneLine(e.Message), 512)}
	if len(a.recent) < a.cfg.MaxEntries {
		a.recent = append(a.recent, d)
		return
	}
	a.recent[a.recentAt] = d
	a.recentAt = (a.recentAt + 1) % len(a.recent)
	a.recentOut++
}

// drain takes everything reportable at now: groups seen for the first
// time, and repeats whose window has passed. Repeats still inside their
// window stay for a later run.
func (a *aggregator) drain(now time.Time) *batch {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := &batch{sources: map[string]*sourceStats{}, positions: maps.Clone(a.current), maxEntries: a.cfg.MaxEntries}
	window := a.cfg.AggregateWindow.Duration
	for name, s := range a.sources {
		for k, g := range s.groups {
			if g.count > 0 && (g.reportedAt.IsZero() || now.Sub(g.reportedAt) >= window) {
				cp := *g
				b.groups = append(b.groups, &cp)
				g.count, g.reportedAt = 0, now
			}
			if g.count == 0 && now.Sub(g.reportedAt) >= window {
				delete(s.groups, k)
			}
		}
		b.sources[name] = &sourceStats{kind: s.kind, start: s.start, read: s.read, matched: s.matched, suppressed: s.suppressed, err: s.err}
		s.read, s.matched, s.suppressed, s.start = 0, 0, 0, ""
	}
	b.entries = make([]EntryData, 0, a.cfg.MaxEntries)
	b.entries = append(b.entries, a.recent[a.recentAt:]...)
	b.entries = append(b.entries, a.recent[:a.recentAt]...)
	b.entriesLeftOut = a.recentOut
	a.recent, a.recentAt, a.recentOut = a.recent[:0], 0, 0
	return b
}

// groupKey identifies identical entries.
func groupKey(e entry) string {
	return e.Source + "\x00" + e.Unit + "\x00" + e.Provider + "\x00" + fmt.Sprint(e.EventID) + "\x00" + normalize(e.Message)
}

// normalize makes messages that differ only in numbers, hex values,
// ids or spacing equal: every run of digits, a 0x number or a long hex
// word becomes "#", whitespace runs become one space, and at most 512
// bytes are kept.
func normalize(m string) string {
	var b strings.Builder
	b.Grow(min(len(m), 512))
	space := false
	for i := 0; i < len(m) && b.Len() < 512; {
		c := m[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			space = b.Len() > 0
			i++
			continue
		case c == '0' && i+2 < len(m) && (m[i+1] == 'x' || m[i+1] == 'X') && isHex(m[i+2]):
			i += 2
			for i < len(m) && isHex(m[i]) {
				i++
			}
			c = '#'
		case isHex(c) && (i == 0 || !isWord(m[i-1])) && hexRun(m, i) >= 8:
			i += hexRun(m, i)
			c = '#'
		case c >= '0' && c <= '9':
			for i < len(m) && m[i] >= '0' && m[i] <= '9' {
				i++
			}
			c = '#'
		default:
			i++
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isWord(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// hexRun is the length of the hex word at m[i:] if it holds a digit
// and ends at a word boundary, else 0.
func hexRun(m string, i int) int {
	j, digit := i, false
	for j < len(m) && isHex(m[j]) {
		digit = digit || m[j] <= '9'
		j++
	}
	if !digit || j < len(m) && isWord(m[j]) {
		return 0
	}
	return j - i
}

// entryFilter decides which entries are errors.
type entryFilter struct {
	minPri   int
	keywords [][]byte  // lowercase
	first    [256]bool // first bytes of keywords, both cases
	errorRE  *regexp.Regexp
	critRE   *regexp.Regexp
	ignoreRE *regexp.Regexp
}

func newFilter(cfg Config) (*entryFilter, error) {
	f := &entryFilter{minPri: cfg.MinPriority}
	var err error
	if f.errorRE, err = compile("error_patterns", cfg.ErrorPatterns); err != nil {
		return nil, err
	}
	if f.critRE, err = compile("critical_patterns", cfg.CriticalPatterns); err != nil {
		return nil, err
	}
	if f.ignoreRE, err = compile("ignore_patterns", cfg.IgnorePatterns); err != nil {
		return nil, err
	}
	for _, k := range cfg.ErrorKeywords {
		k = strings.ToLower(k)
		if k == "" {
			continue
		}
		f.keywords = append(f.keywords, []byte(k))
		f.first[k[0]] = true
		f.first[strings.ToUpper(k[:1])[0]] = true
	}
	return f, nil
}

func compile(key string, patterns []string) (*regexp.Regexp, error) {
	if len(patterns) == 0 {
		return nil, nil
	}
	for _, p := range patterns {
		if _, err := regexp.Compile(p); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
	}
	return regexp.Compile("(?:" + strings.Join(patterns, ")|(?:") + ")")
}

// mayMatch is the cheap test every line without a priority goes through:
// does it contain one of the keywords, in any case?
func (f *entryFilter) mayMatch(line []byte) bool {
	if len(f.keywords) == 0 {
		return true
	}
	for i := 0; i < len(line); i++ {
		if !f.first[line[i]] {
			continue
		}
		for _, k := range f.keywords {
			if hasPrefixFold(line[i:], k) {
				return true
			}
		}
	}
	return false
}

// hasPrefixFold reports whether s starts with the lowercase ASCII k,
// ignoring case.
func hasPrefixFold(s, k []byte) bool {
	if len(s) < len(k) {
		return false
	}
	for j, c := range k {
		if s[j]|0x20 != c && s[j] != c {
			return false
		}
	}
	return true
}

// classify returns the priority of an entry and whether it is reported.
// pri is the source's priority, or priUnknown: then the patterns
// decide, and a match is err, or crit if a critical pattern matches too.
func (f *entryFilter) classify(pri int, msg []byte) (int, bool) {
	if pri == priUnknown {
		if f.errorRE == nil || !f.errorRE.Match(msg) {
			return 0, false
		}
		pri = priErr
		if f.critRE != nil && f.critRE.Match(msg) {
			pri = priCrit
		}
	}
	if pri > f.minPri {
		return pri, false
	}
	if f.ignoreRE != nil && f.ignoreRE.Match(msg) {
		return pri, false
	}
	return pri, true
}
