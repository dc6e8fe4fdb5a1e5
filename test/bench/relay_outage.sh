#!/usr/bin/env bash
# Resident memory of a relay process while NATS is down: 1,000 VM channels
# (unix sockets; the benchmark plays QEMU and the agents, each writing 20
# lines a second whenever the relay is connected), an embedded JetStream
# server that is stopped for 5 minutes and started again on the same port
# and store. Prints the relay's peak RSS before, during and after.
#
#   test/bench/relay_outage.sh [channels] [outage] [lines per second per channel]
set -euo pipefail
cd "$(dirname "$0")/../.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
GUESTDIAG_BENCH_CHANNELS=${1:-1000} GUESTDIAG_BENCH_OUTAGE=${2:-5m} GUESTDIAG_BENCH_LINES_PER_SEC=${3:-20} \
	go test ./hostrelay -run '^$' -bench '^BenchmarkRelayOutageMemory$' -benchtime 1x -timeout 30m -v
