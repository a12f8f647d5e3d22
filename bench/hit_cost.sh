#!/usr/bin/env bash
# Instructions a backend spends per cache hit, against the instructions per
# SELECT * FROM a materialized view of the same 100 rows: the rows, the
# statements and the setup of bench/hit_vs_matview.sh (bench/hit_setup.sh),
# counted by valgrind's callgrind instead of timed.  An instruction count
# does not move with the machine's load, so a change to the hit path shows
# in it even when it is too small for pgbench's tps to tell apart from noise.
#
# How: a throwaway cluster is set up natively, then its postmaster is started
# again under `valgrind --tool=callgrind`, which follows the postmaster's
# forks, so that each backend writes its own profile when it exits.  For each
# statement (A the matview, B a stampede hit, the key warmed first) pgbench
# runs N1 and then N2 executions, prepared, in one connection each
# (pgbench -n -M prepared -c 1 -t N); a backend's total Ir for N2 less its
# total for N1, divided by N2 - N1, is what one execution costs, with the
# connection's start and end cancelled out.  Only what runs inside
# PostgresMain is counted (--toggle-collect), not what a forked backend
# inherits from the postmaster's counts, which grow with every fork.
# Everything that happens per execution counts: reading the Bind/Execute/Sync
# messages, the executor, the rows sent, the commit.  autovacuum is off, so
# that no worker of its own changes what a backend does in between.
#
# Repeatable to about 0.1 %: the one part that moves with timing is whether
# the backend finds the client's next message already there or has to wait
# for it (WaitEventSetWait, a retried recv), a few hundred Ir per execution
# at most, and the same for A and B; it is printed too.
#
# It also prints, per execution of B, the instructions spent in stampede.so
# itself and under its custom scan's callbacks, and the functions that cost
# A and B the most (self Ir per execution, same difference of two profiles).
#
#   bash bench/hit_cost.sh [--n1 N] [--n2 N] [--quick] [--keep DIR] [--no-build]
#
# --quick: N1 100, N2 400 (default 1000 and 3000).
# --keep DIR: copy the four backends' callgrind profiles to DIR, for
#   callgrind_annotate or kcachegrind.
# --no-build: use the stampede already installed (bench/run.sh, which built it).
#
# Builds and installs stampede system-wide and starts a server: on a machine
# that others use too, run it under their lock (flock /tmp/stampede-pg.lock ...).
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=test/lib.sh
. test/lib.sh
# shellcheck source=bench/hit_setup.sh
. bench/hit_setup.sh

n1=1000
n2=3000
keep=
build=1
while [ $# -gt 0 ]; do
	case $1 in
	--n1) n1=$2; shift ;;
	--n2) n2=$2; shift ;;
	--quick) n1=100 n2=400 ;;
	--keep) keep=$2; shift ;;
	--no-build) build=0 ;;
	*)
		echo "usage: $0 [--n1 N] [--n2 N] [--quick] [--keep DIR] [--no-build]" >&2
		exit 2
		;;
	esac
	shift
done
if ! [ "$n1" -gt 0 ] 2>/dev/null || ! [ "$n2" -gt "$n1" ] 2>/dev/null; then
	echo "need 0 < N1 < N2 (got --n1 $n1 --n2 $n2)" >&2
	exit 2
fi

started=$(date +%s)
if [ "$build" = 1 ]; then
	prepare_throwaway
else
	W=$(make_workdir)
	trap cleanup_throwaway EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
fi
if ! command -v valgrind >/dev/null || ! command -v callgrind_annotate >/dev/null; then
	log "installing valgrind"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi

PGBENCH=$PG_BINDIR/pgbench
dir=$W/pg
tmp=$W/scripts
cg=$dir/callgrind
mkdir -p "$tmp"

# The cluster, set up natively: loading 10000 rows under callgrind would
# take long and measure nothing.
log "setting up the cluster"
pg_start "$dir" "shared_preload_libraries = 'stampede'" "autovacuum = off"
createdb bench
export PGDATABASE=bench
hit_setup
hit_scripts "$tmp"
as_server_user "$PG_BINDIR/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null

log "starting the postmaster under callgrind"
mkdir -p "$cg"
[ "$(id -u)" -eq 0 ] && chown postgres: "$cg"
# Forked children are followed without --trace-children (that is for exec).
# A forked child starts with its parent's counts: counting only inside
# PostgresMain leaves out what the postmaster had spent before the fork,
# which grows with every backend it starts, and the backend's authentication
# (the same for every connection).
as_server_user valgrind -q --tool=callgrind --dump-instr=no --dump-line=no \
	--collect-atstart=no --toggle-collect=PostgresMain \
	--callgrind-out-file="$cg/callgrind.out.%p" \
	"$PG_BINDIR/postgres" -D "$dir/data" >>"$dir/server.log" 2>&1 &
for ((i = 0; i < 600; i++)); do
	pg_isready -q && break
	sleep 0.5
done
pg_isready -q || { cat "$dir/server.log"; echo "the server under callgrind did not start" >&2; exit 1; }
pm=$(head -1 "$dir/data/postmaster.pid")
# The postmaster's children now: its background processes (and perhaps
# pg_isready's backend, which will exit).  Any other child is a backend of ours.
bg=$(pgrep -P "$pm" | sort)

# quiesce: wait until every backend we started has exited, and so has
# written its profile.
quiesce() {
	local i
	for ((i = 0; i < 3000; i++)); do
		[ -z "$(comm -13 <(echo "$bg") <(pgrep -P "$pm" | sort))" ] && return 0
		sleep 0.1
	done
	echo "backends still running after 300 s: $(comm -13 <(echo "$bg") <(pgrep -P "$pm" | sort))" >&2
	return 1
}

# Warm B's key, and check that A and B return the same 100 rows in the same order.
for s in A B; do
	psql -X -A -t -v ON_ERROR_STOP=1 -f "$tmp/$s.sql" >"$tmp/$s.out"
done
cmp -s "$tmp/A.out" "$tmp/B.out" || { echo "FAIL: B returns other rows than A"; exit 1; }
[ "$(wc -l <"$tmp/A.out")" -eq 100 ] || { echo "FAIL: A returns $(wc -l <"$tmp/A.out") rows, not 100"; exit 1; }

stampede_counters() {
	psql -X -A -t -F ' ' -c 'SELECT requests, hits, executions FROM stampede_stats'
}

# run S N: pgbench runs statement S N times in one connection; sets PROFILE
# to the callgrind profile of the backend that served it.
run() {
	local s=$1 n=$2 before new f ir best_ir=-1
	quiesce
	before=$(ls "$cg")
	if ! "$PGBENCH" -n -M prepared -c 1 -j 1 -t "$n" -f "$tmp/$s.sql" >"$tmp/pgbench.out" 2>&1 ||
		! grep -q "number of transactions actually processed: $n/$n" "$tmp/pgbench.out"; then
		cat "$tmp/pgbench.out" >&2
		return 1
	fi
	# pgbench's client's backend, and the one it opens first to look at the server.
	quiesce
	new=$(comm -13 <(echo "$before") <(ls "$cg"))
	[ -n "$new" ] || { echo "no callgrind profile from the backend of $s x $n" >&2; return 1; }
	# The client's backend is the one that ran the statements: the largest.
	PROFILE=
	for f in $new; do
		ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$cg/$f")
		if [ "${ir:-0}" -gt "$best_ir" ]; then PROFILE=$cg/$f best_ir=$ir; fi
	done
}

log "callgrind: N1 = $n1 and N2 = $n2 executions of A and of B, prepared, one connection each"
status=0
declare -A prof
# Interleaved, so that A and B are measured in the same server's same state.
for n in "$n1" "$n2"; do
	for s in A B; do
		[ "$s" = B ] && read -r req0 hits0 exec0 < <(stampede_counters)
		t0=$(date +%s)
		run "$s" "$n"
		prof[$s$n]=$PROFILE
		line="  $s x $n: $(basename "$PROFILE"), $(($(date +%s) - t0)) s"
		if [ "$s" = B ]; then
			read -r req1 hits1 exec1 < <(stampede_counters)
			line+=", stampede_stats: requests $((req1 - req0)), hits $((hits1 - hits0)), executions $((exec1 - exec0))"
			if [ $((req1 - req0)) -ne "$n" ] || [ $((hits1 - hits0)) -ne "$n" ] || [ $((exec1 - exec0)) -ne 0 ]; then
				line+="  FAIL: not $n hits"
				status=1
			fi
		fi
		echo "$line"
	done
done

if [ -n "$keep" ]; then
	mkdir -p "$keep"
	for k in "${!prof[@]}"; do cp "${prof[$k]}" "$keep/callgrind.${k:0:1}.${k:1}"; done
	echo "profiles kept in $keep (callgrind.A.$n1 ...)"
fi

# Self and inclusive Ir per function of each profile, for the breakdown.
for k in "${!prof[@]}"; do
	callgrind_annotate --auto=no --threshold=100 --inclusive=no "${prof[$k]}" >"$tmp/$k.self"
	callgrind_annotate --auto=no --threshold=100 --inclusive=yes "${prof[$k]}" >"$tmp/$k.incl"
done

/usr/bin/python3 - "$tmp" "$n1" "$n2" "${prof[A$n1]}" "${prof[A$n2]}" "${prof[B$n1]}" "${prof[B$n2]}" <<'PY'
import re, sys

tmp, n1, n2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
files = dict(zip(["A1", "A2", "B1", "B2"], sys.argv[4:8]))
keys = {"A1": f"A{n1}", "A2": f"A{n2}", "B1": f"B{n1}", "B2": f"B{n2}"}
n = n2 - n1

def total(path):
    with open(path) as f:
        for line in f:
            m = re.match(r"(summary|totals):\s+(\d+)", line)
            if m:
                return int(m.group(2))
    raise SystemExit(f"no total in {path}")

line_re = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*?)\s*$")

def functions(path):
    """function (file:name [object]) -> Ir, from callgrind_annotate's output."""
    out = {}
    with open(path) as f:
        for line in f:
            m = line_re.match(line)
            if not m or "PROGRAM TOTALS" in line:
                continue
            name = m.group(2)
            if ":" not in name:
                continue
            out[name] = out.get(name, 0) + int(m.group(1).replace(",", ""))
    return out

def per_exec(kind, s):
    a = functions(f"{tmp}/{keys[s + '1']}.{kind}")
    b = functions(f"{tmp}/{keys[s + '2']}.{kind}")
    return {k: (b.get(k, 0) - a.get(k, 0)) / n for k in set(a) | set(b)}

def short(name):
    fn = name.split(" [")[0].split(":", 1)[-1]
    obj = name.split(" [")[-1].rstrip("]").rsplit("/", 1)[-1] if " [" in name else "?"
    return f"{fn} ({obj})"

ir = {s: (total(files[s + "2"]) - total(files[s + "1"])) / n for s in "AB"}
print()
print(f"instructions (Ir) per execution, prepared: (total of {n2} executions - total of {n1}) / {n}")
print(f"  A  SELECT * FROM mv_top (materialized view)      {ir['A']:>12,.0f}")
print(f"  B  stampede_cached('top100', ...), a hit          {ir['B']:>12,.0f}")
print(f"  B/A                                               {ir['B'] / ir['A']:>12.3f}")
wait = {s: sum(v for k, v in per_exec("incl", s).items() if re.search(r":WaitEventSetWait \[", k))
        for s in "AB"}
print(f"  (of which waiting for the client's next message, which varies with timing:"
      f" A {wait['A']:,.0f}, B {wait['B']:,.0f})")

self_b, incl_b = per_exec("self", "B"), per_exec("incl", "B")
in_so = sum(v for k, v in self_b.items() if "stampede.so]" in k)
scan = sum(v for k, v in incl_b.items()
           if re.search(r":(begin|exec|end)_stampede_scan \[", k))
print()
print("B per execution:")
print(f"  in stampede.so itself (self Ir)                   {in_so:>12,.0f}  ({in_so / ir['B']:.1%} of B)")
print(f"  under the custom scan's begin/exec/end callbacks  {scan:>12,.0f}  ({scan / ir['B']:.1%} of B)")
print("  stampede.so's functions, inclusive Ir per execution (self):")
rows = sorted(((v, k) for k, v in incl_b.items() if "stampede.so]" in k and v >= 1), reverse=True)
for v, k in rows[:12]:
    print(f"    {v:>10,.0f}  ({self_b.get(k, 0):>8,.0f})  {short(k)}")

for s in "AB":
    d = per_exec("self", s)
    print()
    print(f"{s}: the 12 functions with the most self Ir per execution")
    for v, k in sorted(((v, k) for k, v in d.items()), reverse=True)[:12]:
        print(f"    {v:>10,.0f}  ({v / ir[s]:5.1%})  {short(k)}")
PY

[ "$status" = 0 ] || echo "FAIL: B was not served from the cache alone"
echo "hit_cost took $(($(date +%s) - started)) s"
exit $status
