#!/usr/bin/env bash
# The test command: installs what is missing, builds and installs stampede,
# starts a PostgreSQL with stampede preloaded (and one without, for the
# not-preloaded case), runs every suite against them, and stops them.
#
#   fuzz           test/fuzz/run.sh: libFuzzer with ASan and UBSan on the
#                  reading of entries from Valkey (src/entry_check.c), for
#                  STAMPEDE_FUZZ_SECONDS (default 60); 1 test
#   pg_regress     sql/*.sql against expected/*.out: interface, bad input,
#                  types, rights, store, stats
#   isolation      test/isolation/specs: leader and waiters interleaved
#   valkey mode    pg_regress and isolation again with stampede.valkey_url
#                  set (not the local store's test): every promise holds
#                  with Valkey too
#   TAP            test/t/*.pl (PostgreSQL::Test::Cluster, helpers in
#                  test/perl/StampedeTest.pm), servers and redis-servers of
#                  their own: 50 real sessions in both modes (cancel,
#                  timeouts, terminated leaders, max_wait, databases), the
#                  Valkey connection (AUTH, unix socket, circuit breaker, a
#                  hung server, statement_timeout and cancel, who sees the
#                  URL), Valkey alone without preloading, clusters sharing
#                  through one namespace, and a primary and its replica
#                  sharing a Valkey (100 sessions, terminated and slow
#                  leaders, PUBLISH wake-up, max_wait, errors, garbage and
#                  tampering in Valkey, invalidation, EVALSHA, Valkey
#                  stopped, paused and back)
#   not_preloaded  the error and hint without shared_preload_libraries
#
# With PG_CFLAGS=-fsanitize=address (see the README) the servers run with
# the sanitizer's runtime preloaded, and any report fails the run.
#
# Ends with "N passed, M failed"; exits non-zero unless all passed.  A suite
# that stops before its end counts the tests it did not run as failed.  When
# anything failed, the logs (each suite's, the servers', pg_regress's and the
# isolation tester's output, TAP's tmp_check/log) are kept in test-logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh
KEEP_LOGS=$PWD/test-logs

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
# tally LOG STATUS PLAN: adds up the "... ok" / "ok N" lines of a suite's log
# as passed and its "... FAILED" / "not ok N" lines as failed, and counts as
# failed what it did not run.  PLAN is how many tests it runs: a number, or
# "tap" (its "1..N" line says), or "closing" (not known beforehand: it ends
# with a "NAME: P passed, F failed" line).  Without its plan line or closing
# line it died before its end: the tests it did not run count as 1 failed.
# STATUS is its exit status: non-zero with nothing else wrong counts as 1 failed.
tally() {
	local log=$1 status=$2 plan=$3 ok bad ran more=0
	ok=$(grep -Ec '\.\.\. ok|^ok [0-9]+( |$)' "$log" || true)
	bad=$(grep -Ec '\.\.\. FAILED|^not ok [0-9]+( |$)' "$log" || true)
	ran=$((ok + bad))
	case $plan in
	tap)
		plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
		if [ -z "$plan" ]; then
			echo "(no plan: it died after $ran tests; the tests it did not run count as 1 failed)"
			more=1
		fi
		;;
	closing)
		plan=
		if ! grep -Eq '^[^ ].*: [0-9]+ passed, [0-9]+ failed$' "$log"; then
			echo "(no closing line: it died after $ran tests; the tests it did not run count as 1 failed)"
			more=1
		fi
		;;
	esac
	if [ -n "$plan" ] && [ "$ran" -lt "$plan" ]; then
		more=$((plan - ran))
		echo "($plan planned, $ran run: the $more not run count as failed)"
	elif [ -n "$plan" ] && [ "$ran" -gt "$plan" ]; then
		echo "($plan planned, $ran run: counted as 1 failed)"
		more=1
	fi
	if [ "$ran" -eq 0 ] && [ "$more" -eq 0 ]; then
		echo "(no test ran in this suite)"
		more=1
	fi
	if [ "$status" -ne 0 ] && [ "$bad" -eq 0 ] && [ "$more" -eq 0 ]; then
		echo "(it exited with status $status though no test failed: counted as 1 failed)"
		more=1
	fi
	passed=$((passed + ok))
	failed=$((failed + bad + more))
}

# suite NAME PLAN CMD...: runs CMD, showing its output and keeping it in
# $W/NAME.log, and tallies it (see tally for PLAN).
suite() {
	local name=$1 plan=$2 status=0
	shift 2
	"$@" 2>&1 | tee "$W/$name.log" || status=$?
	tally "$W/$name.log" "$status" "$plan"
}

# make_var NAME: the value of a variable of the Makefile.
make_var() {
	# shellcheck disable=SC2016
	printf 'print-var:\n\t@echo $(%s)\n' "$1" |
		make -s --no-print-directory PG_CONFIG="$PG_CONFIG" -f Makefile -f - print-var
}
regress=$(make_var REGRESS)
isolation=$(make_var ISOLATION)
# The Valkey mode runs all but the local store's test.
# shellcheck disable=SC2001
regress_valkey=$(echo "$regress" | sed 's/\bstore\b//')
words() { echo $#; }

# save_output DIR FILE...: a copy in $W/DIR of the FILEs (pg_regress's or the
# isolation tester's output) that exist, since a later run replaces them.
save_output() {
	local dir=$W/$1 f
	shift
	mkdir -p "$dir"
	for f in "$@"; do
		if [ -e "$f" ]; then cp -R "$f" "$dir/"; fi
	done
}

log "fuzzing the reading of entries from Valkey (test/fuzz)"
# As the invoking user (it starts no server); its scratch directory is in
# $W, so that what a finding leaves is kept with the logs.
suite fuzz closing env TMPDIR="$W" test/fuzz/run.sh "${STAMPEDE_FUZZ_SECONDS:-60}"

rm -rf results output_iso regression.diffs regression.out
log "pg_regress"
# shellcheck disable=SC2086
suite regress "$(words $regress)" make -s PG_CONFIG="$PG_CONFIG" installcheck ISOLATION=
save_output regress-out results regression.diffs regression.out
[ -s regression.diffs ] && cat regression.diffs

log "isolation tests"
# shellcheck disable=SC2086
suite isolation "$(words $isolation)" make -s PG_CONFIG="$PG_CONFIG" installcheck REGRESS=
save_output isolation-out output_iso
[ -s output_iso/regression.diffs ] && cat output_iso/regression.diffs

log "pg_regress and isolation again, in Valkey mode (all but the local store's test)"
valkey_start "$W/valkey"
rm -rf results output_iso regression.diffs regression.out
export PGOPTIONS="-c stampede.valkey_url=redis://127.0.0.1:$VALKEY_PORT"
# Two runs, as above: in one, a failed pg_regress would skip the isolation tests.
# shellcheck disable=SC2086
suite regress-valkey "$(words $regress_valkey)" \
	make -s PG_CONFIG="$PG_CONFIG" installcheck REGRESS="$regress_valkey" ISOLATION=
save_output regress-valkey-out results regression.diffs regression.out
[ -s regression.diffs ] && cat regression.diffs
# shellcheck disable=SC2086
suite isolation-valkey "$(words $isolation)" make -s PG_CONFIG="$PG_CONFIG" installcheck REGRESS=
save_output isolation-valkey-out output_iso
[ -s output_iso/regression.diffs ] && cat output_iso/regression.diffs
unset PGOPTIONS
valkey_stop

log "TAP: servers and redis-servers of their own (test/t)"
# PostgreSQL::Test::Cluster makes its own servers, which may not run as root:
# prove runs as the server user, from $W/tap with a copy of test/t and
# test/perl, since that user may not enter the clone.  It reads nothing else
# of the clone.
mkdir -p "$W/tap/t" "$W/tap/perl"
cp test/t/*.pl "$W/tap/t/"
cp test/perl/*.pm "$W/tap/perl/"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$W/tap"; fi
for t in "$W"/tap/t/*.pl; do
	t=$(basename "$t" .pl)
	failed_before=$failed
	suite "tap-$t" tap as_server_user_in "$W/tap" env "${SERVER_ENV[@]}" PATH="$PATH" \
		PERL5LIB="$PGXS_DIR/src/test/perl:$W/tap/perl" TESTDIR="$W/tap" \
		PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress" prove -v "t/$t.pl"
	# What a script dies of goes to its own log only.
	if [ "$failed" -ne "$failed_before" ] && [ -f "$W/tap/tmp_check/log/regress_log_$t" ]; then
		echo "(the end of tmp_check/log/regress_log_$t:)"
		tail -n 20 "$W/tap/tmp_check/log/regress_log_$t"
	fi
done

log "a server without shared_preload_libraries"
PGHOST=$STAMPEDE_PLAIN_HOST PGPORT=$STAMPEDE_PLAIN_PORT suite plain 1 \
	"$PGXS_DIR/src/test/regress/pg_regress" --inputdir=. --outputdir="$W/plain-out" \
	--bindir="$PG_BINDIR" --load-extension=stampede --dbname=contrib_regression \
	not_preloaded
[ -s "$W/plain-out/regression.diffs" ] && cat "$W/plain-out/regression.diffs"

# Built with AddressSanitizer: every report any server (or TAP's) wrote is a
# failure, whatever the suites said.
if asan_build; then
	log "AddressSanitizer reports"
	stop_throwaway
	asan_check() {
		local reports
		# Backends that loaded the runtime late write to their server's log.
		reports=$(grep -l 'ERROR: AddressSanitizer' "$ASAN_DIR"/asan.* "$W"/*/server.log \
			"$W"/tap/tmp_check/log/*.log 2>/dev/null || true)
		if [ -z "$reports" ]; then
			echo "ok 1 - no AddressSanitizer report from any server"
		else
			echo "not ok 1 - AddressSanitizer reports in: $reports"
			head -n 40 $reports
		fi
	}
	suite asan 1 asan_check
fi

if [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ]; then
	# The servers stopped first, so that their logs are whole.
	stop_throwaway
	keep_logs "$KEEP_LOGS"
	LOGS_KEPT=1
	echo
	echo "the logs of this run are in $KEEP_LOGS"
fi
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
