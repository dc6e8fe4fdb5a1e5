package software

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/guestdiag/guestdiag/checks/internal/regfile"
	"github.com/guestdiag/guestdiag/protocol"
)

// parseError locates a fault in a database file.
type parseError struct {
	Line int
	Msg  string
}

func (e *parseError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// lines calls fn with each line of b and its number, without the
// line ending.
func lines(b []byte, fn func(n int, line []byte) error) error {
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

// parseDpkgStatus reads dpkg's status file. A package counts as
// installed unless its state (the third word of Status) is not-installed
// or config-files. Held packages ("hold ok installed") and ones selected
// for removal but still there count. So do the states a package passes
// through while dpkg works (half-installed, unpacked, half-configured,
// triggers-awaited, triggers-pending): a run in the middle of an apt
// transaction would otherwise see them vanish and come back.
func parseDpkgStatus(b []byte) ([]pkg, error) {
	var (
		out   []pkg
		cur   pkg
		state string
		start int // line of the current paragraph's first field; 0 between paragraphs
	)
	flush := func() error {
		if start == 0 {
			return nil
		}
		if cur.Name == "" {
			return &parseError{start, "paragraph without a Package field"}
		}
		if words := strings.Fields(state); len(words) == 3 && words[2] != "not-installed" && words[2] != "config-files" {
			out = append(out, cur)
		}
		cur, state, start = pkg{}, "", 0
		return nil
	}
	err := lines(b, func(n int, line []byte) error {
		if len(bytes.TrimSpace(line)) == 0 {
			return flush()
		}
		if line[0] == ' ' || line[0] == '\t' {
			if start == 0 {
				return &parseError{n, "continuation line outside a paragraph"}
			}
			return nil // only multi-line fields such as Description continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 {
			return &parseError{n, fmt.Sprintf("want Field: value, got %q", protocol.Clip(string(line), 80))}
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

// parseAPKInstalled reads apk's installed database: one paragraph
// per package of "X:value" lines, P the name, V the version, A the arch.
func parseAPKInstalled(b []byte) ([]pkg, error) {
	var (
		out   []pkg
		cur   pkg
		start int
	)
	flush := func() error {
		if start == 0 {
			return nil
		}
		if cur.Name == "" || cur.Version == "" {
			return &parseError{start, "package without P: or V:"}
		}
		out = append(out, cur)
		cur, start = pkg{}, 0
		return nil
	}
	err := lines(b, func(n int, line []byte) error {
		if len(line) == 0 {
			return flush()
		}
		if len(line) < 2 || line[1] != ':' {
			return &parseError{n, fmt.Sprintf("want X:value, got %q", protocol.Clip(string(line), 80))}
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

// parseRPMQuery reads the output of rpm -qa with
// rpmQueryFormat. Packages without an arch (gpg-pubkey) print
// "(none)", which becomes empty.
func parseRPMQuery(b []byte) ([]pkg, error) {
	var out []pkg
	err := lines(b, func(n int, line []byte) error {
		if len(line) == 0 {
			return nil
		}
		f := strings.Split(string(line), "\t")
		if len(f) != 3 || f[0] == "" || f[1] == "" {
			return &parseError{n, fmt.Sprintf("want name<TAB>version<TAB>arch, got %q", protocol.Clip(string(line), 80))}
		}
		arch := f[2]
		if arch == "(none)" {
			arch = ""
		}
		out = append(out, pkg{Name: f[0], Version: f[1], Arch: arch})
		return nil
	})
	return out, err
}

// regEntry is one subkey of an Uninstall key with its values by
// lower-cased name; DWORDs and QWORDs are in decimal.
type regEntry struct {
	Key    string
	Values map[string]string
}

// uninstallPackages picks the programs an administrator installed
// from the subkeys of one Uninstall key, the way Programs and Features
// does: it skips entries without DisplayName, system components and
// updates that name a parent.
func uninstallPackages(entries []regEntry, arch string) []pkg {
	var out []pkg
	for _, e := range entries {
		name := strings.TrimSpace(e.Values["displayname"])
		if name == "" || e.Values["systemcomponent"] == "1" || e.Values["parentkeyname"] != "" {
			continue
		}
		// Registry text is free-form; keep one entry's share of a result small.
		out = append(out, pkg{Name: protocol.Clip(name, 256), Version: protocol.Clip(strings.TrimSpace(e.Values["displayversion"]), 128), Arch: arch})
	}
	return out
}

// uninstallKey is the path of the Uninstall key below HKLM; the
// 32-bit view of it is below WOW6432Node.
const uninstallKey = `SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall`

// parseRegExport reads a `reg export` of an Uninstall key (UTF-16LE
// with a byte order mark, as reg writes it, or UTF-8) and returns the
// subkeys of each view found in it by arch: x86 for keys below
// WOW6432Node, x64 otherwise.
func parseRegExport(b []byte) (map[string][]regEntry, error) {
	text, err := regfile.Decode(b)
	if err != nil {
		return nil, err
	}
	type view struct {
		entries []regEntry
		index   map[string]int
	}
	views := map[string]*view{}
	var cur *regEntry
	var pending string // a hex value continued with a trailing backslash
	pendingLine := 0
	err = lines([]byte(text), func(n int, line []byte) error {
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
			parent, sub, ok := cutLast(path, `\`)
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
				v.entries = append(v.entries, regEntry{Key: sub, Values: map[string]string{}})
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
			return &parseError{n, err.Error()}
		}
		if cur != nil {
			cur.Values[strings.ToLower(name)] = value
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := map[string][]regEntry{}
	for arch, v := range views {
		out[arch] = v.entries
	}
	return out, nil
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
