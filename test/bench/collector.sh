#!/usr/bin/env bash
# Collector throughput with the NATS server in a process of its own, so that
# the benchmark's CPU time is the collectors' alone (issue 7). Builds
# nats-server from the version in go.mod, starts it on a free loopback port
# with a temporary store, and runs BenchmarkCollectorThroughput against it.
#
#   test/bench/collector.sh [go test flags, default: -benchtime 2x -count 1]
set -euo pipefail
cd "$(dirname "$0")/../.."

tmp=$(mktemp -d)
pid=
cleanup() {
	if [[ -n $pid ]]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/nats-server" github.com/nats-io/nats-server/v2
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$tmp/nats-server" -js -sd "$tmp/store" -a 127.0.0.1 -p "$port" >"$tmp/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
	if grep -q "Server is ready" "$tmp/server.log"; then
		break
	fi
	sleep 0.1
done
grep -q "Server is ready" "$tmp/server.log" || { cat "$tmp/server.log"; exit 1; }

if [[ $# -eq 0 ]]; then
	set -- -benchtime 2x -count 1
fi
GUESTDIAG_BENCH_NATS="nats://127.0.0.1:$port" GUESTDIAG_BENCH_NATS_PID=$pid \
	go test ./collector -run XXX -bench CollectorThroughput -cpu 1 "$@"
