#!/usr/bin/env bash
# Valkey failing under load, as figures: scenario 2 of
# test/t/003_valkey_failures.pl.  A primary and its streaming replica of
# their own share a redis-server of their own (stampede.valkey_timeout
# 500ms, lock_timeout 3s, valkey_retry_interval 200ms in postgresql.conf);
# pgbench runs 10 clients on each, on a handful of keys (4) whose query
# takes 0.2 s and returns its key's number, and one transaction in 8
# invalidates a key (a script of its own), so that flights run all along;
# meanwhile redis-server is stalled twice: DEBUG SLEEP 2, then CLIENT PAUSE
# 1500 ALL.  Printed side by side, per server and in all, with the target:
#
#   calls answered     every call answered, pgbench exits 0 on both servers
#   wrong rows         rows that are not their key's: 0
#   clients stuck      backends still in a stampede call once pgbench should
#                      have ended (its duration + lock_timeout + 2 s): 0
#   longest call       the slowest call (pgbench's per-transaction log, the
#                      call script only): at most valkey_timeout + the
#                      query's 0.2 s + 1 s
#   Valkey locks left  stampede:*:l keys lock_timeout + 2 s after the end: 0
#
# PASS or FAIL per figure; exits non-zero on a FAIL.
#
#   bash bench/valkey_faults.sh [--duration S] [--quick] [--no-build]
#
# --duration S: how long pgbench runs (default 12 s; the stalls take the
#   first 8).  --quick: 10 s.
# --no-build: use the stampede already installed (bench/run.sh, which built
#   it).  Without it the script builds and installs stampede system-wide, as
#   the other benchmarks do: on a machine that others use too, run it under
#   their lock (flock /tmp/stampede-pg.lock ...).
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=test/lib.sh
. test/lib.sh

duration=12
build=1
while [ $# -gt 0 ]; do
	case $1 in
	--duration) duration=$2; shift ;;
	--quick) duration=10 ;;
	--no-build) build=0 ;;
	*)
		echo "usage: $0 [--duration S] [--quick] [--no-build]" >&2
		exit 2
		;;
	esac
	shift
done
if ! [ "$duration" -ge 10 ] 2>/dev/null; then
	echo "--duration must be at least 10 s: the stalls take the first 8 (got $duration)" >&2
	exit 2
fi

CLIENTS=10
VALKEY_TIMEOUT_MS=500
LOCK_TIMEOUT_MS=3000
RETRY_INTERVAL_MS=200
QUERY_MS=200
BOUND_MS=$((VALKEY_TIMEOUT_MS + QUERY_MS + 1000))

if [ "$build" = 1 ]; then
	prepare_throwaway
else
	W=$(make_workdir)
	trap cleanup_throwaway EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
fi

vcli() { redis-cli -h 127.0.0.1 -p "$VALKEY_PORT" "$@"; }

log "Valkey failing under load: servers"
# DEBUG is refused by default since Redis 7; local clients may send it here.
valkey_start "$W/valkey" --enable-debug-command local
pg_start "$W/primary" "shared_preload_libraries = 'stampede'" "max_connections = 100" \
	"stampede.valkey_url = 'redis://127.0.0.1:$VALKEY_PORT'" \
	"stampede.valkey_timeout = '${VALKEY_TIMEOUT_MS}ms'" \
	"stampede.lock_timeout = '${LOCK_TIMEOUT_MS}ms'" \
	"stampede.valkey_retry_interval = '${RETRY_INTERVAL_MS}ms'" \
	"stampede.backoff_base = '20ms'" "stampede.backoff_max = '200ms'"
psql -q -v ON_ERROR_STOP=1 -d postgres -c 'CREATE EXTENSION stampede'
primary_host=$PGHOST primary_port=$PGPORT
pg_start_replica "$W/replica"
replica_host=$PGHOST replica_port=$PGPORT
export PGHOST=$primary_host PGPORT=$primary_port
for _ in $(seq 100); do
	[ "$(psql -h "$replica_host" -p "$replica_port" -d postgres -Atc \
		"SELECT count(*) FROM pg_extension WHERE extname = 'stampede'")" = 1 ] && break
	sleep 0.1
done

# The call, checked: a wrong row is written down (with the server's file,
# -D wrong=...), and the call goes on.  The invalidation is a script of its
# own, so that the call script's latencies are the calls'.
cat >"$W/call.sql" <<EOF
\\set k random(1, 4)
SELECT run FROM stampede_cached('bench:faults:' || :k, \$q\$SELECT :k::bigint AS run FROM pg_sleep($QUERY_MS / 1000.0)\$q\$, '5 minutes') AS t(run bigint) \\gset
\\if :run != :k
\\shell echo key :k got :run >> :wrong
\\endif
EOF
cat >"$W/invalidate.sql" <<'EOF'
\set k random(1, 4)
SELECT stampede_invalidate('bench:faults:' || :k);
EOF

log "Valkey failing under load: pgbench, $CLIENTS clients on each server, ${duration} s; DEBUG SLEEP 2 at 2 s, CLIENT PAUSE 1500 ALL at 6 s"
declare -A pid
for server in primary replica; do
	if [ $server = primary ]; then host=$primary_host port=$primary_port; else host=$replica_host port=$replica_port; fi
	: >"$W/wrong-$server"
	PGAPPNAME=bench_faults pgbench -n -c "$CLIENTS" -j 2 -T "$duration" \
		-f "$W/call.sql@7" -f "$W/invalidate.sql@1" -D "wrong=$W/wrong-$server" \
		-l --log-prefix="$W/log-$server" -h "$host" -p "$port" postgres \
		>"$W/pgbench-$server.out" 2>&1 &
	pid[$server]=$!
done
started_ms=$(date +%s%3N)
sleep 2
vcli DEBUG SLEEP 2 >/dev/null
sleep 2
vcli CLIENT PAUSE 1500 ALL >/dev/null

# pgbench ends at its duration unless a client is stuck in a call.
deadline_ms=$((started_ms + duration * 1000 + LOCK_TIMEOUT_MS + 2000))
# Alive, not a zombie waiting to be reaped (kill -0 succeeds on those).
alive() {
	local stat
	stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	[[ $stat != Z* ]]
}
running() { alive "${pid[primary]}" || alive "${pid[replica]}"; }
while running && [ "$(date +%s%3N)" -lt "$deadline_ms" ]; do sleep 0.1; done

declare -A stuck status calls errors wrong longest
for server in primary replica; do
	if [ $server = primary ]; then host=$primary_host port=$primary_port; else host=$replica_host port=$replica_port; fi
	stuck[$server]=$(psql -h "$host" -p "$port" -d postgres -Atc \
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bench_faults'
		 AND state = 'active' AND query LIKE '%stampede_%'")
	if alive "${pid[$server]}"; then
		kill "${pid[$server]}" 2>/dev/null || true
		psql -h "$host" -p "$port" -d postgres -Atc \
			"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'bench_faults'" >/dev/null
		status[$server]=killed
	fi
	wait "${pid[$server]}" 2>/dev/null && status[$server]=${status[$server]:-0} || status[$server]=${status[$server]:-$?}
	# The per-transaction log: client, transaction, latency (us), script, ...
	read -r calls[$server] longest[$server] < <(cat "$W"/log-$server.* 2>/dev/null |
		awk '$4 == 0 && $3 ~ /^[0-9]+$/ { n++; if ($3 > max) max = $3 }
		     END { printf "%d %d\n", n, int((max + 500) / 1000) }')
	errors[$server]=$(grep -c -E 'aborted|ERROR' "$W/pgbench-$server.out" || true)
	wrong[$server]=$(wc -l <"$W/wrong-$server")
done

# Locks left in Valkey, once lock_timeout + 2 s have passed.
locks=0
for _ in $(seq $(((LOCK_TIMEOUT_MS + 2000) / 100))); do
	locks=$(vcli --scan --pattern 'stampede:*:l' | wc -l)
	[ "$locks" -eq 0 ] && break
	sleep 0.1
done

verdict() { if [ "$1" = 1 ]; then echo PASS; else echo FAIL; fi; }
answered_ok=$([ "${status[primary]}" = 0 ] && [ "${status[replica]}" = 0 ] &&
	[ $((errors[primary] + errors[replica])) -eq 0 ] && echo 1 || echo 0)
total_calls=$((calls[primary] + calls[replica]))
total_wrong=$((wrong[primary] + wrong[replica]))
total_stuck=$((stuck[primary] + stuck[replica]))
max_ms=$((longest[primary] > longest[replica] ? longest[primary] : longest[replica]))

results=(
	"$(verdict "$answered_ok")"
	"$(verdict $((total_wrong == 0)))"
	"$(verdict $((total_stuck == 0)))"
	"$(verdict $((max_ms <= BOUND_MS)))"
	"$(verdict $((locks == 0)))"
)
log "Valkey failing under load: figures"
printf '%-19s %9s %9s %9s   %-52s %s\n' figure primary replica total target result
printf '%-19s %9s %9s %9s   %-52s %s\n' "calls answered" "${calls[primary]}" "${calls[replica]}" "$total_calls" \
	"every one (pgbench exit ${status[primary]}/${status[replica]}, errors $((errors[primary] + errors[replica])))" "${results[0]}"
printf '%-19s %9s %9s %9s   %-52s %s\n' "wrong rows" "${wrong[primary]}" "${wrong[replica]}" "$total_wrong" 0 "${results[1]}"
printf '%-19s %9s %9s %9s   %-52s %s\n' "clients stuck" "${stuck[primary]}" "${stuck[replica]}" "$total_stuck" 0 "${results[2]}"
printf '%-19s %9s %9s %9s   %-52s %s\n' "longest call (ms)" "${longest[primary]}" "${longest[replica]}" "$max_ms" \
	"<= $BOUND_MS (valkey_timeout $VALKEY_TIMEOUT_MS + query $QUERY_MS + 1000)" "${results[3]}"
printf '%-19s %9s %9s %9s   %-52s %s\n' "Valkey locks left" - - "$locks" \
	"0 (within lock_timeout + 2 s)" "${results[4]}"

for server in primary replica; do
	if [ "${status[$server]}" != 0 ] || [ "${errors[$server]}" != 0 ]; then
		echo
		echo "pgbench on the $server (exit ${status[$server]}):"
		grep -v -E '^(NOTICE|DETAIL|HINT|WARNING):' "$W/pgbench-$server.out" | tail -n 20
	fi
	if [ "${wrong[$server]}" != 0 ]; then
		echo "wrong rows on the $server:"
		head -n 5 "$W/wrong-$server"
	fi
done
case " ${results[*]} " in
*" FAIL "*) exit 1 ;;
esac
