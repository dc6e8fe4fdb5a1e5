// Package kb is the knowledge base of known problems: the YAML entry format
// (docs/kb.md), the entries shipped embedded in every binary, loading of
// operator directories, the validation behind `guestdiag kb lint`, and the
// matcher that maps a finding to the entries that explain it and say how to
// fix it.
package kb
