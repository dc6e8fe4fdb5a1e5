// Package firewall is the guest agent's firewall check: is a firewall on,
// does it drop what it should, and what changed in its rules since the
// last baseline. It registers itself as "firewall".
//
// OS scope: on Linux it reads the nftables ruleset over netlink, the legacy
// iptables tables through iptables-save, and firewalld's and ufw's state
// from their files; on Windows it reads the firewall profiles and rules
// from the registry; elsewhere every run is unknown.
package firewall
