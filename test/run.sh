#!/usr/bin/env bash
# The test command: installs what is missing, builds and installs stampede,
# and runs every suite: the fuzzer, and the Makefile's (make installcheck,
# in parts, on temporary instances pg_regress and PostgreSQL::Test::Cluster
# make).
#
#   fuzz           test/fuzz/run.sh: libFuzzer with ASan and UBSan on the
#                  reading of entries from Valkey (src/entry_check.c), for
#                  STAMPEDE_FUZZ_SECONDS (default 60); 1 test
#   pg_regress     make installcheck-regress: test/sql/*.sql against
#                  test/expected/*.out: interface, bad input, types, rights,
#                  store, stats
#   isolation      make installcheck-isolation: test/isolation/specs,
#                  leader and waiters interleaved
#   valkey mode    pg_regress and isolation again with stampede.valkey_url
#                  set (not the local store's test), against a redis-server
#                  of our own: every promise holds with Valkey too
#   TAP            make prove_installcheck, one test/t/*.pl at a time
#                  (PostgreSQL::Test::Cluster, helpers in
#                  test/perl/StampedeTest.pm), servers and redis-servers of
#                  their own: 50 real sessions in both modes (cancel,
#                  timeouts, terminated leaders, max_wait, databases), the
#                  Valkey connection (AUTH, unix socket, circuit breaker, a
#                  hung server, statement_timeout and cancel, who sees the
#                  URL), Valkey alone without preloading, clusters sharing
#                  through one namespace, a primary and its replica sharing
#                  a Valkey (100 sessions, terminated and slow leaders,
#                  PUBLISH wake-up, max_wait, errors, garbage and tampering
#                  in Valkey, invalidation, EVALSHA, Valkey stopped, paused
#                  and back), the lease worker
#   not_preloaded  make installcheck-not-preloaded: the error and hint
#                  without shared_preload_libraries
#
# The Makefile's targets run as the server user (initdb refuses root: postgres
# when we are root) in a copy of the tree in the workdir, which that user may
# enter (the clone may not be: /root, or a home of mode 700).
#
# With PG_CFLAGS=-fsanitize=address (see the README) every server starts
# with SERVER_ENV (pg_regress's and TAP's too: they inherit make's
# environment), and any report fails the run.
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

# The tree the Makefile's targets run in, as the server user.
T=$W/tree
copy_tree "$T"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$T"; fi

# make_in_tree TARGET [VAR=VALUE...]: make TARGET in $T as the server user,
# with SERVER_ENV (the servers pg_regress and TAP start inherit it) and our
# PGOPTIONS (the Valkey mode's) passed on.
make_in_tree() {
	as_server_user_in "$T" env "${SERVER_ENV[@]}" PATH="$PATH" PGOPTIONS="${PGOPTIONS:-}" \
		make -s --no-print-directory PG_CONFIG="$PG_CONFIG" "$@"
}

# save_output DIR FILE...: a copy in $W/DIR of the FILEs of $T (pg_regress's,
# the isolation tester's or TAP's output and the logs of their servers)
# that exist, since a later run replaces them.
save_output() {
	local dir=$W/$1 f
	shift
	mkdir -p "$dir"
	for f in "$@"; do
		if [ -e "$T/$f" ]; then cp -R "$T/$f" "$dir/"; fi
	done
}

# show_diffs FILE: what pg_regress or the isolation tester found different.
show_diffs() {
	if [ -s "$T/$1" ]; then cat "$T/$1"; fi
}

log "fuzzing the reading of entries from Valkey (test/fuzz)"
# As the invoking user (it starts no server); its scratch directory is in
# $W, so that what a finding leaves is kept with the logs.
suite fuzz closing env TMPDIR="$W" test/fuzz/run.sh "${STAMPEDE_FUZZ_SECONDS:-60}"

# pg_regress and the isolation tester in two runs: in one, a failed
# pg_regress would skip the isolation tests.
log "pg_regress"
# shellcheck disable=SC2086
suite regress "$(words $regress)" make_in_tree installcheck-regress
save_output regress-out results regression.diffs regression.out log
show_diffs regression.diffs

log "isolation tests"
# shellcheck disable=SC2086
suite isolation "$(words $isolation)" make_in_tree installcheck-isolation
save_output isolation-out output_iso
show_diffs output_iso/regression.diffs

log "pg_regress and isolation again, in Valkey mode (all but the local store's test)"
valkey_start "$W/valkey"
export PGOPTIONS="-c stampede.valkey_url=redis://127.0.0.1:$VALKEY_PORT"
# shellcheck disable=SC2086
suite regress-valkey "$(words $regress_valkey)" \
	make_in_tree installcheck-regress REGRESS="$regress_valkey"
save_output regress-valkey-out results regression.diffs regression.out log
show_diffs regression.diffs
# shellcheck disable=SC2086
suite isolation-valkey "$(words $isolation)" make_in_tree installcheck-isolation
save_output isolation-valkey-out output_iso
show_diffs output_iso/regression.diffs
unset PGOPTIONS
valkey_stop

log "TAP (test/t)"
# One script at a time, so that each is tallied by its own plan;
# prove_installcheck empties tmp_check first, so its log is saved after each.
for t in "$T"/test/t/*.pl; do
	t=$(basename "$t" .pl)
	failed_before=$failed
	suite "tap-$t" tap make_in_tree prove_installcheck PROVE_TESTS="test/t/$t.pl" PROVE_FLAGS=-v
	save_output "tap-$t-out" tmp_check/log
	# What a script dies of goes to its own log only.
	if [ "$failed" -ne "$failed_before" ] && [ -f "$T/tmp_check/log/regress_log_$t" ]; then
		echo "(the end of tmp_check/log/regress_log_$t:)"
		tail -n 20 "$T/tmp_check/log/regress_log_$t"
	fi
done

log "a server without shared_preload_libraries"
suite not-preloaded 1 make_in_tree installcheck-not-preloaded
save_output not-preloaded-out output_not_preloaded
show_diffs output_not_preloaded/regression.diffs

# Built with AddressSanitizer: every report any server wrote is a failure,
# whatever the suites said.
if asan_build; then
	log "AddressSanitizer reports"
	stop_throwaway
	asan_check() {
		local reports
		# Backends that loaded the runtime late write to their server's log:
		# ours (server.log), pg_regress's (log/postmaster.log) and TAP's
		# (tmp_check/log), as saved in $W/*-out.
		reports=$(grep -rl 'ERROR: AddressSanitizer' "$ASAN_DIR" "$W"/*/server.log "$W"/*-out \
			2>/dev/null || true)
		if [ -z "$reports" ]; then
			echo "ok 1 - no AddressSanitizer report from any server"
		else
			echo "not ok 1 - AddressSanitizer reports in: $reports"
			# shellcheck disable=SC2086
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
