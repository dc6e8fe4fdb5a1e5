// Package network is the guest agent's network check: is there a default
// route, is its link up, does the gateway answer ICMP, do the configured
// targets and a DNS name resolve. It registers itself as "network".
//
// OS scope: on Linux it reads /proc/net/route, /proc/net/ipv6_route and
// /sys/class/net of the agent's network namespace and watches rtnetlink;
// on Windows it asks GetIpForwardTable2 and GetAdaptersAddresses and
// watches their change notifications; elsewhere every run is unknown.
package network
