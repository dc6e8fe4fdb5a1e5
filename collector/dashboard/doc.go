// Package dashboard is the collector's administration dashboard: server
// rendered HTML pages of the fleet, each VM, the alerts, the placement and
// the knowledge base, with live updates over server-sent events and every
// asset embedded in the binary. It reads through a Source; its only writes
// are an admin's drain and undrain of a host. Everything a guest or relay
// wrote is shown as escaped text (see docs/dashboard.md).
package dashboard
