// Package dashboard is the collector's administration dashboard: server
// rendered HTML pages of the fleet, each VM, the alerts and the knowledge
// base, with live updates over server-sent events and every asset embedded
// in the binary. It reads through a Source and changes nothing; everything
// a guest wrote is shown as escaped text (see docs/dashboard.md).
package dashboard
