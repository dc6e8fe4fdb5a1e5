// Package regfile reads the text of a Windows registry export (.reg), as
// `reg export` and regedit write it: the software check parses the
// Uninstall keys from it, and the firewall check's tests read their
// fixtures with it. It is pure text handling and builds everywhere.
package regfile
