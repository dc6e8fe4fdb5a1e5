package logs

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/protocol"
)

// Data is the data of a logs result.
type Data struct {
	// Mode is "follow" when Watch read the sources as entries came, "scan"
	// when the run read them itself.
	Mode    string       `json:"mode"`
	Sources []SourceData `json:"sources"`
	// Entries are the most recent error entries, raw, newest last.
	Entries         []EntryData `json:"entries,omitempty"`
	EntriesLeftOut  uint64      `json:"entries_left_out,omitempty"`
	FindingsLeftOut int         `json:"findings_left_out,omitempty"`
	// NotRead says why sources were not read (absent, turned off).
	NotRead []string `json:"not_read,omitempty"`
}

// SourceData describes one source over the period of the result.
type SourceData struct {
	Source string `json:"source"`
	Kind   string `json:"kind"` // journald, file, kmsg, eventlog
	// Start says where reading began: saved_position, end (no saved
	// position: older entries are not reported), recent_tail (a scan
	// without saved position), beginning (a file or boot that is new since
	// the saved position), rotated (the saved file was found rotated).
	Start string `json:"start,omitempty"`
	// Position is where reading stopped; it is saved once the result is.
	Position   *Position `json:"position,omitempty"`
	Read       uint64    `json:"read"`
	Matched    uint64    `json:"matched"`
	Suppressed uint64    `json:"suppressed,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// Position is a source's read position, as saved in the state.
type Position struct {
	Cursor   string `json:"cursor,omitempty"` // journald
	Dev      uint64 `json:"dev,omitempty"`    // file
	Inode    uint64 `json:"inode,omitempty"`
	Offset   int64  `json:"offset,omitempty"`
	HeadLen  int    `json:"head_len,omitempty"` // length and FNV-1a hash of the file's first bytes, to tell a reused inode
	HeadHash uint64 `json:"head_hash,omitempty"`
	NextSeq  uint64 `json:"next_seq,omitempty"` // kmsg
	BootID   string `json:"boot_id,omitempty"`
	Bookmark string `json:"bookmark,omitempty"` // Windows bookmark XML
}

// EntryData is one raw error entry.
type EntryData struct {
	Time     time.Time `json:"time"`
	Source   string    `json:"source"`
	Priority int       `json:"priority"`
	Unit     string    `json:"unit,omitempty"`
	PID      int       `json:"pid,omitempty"`
	Provider string    `json:"provider,omitempty"`
	EventID  uint32    `json:"event_id,omitempty"`
	RecordID uint64    `json:"record_id,omitempty"`
	Message  string    `json:"message"`
}

func (l *Logs) result(b *batch, mode string) checks.Result {
	data := Data{Mode: mode, NotRead: l.notes}
	for _, name := range slices.Sorted(maps.Keys(b.sources)) {
		s := b.sources[name]
		sd := SourceData{Source: name, Kind: s.kind, Start: s.start, Read: s.read, Matched: s.matched, Suppressed: s.suppressed}
		if p, ok := b.positions[name]; ok {
			sd.Position = &p
		}
		if s.err != nil {
			sd.Error = protocol.Clip(s.err.Error(), 512)
		}
		data.Sources = append(data.Sources, sd)
	}
	if data.Sources == nil {
		data.Sources = []SourceData{}
	}
	data.Entries, data.EntriesLeftOut = b.entries, b.entriesLeftOut

	groups := slices.Clone(b.groups)
	slices.SortStableFunc(groups, func(a, b *group) int {
		return cmp.Or(cmp.Compare(a.entry.Priority, b.entry.Priority), cmp.Compare(b.count, a.count), a.first.Compare(b.first))
	})
	if len(groups) > l.cfg.MaxFindings {
		data.FindingsLeftOut = len(groups) - l.cfg.MaxFindings
		groups = groups[:l.cfg.MaxFindings]
	}
	findings := make([]protocol.Finding, 0, len(groups))
	var total, crit uint64
	for _, g := range b.groups {
		total += g.count
		if g.entry.Priority <= priCrit {
			crit += g.count
		}
	}
	for _, g := range groups {
		findings = append(findings, g.finding(l.cfg.MaxMessageLen))
	}

	var errs, suppressed []string
	var read uint64
	for _, sd := range data.Sources {
		read += sd.Read
		if sd.Error != "" {
			errs = append(errs, sd.Source+": "+sd.Error)
		}
		if sd.Suppressed > 0 {
			suppressed = append(suppressed, fmt.Sprintf("%d from %s", sd.Suppressed, sd.Source))
		}
	}
	var parts []string
	if len(findings) > 0 {
		s := plural(total, "error entry", "error entries")
		if crit > 0 {
			s += fmt.Sprintf(" (%d critical)", crit)
		}
		s += " in " + plural(uint64(len(b.groups)), "finding", "findings")
		if data.FindingsLeftOut > 0 {
			s += fmt.Sprintf(" (%d left out)", data.FindingsLeftOut)
		}
		parts = append(parts, s+": "+firstMessages(findings, 3))
	} else {
		parts = append(parts, fmt.Sprintf("no error entries in %d entries read from %s", read, sourceList(data.Sources)))
	}
	if len(suppressed) > 0 {
		parts = append(parts, "suppressed by the rate cap "+strings.Join(suppressed, ", "))
	}
	var fromEnd []string
	for _, sd := range data.Sources {
		if sd.Start == "end" {
			fromEnd = append(fromEnd, sd.Source)
		}
	}
	if len(fromEnd) > 0 {
		parts = append(parts, "no saved position, so older entries of "+strings.Join(fromEnd, ", ")+" are not reported")
	}
	res := checks.Result{Status: checks.StatusOf(findings), Findings: findings, Data: data}
	if len(errs) > 0 {
		res.Status = protocol.StatusUnknown
		parts = append([]string{"could not read " + strings.Join(errs, "; ")}, parts...)
	}
	res.Summary = protocol.Clip(strings.Join(parts, "; "), protocol.MaxSummaryLen)
	return res
}

func plural(n uint64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func firstMessages(fs []protocol.Finding, n int) string {
	var b strings.Builder
	for i, f := range fs[:min(n, len(fs))] {
		if i > 0 {
			b.WriteString("; ")
		}
		if f.Unit != "" {
			b.WriteString(f.Unit + ": ")
		} else if f.Provider != "" {
			b.WriteString(f.Provider + ": ")
		}
		b.WriteString(protocol.Clip(f.Message, 160))
		if f.Count > 1 {
			fmt.Fprintf(&b, " (×%d)", f.Count)
		}
	}
	return b.String()
}

func sourceList(ss []SourceData) string {
	if len(ss) == 0 {
		return "no source yet"
	}
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = s.Source
	}
	return strings.Join(names, ", ")
}
