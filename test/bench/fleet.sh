#!/usr/bin/env bash
# Fleet scale on a three-node JetStream cluster (issue 11). Starts three
# nats-server processes with routes on loopback (built from the nats-server
# in go.mod), COLLECTORS guestdiag-collector processes on the shared
# durable with R3 stream and buckets, HOSTS guestdiag-relay processes, and
# guestdiag-loadgen playing HOSTS x VMS agents at SPEED (time compression).
# Prints the pipeline's rates over the measured window, the p99 from a
# crit result's write to its alert, and each process's CPU over the window.
#
#   test/bench/fleet.sh [collectors] [hosts] [vms per host] [speed] [window] [crit rate]
#   test/bench/fleet.sh 1 3 1000 20 40s 5
set -euo pipefail
cd "$(dirname "$0")/../.."
COLLECTORS=${1:-1} HOSTS=${2:-3} VMS=${3:-1000} SPEED=${4:-20} WINDOW=${5:-40s} CRIT=${6:-5}
WARMUP=${WARMUP:-15s}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

bin=${BIN:-$tmp/bin}
if [[ -z ${BIN:-} ]]; then
	mkdir -p "$bin"
	go build -o "$bin/nats-server" github.com/nats-io/nats-server/v2
	go build -o "$bin/" ./cmd/guestdiag-relay ./cmd/guestdiag-collector ./test/loadgen/cmd/guestdiag-loadgen
fi

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
declare -a cport rport
for i in 1 2 3; do cport[$i]=$(freeport); rport[$i]=$(freeport); done
routes="nats://127.0.0.1:${rport[1]},nats://127.0.0.1:${rport[2]},nats://127.0.0.1:${rport[3]}"
urls="nats://127.0.0.1:${cport[1]},nats://127.0.0.1:${cport[2]},nats://127.0.0.1:${cport[3]}"
declare -A role
for i in 1 2 3; do
	"$bin/nats-server" -n "n$i" -js -sd "$tmp/store$i" -a 127.0.0.1 -p "${cport[$i]}" \
		--cluster_name guestdiag-bench --cluster "nats://127.0.0.1:${rport[$i]}" --routes "$routes" >"$tmp/n$i.log" 2>&1 &
	pids+=($!); role[$!]="nats n$i"
done
for i in 1 2 3; do
	for _ in $(seq 200); do grep -q "Server is ready" "$tmp/n$i.log" && break; sleep 0.1; done
	grep -q "Server is ready" "$tmp/n$i.log" || { cat "$tmp/n$i.log"; exit 1; }
done

# Collector i prefers node i, so that with three they spread over the nodes.
for c in $(seq "$COLLECTORS"); do
	k=$(( (c - 1) % 3 + 1 ))
	first="nats://127.0.0.1:${cport[$k]}"
	port=$(freeport)
	"$bin/guestdiag-collector" --nats "$first,$urls" --replicas 3 --listen "127.0.0.1:$port" >"$tmp/collector$c.log" 2>&1 &
	pids+=($!); role[$!]="collector $c"
	echo "collector $c: http://127.0.0.1:$port"
	for _ in $(seq 300); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
done

"$bin/guestdiag-loadgen" -dir "$tmp/fleet" -hosts "$HOSTS" -vms "$VMS" -speed "$SPEED" -nats "$urls" \
	-crit-rate "$CRIT" -warmup "$WARMUP" -duration "$WINDOW" -every 5s >"$tmp/loadgen.out" 2>"$tmp/loadgen.log" &
lg=$!; role[$lg]="loadgen"
for _ in $(seq 100); do grep -q '^fleet:' "$tmp/loadgen.out" && break; sleep 0.1; done
for h in $(seq "$HOSTS"); do
	k=$(( (h - 1) % 3 + 1 ))
	"$bin/guestdiag-relay" --host "hv$h" --nats "nats://127.0.0.1:${cport[$k]},$urls" \
		--glob "$tmp/fleet/hv$h/domain-*/org.guestdiag.agent.0" --proxmox-glob - >"$tmp/relay$h.log" 2>&1 &
	pids+=($!); role[$!]="relay hv$h"
done

cpu() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
all=("${pids[@]}" "$lg")
sleep "${WARMUP%s}"
declare -A c0
for p in "${all[@]}"; do c0[$p]=$(cpu "$p"); done
t0=$(date +%s.%N)
wait "$lg" || { cat "$tmp/loadgen.log" | tail -20; exit 1; }
t1=$(date +%s.%N)
# loadgen has exited; it prints its own CPU over the window (LOADGEN).
declare -A c1
for p in "${pids[@]}"; do c1[$p]=$(cpu "$p"); done

cat "$tmp/loadgen.out"
hz=$(getconf CLK_TCK)

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-14s %10s %8s\n' process cpu_s pct_core
for p in "${pids[@]}"; do
	awk -v n="${role[$p]}" -v a="${c0[$p]}" -v b="${c1[$p]}" -v hz="$hz" -v t0="$t0" -v t1="$t1" \
		'BEGIN { s = (b - a) / hz; printf "%-14s %10.2f %7.1f%%\n", n, s, 100 * s / (t1 - t0) }'
done
