#!/usr/bin/env bash
# The test command: installs what is missing, builds and installs stampede,
# starts a PostgreSQL with stampede preloaded (and one without, for the
# not-preloaded case), runs every suite against them, and stops them.
#
#   pg_regress     sql/*.sql against expected/*.out: interface, bad input,
#                  types, rights, store, stats
#   isolation      test/isolation/specs: leader and waiters interleaved
#   sessions       test/sessions.py: 50 real sessions, cancel, timeouts,
#                  terminated leaders, max_wait, databases
#   valkey mode    pg_regress, isolation and sessions again with
#                  stampede.valkey_url set (not the local store's test):
#                  every promise holds with Valkey too
#   valkey         test/valkey.py: the Valkey connection against redis-server
#                  on 127.0.0.1 (AUTH, unix socket, circuit breaker, a hung
#                  server, statement_timeout and cancel, who sees the URL),
#                  Valkey alone on the server without preloading, and
#                  independent clusters sharing through one namespace
#   valkey flight  test/valkey_flight.py: a primary and its streaming replica
#                  sharing one Valkey (rows read across, PUBLISH wake-up,
#                  max_wait, the leader's error, garbage in Valkey,
#                  invalidation, EVALSHA)
#   TAP            test/t/*.pl (PostgreSQL::Test::Cluster): a primary and its
#                  replica of their own and a redis-server with a password:
#                  100 sessions, a terminated leader, a query longer than
#                  lock_timeout, a cancelled waiter, Valkey stopped and back
#   not_preloaded  the error and hint without shared_preload_libraries
#
# Ends with "N passed, M failed"; exits non-zero unless all passed.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh

prepare_throwaway

log "starting PostgreSQL $PG_MAJOR with shared_preload_libraries = 'stampede'"
pg_start "$W/pg" "shared_preload_libraries = 'stampede'" "stampede.local_cache_size = '8MB'"
main_host=$PGHOST main_port=$PGPORT
log "starting PostgreSQL $PG_MAJOR without shared_preload_libraries"
pg_start "$W/plain"
export STAMPEDE_PLAIN_HOST=$PGHOST STAMPEDE_PLAIN_PORT=$PGPORT
export PGHOST=$main_host PGPORT=$main_port

passed=0
failed=0
# tally FILE: add up the "... ok" and "... FAILED" / "not ok" lines of a suite.
tally() {
	local ok bad
	ok=$(grep -Ec '\.\.\. ok|^ok [0-9]+ ' "$1" || true)
	bad=$(grep -Ec '\.\.\. FAILED|^not ok [0-9]+ ' "$1" || true)
	passed=$((passed + ok))
	failed=$((failed + bad))
	if [ "$ok" -eq 0 ] && [ "$bad" -eq 0 ]; then
		echo "(no test ran in this suite)"
		failed=$((failed + 1))
	fi
}

rm -rf results output_iso regression.diffs regression.out
log "pg_regress"
make -s PG_CONFIG="$PG_CONFIG" installcheck ISOLATION= 2>&1 | tee "$W/regress.log" || true
tally "$W/regress.log"
[ -s regression.diffs ] && cat regression.diffs

log "isolation tests"
make -s PG_CONFIG="$PG_CONFIG" installcheck REGRESS= 2>&1 | tee "$W/isolation.log" || true
tally "$W/isolation.log"
[ -s output_iso/regression.diffs ] && cat output_iso/regression.diffs

log "concurrent sessions"
/usr/bin/python3 test/sessions.py 2>&1 | tee "$W/sessions.log" || true
tally "$W/sessions.log"

log "pg_regress, isolation and sessions again, in Valkey mode (all but the local store's test)"
valkey_start "$W/valkey"
rm -rf results output_iso regression.diffs regression.out
export PGOPTIONS="-c stampede.valkey_url=redis://127.0.0.1:$VALKEY_PORT"
make -s PG_CONFIG="$PG_CONFIG" installcheck \
	REGRESS="$(sed -n 's/^REGRESS *= *//p' Makefile | sed 's/\bstore\b//')" \
	2>&1 | tee "$W/regress-valkey.log" || true
tally "$W/regress-valkey.log"
[ -s regression.diffs ] && cat regression.diffs
[ -s output_iso/regression.diffs ] && cat output_iso/regression.diffs
/usr/bin/python3 test/sessions.py 2>&1 | tee "$W/sessions-valkey.log" || true
tally "$W/sessions-valkey.log"
unset PGOPTIONS
valkey_stop

log "Valkey connection"
/usr/bin/python3 test/valkey.py 2>&1 | tee "$W/valkey.log" || true
tally "$W/valkey.log"

log "single flight across a primary and its replica sharing a Valkey"
a_host=$PGHOST a_port=$PGPORT
pg_start_replica "$W/b"
export STAMPEDE_B_HOST=$PGHOST STAMPEDE_B_PORT=$PGPORT
export PGHOST=$a_host PGPORT=$a_port
/usr/bin/python3 test/valkey_flight.py 2>&1 | tee "$W/valkey_flight.log" || true
tally "$W/valkey_flight.log"

log "TAP: two servers sharing a Valkey with a password (test/t)"
# PostgreSQL::Test::Cluster makes its own servers, which may not run as root:
# prove runs as the server user, from $W/tap with a copy of test/t, since
# that user may not enter the clone.  It reads nothing else of the clone.
mkdir -p "$W/tap/t"
cp test/t/*.pl "$W/tap/t/"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$W/tap"; fi
for t in "$W"/tap/t/*.pl; do
	t=$(basename "$t")
	as_server_user_in "$W/tap" env PATH="$PATH" \
		PERL5LIB="$PGXS_DIR/src/test/perl" TESTDIR="$W/tap" \
		PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress" prove -v "t/$t" 2>&1 |
		tee "$W/tap-${t%.pl}.log" || true
	tally "$W/tap-${t%.pl}.log"
done

log "a server without shared_preload_libraries"
PGHOST=$STAMPEDE_PLAIN_HOST PGPORT=$STAMPEDE_PLAIN_PORT "$PGXS_DIR/src/test/regress/pg_regress" --inputdir=. --outputdir="$W/plain-out" \
	--bindir="$PG_BINDIR" --load-extension=stampede --dbname=contrib_regression \
	not_preloaded 2>&1 | tee "$W/plain.log" || true
tally "$W/plain.log"
[ -s "$W/plain-out/regression.diffs" ] && cat "$W/plain-out/regression.diffs"

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
