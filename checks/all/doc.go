// Package all links in every check of the guest agent, so that importing
// it for its side effect registers the six checks with package checks:
//
//	import _ "github.com/guestdiag/guestdiag/checks/all"
package all
