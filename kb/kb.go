package kb

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

//go:embed entries/*.yaml
var shippedFS embed.FS

// KB is a loaded, validated set of entries. It is immutable, and Match and
// Search are safe for concurrent use.
type KB struct {
	entries []*Entry // in Match's result order
	byID    map[string]*Entry
	text    []searchText // for Search, by index in entries
	m       *matcher
}

func newKB(entries []*Entry) *KB {
	entries = slices.Clone(entries)
	slices.SortFunc(entries, compareEntries)
	k := &KB{entries: entries, byID: make(map[string]*Entry, len(entries))}
	for _, e := range entries {
		k.byID[e.ID] = e
		k.text = append(k.text, newSearchText(e))
	}
	k.m = newMatcher(entries)
	return k
}

// Entries returns every entry, in the order Match ranks them. The slice is
// a copy; the entries are shared and must not be changed.
func (k *KB) Entries() []*Entry { return slices.Clone(k.entries) }

// Len is the number of entries.
func (k *KB) Len() int { return len(k.entries) }

// Get returns the entry with the given id, or nil.
func (k *KB) Get(id string) *Entry { return k.byID[id] }

// Match returns every entry f satisfies, most specific first: entries that
// match by event id or pattern before those that match a code alone, then
// crit, warn, info, then by id. It returns nil when nothing matches.
func (k *KB) Match(f Finding) []*Entry { return k.m.match(&f) }

var shipped = sync.OnceValues(func() ([]*Entry, error) {
	entries, errs := loadFS(shippedFS, "entries", "kb/")
	if len(errs) > 0 {
		return nil, fmt.Errorf("shipped knowledge base: %w", errors.Join(errs...))
	}
	return entries, nil
})

// Shipped returns the entries embedded in the binary. They are tested, so
// an error here is a build bug, not an operator's. Every call returns the
// same KB.
func Shipped() (*KB, error) { return loadShipped() }

var loadShipped = sync.OnceValues(func() (*KB, error) {
	entries, err := shipped()
	if err != nil {
		return nil, err
	}
	return newKB(entries), nil
})

// Load returns the shipped entries plus those in every *.yaml and *.yml
// file of the operator directories, read in order, files by name. A file
// with any error is reported and skipped as a whole, so that half an
// operator's change never applies; it never takes shipped entries down. An
// operator entry with the id of a shipped one replaces it; two operator
// entries with one id are an error, and the later file is skipped. An error
// in the shipped entries themselves leaves only the operator entries.
func Load(logger *slog.Logger, dirs ...string) (*KB, []error) {
	var errs []error
	base, err := shipped()
	if err != nil {
		errs = append(errs, err)
	}
	byID := make(map[string]*Entry, len(base))
	for _, e := range base {
		byID[e.ID] = e
	}
	operator := map[string]string{} // id to the file that defined it
	replaced := 0
	for _, dir := range dirs {
		files, err := yamlFiles(os.DirFS(dir), ".")
		if err != nil {
			errs = append(errs, fmt.Errorf("knowledge base directory %s: %w", dir, err))
			logger.Warn("kb_dir_unreadable", "dir", dir, "err", err)
			continue
		}
		for _, name := range files {
			file := filepath.Join(dir, name)
			entries, ferrs := readFile(os.DirFS(dir), name, file)
			ferrs = append(ferrs, duplicates(entries, map[string]*Entry{})...)
			for _, e := range entries {
				if prev, ok := operator[e.ID]; ok {
					ferrs = append(ferrs, &Error{File: file, Line: e.Line, Entry: e.ID, Field: "id", Msg: "already defined in " + prev})
				}
			}
			if len(ferrs) > 0 {
				errs = append(errs, ferrs...)
				logger.Warn("kb_file_skipped", "file", file, "errors", len(ferrs), "first", ferrs[0].Error())
				continue
			}
			for _, e := range entries {
				operator[e.ID] = file
				if _, ok := byID[e.ID]; ok {
					replaced++
				}
				byID[e.ID] = e
			}
		}
	}
	all := make([]*Entry, 0, len(byID))
	for _, e := range byID {
		all = append(all, e)
	}
	k := newKB(all)
	logger.Info("kb_loaded", "entries", k.Len(), "operator_entries", len(operator), "replaced_shipped", replaced, "errors", len(errs))
	return k, errs
}

// Lint validates every *.yaml and *.yml file in dir, as `guestdiag kb lint`
// does, and returns every problem found, each an *Error naming the file,
// line and field. Ids must be unique across the directory.
func Lint(dir string) []error {
	files, err := yamlFiles(os.DirFS(dir), ".")
	if err != nil {
		return []error{fmt.Errorf("knowledge base directory %s: %w", dir, err)}
	}
	if len(files) == 0 {
		return []error{fmt.Errorf("knowledge base directory %s: no *.yaml or *.yml files", dir)}
	}
	var errs []error
	seen := map[string]*Entry{}
	for _, name := range files {
		file := filepath.Join(dir, name)
		entries, ferrs := readFile(os.DirFS(dir), name, file)
		errs = append(errs, ferrs...)
		errs = append(errs, duplicates(entries, seen)...)
	}
	return errs
}

func duplicates(entries []*Entry, seen map[string]*Entry) []error {
	var errs []error
	for _, e := range entries {
		if e.ID == "" {
			continue
		}
		if prev, ok := seen[e.ID]; ok {
			errs = append(errs, &Error{File: e.File, Line: e.Line, Entry: e.ID, Field: "id", Msg: fmt.Sprintf("already defined at %s:%d", prev.File, prev.Line)})
			continue
		}
		seen[e.ID] = e
	}
	return errs
}

// loadFS reads every YAML file of dir in fsys; prefix is put before the
// file names in errors and in Entry.File.
func loadFS(fsys fs.FS, dir, prefix string) ([]*Entry, []error) {
	files, err := yamlFiles(fsys, dir)
	if err != nil {
		return nil, []error{err}
	}
	var all []*Entry
	var errs []error
	seen := map[string]*Entry{}
	for _, name := range files {
		p := path.Join(dir, name)
		entries, ferrs := readFile(fsys, p, prefix+p)
		errs = append(errs, ferrs...)
		errs = append(errs, duplicates(entries, seen)...)
		all = append(all, entries...)
	}
	return all, errs
}

func yamlFiles(fsys fs.FS, dir string) ([]string, error) {
	des, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, de := range des {
		n := de.Name()
		if !de.IsDir() && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			names = append(names, n)
		}
	}
	return names, nil // fs.ReadDir sorts by name
}

// maxFile bounds what one file may hold; a knowledge-base file is text an
// administrator wrote, and the largest shipped one is far smaller.
const maxFile = 8 << 20

func readFile(fsys fs.FS, name, file string) ([]*Entry, []error) {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, []error{&Error{File: file, Msg: err.Error(), Err: err}}
	}
	if len(data) > maxFile {
		return nil, []error{&Error{File: file, Msg: fmt.Sprintf("%d bytes; at most %d", len(data), maxFile)}}
	}
	return decodeFile(file, data)
}
