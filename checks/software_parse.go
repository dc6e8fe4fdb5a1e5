package checks

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/guestdiag/guestdiag/checks/internal/regfile"
	"github.com/guestdiag/guestdiag/protocol"
)

// softwareParseError locates a fault in a database file.
type softwareParseError struct {
	Line int
	Msg  string
}

func (e *softwareParseError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// softwareLines calls fn with each line of b and its number, without the
// line ending.
func softwareLines(b []byte, fn func(n int, line []byte) error) error {
	n := 0
	for len(b) > 0 {
		n++
		line, rest, _ := bytes.Cut(b, []byte("\n"))
		b = rest
		if err := fn(n, bytes.TrimSuffix(line, []byte("\r"))); err != nil {
			return err
		}
	}
	return nil
}

// parseSoftwareDpkgStatus reads dpkg's status file. A package counts as
// installed unless its state (the third word of Status) is not-installed
// or config-files. Held packages ("hold ok installed") and ones selected
// for removal but still there count. So do the states a package passes
// through while dpkg works (half-installed, unpacked, half-configured,
// triggers-awaited, triggers-pending): a run in the middle of an apt
// transaction would otherwise see them vanish and come back.
func parseSoftwareDpkgStatus(b []byte) ([]softwarePackage, error) {
	var (
		out   []softwarePackage
		cur   softwarePackage
		state string
		start int // line of the current paragraph's first field; 0 between paragraphs
	)
	flush := func() error {
		if start == 0 {
			return nil
		}
		if cur.Name == "" {
			return &softwareParseError{start, "paragraph without a Package field"}
		}
		if words := strings.Fields(state); len(words) == 3 && words[2] != "not-installed" && words[2] != "config-files" {
			out = append(out, cur)
		}
		cur, state, start = softwarePackage{}, "", 0
		return nil
	}
	err := softwareLines(b, func(n int, line []byte) error {
		if len(bytes.TrimSpace(line)) == 0 {
			return flush()
		}
		if line[0] == ' ' || line[0] == '\t' {
			if start == 0 {
				return &softwareParseError{n, "continuation line outside a paragraph"}
			}
			return nil // only multi-line fields such as Description continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 {
			return &softwareParseError{n, fmt.Sprintf("want Field: value, got %q", protocol.Clip(string(line), 80))}
		}
		if start == 0 {
			start = n
		}
		v := string(bytes.TrimSpace(value))
		switch string(name) {
		case "Package":
			cur.Name = v
		case "Version":
			cur.Version = v
		case "Architecture":
			cur.Arch = v
		case "Status":
			state = v
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return out, err
}

// parseSoftwareAPKInstalled reads apk's installed database: one paragraph
// per package of "X:value" lines, P the name, V the version, A the arch.
func parseSoftwareAPKInstalled(b []byte) ([]softwarePackage, error) {
	var (
		out   []softwarePackage
		cur   softwarePackage
		start int
	)
	flush := func() error {
		if start == 0 {
			return nil
		}
		if cur.Name == "" || cur.Version == "" {
			return &softwareParseError{start, "package without P: or V:"}
		}
		out = append(out, cur)
		cur, start = softwarePackage{}, 0
		return nil
	}
	err := softwareLines(b, func(n int, line []byte) error {
		if len(line) == 0 {
			return flush()
		}
		if len(line) < 2 || line[1] != ':' {
			return &softwareParseError{n, fmt.Sprintf("want X:value, got %q", protocol.Clip(string(line), 80))}
		}
		if start == 0 {
			start = n
		}
		switch line[0] {
		case 'P':
			cur.Name = string(line[2:])
		case 'V':
			cur.Version = string(line[2:])
		case 'A':
			cur.Arch = string(line[2:])
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return out, err
}

// softwareRPMQueryFormat makes `rpm -qa` print name, [epoch:]version-release
// and arch separated by tabs, one package a line.
const softwareRPMQueryFormat = `%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\n`

// parseSoftwareRPMQuery reads the output of rpm -qa with
// softwareRPMQueryFormat. Packages without an arch (gpg-pubkey) print
// "(none)", which becomes empty.
func parseSoftwareRPMQuery(b []byte) ([]softwarePackage, error) {
	var out []softwarePackage
	err := softwareLines(b, func(n int, line []byte) error {
		if len(line) == 0 {
			return nil
		}
		f := strings.Split(string(line), "\t")
		if len(f) != 3 || f[0] == "" || f[1] == "" {
			return &softwareParseError{n, fmt.Sprintf("want name<TAB>version<TAB>arch, got %q", protocol.Clip(string(line), 80))}
		}
		arch := f[2]
		if arch == "(none)" {
			arch = ""
		}
		out = append(out, softwarePackage{Name: f[0], Version: f[1], Arch: arch})
		return nil
	})
	return out, err
}

// softwareRegEntry is one subkey of an Uninstall key with its values by
// lower-cased name; DWORDs and QWORDs are in decimal.
type softwareRegEntry struct {
	Key    string
	Values map[string]string
}

// softwareUninstallPackages picks the programs an administrator installed
// from the subkeys of one Uninstall key, the way Programs and Features
// does: it skips entries without DisplayName, system components and
// updates that name a parent.
func softwareUninstallPackages(entries []softwareRegEntry, arch string) []softwarePackage {
	var out []softwarePackage
	for _, e := range entries {
		name := strings.TrimSpace(e.Values["displayname"])
		if name == "" || e.Values["systemcomponent"] == "1" || e.Values["parentkeyname"] != "" {
			continue
		}
		// Registry text is free-form; keep one entry's share of a result small.
		out = append(out, softwarePackage{Name: protocol.Clip(name, 256), Version: protocol.Clip(strings.TrimSpace(e.Values["displayversion"]), 128), Arch: arch})
	}
	return out
}

// softwareUninstallKey is the path of the Uninstall key below HKLM; the
// 32-bit view of it is below WOW6432Node.
const softwareUninstallKey = `SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall`

// parseSoftwareRegExport reads a `reg export` of an Uninstall key (UTF-16LE
// with a byte order mark, as reg writes it, or UTF-8) and returns the
// subkeys of each view found in it by arch: x86 for keys below
// WOW6432Node, x64 otherwise.
func parseSoftwareRegExport(b []byte) (map[string][]softwareRegEntry, error) {
	text, err := regfile.Decode(b)
	if err != nil {
		return nil, err
	}
	type view struct {
		entries []softwareRegEntry
		index   map[string]int
	}
	views := map[string]*view{}
	var cur *softwareRegEntry
	var pending string // a hex value continued with a trailing backslash
	pendingLine := 0
	err = softwareLines([]byte(text), func(n int, line []byte) error {
		l := string(line)
		if pending != "" {
			pending += strings.TrimSpace(l)
			if strings.HasSuffix(pending, `\`) {
				pending = strings.TrimSuffix(pending, `\`)
				return nil
			}
			l, pending = pending, ""
			n = pendingLine
		}
		switch {
		case strings.TrimSpace(l) == "", strings.HasPrefix(l, ";"), n == 1 && (strings.HasPrefix(l, "Windows Registry Editor") || l == "REGEDIT4"):
			return nil
		case strings.HasPrefix(l, "["):
			path := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(l), "["), "]")
			cur = nil
			parent, sub, ok := softwareCutLast(path, `\`)
			if !ok || !strings.HasSuffix(strings.ToLower(parent), strings.ToLower(`\Uninstall`)) {
				return nil // the Uninstall key itself, or something deeper
			}
			arch := "x64"
			if strings.Contains(strings.ToLower(parent), `\wow6432node\`) {
				arch = "x86"
			}
			v := views[arch]
			if v == nil {
				v = &view{index: map[string]int{}}
				views[arch] = v
			}
			i, ok := v.index[sub]
			if !ok {
				i = len(v.entries)
				v.index[sub] = i
				v.entries = append(v.entries, softwareRegEntry{Key: sub, Values: map[string]string{}})
			}
			cur = &v.entries[i]
			return nil
		}
		if strings.HasSuffix(l, `\`) {
			pending, pendingLine = strings.TrimSuffix(strings.TrimSpace(l), `\`), n
			return nil
		}
		name, value, err := regfile.Value(l)
		if err != nil {
			return &softwareParseError{n, err.Error()}
		}
		if cur != nil {
			cur.Values[strings.ToLower(name)] = value
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := map[string][]softwareRegEntry{}
	for arch, v := range views {
		out[arch] = v.entries
	}
	return out, nil
}

func softwareCutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
