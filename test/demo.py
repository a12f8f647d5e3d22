#!/usr/bin/python3
"""The stampede demo: many sessions ask for a few cities' weather at once.

Phase 1 runs the expensive query in every session, as an application without
protection would; phase 2 asks through stampede_cached, so that one session
per key runs it and the others wait for its rows; phase 3 asks again on the
now-warm keys.  After each call a session reads stampede.last_call, which
says whether it led (ran the query), waited for another's rows or hit;
stampede_stats on each server counts the executions, and the two must agree.

Run it through test/demo.sh, which starts a server with stampede preloaded
and sets PGHOST/PGPORT/PGUSER for libpq.

With --valkey (test/demo.sh --valkey), demo.sh also starts a redis-server
(Valkey speaks its protocol) at STAMPEDE_VALKEY_PORT and a streaming replica
of the server at STAMPEDE_REPLICA_HOST/STAMPEDE_REPLICA_PORT.  Every session
points stampede.valkey_url at that Valkey, half of them on the primary and
half on the replica: each key's query runs once between the two.
"""
import argparse
import os
import sys
import threading
import time

import psycopg2

CITIES = ["London", "Paris", "Tokyo", "New York", "Sydney"]
TEMPERATURES = [11, 14, 19, 9, 23]
TTL = "5 minutes"
# pg_locks.objsubid of stampede's single-flight advisory locks
# (STAMPEDE_LOCK_CLASS in src/flight.c); the SQL advisory lock functions use 1 and 2.
STAMPEDE_LOCK_CLASS = 0x5354
POLL_MS = 2
COLUMNS = "t(city text, temperature int)"
METRICS = ["requests", "hits", "misses", "executions", "lock_waits", "avg_wait_ms",
           "api_call_reduction_pct", "lock_wait_rate_pct", "timeout_rate_pct"]


def quote(s):
    return "'" + s.replace("'", "''") + "'"


class Key:
    """One city: its cache key and its expensive query."""

    def __init__(self, i, work_ms):
        self.i = i
        self.city = CITIES[i] if i < len(CITIES) else f"City {i + 1}"
        self.temperature = TEMPERATURES[i] if i < len(TEMPERATURES) else 10 + i % 15
        self.cache_key = f"weather:{self.city}"
        self.query = (f"SELECT city, temperature "
                      f"FROM demo_weather, pg_sleep({work_ms} / 1000.0) "
                      f"WHERE city = {quote(self.city)}")


class Session:
    """One client connection asking for one key; connected before any phase starts."""

    def __init__(self, n, key, statement_timeout_ms, server):
        self.n = n
        self.key = key
        self.server = server
        # options replaces PGOPTIONS in libpq, so keep the user's settings.
        options = f"{os.environ.get('PGOPTIONS', '')} -c statement_timeout={statement_timeout_ms}"
        self.conn = connect(server, options=options.strip())
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            self.pid = cur.fetchone()[0]
        self.start = self.end = 0.0
        self.rows = None
        self.error = None
        self.role = None
        self.how = None  # stampede.last_call after the call

    def ask(self, sql, params, gate):
        try:
            with self.conn.cursor() as cur:
                gate.wait()
                self.start = time.perf_counter()
                cur.execute(sql, params)
                self.rows = cur.fetchall()
                self.end = time.perf_counter()
                # How the session's own call was answered: hit, waited, led, ran.
                cur.execute("SHOW stampede.last_call")
                self.how = cur.fetchone()[0]
        except Exception as e:  # reported by the main thread
            self.error = e


class Server:
    """A PostgreSQL server of the demo, and the Valkey it uses (None: none)."""

    def __init__(self, name, host, port, valkey_url):
        self.name, self.host, self.port, self.valkey_url = name, host, port, valkey_url


def connect(server, **kwargs):
    """An autocommit connection to server, pointed at its Valkey if it has one."""
    conn = psycopg2.connect(dbname="postgres", host=server.host, port=server.port, **kwargs)
    conn.autocommit = True
    if server.valkey_url:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('stampede.valkey_url', %s, false)", (server.valkey_url,))
    return conn


def stats_executions(admin):
    """stampede_stats' executions on each server."""
    counts = {}
    for srv, conn in admin.items():
        with conn.cursor() as cur:
            cur.execute("SELECT executions FROM stampede_stats")
            counts[srv] = cur.fetchone()[0]
    return counts


def run_phase(sessions, statement, watch_locks, servers):
    """All sessions send statement(session) at once; returns (t0, pids seen waiting).

    With watch_locks, another connection polls pg_locks meanwhile for sessions
    blocked on a stampede lock: that is what makes a session a waiter.
    """
    t0 = [0.0]
    gate = threading.Barrier(len(sessions), action=lambda: t0.__setitem__(0, time.perf_counter()))
    threads = [threading.Thread(target=s.ask, args=(*statement(s), gate), daemon=True)
               for s in sessions]
    waiting, done = set(), threading.Event()

    def watch(server):
        conn = connect(server)
        with conn.cursor() as cur:
            while not done.is_set():
                cur.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' "
                            "AND objsubid = %s AND NOT granted", (STAMPEDE_LOCK_CLASS,))
                waiting.update(pid for (pid,) in cur.fetchall())
                time.sleep(POLL_MS / 1000)
        conn.close()

    # pids are unique across servers on one machine, so one set serves both.
    watchers = [threading.Thread(target=watch, args=(srv,), daemon=True)
                for srv in servers] if watch_locks else []
    for w in watchers:
        w.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    for w in watchers:
        w.join()
    failed = [s for s in sessions if s.error is not None]
    if failed:
        s = failed[0]
        sys.exit(f"FAILED: {len(failed)} session(s) raised an error, e.g. session {s.n} "
                 f"({s.key.city}): {str(s.error).strip()}")
    return t0[0], waiting


def classify(sessions, waiting):
    """Label each stampede_cached call as its session's stampede.last_call
    says, checked against pg_locks:

    leader: it ran the query and stored its rows ("led");
    waiter: it got rows another session or server computed ("waited"; seen in
            pg_locks blocked on the key's lock, if it waited on its server
            longer than the polling interval);
    hit:    the rows were stored when it asked ("hit");
    direct: it ran the query for itself ("ran").
    """
    roles = {"led": "leader", "waited": "waiter", "hit": "hit", "ran": "direct"}
    for s in sessions:
        s.role = roles.get(s.how, "direct")
        if s.pid in waiting and s.role == "hit":
            sys.exit(f"FAILED: session {s.n} waited on the key's lock, yet says it hit")


def print_timeline(sessions, t0):
    """Offsets are from the moment the gate let all sessions go, as the client
    saw them; the server makes leader whichever call reaches the key's lock
    first, not always the first sent.  Wait is a waiter's call duration: it
    does nothing else but read the stored rows."""
    many = len({s.server for s in sessions}) > 1
    server = f"{'server':<9}" if many else ""
    print(f"    {'key':<12}{'session':>8}{'pid':>8}  {server}{'role':<7}"
          f"{'start ms':>10}{'wait ms':>10}{'return ms':>11}")
    for s in sorted(sessions, key=lambda s: (s.key.i, s.start)):
        wait = f"{(s.end - s.start) * 1000:.1f}" if s.role == "waiter" else "-"
        server = f"{s.server.name:<9}" if many else ""
        print(f"    {s.key.city:<12}{s.n:>8}{s.pid:>8}  {server}{s.role:<7}"
              f"{(s.start - t0) * 1000:>10.1f}{wait:>10}{(s.end - t0) * 1000:>11.1f}")


def pause(args, what):
    if not args.interactive:
        return
    prompt = f"\nPress Enter to {what}... "
    # Never block when nobody can answer: a pipe, a file, /dev/null.
    if not sys.stdin.isatty():
        print(prompt + "(stdin is not a terminal: continuing)")
        return
    try:
        input(prompt)
    except EOFError:
        print()


def plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def servers_from_environment(valkey):
    """The server of PGHOST/PGPORT; with --valkey, it and its replica, sharing a Valkey."""
    if not valkey:
        return [Server("server", os.environ.get("PGHOST"), os.environ.get("PGPORT"), None)]
    url = f"redis://127.0.0.1:{os.environ['STAMPEDE_VALKEY_PORT']}"
    return [Server("primary", os.environ["PGHOST"], os.environ["PGPORT"], url),
            Server("replica", os.environ["STAMPEDE_REPLICA_HOST"],
                   os.environ["STAMPEDE_REPLICA_PORT"], url)]


def set_up(servers, admin, keys):
    """The cities' table on the first server; replicas wait until they replayed it."""
    with admin[servers[0]].cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS stampede")
        cur.execute("DROP TABLE IF EXISTS demo_weather")
        cur.execute("CREATE TABLE demo_weather (city text PRIMARY KEY, temperature int NOT NULL)")
        for k in keys:
            cur.execute("INSERT INTO demo_weather VALUES (%s, %s)", (k.city, k.temperature))
        cur.execute("SELECT pg_current_wal_lsn()")
        lsn = cur.fetchone()[0]
    for srv in servers[1:]:
        deadline = time.monotonic() + 60
        with admin[srv].cursor() as cur:
            while True:
                cur.execute("SELECT pg_is_in_recovery(), "
                            "(SELECT count(*) FROM pg_class WHERE relname = 'demo_weather'), "
                            "pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))
                recovering, tables, replayed = cur.fetchone()
                if not recovering:
                    sys.exit(f"FAILED: the {srv.name} is not in recovery")
                if tables > 0 and replayed:
                    break
                if time.monotonic() > deadline:
                    sys.exit(f"FAILED: the {srv.name} did not replay demo_weather within 60 s")
                time.sleep(0.05)


def print_status(servers, admin):
    print("\nstampede_status():")
    for srv in servers:
        with admin[srv].cursor() as cur:
            cur.execute("SELECT mode, valkey_reachable FROM stampede_status()")
            mode, reachable = cur.fetchone()
        reach = "" if reachable is None else f", valkey_reachable {reachable}"
        print(f"  {srv.name:<9} mode {mode}{reach}")


def cached_phase(title, sessions, servers, admin):
    """Run sessions through stampede_cached: (when they started, executions per server)."""
    cached = lambda s: (f"SELECT * FROM stampede_cached(%s, %s, %s) AS {COLUMNS}",
                        (s.key.cache_key, s.key.query, TTL))
    print(f"\n{title}")
    before = stats_executions(admin)
    t0, waiting = run_phase(sessions, cached, watch_locks=True, servers=servers)
    after = stats_executions(admin)
    classify(sessions, waiting)
    ran = {srv: after[srv] - before[srv] for srv in servers}
    return t0, ran


def main():
    p = argparse.ArgumentParser(description="stampede demo: a cache stampede, with and without stampede_cached")
    p.add_argument("--sessions", type=int, default=10, metavar="N", help="sessions per key (default 10)")
    p.add_argument("--keys", type=int, default=3, metavar="M", help="keys, i.e. cities (default 3)")
    p.add_argument("--work-ms", type=int, default=500, metavar="MS",
                   help="how long the expensive query takes (default 500)")
    p.add_argument("--verbose", action="store_true", help="print each session's timeline")
    p.add_argument("--interactive", action="store_true", help="pause between steps")
    p.add_argument("--valkey", action="store_true",
                   help="share a Valkey between a primary and its replica (set up by test/demo.sh)")
    args = p.parse_args()
    if args.sessions < 1 or args.keys < 1 or args.work_ms < 0:
        p.error("--sessions and --keys must be at least 1, --work-ms at least 0")

    servers = servers_from_environment(args.valkey)
    keys = [Key(i, args.work_ms) for i in range(args.keys)]
    admin = {srv: connect(srv) for srv in servers}
    with admin[servers[0]].cursor() as cur:
        cur.execute("SHOW max_connections")
        max_connections = int(cur.fetchone()[0])
    # sessions are spread evenly; each server also has an admin and a pg_locks watcher
    per_server = -(-args.sessions * args.keys // len(servers))
    if per_server + 3 > max_connections:
        sys.exit(f"FAILED: {args.sessions} sessions x {args.keys} keys need more connections "
                 f"than max_connections ({max_connections}) allows")
    set_up(servers, admin, keys)

    total = args.sessions * len(keys)
    cities = "1 city" if len(keys) == 1 else f"{len(keys)} cities"
    where = ("" if len(servers) == 1 else
             f", half on the primary and half on its streaming replica, sharing the Valkey at "
             f"{servers[0].valkey_url}")
    print(f"\nstampede demo: {args.sessions} sessions per city ask for the weather of {cities} "
          f"at once ({total} sessions{where}); the query takes {args.work_ms} ms.")
    print_status(servers, admin)
    # A generous bound, so that a stuck demo fails instead of hanging.
    timeout_ms = 10 * args.work_ms + 30000
    sessions = [Session(n + 1, k, timeout_ms, servers[n % len(servers)])
                for k in keys for n in range(args.sessions)]
    failures = []

    # Phase 1: every session runs the query itself.
    pause(args, "run phase 1 (without protection)")
    print("\nPhase 1: without protection, every session runs the query itself")
    t0, _ = run_phase(sessions, lambda s: (s.key.query, None), watch_locks=False, servers=servers)
    unprotected = 0
    for k in keys:
        mine = [s for s in sessions if s.key is k]
        own = sum(1 for s in mine if s.rows)
        unprotected += own
        split = ("" if len(servers) == 1 else "   (" + ", ".join(
            f"{sum(1 for s in mine if s.server is srv)} on the {srv.name}" for srv in servers) + ")")
        print(f"  {k.city:<12} query ran {own:>3}x{split}")
    print(f"  {plural(unprotected, 'execution')} in {max(s.end for s in sessions) - t0:.2f} s")
    if args.verbose:
        for s in sessions:
            s.role = "direct"
        print_timeline(sessions, t0)

    # Phase 2: the same sessions, through stampede_cached on cold keys.
    pause(args, "run phase 2 (with stampede_cached)")
    for srv in servers:
        with admin[srv].cursor() as cur:
            cur.execute("SELECT stampede_stats_reset()")
            for k in keys:
                cur.execute("SELECT stampede_invalidate(%s)", (k.cache_key,))
    t0, ran = cached_phase("Phase 2: with stampede_cached, cold cache", sessions, servers,
                           admin)
    protected = sum(ran.values())
    for k in keys:
        mine = [s for s in sessions if s.key is k]
        roles = {r: sum(s.role == r for s in mine) for r in ("leader", "waiter", "hit")}
        same = len({tuple(s.rows) for s in mine}) == 1 and len(mine[0].rows) == 1
        leader = next((s for s in mine if s.role == "leader"), None)
        on = f" on the {leader.server.name}" if leader and len(servers) > 1 else ""
        print(f"  {k.city:<12} query ran {roles['leader']:>3}x{on}   "
              f"{plural(roles['leader'], 'leader')}, {plural(roles['waiter'], 'waiter')}, "
              f"{plural(roles['hit'], 'hit')}; "
              + (f"all {len(mine)} got the same row" if same else "sessions got DIFFERENT rows"))
        if roles["leader"] > 1:
            failures.append(f"phase 2 ran the query of {k.city} {roles['leader']} times, not once")
        if not same:
            failures.append(f"phase 2 sessions of {k.city} got different rows")
    leaders = sum(s.role == "leader" for s in sessions)
    if protected != leaders:
        failures.append(f"stampede_stats counted {protected} executions, the sessions saw {leaders}")
    split = ("" if len(servers) == 1 else " (" + ", ".join(
        f"{ran[srv]} on the {srv.name}" for srv in servers) + ")")
    print(f"  {plural(protected, 'execution')}{split} in {max(s.end for s in sessions) - t0:.2f} s")
    if len(servers) > 1:
        print("  (waiter: seen in pg_locks on its server; a hit may have waited in Valkey "
              "for the other server's leader)")
    if args.verbose:
        print_timeline(sessions, t0)

    pause(args, "see stampede_stats")
    stats = {}
    for srv in servers:
        with admin[srv].cursor() as cur:
            cur.execute(f"SELECT {', '.join(METRICS)} FROM stampede_stats")
            stats[srv] = dict(zip(METRICS, cur.fetchone()))
    print("\nstampede_stats after phase 2:")
    if len(servers) > 1:
        print(f"  {'':<24}" + "".join(f"{srv.name:>10}" for srv in servers))
    for name in METRICS:
        print(f"  {name:<24}" + "".join(
            f"{'-' if stats[srv][name] is None else str(stats[srv][name]):>10}" for srv in servers))
    seen = sum(s.role == "waiter" for s in sessions)
    if len(servers) == 1 and seen != stats[servers[0]]["lock_waits"]:
        print(f"  (pg_locks polling saw {plural(seen, 'waiter')}: "
              f"waits shorter than its {POLL_MS} ms interval go unseen)")
    fewer = round(100 * (1 - protected / unprotected)) if unprotected else 0
    print(f"\nwithout stampede: {plural(unprotected, 'execution')}; "
          f"with stampede: {plural(protected, 'execution')} ({fewer}% fewer)")

    # Phase 3: the keys are warm now, so every call should be a hit.
    pause(args, "run phase 3 (warm cache)")
    t0, ran = cached_phase("Phase 3: with stampede_cached, warm cache", sessions, servers,
                           admin)
    hits = sum(s.role == "hit" for s in sessions)
    slowest = max(s.end - s.start for s in sessions) * 1000
    print(f"  {hits} of {total} calls were hits, {plural(sum(ran.values()), 'execution')}, "
          f"slowest call {slowest:.1f} ms")
    if args.verbose:
        print_timeline(sessions, t0)
    if sum(ran.values()) > 0:
        failures.append(f"phase 3 ran queries {sum(ran.values())} times on warm keys")

    if len(servers) > 1:
        print_status(servers, admin)
    for s in sessions:
        s.conn.close()
    for conn in admin.values():
        conn.close()
    if failures:
        print("\nFAILED: " + "; ".join(failures), file=sys.stderr)
        sys.exit(1)
    print("\nOK")


if __name__ == "__main__":
    main()
