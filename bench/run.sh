#!/usr/bin/env bash
# Runs every stampede benchmark against one throwaway cluster and prints the
# figures.  Each figure is measured side by side with its baseline in the
# same run, since other clusters may share the machine and make absolute
# numbers noisy.
#
#   bash bench/run.sh            full run (a few minutes)
#   bash bench/run.sh --quick    smoke test: few trials, short pgbench runs
#   bash bench/run.sh --valkey   also: primary + streaming replica sharing a
#                                Valkey (redis-server), bench/valkey.py, and
#                                bench/invalidation.py in Valkey mode; and
#                                bench/valkey_faults.sh (servers of its own):
#                                pgbench on both while Valkey stalls
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=test/lib.sh
. test/lib.sh

quick=0
valkey=0
for arg in "$@"; do
	case "$arg" in
	--quick) quick=1 ;;
	--valkey) valkey=1 ;;
	*)
		echo "usage: $0 [--quick] [--valkey]" >&2
		exit 2
		;;
	esac
done

log "benchmarking $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(
	git diff --quiet HEAD -- src sql Makefile 2>/dev/null || echo ' + uncommitted changes')"
prepare_throwaway

# autovacuum off: an ANALYZE of what a key reads costs the key a refill (see
# the README), which would show as an execution during a throughput run.
pg_start "$W/pg" "shared_preload_libraries = 'stampede'" "max_connections = 250" "autovacuum = off"
createdb bench
export PGDATABASE=bench
psql -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION stampede'

if [ "$quick" = 1 ]; then
	cold_opts=(--trials 3)
	# one short round judges nothing: a smoke test reports only
	hit_opts=(--duration 2 --rounds 1 --informational)
	cost_opts=(--quick)
	inval_opts=(--rounds 100)
else
	cold_opts=()
	hit_opts=()
	cost_opts=()
	inval_opts=()
fi

# Run them all even when one fails, and say which failed at the end.
failed=()
log "cold key: the thundering herd"
/usr/bin/python3 bench/cold_key.py "${cold_opts[@]}" || failed+=(cold_key)
log "hit throughput: stampede vs materialized view, prepared protocol (judged)"
bash bench/hit_vs_matview.sh --mode prepared "${hit_opts[@]}" || failed+=(hit_vs_matview)
# In the simple protocol each call is parsed and planned again, and a call
# with its query text and column list costs more to parse and plan than a
# matview's name: reported for what it is, not judged.
log "hit throughput: stampede vs materialized view, simple protocol (reported)"
bash bench/hit_vs_matview.sh --mode simple --informational "${hit_opts[@]}" || failed+=(hit_vs_matview/simple)
# Instructions, not time: what one hit costs a backend against one read of
# the matview, counted by callgrind on a server of its own (the extension
# built above).
log "hit cost: instructions per hit vs per matview read (callgrind)"
bash bench/hit_cost.sh --no-build "${cost_opts[@]}" || failed+=(hit_cost)
log "memory per entry"
/usr/bin/python3 bench/entry_size.py || failed+=(entry_size)
log "nothing superseded: invalidation racing fills and a REPEATABLE READ reader"
/usr/bin/python3 bench/invalidation.py "${inval_opts[@]}" || failed+=(invalidation)

if [ "$valkey" = 1 ]; then
	log "Valkey: primary + streaming replica sharing entries"
	primary_host=$PGHOST primary_port=$PGPORT
	pg_start_replica "$W/replica"
	replica_host=$PGHOST replica_port=$PGPORT
	export PGHOST=$primary_host PGPORT=$primary_port
	valkey_start "$W/valkey"
	log "nothing superseded, in Valkey mode"
	/usr/bin/python3 bench/invalidation.py "${inval_opts[@]}" \
		--valkey-url "redis://127.0.0.1:$VALKEY_PORT" || failed+=(invalidation/valkey)
	if [ "$quick" = 1 ]; then
		valkey_opts=(--trials 3 --duration 2 --rounds 1 --down-calls 40)
	else
		valkey_opts=()
	fi
	PRIMARY_HOST=$primary_host PRIMARY_PORT=$primary_port \
		REPLICA_HOST=$replica_host REPLICA_PORT=$replica_port VALKEY_PORT=$VALKEY_PORT VALKEY_SOCKET=$VALKEY_SOCKET \
		/usr/bin/python3 bench/valkey.py "${valkey_opts[@]}" || failed+=(valkey)
	# bench/valkey.py shuts redis-server down itself; make sure it is gone.
	valkey_stop
	pg_stop "$W/replica"
	# Servers of its own: its settings (valkey_timeout, lock_timeout) are
	# in their postgresql.conf, as the lease worker reads them there.
	log "Valkey failing under load: DEBUG SLEEP and CLIENT PAUSE during pgbench on both servers"
	if [ "$quick" = 1 ]; then faults_opts=(--quick); else faults_opts=(); fi
	bash bench/valkey_faults.sh --no-build "${faults_opts[@]}" || failed+=(valkey_faults)
fi

if [ ${#failed[@]} -gt 0 ]; then
	log "FAILED: ${failed[*]}"
	exit 1
fi
log "all benchmarks passed"
