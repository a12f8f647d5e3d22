#!/usr/bin/env bash
# The stampede demo: N sessions ask for the same few cold keys at once, first
# running the query themselves, then through stampede_cached.  Installs what
# it needs, builds stampede, runs it in a throwaway cluster, and cleans up.
#
#   bash test/demo.sh [--sessions N] [--keys M] [--work-ms MS] [--verbose] [--interactive] [--valkey]
#
# --valkey: also a Valkey (redis-server) and a streaming replica of the
# server; the demo's sessions share that Valkey, half on each server.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh

valkey=false
for arg in "$@"; do [ "$arg" = --valkey ] && valkey=true; done

prepare_throwaway
# Stop our redis-server too (a no-op without --valkey), then the rest.
trap 'valkey_stop; cleanup_throwaway' EXIT

log "starting PostgreSQL $PG_MAJOR with shared_preload_libraries = 'stampede'"
pg_start "$W/pg" "shared_preload_libraries = 'stampede'"

if $valkey; then
	log "starting a streaming replica of it"
	primary_host=$PGHOST primary_port=$PGPORT
	pg_start_replica "$W/replica"
	export STAMPEDE_REPLICA_HOST=$PGHOST STAMPEDE_REPLICA_PORT=$PGPORT
	export PGHOST=$primary_host PGPORT=$primary_port
	log "starting Valkey (redis-server)"
	valkey_start "$W/valkey"
	export STAMPEDE_VALKEY_PORT=$VALKEY_PORT
fi

# The system python: python3-psycopg2 is installed for it, not for others on PATH.
/usr/bin/python3 test/demo.py "$@"
