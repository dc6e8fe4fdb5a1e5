#!/usr/bin/env bash
# Memory of a real agent process with no host connected (issue 8: the
# agent with everything it starts at most 10 MB VmHWM).
#
# Built as `make build` builds it (no cgo, -trimpath, -s -w), run with the
# checks that can run here on (network off: it never runs outside a
# network namespace). Prints, at each sample time, the agent's VmRSS and
# VmHWM, its resident memory split into anonymous (heap, stacks) and
# file-backed (its binary's pages), and the VmHWM of each child (a
# journalctl where journald exists). Every check runs once within the
# first seconds of the agent's life; the later samples are an idle agent
# after that cycle.
#
#   test/bench/agent-memory.sh [config yaml] [sample seconds, default "1 5 20 60"]
#
# GOGC, GOMEMLIMIT and GODEBUG set in the environment reach the agent.
set -euo pipefail
cd "$(dirname "$0")/../.."

samples=${2:-1 5 20 60}
. test/bench/lib/agent.sh
start_agent "${1:-}"

kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

start=$(date +%s.%N)
for s in $samples; do
	# Sleep until s seconds after the start, not s seconds more.
	sleep "$(awk -v s="$s" -v t0="$start" -v now="$(date +%s.%N)" 'BEGIN {d = t0 + s - now; print (d > 0 ? d : 0)}')"
	kill -0 "$pid" || { cat "$tmp/agent.log"; exit 1; }
	line=$(printf '%3s s: agent VmRSS %s kB VmHWM %s kB (anon %s kB, file %s kB), threads %s' \
		"$s" "$(kb "$pid" VmRSS)" "$(kb "$pid" VmHWM)" "$(kb "$pid" RssAnon)" "$(kb "$pid" RssFile)" "$(kb "$pid" Threads)")
	for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null || true); do
		line="$line; child $(tr '\0' ' ' <"/proc/$c/cmdline" | cut -c1-60)VmHWM $(kb "$c" VmHWM) kB"
	done
	echo "$line"
done
echo "binary $(stat -c %s "$tmp/guestdiag-agent") bytes; $(grep -c . "$tmp/agent.log") log lines"
