// Package version holds the release version every guestdiag binary reports.
// Release builds set it with -ldflags "-X github.com/guestdiag/guestdiag/internal/version.Version=v1.2.3".
package version

// Version is "dev" unless the build sets it.
var Version = "dev"
