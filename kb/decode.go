package kb

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is one problem found in a knowledge-base file, with where it is:
// the file, the line, the entry's id when known and the field's path
// (match.pattern, samples[2].event_id).
type Error struct {
	File  string
	Line  int
	Entry string
	Field string
	Msg   string
	Err   error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Entry != "" {
		fmt.Fprintf(&b, "entry %q: ", e.Entry)
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// decoder turns one file's YAML into entries, collecting every error rather
// than stopping at the first, so that `kb lint` shows them all at once.
type decoder struct {
	file  string
	entry string         // id of the entry being decoded, for messages
	lines map[string]int // field path to its line, for the entry's validation
	errs  []error
}

func (d *decoder) fail(n *yaml.Node, field, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Entry: d.entry, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// decodeFile parses data as a YAML list of entries. Entries with errors are
// still returned (so that one bad field does not hide the next one's
// errors); callers reject the whole file when errs is not empty.
func decodeFile(file string, data []byte) ([]*Entry, []error) {
	d := &decoder{file: file}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, []error{syntaxError(file, err)}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil // an empty file holds no entries
	}
	root := doc.Content[0]
	if root.Kind != yaml.SequenceNode {
		d.fail(root, "", "want a list of entries, got %s", kindName(root))
		return nil, d.errs
	}
	var entries []*Entry
	for _, n := range root.Content {
		if e := d.entry1(n); e != nil {
			entries = append(entries, e)
		}
	}
	// In file order, as someone fixing them reads the file.
	slices.SortStableFunc(d.errs, func(a, b error) int {
		return cmp.Compare(a.(*Error).Line, b.(*Error).Line)
	})
	return entries, d.errs
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if n.Tag == "!!null" {
		return "nothing"
	}
	return fmt.Sprintf("%q", n.Value)
}

// fields walks a mapping's keys, calling set for each; set reports whether
// it knows the key.
func (d *decoder) fields(n *yaml.Node, prefix string, set func(key string, v *yaml.Node, field string) bool) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		field := prefix + k.Value
		d.lines[field] = v.Line
		if seen[k.Value] {
			d.fail(k, field, "given twice")
			continue
		}
		seen[k.Value] = true
		if !set(k.Value, v, field) {
			d.fail(k, field, "unknown field")
		}
	}
}

func (d *decoder) entry1(n *yaml.Node) *Entry {
	d.entry = ""
	if n.Kind != yaml.MappingNode {
		d.fail(n, "", "want an entry (a mapping), got %s", kindName(n))
		return nil
	}
	// The id first, so that every message about this entry can name it.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "id" && n.Content[i+1].Kind == yaml.ScalarNode {
			d.entry = n.Content[i+1].Value
		}
	}
	e := &Entry{File: d.file, Line: n.Line}
	d.lines = map[string]int{}
	d.fields(n, "", func(key string, v *yaml.Node, field string) bool {
		switch key {
		case "id":
			e.ID = d.str(v, field)
		case "title":
			e.Title = d.str(v, field)
		case "severity":
			e.Severity = d.str(v, field)
		case "cause":
			e.Cause = d.str(v, field)
		case "resolution":
			e.Resolution = d.strs(v, field)
		case "references":
			e.References = d.strs(v, field)
		case "match":
			d.match(v, &e.Match)
		case "samples":
			if v.Kind != yaml.SequenceNode {
				d.fail(v, field, "want a list of samples, got %s", kindName(v))
				return true
			}
			for i, s := range v.Content {
				f := fmt.Sprintf("samples[%d]", i)
				d.lines[f] = s.Line
				e.Samples = append(e.Samples, d.sample(s, f))
			}
		default:
			return false
		}
		return true
	})
	d.errs = append(d.errs, validate(e, d.lines)...)
	return e
}

func (d *decoder) match(n *yaml.Node, m *Match) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, "match", "want a mapping, got %s", kindName(n))
		return
	}
	d.fields(n, "match.", func(key string, v *yaml.Node, field string) bool {
		switch key {
		case "code":
			m.Code = d.str(v, field)
		case "os":
			m.OS = d.str(v, field)
		case "channel":
			m.Channel = d.str(v, field)
		case "provider":
			m.Provider = d.strs(v, field)
		case "event_id":
			m.EventIDs = d.eventIDs(v, field)
		case "unit":
			m.Unit = d.str(v, field)
		case "pattern":
			m.Pattern = d.str(v, field)
		case "literals":
			m.Literals = d.strs(v, field)
		default:
			return false
		}
		return true
	})
}

func (d *decoder) sample(n *yaml.Node, prefix string) Sample {
	var s Sample
	if n.Kind != yaml.MappingNode {
		d.fail(n, prefix, "want a sample (a mapping), got %s", kindName(n))
		return s
	}
	d.fields(n, prefix+".", func(key string, v *yaml.Node, field string) bool {
		switch key {
		case "code":
			s.Code = d.str(v, field)
		case "os":
			s.OS = d.str(v, field)
		case "channel":
			s.Channel = d.str(v, field)
		case "provider":
			s.Provider = d.str(v, field)
		case "event_id":
			s.EventID = d.eventID(v, field)
		case "unit":
			s.Unit = d.str(v, field)
		case "message":
			s.Message = d.str(v, field)
		default:
			return false
		}
		return true
	})
	return s
}

// str takes any scalar's text: an unquoted `title: Yes` is the string
// "Yes", not a boolean to complain about.
func (d *decoder) str(n *yaml.Node, field string) string {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, field, "want a string, got %s", kindName(n))
		return ""
	}
	if n.Tag == "!!null" {
		return ""
	}
	return n.Value
}

// strs takes one string or a list of them.
func (d *decoder) strs(n *yaml.Node, field string) []string {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	return oneOrMany(d, n, field, "a string or a list of strings", d.str)
}

func (d *decoder) eventID(n *yaml.Node, field string) uint32 {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		d.fail(n, field, "want an event id (a whole number), got %s", kindName(n))
		return 0
	}
	id, err := strconv.ParseUint(n.Value, 0, 32)
	if err != nil {
		d.fail(n, field, "want an event id from 0 to 4294967295, got %q", n.Value)
		return 0
	}
	return uint32(id)
}

func (d *decoder) eventIDs(n *yaml.Node, field string) []uint32 {
	return oneOrMany(d, n, field, "an event id or a list of them", d.eventID)
}

// oneOrMany decodes a field that takes one value or a list of them, with
// each list item's line kept for errors under field[i].
func oneOrMany[T any](d *decoder, n *yaml.Node, field, want string, one func(*yaml.Node, string) T) []T {
	if n.Kind == yaml.ScalarNode {
		return []T{one(n, field)}
	}
	if n.Kind != yaml.SequenceNode {
		d.fail(n, field, "want %s, got %s", want, kindName(n))
		return nil
	}
	out := make([]T, 0, len(n.Content))
	for i, v := range n.Content {
		f := fmt.Sprintf("%s[%d]", field, i)
		d.lines[f] = v.Line
		out = append(out, one(v, f))
	}
	return out
}

// syntaxError moves the line that yaml puts in its message ("yaml: line 7:
// did not find expected key") to where every other error has it.
func syntaxError(file string, err error) error {
	msg := err.Error()
	e := &Error{File: file, Msg: msg, Err: err}
	rest, ok := strings.CutPrefix(msg, "yaml: line ")
	if !ok {
		return e
	}
	num, text, ok := strings.Cut(rest, ": ")
	if line, perr := strconv.Atoi(num); ok && perr == nil {
		e.Line, e.Msg = line, "yaml: "+text
	}
	return e
}
