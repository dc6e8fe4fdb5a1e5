// Package procstat reads /proc/<pid>/stat for the checks that walk every
// process (processes, resources): one parser, so both read a process the
// same way. The parser is pure and builds everywhere; reading /proc is
// Linux only.
package procstat
