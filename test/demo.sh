#!/usr/bin/env bash
# The stampede demo: N sessions ask for the same few cold keys at once, first
# running the query themselves, then through stampede_cached.  Installs what
# it needs, builds stampede, runs it in a throwaway cluster, and cleans up.
#
#   bash test/demo.sh [--sessions N] [--keys M] [--work-ms MS] [--verbose] [--interactive]
set -euo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh

prepare_throwaway

log "starting PostgreSQL $PG_MAJOR with shared_preload_libraries = 'stampede'"
pg_start "$W/pg" "shared_preload_libraries = 'stampede'"

# The system python: python3-psycopg2 is installed for it, not for others on PATH.
/usr/bin/python3 test/demo.py "$@"
