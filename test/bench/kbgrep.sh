#!/usr/bin/env bash
# Knowledge-base matching against grep, side by side in one run, over the
# same patterns and the same corpus.
#
# The corpus is what BenchmarkMatch uses: the benign lines of
# kb/testdata/benign/*.jsonl, drawn at random with a fixed seed, half Linux
# and half Windows, with about 2 % of lines taken from the entries'
# samples; only the messages are
# written, one per line. The grep patterns are the entries' RE2 patterns
# rewritten as POSIX EREs from their parse trees (\d -> [0-9], \s and \w ->
# bracket expressions, (?:...) -> (...)); the case-insensitive ones go to a
# second file run with grep -i, and patterns with no ERE form are dropped
# and counted. grep runs with LC_ALL=C (bytes, no UTF-8 decoding: its
# fastest mode). kb.Match is timed twice: on each line as a finding's
# message alone, the input grep has (entries bound to a unit, a code or an
# event id then do not match, so it matches fewer lines than grep), and on
# the whole findings the collector would pass (corpus.jsonl).
#
# Both sides are timed in CPU seconds (user + system) as well as wall time:
# on a shared machine CPU time is the per-core figure.
#
#   test/bench/kbgrep.sh [corpus lines, default 200000]
set -euo pipefail
cd "$(dirname "$0")/../.."
lines=${1:-200000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

go test -c -o "$tmp/kb.test" ./kb
(cd kb && "$tmp/kb.test" -test.run '^TestKBGrepWriteFiles$' -test.v -kbgrep.out "$tmp" -kbgrep.lines "$lines") | grep -v '^=== \|^--- \|^PASS'
bytes=$(wc -c <"$tmp/corpus.txt")
echo "corpus: $lines lines, $bytes bytes"

# grep: both pattern files, each over the whole corpus, repeated until 2 s
# of wall time have passed, as the Go side does.
export LC_ALL=C
TIMEFORMAT='%R %U %S'
passes=0 wall=0 cpu=0 count=0
while awk -v w="$wall" 'BEGIN { exit !(w < 2) }'; do
	t=$( { time { c1=$(grep -E -c -f "$tmp/patterns.txt" "$tmp/corpus.txt" || true)
	               c2=0; if [ -s "$tmp/patterns-i.txt" ]; then c2=$(grep -E -i -c -f "$tmp/patterns-i.txt" "$tmp/corpus.txt" || true); fi
	               echo "$c1 $c2" >"$tmp/count"; } ; } 2>&1 )
	read -r r u s <<<"$t"
	wall=$(awk -v a="$wall" -v b="$r" 'BEGIN { print a + b }')
	cpu=$(awk -v a="$cpu" -v b="$u" -v c="$s" 'BEGIN { print a + b + c }')
	passes=$((passes + 1))
done
read -r c1 c2 <"$tmp/count"
grep_wall=$(awk -v n="$lines" -v p="$passes" -v t="$wall" 'BEGIN { printf "%.0f", n * p / t }')
grep_cpu=$(awk -v n="$lines" -v p="$passes" -v t="$cpu" 'BEGIN { printf "%.0f", n * p / t }')
echo "grep -E -c -f (LC_ALL=C, $(grep --version | head -1)): $c1 + $c2 (-i) lines matched, $grep_wall lines/s wall, $grep_cpu lines/s per CPU second"

out=$(cd kb && GOMAXPROCS=1 "$tmp/kb.test" -test.run '^TestKBGrepMatch$' -test.v -kbgrep.match "$tmp" | grep '^kb.Match')
echo "$out"
kb=$(head -1 <<<"$out")
kb_cpu=$(sed -E 's/.* ([0-9]+) lines\/s per CPU second/\1/' <<<"$kb")
kb_wall=$(sed -E 's/.* ([0-9]+) lines\/s wall.*/\1/' <<<"$kb")
awk -v a="$kb_cpu" -v b="$grep_cpu" -v c="$kb_wall" -v d="$grep_wall" \
	'BEGIN { printf "kb.Match (message only) / grep: %.1fx per CPU second, %.1fx wall\n", a / b, c / d }'
