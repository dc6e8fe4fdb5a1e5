// Package winsvc is the Windows service glue of the agent: it runs a
// Run(ctx) function under the service control manager, installs and removes
// the service with its recovery actions and event log source, and copies
// warnings and errors to the event log. On other systems every entry point
// fails with an error wrapping errors.ErrUnsupported.
package winsvc
