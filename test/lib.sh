# shellcheck shell=bash
# Shared by the test, demo and benchmark scripts: install what stampede needs,
# build it, and start/stop throwaway PostgreSQL clusters in a temp directory.
#
# PostgreSQL refuses to run as root; when we are root (CI is), the servers run
# as the "postgres" user that Debian's packages create, and so do the
# Makefile's tests (make installcheck: initdb refuses root too); the rest
# (building, installing, psql) runs as root.

PG_MAJOR=${PG_MAJOR:-15}
PG_BINDIR=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BINDIR/pg_config
STAMPEDE_PACKAGES=(build-essential pkg-config "postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR"
	postgresql-contrib libhiredis-dev redis-server python3 python3-psycopg2 libipc-run-perl
	clang-14 libclang-rt-14-dev)
export PATH="$PG_BINDIR:$PATH"

log() { printf '\n== %s\n' "$*"; }

# Built with AddressSanitizer (PG_CFLAGS=-fsanitize=address): postgres itself
# is not, and hangs at start with the sanitizer's runtime preloaded (in
# bindtextdomain, on Debian 12), so the runtime comes in with stampede.so,
# which needs it, and is told not to mind coming late.  SERVER_ENV is what
# every server (and TAP's, through prove) starts with; the reports go to
# $ASAN_DIR, which test/run.sh looks at.
SERVER_ENV=()
asan_build() { [[ "${PG_CFLAGS:-}" == *-fsanitize=address* ]]; }
asan_env() {
	ASAN_DIR=$1
	mkdir -p "$ASAN_DIR"
	chmod 777 "$ASAN_DIR"
	SERVER_ENV=("ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0:log_path=$ASAN_DIR/asan")
}

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Install the Debian packages that are missing (all of them on a fresh machine).
install_packages() {
	local missing=()
	for p in "${STAMPEDE_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	# Debian may start a redis-server service on install; the tests start their own.
	as_root service redis-server stop >/dev/null 2>&1 || true
}

build_and_install() {
	log "building stampede"
	make -s PG_CONFIG="$PG_CONFIG" clean >/dev/null
	make -s PG_CONFIG="$PG_CONFIG" 2>&1 | { grep -E 'warning|error' || true; }
	as_root make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
}

# The user the servers run as.
server_user() {
	if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi
}

# as_server_user CMD...: CMD as the server user, run from "/".  PostgreSQL's
# programs look up and return to the directory they start in, and the server
# user may not enter ours (a clone in /root, or in a home of mode 700, when we
# are root): so CMD starts from a directory it may enter, and every path
# given to it must be absolute.
as_server_user() {
	as_server_user_in / "$@"
}

# as_server_user_in DIR CMD...: the same, run from DIR.
as_server_user_in() {
	local dir=$1
	shift
	(
		cd "$dir" || exit 1
		if [ "$(id -u)" -eq 0 ]; then exec runuser -u postgres -- "$@"; else exec "$@"; fi
	)
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# pg_start DIR [extra postgresql.conf lines...]: a new cluster in DIR, started.
# Sets PGHOST, PGPORT, PGUSER for what follows.
pg_start() {
	local dir=$1
	shift
	mkdir -p "$dir"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
	as_server_user "$PG_BINDIR/initdb" -D "$dir/data" -U postgres --auth=trust \
		--no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log"; return 1; }
	local port
	port=$(free_port)
	{
		echo "port = $port"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "max_connections = 250"
		echo "fsync = off"
		echo "lc_messages = 'C'"
		for line in "$@"; do echo "$line"; done
	} | as_server_user tee -a "$dir/data/postgresql.conf" >/dev/null
	as_server_user env "${SERVER_ENV[@]}" "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" \
		-w start >/dev/null || { cat "$dir/server.log"; return 1; }
	export PGHOST=$dir PGPORT=$port PGUSER=postgres
}

pg_stop() {
	local dir=$1
	[ -f "$dir/data/postmaster.pid" ] &&
		as_server_user "$PG_BINDIR/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
	return 0
}

# copy_tree DEST: a copy in DEST of this tree's files: what git tracks and
# what it would not ignore (new files not added yet), as they are in the
# work tree; no build products, test output or .git.  Without git, all of
# the tree but .git and test-logs.
copy_tree() {
	local dest=$1
	mkdir -p "$dest"
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		# Files deleted from the work tree but not from the index are left out.
		git ls-files -z --cached --others --exclude-standard |
			while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
			tar --null -T - -cf - | tar -C "$dest" -xf -
	else
		tar --exclude=./.git --exclude=./test-logs -cf - . | tar -C "$dest" -xf -
	fi
}

# A temp directory the server user can write to, removed on exit.
make_workdir() {
	local dir
	dir=$(mktemp -d /tmp/stampede.XXXXXX)
	chmod 755 "$dir"
	echo "$dir"
}

# Everything a script needs before it starts servers: packages, the build,
# and a workdir W whose servers are stopped, and which is removed, when the
# script exits (also on Ctrl-C or kill).
prepare_throwaway() {
	install_packages
	build_and_install
	W=$(make_workdir)
	if asan_build; then asan_env "$W/asan"; fi
	trap cleanup_throwaway EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# If the script exits non-zero and has set KEEP_LOGS (a directory), the
# workdir's logs are kept there (see keep_logs) before it is removed, unless
# the script has kept them itself (LOGS_KEPT set).
cleanup_throwaway() {
	local status=$?
	stop_throwaway
	if [ "$status" -ne 0 ] && [ -n "${KEEP_LOGS:-}" ] && [ -z "${LOGS_KEPT:-}" ]; then
		keep_logs "$KEEP_LOGS"
		echo "the logs of this failed run are in $KEEP_LOGS"
	fi
	rm -rf "$W"
}

# Stops the workdir's servers and redis-server.
stop_throwaway() {
	local dir
	valkey_stop
	for dir in "$W"/*/; do
		pg_stop "${dir%/}"
	done
}

# keep_logs DEST: copies what the workdir holds but the data directories
# and the copy of the tree (each suite's log, the servers' logs, pg_regress's
# and the isolation tester's output, TAP's tmp_check/log, as saved from the
# tree after each run) to DEST, replacing what an earlier run left there.
# Readable by whoever runs this: the servers' files may belong to postgres.
keep_logs() {
	local dest=$1
	rm -rf "$dest"
	mkdir -p "$dest"
	tar -C "$W" --exclude=./tree --exclude=./*/data --exclude='t_*_data' --exclude='*.sock' \
		--exclude='.s.PGSQL.*' -cf - . 2>/dev/null | tar -C "$dest" --no-same-owner --no-same-permissions -xf - ||
		echo "(some logs could not be copied to $dest)"
}

# pg_start_replica DIR: a streaming physical replica of the server PGHOST/PGPORT
# point at, in DIR, started.  Sets PGHOST, PGPORT to it.
pg_start_replica() {
	local dir=$1 port
	mkdir -p "$dir"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
	as_server_user "$PG_BINDIR/pg_basebackup" -h "$PGHOST" -p "$PGPORT" -U postgres \
		-D "$dir/data" -R -X stream -c fast >"$dir/basebackup.log" 2>&1 || { cat "$dir/basebackup.log"; return 1; }
	port=$(free_port)
	{
		echo "port = $port"
		echo "unix_socket_directories = '$dir'"
	} | as_server_user tee -a "$dir/data/postgresql.conf" >/dev/null
	as_server_user env "${SERVER_ENV[@]}" "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" \
		-w start >/dev/null || { cat "$dir/server.log"; return 1; }
	export PGHOST=$dir PGPORT=$port
}

# valkey_start DIR [OPTION...]: a redis-server (Valkey speaks its protocol) of
# our own on 127.0.0.1 at a free port, without persistence, logging to
# DIR/valkey.log, with any further redis-server OPTIONs.
# Sets VALKEY_PORT and VALKEY_PID; valkey_stop stops it.
valkey_start() {
	local dir=$1 i
	shift
	mkdir -p "$dir"
	VALKEY_PORT=$(free_port)
	# Also a unix socket, world-writable: the PostgreSQL servers run as
	# postgres, not as the user who starts redis-server.
	VALKEY_SOCKET=$dir/valkey.sock
	redis-server --port "$VALKEY_PORT" --bind 127.0.0.1 --save '' --appendonly no \
		--unixsocket "$VALKEY_SOCKET" --unixsocketperm 777 \
		--dir "$dir" --logfile "$dir/valkey.log" --daemonize no "$@" &
	VALKEY_PID=$!
	for i in $(seq 100); do
		[ "$(redis-cli -h 127.0.0.1 -p "$VALKEY_PORT" ping 2>/dev/null)" = PONG ] && return 0
		kill -0 "$VALKEY_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$dir/valkey.log" 2>/dev/null
	echo "redis-server did not start" >&2
	return 1
}

valkey_stop() {
	if [ -n "${VALKEY_PID:-}" ]; then
		kill "$VALKEY_PID" 2>/dev/null || true
		wait "$VALKEY_PID" 2>/dev/null || true
		VALKEY_PID=
	fi
	return 0
}
