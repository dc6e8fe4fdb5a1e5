// Package kb will hold the knowledge base of known problems: the entry format,
// the shipped entries, loading, validation and the matcher that maps findings
// to causes and resolutions. It is empty until the knowledge-base issue is
// taken; the collector does not match findings yet.
package kb
