#!/usr/bin/env bash
# Idle CPU of a real agent process with no host connected (issue 8: target
# under 0.1 % of one core over 60 s).
#
# The agent runs with its default transports, neither of which reaches a
# host here: no virtio-serial port and no vsock device, so it retries both
# the way a guest without its channel does. Every check that can run on
# this machine is on; the network check is off (it pings its gateway, and
# it never runs outside a network namespace). CPU is user + system time
# from /proc/<pid>/stat of the agent and of any children it has (a
# journalctl where journald exists), sampled after a warm-up; the same from
# /proc/<pid>/task/*/schedstat in nanoseconds, since a clock tick (10 ms)
# is coarse against a budget of 60 ms a minute.
#
#   test/bench/agent-idle.sh [seconds, default 60] [warm-up seconds, default 15] [config yaml]
set -euo pipefail
cd "$(dirname "$0")/../.."

secs=${1:-60}
warm=${2:-15}
. test/bench/lib/agent.sh
start_agent "${3:-}"

# ticks prints the user + system clock ticks of a process and its
# descendants.
ticks() {
	local p=$1 total=0 kids t c
	if [ -r "/proc/$p/stat" ]; then
		# Fields after the command name, which may hold spaces: utime is
		# the 12th and stime the 13th of them.
		t=$(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')
		total=$((total + t))
	fi
	kids=$(cat /proc/"$p"/task/*/children 2>/dev/null || true)
	for c in $kids; do
		total=$((total + $(ticks "$c")))
	done
	echo "$total"
}

# schedns prints the nanoseconds on CPU of the agent's live threads.
schedns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {print s}'; }

sleep "$warm"
kill -0 "$pid" || { cat "$tmp/agent.log"; exit 1; }
hz=$(getconf CLK_TCK)
t0=$(ticks "$pid")
n0=$(schedns "$pid")
s0=$(date +%s.%N)
sleep "$secs"
t1=$(ticks "$pid")
n1=$(schedns "$pid")
s1=$(date +%s.%N)
kill -0 "$pid" || { cat "$tmp/agent.log"; exit 1; }
rss=$(awk '/VmHWM/ {print $2 " " $3}' "/proc/$pid/status")
awk -v t0="$t0" -v t1="$t1" -v hz="$hz" -v n0="$n0" -v n1="$n1" -v s0="$s0" -v s1="$s1" -v rss="$rss" 'BEGIN {
	cpu = (t1 - t0) / hz; ns = (n1 - n0) / 1e9; wall = s1 - s0
	printf "idle agent, no host, %.1f s: /proc/pid/stat %.2f s CPU = %.3f %% of one core; schedstat %.1f ms = %.3f %% (target < 0.1 %%); VmHWM %s\n", wall, cpu, 100 * cpu / wall, 1000 * ns, 100 * ns / wall, rss
}'
echo "nice $(ps -o ni= -p "$pid" | tr -d ' '), io $(ionice -p "$pid" 2>/dev/null || echo '?')"
grep -E 'agent_started|priority_lowered' "$tmp/agent.log" | sed 's/^time=[^ ]* //'
"$tmp/guestdiag-agent" config check "$tmp/agent.yaml" | awk '/^  [a-z]+:$/ {c = $1} /^    enabled:/ {print c, $2}' | tr '\n' ' '
echo
