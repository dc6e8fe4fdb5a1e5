package kb

import "regexp"

// Entry is one known problem: what it matches, what it means and how to fix
// it. File and Line say where it was loaded from, for lint errors and for
// operators reading an alert.
type Entry struct {
	ID         string   `yaml:"id" json:"id"`
	Title      string   `yaml:"title" json:"title"`
	Match      Match    `yaml:"match" json:"match"`
	Severity   string   `yaml:"severity" json:"severity"`
	Cause      string   `yaml:"cause" json:"cause"`
	Resolution []string `yaml:"resolution" json:"resolution"`
	References []string `yaml:"references" json:"references,omitempty"`
	Samples    []Sample `yaml:"samples" json:"samples"`

	File string `yaml:"-" json:"file"`
	Line int    `yaml:"-" json:"line"`

	re      *regexp.Regexp // compiled Match.Pattern
	generic bool           // matches by code alone: ranked after specific entries
}

// Match says which findings an entry applies to. Every field that is set
// must hold; see docs/kb.md. Provider and EventIDs are written in YAML as one
// value or a list; a finding matches when it has any one of them.
type Match struct {
	Code     string   `yaml:"code" json:"code,omitempty"`
	OS       string   `yaml:"os" json:"os,omitempty"`
	Channel  string   `yaml:"channel" json:"channel,omitempty"`
	Provider []string `yaml:"provider" json:"provider,omitempty"`
	EventIDs []uint32 `yaml:"event_id" json:"event_id,omitempty"`
	Unit     string   `yaml:"unit" json:"unit,omitempty"`
	Pattern  string   `yaml:"pattern" json:"pattern,omitempty"`
	Literals []string `yaml:"literals" json:"literals,omitempty"`
}

// Finding is what the matcher is asked about: a guest's finding with the OS
// its agent reported. For a Windows event Channel is the finding's source.
type Finding struct {
	Code     string `yaml:"code" json:"code,omitempty"`
	OS       string `yaml:"os" json:"os,omitempty"`
	Channel  string `yaml:"channel" json:"channel,omitempty"`
	Provider string `yaml:"provider" json:"provider,omitempty"`
	EventID  uint32 `yaml:"event_id" json:"event_id,omitempty"`
	Unit     string `yaml:"unit" json:"unit,omitempty"`
	Message  string `yaml:"message" json:"message,omitempty"`
}

// Sample is a finding that must match its entry; fields left out take the
// entry's own match values.
type Sample = Finding
