//go:build !unix && !windows

package guestagent

import "os"

// lockFile does nothing where the OS offers no advisory lock the agent can
// use; the agent does not run there.
func lockFile(*os.File) error { return nil }
