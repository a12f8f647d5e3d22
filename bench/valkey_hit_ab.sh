#!/usr/bin/env bash
# What a change costs a hit from Valkey: the code of another commit (A) and
# this tree (B), installed in turn on one throwaway server sharing one
# redis-server on loopback, the server restarted each time, a warm 100-row
# key read with pgbench (prepared protocol) for 8 s a round, 1 and 4
# clients.  Prints each round's throughput and B / A; the median ratio per
# client count at the end.  Both sides pay the same round trip: the ratio
# is what the change costs, not what Valkey does.
#
#   bash bench/valkey_hit_ab.sh [--rounds N] COMMIT
#
# Installs both builds system-wide in turn (as root or with sudo), and this
# tree's again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib.sh

rounds=3
while [ $# -gt 1 ]; do
	case $1 in
	--rounds) rounds=$2; shift 2 ;;
	*) break ;;
	esac
done
[ $# -eq 1 ] || { echo "usage: $0 [--rounds N] COMMIT" >&2; exit 2; }
base=$1

prepare_throwaway
libdir=$("$PG_CONFIG" --pkglibdir)
log "building $base (A) and this tree (B)"
git worktree add -q --detach "$W/a" "$base"
trap 'git worktree remove --force "$W/a" >/dev/null 2>&1 || true; cleanup_throwaway' EXIT
make -s -C "$W/a" PG_CONFIG="$PG_CONFIG" >/dev/null 2>&1
cp "$W/a/stampede.so" "$W/a.so"
cp stampede.so "$W/b.so"

pg_start "$W/pg" "shared_preload_libraries = 'stampede'"
valkey_start "$W/valkey"
createdb hitab
export PGDATABASE=hitab PGOPTIONS="-c stampede.valkey_url=redis://127.0.0.1:$VALKEY_PORT"
psql -q -c 'CREATE EXTENSION stampede'
cat >"$W/hit.sql" <<'EOF'
SELECT count(*) FROM stampede_cached('hitab', $$SELECT g, 'row ' || g AS name, g * 10 AS total FROM generate_series(1, 100) g$$, '1 hour') AS t(id int, name text, total int);
EOF

# install_lib SO: put SO in place by rename, never writing over the file that
# the running server has mapped.
install_lib() {
	as_root cp "$1" "$libdir/stampede.so.new"
	as_root mv "$libdir/stampede.so.new" "$libdir/stampede.so"
}

# tps SO CLIENTS: install SO, restart, warm the key, measure.
tps() {
	install_lib "$1"
	as_server_user "$PG_BINDIR/pg_ctl" -D "$W/pg/data" -l "$W/pg/server.log" -w restart -m fast >/dev/null
	redis-cli -p "$VALKEY_PORT" FLUSHALL >/dev/null
	psql -qAt -f "$W/hit.sql" >/dev/null
	pgbench -n -M prepared -c "$2" -j "$2" -T 8 -f "$W/hit.sql" 2>/dev/null |
		sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n 1
}

log "hit from Valkey: A = $base, B = this tree"
printf '%-6s %-8s %12s %12s %8s\n' round clients "A tps" "B tps" "B / A"
ratios_1=() ratios_4=()
for r in $(seq 1 "$rounds"); do
	for c in 1 4; do
		a=$(tps "$W/a.so" "$c")
		b=$(tps "$W/b.so" "$c")
		ratio=$(python3 -c "print(f'{$b / $a:.3f}')")
		printf '%-6s %-8s %12.0f %12.0f %8s\n' "$r" "$c" "$a" "$b" "$ratio"
		if [ "$c" = 1 ]; then ratios_1+=("$ratio"); else ratios_4+=("$ratio"); fi
	done
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "median B / A: 1 client $(median "${ratios_1[@]}"), 4 clients $(median "${ratios_4[@]}")"
install_lib "$W/b.so"
