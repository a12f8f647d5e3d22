#!/usr/bin/env bash
# Hit throughput: how fast a warm stampede key serves a 100-row result,
# against the same 100 rows read from a materialized view (A), and from a
# hand-written PL/pgSQL cache in an unlogged table (C).
#
# pgbench runs A, B, C in turn, several rounds, so that drift in the
# machine's load falls on all three alike.  Uses PGHOST/PGPORT/PGDATABASE.
#
# --mode is pgbench's query protocol: "prepared" (parsed and planned once per
# connection, as most applications run a hot query) or "simple" (parsed every
# time, which costs stampede_cached more: its call and column list are longer
# to parse and analyze than "SELECT * FROM mv_top").
#
# --informational prints the ratio without judging it (exit 0).
#
#   bench/hit_vs_matview.sh [--duration SECONDS] [--rounds N] [--clients N]
#                           [--mode prepared|simple] [--informational]
set -euo pipefail

duration=6
rounds=7
clients=8
mode=prepared
informational=0
while [ $# -gt 0 ]; do
	case $1 in
	--duration) duration=$2 ;;
	--rounds) rounds=$2 ;;
	--clients) clients=$2 ;;
	--mode) mode=$2 ;;
	--informational)
		informational=1
		shift
		continue
		;;
	*)
		echo "usage: $0 [--duration SECONDS] [--rounds N] [--clients N] [--mode prepared|simple]" >&2
		exit 2
		;;
	esac
	shift 2
done

PGBENCH=/usr/lib/postgresql/15/bin/pgbench
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The table, the matview, the caches and the statements A to D, shared with
# bench/hit_cost.sh.
# shellcheck source=bench/hit_setup.sh
. "$(dirname "${BASH_SOURCE[0]}")/hit_setup.sh"
hit_setup
hit_scripts "$tmp"

# Warm both caches, and check that all three return the same rows in the same order.
for s in A B C D; do
	psql -X -A -t -v ON_ERROR_STOP=1 -f "$tmp/$s.sql" >"$tmp/$s.out"
done
for s in B C D; do
	if ! cmp -s "$tmp/A.out" "$tmp/$s.out"; then
		echo "FAIL: $s returns other rows than A"
		exit 1
	fi
done
[ "$(wc -l <"$tmp/A.out")" -eq 100 ] || { echo "FAIL: A returns $(wc -l <"$tmp/A.out") rows, not 100"; exit 1; }

stampede_counters() {
	psql -X -A -t -F ' ' -c 'SELECT requests, hits, executions FROM stampede_stats'
}

# tps of one pgbench run of script $1.
tps() {
	timeout $((duration + 60)) "$PGBENCH" -n -M "$mode" -c "$clients" -j 2 -T "$duration" -f "$tmp/$1.sql" \
		>"$tmp/pgbench.out" 2>&1 || { cat "$tmp/pgbench.out" >&2; return 1; }
	awk '/^tps = .*without initial connection time/ { print $3 }' "$tmp/pgbench.out"
}

echo "pgbench -n -M $mode -c $clients -j 2 -T $duration, $rounds rounds of A, B, C, D"
echo "  A = SELECT * FROM mv_top"
echo "  B = SELECT * FROM stampede_cached('top100', ...) AS t(...), warm"
echo "  C = hand_cached('top100', ...): PL/pgSQL, unlogged table, jsonb"
echo "  D = SELECT * FROM v_top, a view over B's call"
read -r req0 hits0 exec0 < <(stampede_counters)
# Each round runs A, B, C, D back to back; the ratio of a round is judged by
# its median over the rounds, which a burst of load on the machine during one
# round does not move.
: >"$tmp/rounds"
for ((r = 1; r <= rounds; r++)); do
	line="round $r:"
	tps_line=""
	for s in A B C D; do
		t=$(tps "$s")
		tps_line+=" $t"
		line+=$(printf '  %s %9.1f tps' "$s" "$t")
	done
	echo "$tps_line" >>"$tmp/rounds"
	echo "$line  B/A $(awk -v l="$tps_line" 'BEGIN { split(l, t); printf "%.2f", t[2] / t[1] }')"
done
read -r req1 hits1 exec1 < <(stampede_counters)

# median RATIO_COLUMN: the median over the rounds of column / column 1.
median() {
	awk -v c="$1" '{ print $c / $1 }' "$tmp/rounds" | sort -g |
		awk '{ v[NR] = $1 } END { printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
mean() {
	awk -v c="$1" '{ s += $c } END { printf "%.1f", s / NR }' "$tmp/rounds"
}
ratio_b=$(median 2)
printf '\n%-34s %10s %18s\n' "scenario" "mean tps" "median ratio to A"
printf '%-34s %10s %18s\n' "A materialized view" "$(mean 1)" "1.00"
printf '%-34s %10s %18s\n' "B stampede_cached (hit)" "$(mean 2)" "$ratio_b"
printf '%-34s %10s %18s\n' "C hand-written PL/pgSQL cache" "$(mean 3)" "$(median 3)"
printf '%-34s %10s %18s\n' "D view over stampede_cached (hit)" "$(mean 4)" "$(median 4)"
echo "stampede_stats during the runs: requests $((req1 - req0)), hits $((hits1 - hits0)), executions $((exec1 - exec0))"

status=0
if [ "$informational" = 1 ]; then
	echo "INFO ($mode): B/A and D/A are reported, not judged"
elif awk -v r="$ratio_b" 'BEGIN { exit !(r >= 1.0) }'; then
	echo "PASS ($mode): median B/A $ratio_b >= 1.0"
else
	echo "FAIL ($mode): median B/A $ratio_b < 1.0"
	status=1
fi
if [ $((exec1 - exec0)) -ne 0 ] || [ $((req1 - req0)) -ne $((hits1 - hits0)) ]; then
	echo "FAIL: B was not served from the cache alone"
	status=1
fi
exit $status
