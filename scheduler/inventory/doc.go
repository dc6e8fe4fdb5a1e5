// Package inventory builds the planner's view of the fleet from what relays
// publish: each host's newest usage sample, each VM's recent CPU history,
// evacuate hints, and the declared policies, chunks and groups. It also
// parses libvirt's interface and network listings to find VMs that share a
// private network and so must move together.
package inventory
