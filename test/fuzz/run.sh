#!/usr/bin/env bash
# Fuzzes the reading of entries from Valkey (src/entry_check.c) with
# libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer: see
# fuzz_entry.c.
#
#   test/fuzz/run.sh [SECONDS]     (default 60)
#
# Builds the harness in a scratch directory, runs it for SECONDS on a copy
# of test/fuzz/corpus (real entries, as servers sealed them for Valkey:
# the tree's copy is never written to), and prints how many inputs ran and
# the coverage reached.  Any finding (a crash, a sanitizer report, a leak, a
# broken promise of the checks, a timeout) fails: the scratch directory is
# then kept, with the input that found it and the fuzzer's log.
#
# Ends with "fuzz: 1 passed, 0 failed" or "fuzz: 0 passed, 1 failed" (the
# closing line test/run.sh reads); exits non-zero on failure.
#
# CLANG (default clang-14, else clang) and PG_CONFIG may be set;
# FUZZ_EXTRA_CFLAGS adds compiler flags (e.g. -fno-sanitize=object-size to
# look past a known report).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

seconds=${1:-60}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/${PG_MAJOR:-15}/bin/pg_config}
if [ -z "${CLANG:-}" ]; then
	if command -v clang-14 >/dev/null; then CLANG=clang-14; else CLANG=clang; fi
fi

result() {
	local ok=$1 what=$2
	if [ "$ok" = 1 ]; then
		echo "ok 1 - fuzz_entry: $what"
		echo "fuzz: 1 passed, 0 failed"
		exit 0
	fi
	echo "not ok 1 - fuzz_entry: $what"
	echo "fuzz: 0 passed, 1 failed"
	exit 1
}

case $seconds in
'' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

scratch=$(mktemp -d "${TMPDIR:-/tmp}/stampede-fuzz.XXXXXX") || result 0 "no scratch directory"
keep=0
trap '[ "$keep" = 1 ] || rm -rf "$scratch"' EXIT

# shellcheck disable=SC2086
if ! "$CLANG" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-Wno-ignored-attributes ${FUZZ_EXTRA_CFLAGS:-} \
	-I src -I "$("$PG_CONFIG" --includedir-server)" \
	test/fuzz/fuzz_entry.c src/entry_check.c -o "$scratch/fuzz_entry" >"$scratch/build.log" 2>&1; then
	cat "$scratch/build.log"
	result 0 "the harness did not build"
fi

mkdir -p "$scratch/corpus" "$scratch/artifacts"
cp test/fuzz/corpus/* "$scratch/corpus/"
echo "fuzzing for $seconds s on a copy of $(find test/fuzz/corpus -type f | wc -l) entries (in $scratch)"
status=0
(
	cd "$scratch" &&
		exec ./fuzz_entry -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
			-print_final_stats=1 -artifact_prefix="$scratch/artifacts/" corpus
) >"$scratch/fuzz.log" 2>&1 || status=$?

runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$scratch/fuzz.log" | tail -n 1)
cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$scratch/fuzz.log" | tail -n 1)
found=$(grep -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY: |fuzz_entry: accepted entry breaks|deadly signal|Test unit written' \
	"$scratch/fuzz.log" | head -n 20)
grep -E '^#[0-9]+[[:space:]]+DONE' "$scratch/fuzz.log" | tail -n 1
echo "${runs:-stopped before its end}${cov:+, $cov}"
if [ "$status" -ne 0 ] || [ -n "$found" ] || [ -z "$runs" ] || [ -n "$(ls -A "$scratch/artifacts")" ]; then
	keep=1
	echo "$found"
	tail -n 40 "$scratch/fuzz.log"
	echo "the input(s) and the log are kept in $scratch (artifacts/, fuzz.log)"
	result 0 "a finding${runs:+ after $runs} (exit status $status)"
fi
result 1 "$runs, $cov, no finding"
