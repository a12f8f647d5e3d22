#!/usr/bin/env bash
# Runs every stampede benchmark against one throwaway cluster and prints the
# figures.  Each figure is measured side by side with its baseline in the
# same run, since other clusters may share the machine and make absolute
# numbers noisy.
#
#   bash bench/run.sh            full run (a few minutes)
#   bash bench/run.sh --quick    smoke test: few trials, short pgbench runs
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=test/lib.sh
. test/lib.sh

quick=0
case "${1:-}" in
'') ;;
--quick) quick=1 ;;
*)
	echo "usage: $0 [--quick]" >&2
	exit 2
	;;
esac

log "benchmarking $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(
	git diff --quiet HEAD -- src sql Makefile 2>/dev/null || echo ' + uncommitted changes')"
prepare_throwaway

pg_start "$W/pg" "shared_preload_libraries = 'stampede'" "max_connections = 250"
createdb bench
export PGDATABASE=bench
psql -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION stampede'

if [ "$quick" = 1 ]; then
	cold_opts=(--trials 3)
	# one short round judges nothing: a smoke test reports only
	hit_opts=(--duration 2 --rounds 1 --informational)
else
	cold_opts=()
	hit_opts=()
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
log "memory per entry"
/usr/bin/python3 bench/entry_size.py || failed+=(entry_size)

if [ ${#failed[@]} -gt 0 ]; then
	log "FAILED: ${failed[*]}"
	exit 1
fi
log "all benchmarks passed"
