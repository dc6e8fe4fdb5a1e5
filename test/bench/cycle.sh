#!/usr/bin/env bash
# One full cycle of all six checks on this machine: CPU time and allocations.
#
# The network check pings its default gateway and its internet targets, so
# the benchmark runs inside a network namespace whose only route leads over
# a veth pair to a second namespace: 198.18.0.1 is the gateway, 198.18.9.9
# stands in for the internet (198.18.0.0/15 is reserved for benchmarks).
# Nothing leaves this machine. Needs root and iproute2.
#
#   test/bench/cycle.sh [go test flags, default: -count 3 -cpu 1]
set -euo pipefail
cd "$(dirname "$0")/../.."

guest=gdbench-guest gw=gdbench-gw
cleanup() {
	ip netns del "$guest" 2>/dev/null || true
	ip netns del "$gw" 2>/dev/null || true
	rm -rf "$tmp"
}
tmp=$(mktemp -d)
trap cleanup EXIT
ip netns del "$guest" 2>/dev/null || true
ip netns del "$gw" 2>/dev/null || true

ip netns add "$guest"
ip netns add "$gw"
ip link add gdb0 netns "$guest" type veth peer name gdb1 netns "$gw"
ip -n "$guest" link set lo up
ip -n "$gw" link set lo up
ip -n "$guest" addr add 198.18.0.2/24 dev gdb0
ip -n "$gw" addr add 198.18.0.1/24 dev gdb1
ip -n "$gw" addr add 198.18.9.9/32 dev lo
ip -n "$guest" link set gdb0 up
ip -n "$gw" link set gdb1 up
ip -n "$guest" route add default via 198.18.0.1

cat >"$tmp/agent.json" <<'JSON'
{"checks": {"network": {"config": {"internet_targets": ["198.18.9.9"], "dns_name": ""}}}}
JSON

go test -c -o "$tmp/guestagent.test" ./guestagent
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(-test.count 3 -test.cpu 1)
GUESTDIAG_BENCH_CONFIG="$tmp/agent.json" ip netns exec "$guest" \
	"$tmp/guestagent.test" -test.run XXX -test.bench Cycle -test.benchmem "${args[@]}"
